//! The server models of the course (`c1m-server --model`): their names, what each is in the
//! course's words, and the facts about its shape that the server, the preflight and the report
//! all need — where its fd tables are, whether it serves messages after the greeting, which
//! resource each connection costs it. How a model runs is the server's (`server/src/models/`);
//! what it is, is stated here once.

use serde::{Deserialize, Serialize};

/// A server model.
#[derive(
    clap::ValueEnum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum ServerModel {
    /// One thread: blocking accept, read the greeting, echo, keep the fd, next.
    Sync,
    /// A blocking thread per connection, read/echo until close.
    ThreadPerConn,
    /// K processes, each a blocking accept loop serving one connection to completion.
    PreforkSync,
    /// One thread, one epoll over every port.
    Epoll,
    /// An edge-triggered epoll loop per thread, each with its own fd table and SO_REUSEPORT
    /// listeners (the default).
    EpollThreads,
    /// A master opens the listeners; K worker processes share them with EPOLLEXCLUSIVE.
    Prefork,
    /// An epoll reactor per fd table hands ready connections to a pool of blocking workers.
    HalfSync,
    /// A tokio task per connection on the multi-thread runtime.
    Tokio,
    /// io_uring: multishot accept and recv with provided buffers, a ring per thread.
    IoUring,
}

/// Where a model keeps its connections' fds, which decides how far one process goes under an
/// RLIMIT_NOFILE cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// Exactly one table for the whole server: it stops at the per-table cap.
    One,
    /// A table per worker thread (`unshare(CLONE_FILES)`): as many as the target needs.
    PerThread,
    /// A table per worker process: as many processes as the target needs.
    PerProcess,
    /// One connection per worker process at a time: it holds as many as it has processes.
    OnePerProcess,
}

/// What a connection costs a model beyond its socket, named for the preflight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerConnection {
    /// A slot in a per-table state array (a byte or two).
    Slot,
    /// A thread: a pid, a kernel stack, a user stack mapping.
    Thread,
    /// A runtime task: a heap allocation of the task's state.
    Task,
    /// A whole worker process for as long as the connection lasts.
    Process,
}

impl ServerModel {
    /// Every model, in the order the course lists them.
    pub const ALL: [ServerModel; 9] = [
        ServerModel::Sync,
        ServerModel::ThreadPerConn,
        ServerModel::PreforkSync,
        ServerModel::Epoll,
        ServerModel::EpollThreads,
        ServerModel::Prefork,
        ServerModel::HalfSync,
        ServerModel::Tokio,
        ServerModel::IoUring,
    ];

    /// The `--model` value.
    pub fn name(self) -> &'static str {
        match self {
            ServerModel::Sync => "sync",
            ServerModel::ThreadPerConn => "thread-per-conn",
            ServerModel::PreforkSync => "prefork-sync",
            ServerModel::Epoll => "epoll",
            ServerModel::EpollThreads => "epoll-threads",
            ServerModel::Prefork => "prefork",
            ServerModel::HalfSync => "half-sync",
            ServerModel::Tokio => "tokio",
            ServerModel::IoUring => "io-uring",
        }
    }

    /// Parses a `--model` value.
    pub fn from_name(s: &str) -> Option<ServerModel> {
        ServerModel::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The course's name for the model.
    pub fn course_name(self) -> &'static str {
        match self {
            ServerModel::Sync => "single-thread synchronous",
            ServerModel::ThreadPerConn => "thread per request / multi-thread synchronous",
            ServerModel::PreforkSync => "multi-process synchronous",
            ServerModel::Epoll => "pure asynchronous",
            ServerModel::EpollThreads => "multi-thread asynchronous",
            ServerModel::Prefork => "multi-process asynchronous",
            ServerModel::HalfSync => "half-sync/half-async",
            ServerModel::Tokio => "micro-processes / coroutines",
            ServerModel::IoUring => "completion-based (beyond the course)",
        }
    }

    pub fn tables(self) -> Tables {
        match self {
            ServerModel::Sync | ServerModel::Epoll => Tables::One,
            ServerModel::ThreadPerConn
            | ServerModel::EpollThreads
            | ServerModel::HalfSync
            | ServerModel::IoUring => Tables::PerThread,
            ServerModel::Prefork | ServerModel::Tokio => Tables::PerProcess,
            ServerModel::PreforkSync => Tables::OnePerProcess,
        }
    }

    pub fn per_connection(self) -> PerConnection {
        match self {
            ServerModel::ThreadPerConn => PerConnection::Thread,
            ServerModel::Tokio => PerConnection::Task,
            ServerModel::PreforkSync => PerConnection::Process,
            _ => PerConnection::Slot,
        }
    }

    /// Whether the model answers messages after the greeting: `sync` never reads a connection
    /// again once it has echoed its greeting.
    pub fn serves_later_messages(self) -> bool {
        self != ServerModel::Sync
    }

    /// Whether the model notices a peer that closes or resets after its greeting (and so
    /// counts it closed): `sync` never looks at a connection again.
    pub fn notices_closes(self) -> bool {
        self != ServerModel::Sync
    }

    /// Whether the model holds a connection that never sends (`--protocol idle`). The blocking
    /// models read the greeting with a blocking read bounded by c1m-server's greeting wait
    /// (10 s) and close a connection that sends none; `sync` and `prefork-sync` also accept
    /// nothing else meanwhile.
    pub fn holds_silent_peers(self) -> bool {
        !matches!(
            self,
            ServerModel::Sync | ServerModel::ThreadPerConn | ServerModel::PreforkSync
        )
    }
}

/// The oldest kernel `io-uring` runs on: multishot recv with provided buffers came in 6.0
/// (multishot accept and registered buffer rings in 5.19).
pub const IO_URING_MIN_KERNEL: (u32, u32) = (6, 0);

/// `(major, minor)` of a kernel release string (`6.1.0-18-amd64`, `6.18.44-fc`).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

impl std::fmt::Display for ServerModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--server-model` list: `a,b,…` or `all`, in the order given, without repeats.
pub fn parse_list(s: &str) -> Result<Vec<ServerModel>, String> {
    if s.trim() == "all" {
        return Ok(ServerModel::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim) {
        let m = ServerModel::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = ServerModel::ALL.iter().map(|m| m.name()).collect();
            format!(
                "unknown server model {name:?}: one of {}, or all",
                known.join(", ")
            )
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_agree_with_clap_and_serde() {
        for m in ServerModel::ALL {
            let clap_name = m.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(clap_name.as_deref(), Some(m.name()));
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
            assert_eq!(ServerModel::from_name(m.name()), Some(m));
        }
        assert_eq!(ServerModel::value_variants().len(), ServerModel::ALL.len());
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("6.18.44-fc-v769\n"), Some((6, 18)));
        assert_eq!(kernel_version("5.19"), Some((5, 19)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("5.19.0").unwrap() < IO_URING_MIN_KERNEL);
    }

    #[test]
    fn lists_parse_in_order_and_refuse_unknown_names() {
        assert_eq!(parse_list("all").unwrap().len(), 9);
        assert_eq!(
            parse_list("tokio, sync,tokio").unwrap(),
            [ServerModel::Tokio, ServerModel::Sync]
        );
        let e = parse_list("epoll,fibers").unwrap_err();
        assert!(e.contains("\"fibers\"") && e.contains("io-uring"), "{e}");
    }
}
