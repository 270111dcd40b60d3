//! What the engine knows while a run is live: each host's state, where the run is (its
//! phase), and the run's peak.

use super::control::Control;
use super::listening::Unaccepted;
use super::msg::{Ended, Role};
use super::prepare::RunHost;
use super::proc::RemoteProc;
use super::sampler::KernelSample;
use super::track::Track;
use crate::check::server::{Measured, UnderTest};
use crate::check::server_tree::TreeSample;
use c1m_rundir::{KernelMemory, Outcome};
use std::path::PathBuf;
use std::time::Instant;

/// A binary started on a host.
pub struct Running {
    pub proc: RemoteProc,
    /// Its process group, from its layout line; what teardown stops whatever is left of.
    pub pgid: Option<u32>,
    pub ended: Option<Ended>,
    /// Closing its stdin stops it (c1m's binaries); a server command is stopped by its group.
    pub stops_on_eof: bool,
}

/// The server under test as the run knows it.
pub struct ServerUnderTest {
    pub under_test: UnderTest,
    /// Its program (`nginx`), once its tree is read.
    pub name: String,
    /// The root of its process tree, when known.
    pub root: Option<u32>,
    /// Its tree and limits before the clients started: the baseline of its figures.
    pub before: Option<(TreeSample, Measured)>,
}

/// Everything the engine knows about one host.
pub struct HostState {
    pub run: RunHost,
    /// `hosts/NAME/` in the run directory.
    pub dir: PathBuf,
    pub track: Track,
    pub server: Option<Running>,
    pub client: Option<Running>,
    pub control: Option<Control>,
    pub kernel_base: Option<KernelSample>,
    pub kernel_now: Option<KernelSample>,
    /// The latest reading of the server under test's process tree (the server host).
    pub tree_now: Option<TreeSample>,
    /// The latest count of connections it has not taken (read in runs that send nothing).
    pub queued_now: Option<Unaccepted>,
    /// Whether the server on this host reports its own figures (c1m-server's stats lines);
    /// another server's are read from /proc and counted from the clients.
    pub server_reports: bool,
    /// Readings of /proc taken so far, to tell whether one came after an event.
    pub samples: u64,
    pub cpu_prev: Option<(u64, u64)>,
    /// (verified, client uptime) at the last rate computation.
    pub rate_point: (u64, f64),
    pub rate: f64,
    /// Set when a binary of this host ended early or the host was lost.
    pub failure: Option<String>,
    /// What teardown found of this host's process groups.
    pub teardown: Vec<String>,
    pub tearing_down: bool,
    /// Teardown has asked every process group left to stop.
    pub tearing_down_groups: bool,
}

impl HostState {
    pub fn new(run: RunHost, dir: PathBuf, control: Option<Control>) -> HostState {
        HostState {
            run,
            dir,
            track: Track::default(),
            server: None,
            client: None,
            control,
            kernel_base: None,
            kernel_now: None,
            tree_now: None,
            queued_now: None,
            server_reports: true,
            samples: 0,
            cpu_prev: None,
            rate_point: (0, 0.0),
            rate: 0.0,
            failure: None,
            teardown: Vec::new(),
            tearing_down: false,
            tearing_down_groups: false,
        }
    }

    /// Kernel memory grown since the run's baseline.
    pub fn kernel_delta(&self) -> Option<KernelMemory> {
        let (now, base) = (self.kernel_now.as_ref()?, self.kernel_base.as_ref()?);
        let mut d = now.delta(base);
        d.both_ends = self.run.is_server() && self.run.is_client();
        Some(d)
    }

    pub fn running(&self, role: Role) -> Option<&Running> {
        match role {
            Role::Server => self.server.as_ref(),
            Role::Client => self.client.as_ref(),
        }
    }

    pub fn running_mut(&mut self, role: Role) -> Option<&mut Running> {
        match role {
            Role::Server => self.server.as_mut(),
            Role::Client => self.client.as_mut(),
        }
    }

    /// Errors its client and server counted (one of them is empty unless both run here).
    pub fn errors_total(&self) -> u64 {
        self.track.client.errors_total() + self.track.server.errors.values().sum::<u64>()
    }

