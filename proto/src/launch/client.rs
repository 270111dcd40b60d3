//! `c1m-client`'s command line.

use super::{argv, share, Ports, Spec};
use crate::duration::Span;
use crate::layout::{Layout, WorkerArgs};
use crate::protocol::ProtocolArgs;
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Parser, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[command(
    name = "c1m-client",
    version,
    about = "Load client for the million-connection test",
    after_help = crate::exit::HELP
)]
pub struct ClientSpec {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    pub target: Ipv4Addr,
    #[command(flatten)]
    pub ports: Ports,
    /// Source addresses (`A`, or an inclusive range `A-B`), comma-separated or repeated.
    /// Default: the kernel's choice (the host's own address).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub source_ips: Vec<String>,
    /// Connections to establish and hold.
    #[arg(long, default_value_t = 1_000_000)]
    pub connections: u64,
    /// Connects in flight at most, over all threads.
    #[arg(long, default_value_t = 4096)]
    pub window: u64,
    /// New connections per second at most, over all threads (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long to hold the connections once all are up (`30s`, `forever`).
    #[arg(long, default_value = "0s")]
    pub hold: Span,
    /// Send the protocol's message on every connection at this interval and time the round
    /// trips (echo: the greeting; http: the request; websocket: a frame; mqtt: a PUBLISH;
    /// redis: PING; memcached: version). Refused with `--protocol idle`, which sends nothing.
    #[arg(long)]
    pub message_interval: Option<Span>,
    /// Give up on a connect or an echo after this long: `ETIMEDOUT` for a handshake that never
    /// completed, `answer_timeout` for an established connection whose answer never came.
    #[arg(long, default_value = "10s")]
    pub connect_timeout: Span,
    /// Stop after this many errors (default: 1% of --connections, at least 1000).
    #[arg(long)]
    pub max_errors: Option<u64>,
    /// Fill the fd tables one after another: worker i starts when worker i-1 has launched its
    /// share, each worker with the whole window and its own source address (i mod addresses).
    /// Keeps a couple of event loops busy instead of all of them; pairs with
    /// `c1m-server --steer-source-base`.
    #[arg(long)]
    pub staged: bool,
    /// Send the greeting in the SYN (TCP Fast Open): one packet and one system call fewer per
    /// connection. Needs Fast Open on both hosts (`net.ipv4.tcp_fastopen`: 1 here, 2 on the
    /// server; +4/+0x200 to skip cookies) and `c1m-server --fastopen`; without it the
    /// connection falls back to connect-then-write. Ignored by `--protocol idle` (nothing to
    /// put in the SYN).
    #[arg(long)]
    pub fastopen: bool,
    /// JSON stats lines (for the orchestrator) instead of human progress.
    #[arg(long)]
    pub json: bool,
    /// Number of the first greeting (so clients on several hosts send distinct greetings).
    #[arg(long, default_value_t = 0)]
    pub index_base: u64,

    #[command(flatten)]
    pub workers: WorkerArgs,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
}

impl Spec for ClientSpec {}

impl Default for ClientSpec {
    fn default() -> ClientSpec {
        argv::defaults()
    }
}

impl ClientSpec {
    pub fn max_errors(&self) -> u64 {
        self.max_errors
            .unwrap_or_else(|| (self.connections / 100).max(1000))
    }

