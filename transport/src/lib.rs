//! Running commands and moving files on one host, the same way whether the host is this machine
//! (`ansible_connection: local`) or a remote one over SSH.
//!
//! A [`Transport`] is one live connection to one host, reused for every task and transfer of a
//! run. Implementations are blocking; async callers drive them under `spawn_blocking`.

pub mod interrupted;
pub mod local;
pub mod pace;
pub mod quote;
pub mod ssh;
pub mod trace;
pub mod upload;

pub use interrupted::{Flow, Halt, Interrupted};

pub use quote::shell_quote;

use std::fmt;
use std::time::Duration;

/// What a command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; `-1` when the command was killed by a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What [`Transport::lstat`] tells of a path (a final symlink is not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub is_dir: bool,
    pub is_file: bool,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner and group ids, when the transport tells them (names need the host's databases).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Privilege escalation as Ansible's `become`: commands run through `sudo -n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Become {
    pub enabled: bool,
    /// `ansible_become_user`; `None` means root.
    pub user: Option<String>,
}

/// Why a transport could not do what it was asked. Each variant is a distinct thing a person
/// fixes differently, so callers (and the recap) can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connect failed or timed out: the host is down or the address is wrong.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The host answered but refused every credential offered.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The host key is not in known_hosts and new keys were not accepted.
    #[error("unknown host key: {0}")]
    UnknownHostKey(String),
    /// The host key differs from the one in known_hosts: possible man-in-the-middle.
    #[error("HOST KEY CHANGED: {0}")]
    ChangedHostKey(String),
    /// `become` was asked for but `sudo -n` could not run without a password.
    #[error("become failed: {0}")]
    Become(String),
    /// The session broke during an operation.
    #[error("transport: {0}")]
    Io(String),
    /// The link stopped moving (nothing for the progress timeout) or broke partway through an
    /// operation: what was being done, how far it got and how long it waited are in the value.
    #[error("transport: {0}")]
    Interrupted(Box<Interrupted>),
}

impl TransportError {
    /// Whether Ansible would call this host `unreachable` (rather than a task `failed`).
    pub fn is_unreachable(&self) -> bool {
        !matches!(self, TransportError::Become(_))
    }
}

/// Where a streamed command's output goes, and how the command is told to stop.
pub trait StreamSink {
    /// One line of the command's stdout (`stderr` false) or stderr, without its newline.
    fn line(&mut self, stderr: bool, line: &str);
    /// Asked between reads, at least every [`STREAM_POLL`]: true once the command's stdin should
    /// be closed, which is how a controlled binary (`--stop-on-eof`) is stopped gracefully.
    fn close_stdin(&mut self) -> bool;
}

/// Longest a streaming transport goes without asking its sink whether to stop.
pub const STREAM_POLL: Duration = Duration::from_millis(200);

/// One connection to one host.
pub trait Transport: Send {
    /// The inventory name of the host, for messages.
    fn host(&self) -> &str;

    /// Runs `cmd` with `sh -c` on the host (through `sudo -n` when `become` is on), feeding
    /// `stdin` if given, and waits for it. Values from inventories or playbooks inside `cmd`
    /// must already be quoted with [`shell_quote`].
    fn exec(&mut self, cmd: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, TransportError>;

    /// Reads a whole file; `Ok(None)` when it does not exist.
    fn read_file(&mut self, path: &str) -> Result<Option<Vec<u8>>, TransportError>;

    /// Writes a whole file atomically (temporary file + rename in the same directory) with
    /// `mode`, creating nothing but the file itself.
    fn write_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), TransportError>;

    /// Type and permissions of `path` without following a final symlink (`Ok(None)`: it does not
    /// exist), when the transport can tell without starting a program on the host (SFTP, this
    /// machine's filesystem): on a slow host each exec costs a fork of a shell. `None` means
    /// "ask `stat` on the host", also for failures other than absence, so those keep the
    /// shell's error message and stay task failures.
    fn lstat(&mut self, _path: &str) -> Option<Result<Option<FileMeta>, TransportError>> {
        None
    }

    /// Writes `data` into the existing file `path` in place (opened for writing and truncated;
    /// never created, no temporary file), without starting a program on the host: how a kernel
    /// value under `/proc/sys` is set on a slow host, where `sysctl -w` costs a fork of a shell.
    /// `None` means this transport cannot (no SFTP, `become` through sudo): use the shell.
    fn write_in_place(&mut self, _path: &str, _data: &[u8]) -> Option<Result<(), TransportError>> {
        None
    }

    /// Runs a long command like [`Transport::exec`] with an empty stdin that stays open until the
    /// sink asks to close it, handing each output line to the sink as it arrives. Returns the
    /// exit status (`-1` when killed by a signal) once the command has ended.
    fn stream(&mut self, cmd: &str, sink: &mut dyn StreamSink) -> Result<i32, TransportError>;

    /// Changes how later commands escalate (Ansible's `become`, per task): through `sudo -n` to
    /// `become_.user` (root when `None`), or as the login user when not enabled.
    fn set_become(&mut self, become_: &Become);

    /// How often a quiet connection proves the host alive, and the progress timeout: how long
    /// any operation may go without progress before it fails with
    /// [`TransportError::Interrupted`]. An upload progresses while the host confirms its bytes;
    /// anything else while the host says anything (output, answers to keepalives) or its kernel
    /// takes our bytes, so a quiet command on a live host, or on one too busy to schedule its
    /// SSH server, is never cut off, and a stopped link is. There is no budget per call: a slow
    /// transfer that keeps moving takes as long as it takes. Only SSH has such a notion; local
    /// hosts cannot be lost.
    fn set_liveness(&mut self, _keepalive: Duration, _dead_after: Duration) {}
}

impl fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transport({})", self.host())
    }
}
