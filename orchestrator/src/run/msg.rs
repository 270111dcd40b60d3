//! What the threads that talk to hosts tell the engine, through one channel.

use super::listening::Unaccepted;
use super::sampler::KernelSample;
use crate::check::server_tree::TreeSample;

/// Which binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub fn binary(self) -> &'static str {
        match self {
            Role::Server => "c1m-server",
            Role::Client => "c1m-client",
        }
    }
    pub fn file_stem(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

/// How a binary's run ended.
#[derive(Debug, Clone)]
pub enum Ended {
    /// It exited with this status (-1: killed by a signal); the last line it wrote to stderr.
    Exited(i32, Option<String>),
    /// The connection to its host broke; the transport's words.
    Lost(String),
}

/// One reading of a host.
#[derive(Debug, Clone)]
pub struct HostSample {
    pub kernel: KernelSample,
    /// /proc/stat: (all ticks, idle ticks).
    pub cpu: (u64, u64),
}

/// A message to the engine; `host` is the host's index in the run.
pub enum Msg {
    /// One stdout line of a binary.
    Line {
        host: usize,
        role: Role,
        line: String,
    },
    /// A binary's stream ended.
    Ended {
        host: usize,
        role: Role,
        ended: Ended,
    },
    /// A host's kernel memory and CPU, once a second.
    Sample { host: usize, sample: HostSample },
    /// The server under test's process tree, with each sample once it is watched; `None` when
    /// its root process is gone. `queued`: connections it has not taken, when read.
    Tree {
        host: usize,
        tree: Option<TreeSample>,
        queued: Option<Unaccepted>,
    },
    /// The control connection of a host broke.
    ControlLost { host: usize, error: String },
}