    /// The specs of the worker processes that run `plan` for supervisor `parent`: this spec
    /// with each process's share of the connections, window, rate and error budget, greetings
    /// numbered on from the previous process's, JSON lines, and a hold that only the
    /// supervisor ends.
    pub fn worker_processes(&self, plan: &Layout, parent: u32) -> Vec<ClientSpec> {
        let k = plan.procs;
        let mut index_base = self.index_base;
        (0..k)
            .map(|i| {
                let connections = share(self.connections, k, i);
                let spec = ClientSpec {
                    connections,
                    window: share(self.window, k, i).max(1),
                    rate: self.rate.map(|r| share(r, k, i).max(1)),
                    max_errors: Some(share(self.max_errors(), k, i).max(1)),
                    index_base,
                    hold: Span(None),
                    json: true,
                    workers: self.workers.for_worker_process(plan, parent),
                    ..self.clone()
                };
                index_base += connections;
                spec
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::argv::tests::{flags_and_fields_match, round_trips};
    use crate::protocol::ProtocolKind;
    use std::time::Duration;

    #[test]
    fn every_flag_is_a_field() {
        flags_and_fields_match::<ClientSpec>();
    }

    #[test]
    fn defaults_round_trip() {
        let d = ClientSpec::default();
        assert_eq!(
            (d.window, d.hold, d.max_errors()),
            (4096, Span(Some(Duration::ZERO)), 10_000)
        );
        assert_eq!(d.connect_timeout, Span(Some(Duration::from_secs(10))));
        assert!(d.source_ips.is_empty() && d.rate.is_none());
        round_trips(&d);
    }

    fn everything_set() -> ClientSpec {
        ClientSpec {
            target: Ipv4Addr::new(10, 1, 2, 3),
            ports: Ports {
                first: 40_000,
                count: 7,
            },
            source_ips: vec!["127.0.0.2-127.0.0.9".into(), "127.0.1.1".into()],
            connections: 2_500_001,
            window: 333,
            rate: Some(12_345),
            hold: Span(None),
            message_interval: Some(Span(Some(Duration::from_micros(1500)))),
            connect_timeout: Span(Some(Duration::from_nanos(2_000_000_007))),
            max_errors: Some(77),
            staged: true,
            fastopen: true,
            json: true,
            index_base: 9,
            workers: WorkerArgs {
                procs: Some(3),
                threads: Some(11),
                no_unshare: true,
                interval_ms: 250,
                child_of: Some(99),
                stop_on_eof: true,
            },
            protocol: ProtocolArgs {
                protocol: ProtocolKind::Mqtt,
                headers: vec!["X-One: 1".into(), "Accept: */*".into()],
                mqtt_subscribe: true,
                ..ProtocolArgs::default()
            },
        }
    }

    #[test]
    fn every_field_set_round_trips() {
        let spec = everything_set();
        round_trips(&spec);
        let argv = spec.to_argv();
        let has = |flag: &str| argv.iter().any(|a| a == flag);
        assert!(
            has("--hold=forever") && has("--message-interval=1500us"),
            "{argv:?}"
        );
        assert!(has("--source-ips=127.0.0.2-127.0.0.9") && has("--source-ips=127.0.1.1"));
        // A message interval of `forever` is a value, not an absent option.
        round_trips(&ClientSpec {
            message_interval: Some(Span(None)),
            ..spec
        });
        // Comma-separated on the command line reads the same as repeated.
        let joined = ClientSpec::from_argv(["--source-ips=127.0.0.2-127.0.0.9,127.0.1.1"]).unwrap();
        assert_eq!(joined.source_ips, everything_set().source_ips);
    }

    #[test]
    fn worker_processes_share_everything_that_adds_up() {
        let parent = everything_set();
        let plan = Layout {
            procs: 3,
            threads_per_proc: 4,
            conns_per_table: 19_000,
            unshare: true,
        };
        let kids = parent.worker_processes(&plan, 1234);
        let sum = |f: fn(&ClientSpec) -> u64| kids.iter().map(f).sum::<u64>();
        assert_eq!(sum(|k| k.connections), parent.connections);
        assert_eq!(sum(|k| k.window), parent.window);
        assert_eq!(sum(|k| k.rate.unwrap_or(0)), 12_345);
        assert_eq!(sum(|k| k.max_errors()), 77);
        assert_eq!(
            kids.iter().map(|k| k.index_base).collect::<Vec<_>>(),
            [9, 9 + 833_334, 9 + 2 * 833_334]
        );
        for k in &kids {
            assert!(k.json && k.hold == Span(None) && k.staged);
            assert_eq!(k.source_ips, parent.source_ips);
            assert_eq!(
                (k.workers.child_of, k.workers.threads),
                (Some(1234), Some(4))
            );
            assert!(!k.workers.no_unshare && !k.workers.stop_on_eof && k.workers.procs.is_none());
            assert_eq!(k.connect_timeout, parent.connect_timeout);
            assert_eq!(k.protocol, parent.protocol);
            round_trips(k);
        }
    }
}
