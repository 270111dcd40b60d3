//! What a run gets when every host is this machine (the built-in inventory, or
//! `ansible_connection: local` hosts only) and the server is reached over loopback: a private
//! network namespace sized for the test, TCP Fast Open inside it, and source-address steering
//! with staged filling.

use super::netns::{self, PrivateNetns};
use super::prepare::RunHost;
use super::RunOptions;
use crate::check::server::UnderTest;
use c1m_proto::fmt;
use c1m_proto::model::ServerModel;
use std::net::Ipv4Addr;

/// The run's environment on this machine.
#[derive(Default)]
pub struct LocalEnv {
    /// The namespace local binaries run in; deleted when this is dropped.
    pub netns: Option<PrivateNetns>,
    /// Client fd table i pairs with server worker i through source address i.
    pub steer: bool,
    /// The binaries put the greeting in the SYN (Fast Open is on in the namespace).
    pub fastopen: bool,
}

impl LocalEnv {
    /// Sets up what the run's hosts allow, saying what it did and why not where it did not. A
    /// server that is already running lives in this machine's namespace, so its clients must
    /// too; only c1m-server can be steered.
    pub fn set_up(
        opts: &RunOptions,
        hosts: &[RunHost],
        target: Ipv4Addr,
        under_test: &UnderTest,
    ) -> LocalEnv {
        let all_local = hosts.iter().all(RunHost::is_local) && target.is_loopback();
        if !all_local || matches!(under_test, UnderTest::External { .. }) {
            return LocalEnv::default();
        }
        let netns = private_netns(opts);
        let fastopen = match &netns {
            // Fast Open is c1m-server's (its listeners ask for it); another server's are its own.
            // A protocol that sends nothing has nothing to put in a SYN.
            Some(_) if opts.protocol.protocol.sends_nothing() => false,
            Some(ns) if !opts.no_fastopen && *under_test == UnderTest::C1mServer => {
                match ns.enable_fastopen() {
                    Ok(()) => {
                        println!("TCP Fast Open in the namespace: each greeting rides in its SYN");
                        true
                    }
                    Err(e) => {
                        println!("note: no TCP Fast Open ({e:#})");
                        false
                    }
                }
            }
            _ => false,
        };
        LocalEnv {
            netns,
            steer: *under_test == UnderTest::C1mServer && steerable(opts, hosts),
            fastopen,
        }
    }

    /// The command that runs `cmd` (a program and its quoted arguments) where the run's local
    /// binaries run. `ip netns exec` enters the namespace and execs the program: same pid, so
    /// the process group and the stdin pipe are the binary's own.
    pub fn wrap(&self, cmd: &str) -> String {
        match &self.netns {
            Some(ns) => format!("ip netns exec {} {cmd}", ns.name),
            None => cmd.to_string(),
        }
    }
}

fn private_netns(opts: &RunOptions) -> Option<PrivateNetns> {
    if opts.no_netns {
        return None;
    }
    if let Some(why) = netns::unavailable() {
        println!(
            "note: running in this network namespace ({why}); its TCP hash table was sized at boot"
        );
        return None;
    }
    // Both ends are in the namespace: two sockets per connection.
    match PrivateNetns::create(netns::buckets_for(2 * opts.connections)) {
        Ok(ns) => {
            println!(
                "network namespace: {} (loopback only, {} established-hash buckets)",
                ns.name,
                fmt::int(ns.ehash_entries)
            );
            Some(ns)
        }
        // A container may forbid namespaces; the run still works, only slower.
        Err(e) => {
            println!("note: running in this network namespace ({e:#})");
            None
        }
    }
}

/// Steering needs one host that is both ends, one server process, source addresses the run
/// chooses itself, and a model that attaches the steering program to its SO_REUSEPORT
/// listeners (a loop per thread: `epoll-threads`, `io-uring`); the others get plain listeners
/// and a client that spreads its own connections.
fn steerable(opts: &RunOptions, hosts: &[RunHost]) -> bool {
    let [h] = hosts else {
        return false;
    };
    matches!(
        opts.model(),
        ServerModel::EpollThreads | ServerModel::IoUring
    ) && h.is_server()
        && h.is_client()
        && !opts.no_steering
        && opts.procs.is_none()
        && opts.source_ips.is_empty()
        && !h.host.vars.contains_key("c1m_source_ips")
}
