//! `c1m-server`'s command line.

use super::{argv, share, Ports, Spec};
use crate::layout::{Layout, WorkerArgs};
use crate::model::ServerModel;
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Parser, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[command(
    name = "c1m-server",
    version,
    about = "Epoll echo server for the million-connection test",
    after_help = crate::exit::HELP
)]
pub struct ServerSpec {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: Ipv4Addr,
    #[command(flatten)]
    pub ports: Ports,
    /// Connections expected; sizes the number of fd tables (worker threads/processes).
    #[arg(long, default_value_t = 1_000_000)]
    pub connections: u64,
    /// Steer each new connection to worker `(source address - BASE) mod workers` (one process
    /// only). For a client that gives each of its fd tables its own source address and fills them
    /// one after another (`c1m-client --staged`): then only a couple of workers are busy at a
    /// time and each wake-up serves a batch. Without it the kernel hashes the 4-tuple.
    #[arg(long, value_name = "BASE")]
    pub steer_source_base: Option<Ipv4Addr>,
    /// Accept a client's first data in its SYN (TCP Fast Open, `c1m-client --fastopen`). The
    /// kernel needs the server bit of `net.ipv4.tcp_fastopen` (2) as well.
    #[arg(long)]
    pub fastopen: bool,
    /// The server model: how connections are accepted and served (the course's list).
    #[arg(long, value_enum, default_value_t = ServerModel::EpollThreads)]
    pub model: ServerModel,
    /// Stack size of each connection's thread (`--model thread-per-conn`), in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 64)]
    pub stack_kib: usize,
    /// Blocking workers per reactor (`--model half-sync`).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub pool: usize,
    /// Internal: listening sockets inherited from the master process, one per port (the
    /// worker processes of `prefork` and `prefork-sync`).
    #[arg(long, hide = true, value_delimiter = ',', value_name = "FD")]
    pub listen_fds: Vec<i32>,

    #[command(flatten)]
    pub workers: WorkerArgs,
}

impl Spec for ServerSpec {}

impl Default for ServerSpec {
    fn default() -> ServerSpec {
        argv::defaults()
    }
}

impl ServerSpec {
    /// The specs of the worker processes that serve `plan` for supervisor `parent`: this spec
    /// with each process's share of the connections (to size its tables) and its placement.
    pub fn worker_processes(&self, plan: &Layout, parent: u32) -> Vec<ServerSpec> {
        (0..plan.procs)
            .map(|i| ServerSpec {
                connections: share(self.connections, plan.procs, i),
                workers: self.workers.for_worker_process(plan, parent),
                ..self.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::argv::tests::{flags_and_fields_match, round_trips};
    use crate::launch::CONTROLLED_STATS_MS;

    fn plan(procs: usize, unshare: bool) -> Layout {
        Layout {
            procs,
            threads_per_proc: 5,
            conns_per_table: 19_000,
            unshare,
        }
    }

    #[test]
    fn every_flag_is_a_field() {
        flags_and_fields_match::<ServerSpec>();
    }

    #[test]
    fn defaults_round_trip() {
        let d = ServerSpec::default();
        assert_eq!(
            (d.ports.first, d.ports.count, d.connections),
            (20000, 20, 1_000_000)
        );
        assert_eq!(d.workers.interval_ms, 1000);
        round_trips(&d);
    }

    #[test]
    fn every_field_set_round_trips() {
        let spec = ServerSpec {
            bind: Ipv4Addr::new(127, 0, 0, 1),
            ports: Ports {
                first: 31_000,
                count: 3,
            },
            connections: 12_345,
            steer_source_base: Some(Ipv4Addr::new(127, 1, 0, 0)),
            fastopen: true,
            model: ServerModel::HalfSync,
            stack_kib: 32,
            pool: 7,
            listen_fds: vec![5, 6],
            workers: WorkerArgs {
                procs: Some(4),
                threads: Some(7),
                no_unshare: true,
                interval_ms: CONTROLLED_STATS_MS,
                child_of: Some(4242),
                stop_on_eof: true,
            },
        };
        let d = ServerSpec::default();
        // Each field differs from its default, so a field argv left out could not pass.
        assert_ne!(spec.bind, d.bind);
        assert_ne!(spec.workers.interval_ms, d.workers.interval_ms);
        round_trips(&spec);
        let argv = spec.to_argv();
        for flag in [
            "--child-of=4242",
            "--no-unshare",
            "--stop-on-eof",
            "--port=31000",
        ] {
            assert!(argv.iter().any(|a| a == flag), "{flag} in {argv:?}");
        }
    }

    #[test]
    fn worker_processes_split_the_connections_and_follow_the_plan() {
        let parent = ServerSpec {
            connections: 1_000_001,
            workers: WorkerArgs {
                procs: Some(3),
                stop_on_eof: true,
                interval_ms: 100,
                ..ServerSpec::default().workers
            },
            ..ServerSpec::default()
        };
        let kids = parent.worker_processes(&plan(3, false), 77);
        assert_eq!(kids.len(), 3);
        assert_eq!(kids.iter().map(|k| k.connections).sum::<u64>(), 1_000_001);
        for k in &kids {
            assert_eq!(k.workers.child_of, Some(77));
            assert_eq!((k.workers.procs, k.workers.threads), (None, Some(5)));
            assert!(k.workers.no_unshare && !k.workers.stop_on_eof);
            assert_eq!(
                (k.ports.first, k.ports.count, k.workers.interval_ms),
                (20000, 20, 100)
            );
            round_trips(k);
        }
    }
}