    pub fn client_alive(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.ended.is_none())
    }

    /// Connections this host's client holds now. One that gave up keeps its last line's count
    /// though its sockets closed with it, and a lost one's can no longer be verified: neither
    /// holds any. Summing such stale counts with the others' later ones gave a total never held
    /// at once (the lab's thread-per-conn run: 56,606 "held" where the server never had more
    /// than 32,744 open).
    pub fn client_open(&self) -> u64 {
        if self.client_alive() {
            self.track.client.open
        } else {
            0
        }
    }

    /// Connections this host's client has verified (its summary's figure once it has one).
    pub fn verified(&self) -> u64 {
        self.track
            .client_summary
            .as_ref()
            .unwrap_or(&self.track.client)
            .verified
    }
}

/// The run at its peak: the figures memory per connection is computed from. Taken per line,
/// not per tick, so a run stopped between ticks still has them.
#[derive(Default)]
pub struct Peak {
    pub established: u64,
    pub server_open: u64,
    pub server_rss: u64,
    pub server_kernel: KernelMemory,
    /// The server under test's tree at the peak, and the first reading taken once the peak was
    /// reached (its CPU time up to the target, before holding adds to it).
    pub server_tree: Option<TreeSample>,
    pub server_tree_at_target: Option<TreeSample>,
    /// Connections the server had not taken at the peak's latest reading.
    pub server_queued: Option<Unaccepted>,
    pub rate: f64,
    /// Set when teardown begins: closing sockets must not count as the peak's memory.
    pub frozen: bool,
    /// The server host's sample count when the peak last grew: a reading after it has seen
    /// the peak's sockets.
    samples_at_peak: u64,
}

impl Peak {
    /// Takes in the hosts' latest figures.
    pub fn update(&mut self, hosts: &mut [HostState]) {
        let established: u64 = hosts.iter().map(HostState::client_open).sum();
        for h in hosts.iter_mut() {
            h.track.established_peak = h.track.established_peak.max(h.track.client.open);
            h.track.server_open_peak = h.track.server_open_peak.max(h.track.server.open);
        }
        let Some(server) = hosts.iter().find(|h| h.run.is_server()) else {
            return;
        };
        if self.frozen {
            return;
        }
        let open = if server.server_reports {
            server.track.server.open
        } else {
            established
        };
        self.server_open = self.server_open.max(open);
        if established > self.established {
            self.samples_at_peak = server.samples;
            self.server_tree_at_target = None;
        }
        if established >= self.established {
            self.established = established;
            self.server_rss = server.track.server.rss_bytes;
            self.server_kernel = server.kernel_delta().unwrap_or_default();
            if server.tree_now.is_some() {
                self.server_tree = server.tree_now.clone();
            }
            if server.queued_now.is_some() {
                self.server_queued = server.queued_now;
            }
            if self.server_tree_at_target.is_none() && server.samples > self.samples_at_peak {
                self.server_tree_at_target = server.tree_now.clone();
            }
        }
    }
}

impl Peak {
    /// Whether the server host's kernel was read after the peak was reached: a reading taken
    /// before it misses the newest sockets' memory.
    pub fn kernel_is_fresh(&self, hosts: &[HostState]) -> bool {
        hosts
            .iter()
            .find(|h| h.run.is_server())
            .is_none_or(|s| s.samples > self.samples_at_peak)
    }
}

/// How long the connections are held once every client has its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Until(Instant),
    /// Until a signal stops the run.
    Forever,
}

/// How the live part of a run ended: the outcome run.json records and why.
#[derive(Debug, Clone)]
pub struct Ending {
    pub outcome: Outcome,
    pub reason: Option<String>,
}

impl Ending {
    pub fn new(outcome: Outcome, reason: impl Into<String>) -> Ending {
        Ending {
            outcome,
            reason: Some(reason.into()),
        }
    }
}

/// Where a live run is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Clients are connecting.
    Connecting,
    /// Every running client has its share; connections are held.
    Holding(Hold),
    /// The live part is over.
    Over(Ending),
}

/// When the target was reached.
#[derive(Debug, Clone, Copy)]
pub struct Reached {
    /// Seconds since the clients were started, on the controller's clock.
    pub since_clients: f64,
    /// Seconds since `c1m run` began (connecting, preflight, deploy and start-up included).
    pub since_invoked: f64,
}
