//! SSH transport over libssh2 (the `ssh2` crate): one session per host, reused for every command
//! and file transfer; strict host-key checking; auth by agent or key file; `become` via `sudo -n`.

mod auth;
mod channel_io;
pub mod config_file;
mod jump;
mod key_file;
mod known_hosts;
mod progress;
mod resume;
mod sftp_io;

use super::{shell_quote, Become, ExecOutput, StreamSink, Transport, TransportError};
use progress::Link;
use sftp_io::Lstat;
use ssh2::{MethodType, Session};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything needed to open a session to one host.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Inventory name, for messages.
    pub name: String,
    /// `ansible_host` (or the name).
    pub address: String,
    /// `ansible_port`, default 22.
    pub port: u16,
    /// `ansible_user`, default the local user.
    pub user: String,
    /// `ansible_ssh_private_key_file`; `None` tries the agent, then ~/.ssh/id_ed25519, id_rsa.
    pub key_file: Option<PathBuf>,
    /// `--known-hosts FILE`, default ~/.ssh/known_hosts.
    pub known_hosts: PathBuf,
    /// `--accept-new-host-keys`: add unknown keys to known_hosts (a changed key is still refused).
    pub accept_new_host_keys: bool,
    pub become_: Become,
    pub connect_timeout: Duration,
}

/// How often a quiet session proves the host is alive, and the progress timeout: how long an
/// operation may go without progress (see [`Transport::set_liveness`]) before it fails. A dead
/// host becomes an error, not a hang; a slow one that keeps moving is never cut off.
const KEEPALIVE: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);
/// Least time allowed for the SSH handshake and authentication.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Exit status of our read helper when the file does not exist (distinct from cat's and sudo's 1).
const ABSENT: i32 = 44;

/// Opens and authenticates a session.
pub fn connect(cfg: &SshConfig) -> Result<Box<dyn Transport>, TransportError> {
    Ok(Box::new(SshTransport::connect(cfg)?))
}

/// Opens and authenticates a session through `jumps` (ProxyJump hops, outermost first; each
/// reached through the ones before it); no jumps is [`connect`].
pub fn connect_via(
    cfg: &SshConfig,
    jumps: &[SshConfig],
) -> Result<Box<dyn Transport>, TransportError> {
    Ok(Box::new(SshTransport::connect_via(cfg, jumps)?))
}

/// What carries a session's bytes: its own TCP connection, or one end of a socket pair whose
/// other end a jump host's session pumps (see `jump`).
enum Carrier {
    Tcp(TcpStream),
    Tunnel {
        socket: UnixStream,
        /// Stops the pump (and the jump host's session) when the session is dropped.
        pump: jump::Tunnel,
    },
}

impl Carrier {
    fn fd(&self) -> RawFd {
        match self {
            Carrier::Tcp(s) => s.as_raw_fd(),
            Carrier::Tunnel { socket, .. } => socket.as_raw_fd(),
        }
    }

    /// A tunnel's counts of what it carried (see `progress::Link::counters`).
    fn traffic(&self) -> Option<&progress::Traffic> {
        match self {
            Carrier::Tcp(_) => None,
            Carrier::Tunnel { pump, .. } => Some(pump.traffic()),
        }
    }

    /// Hands libssh2 its own handle on the same socket.
    fn give_to(&self, session: &mut Session) -> std::io::Result<()> {
        match self {
            Carrier::Tcp(s) => session.set_tcp_stream(s.try_clone()?),
            Carrier::Tunnel { socket, .. } => session.set_tcp_stream(socket.try_clone()?),
        }
        Ok(())
    }
}

/// One authenticated session to one host.
pub struct SshTransport {
    name: String,
    login: String,
    become_: Become,
    session: Session,
    socket: RawFd,
    /// What [`SshTransport::set_liveness`] was last asked for, to ask it again of a new session.
    liveness: (Duration, Duration),
    /// The progress timeout.
    patience: Duration,
    /// Keeps the socket whose fd we poll open as long as the session (libssh2 owns a clone),
    /// and a tunnel's pump running.
    carrier: Carrier,
    sftp: Option<ssh2::Sftp>,
    sftp_unavailable: bool,
    /// How to open the session again (the host and the ProxyJump hops to it, outermost first):
    /// an interrupted upload resumes over a new one.
    cfg: SshConfig,
    jumps: Vec<SshConfig>,
}

impl SshTransport {
    pub fn connect(cfg: &SshConfig) -> Result<Self, TransportError> {
        let stream = tcp_connect(cfg)?;
        Self::over(cfg, Carrier::Tcp(stream))
    }

    /// [`connect_via`]'s session.
    pub fn connect_via(cfg: &SshConfig, jumps: &[SshConfig]) -> Result<Self, TransportError> {
        let Some((last, outer)) = jumps.split_last() else {
            return Self::connect(cfg);
        };
        let via = Self::connect_via(last, outer).map_err(|e| jump::via_error(cfg, last, e))?;
        let (stream, tunnel) = jump::open(via, cfg, &last.name)?;
        let mut t = Self::over(
            cfg,
            Carrier::Tunnel {
                socket: stream,
                pump: tunnel,
            },
        )?;
        t.jumps = jumps.to_vec();
        Ok(t)
    }

    /// Handshake, host key and authentication over a connected carrier.
    fn over(cfg: &SshConfig, carrier: Carrier) -> Result<Self, TransportError> {
        let socket = carrier.fd();
        let mut session = Session::new()
            .map_err(|e| TransportError::Io(format!("{}: libssh2 session: {e}", cfg.name)))?;
        carrier.give_to(&mut session).map_err(|e| {
            TransportError::Io(format!("{}: cannot share the socket: {e}", cfg.name))
        })?;
        // Key exchange and auth cost CPU on both ends; a tight connect timeout (meant for
        // the TCP connect to a dead address) must not fail a merely busy host.
        session.set_timeout(millis(cfg.connect_timeout.max(HANDSHAKE_TIMEOUT)));

        let known = known_hosts::KnownHostsFile::load(&expand_tilde(&cfg.known_hosts))?;
        let pattern = known_hosts::host_pattern(&cfg.address, cfg.port);
        if let Some(prefs) = known.preferred_hostkey_methods(&session, &pattern) {
            let _ = session.method_pref(MethodType::HostKey, &prefs);
        }
        session.handshake().map_err(|e| {
            TransportError::Unreachable(format!(
                "{} ({}:{}): SSH handshake failed: {e}",
                cfg.name, cfg.address, cfg.port
            ))
        })?;
        known.verify(
            &session,
            &cfg.name,
            &cfg.address,
            cfg.port,
            cfg.accept_new_host_keys,
        )?;
        auth::authenticate(&session, cfg)?;
        let mut t = Self {
            name: cfg.name.clone(),
            login: cfg.user.clone(),
            become_: cfg.become_.clone(),
            session,
            socket,
            carrier,
            sftp: None,
            sftp_unavailable: false,
            liveness: (KEEPALIVE, DEAD_AFTER),
            patience: DEAD_AFTER,
            cfg: cfg.clone(),
            jumps: Vec::new(),
        };
        t.set_liveness(KEEPALIVE, DEAD_AFTER);
        Ok(t)
    }

    /// Sets how often a quiet session sends a keepalive and the progress timeout (see
    /// [`Transport::set_liveness`]). Keepalives go out at least three times per timeout, so a
    /// quiet command on a live host always progresses; libssh2's floor is 2 s, so the timeout
    /// is at least 3 s.
    pub fn set_liveness(&mut self, keepalive: Duration, dead_after: Duration) {
        self.liveness = (keepalive, dead_after);
        self.patience = dead_after.max(Duration::from_secs(3));
        let keepalive = keepalive.min(self.patience / 3).max(Duration::from_secs(2));
        self.session
            .set_keepalive(true, keepalive.as_secs().try_into().unwrap_or(u32::MAX));
        // Operations run non-blocking under a progress watch; libssh2's own per-call budget is
        // left only to the blocking calls its destructors make, where waiting longer than the
        // progress timeout is never right.
        self.session.set_timeout(millis(self.patience));
        let ms = i32::try_from(self.patience.as_millis()).unwrap_or(i32::MAX);
        set_int_sockopt(self.socket, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms);
        let secs = i32::try_from(keepalive.as_secs()).unwrap_or(i32::MAX);
        set_int_sockopt(self.socket, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs);
        set_int_sockopt(self.socket, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs);
    }

    /// The session as an operation needs it (see `progress`).
    fn link(&self) -> Link<'_> {
        Link {
            host: &self.name,
            session: &self.session,
            socket: self.socket,
            tunnel: self.carrier.traffic(),
            patience: self.patience,
        }
    }

    /// Replaces the session with a new one to the same host through the same hops, with the
    /// same liveness and `become`. The old one is cut first, so nothing waits on a dead link
    /// while it is dropped.
    fn reopen(&mut self) -> Result<(), TransportError> {
        self.link().cut();
        let mut fresh = Self::connect_via(&self.cfg, &self.jumps)?;
        let (keepalive, dead_after) = self.liveness;
        fresh.set_liveness(keepalive, dead_after);
        fresh.become_ = self.become_.clone();
        *self = fresh;
        Ok(())
    }

    /// The kernel's smoothed round-trip time of the session's TCP connection: the network's
    /// share of every exchange with the host (see [`crate::pace`] for the host's share). `None`
    /// through a ProxyJump tunnel, whose socket is local.
    pub fn network_rtt(&self) -> Option<Duration> {
        progress::smoothed_rtt(self.socket)
    }

    /// The user commands run as when `become` is on; `None` when they run as the login user.
    fn become_target(&self) -> Option<&str> {
        if !self.become_.enabled {
            return None;
        }
        let target = self.become_.user.as_deref().unwrap_or("root");
        (target != self.login).then_some(target)
    }

    /// Sends a keepalive if the session has been quiet for the keepalive interval, so an idle
    /// session between tasks keeps proving the host alive; an error means it is already gone.
    pub fn keepalive(&mut self) -> Result<(), TransportError> {
        self.session
            .keepalive_send()
            .map(|_| ())
            .map_err(|e| self.io("keepalive failed", e))
    }

    fn io(&self, what: &str, e: impl std::fmt::Display) -> TransportError {
        TransportError::Io(format!("{}: {what}: {e}", self.name))
    }

    /// Opens the session's SFTP channel on first use; false when the host offers no SFTP
    /// subsystem (files then go through the shell).
    fn has_sftp(&mut self) -> Result<bool, TransportError> {
        if self.sftp.is_none() && !self.sftp_unavailable {
            match sftp_io::start(self.link())? {
                Some(sftp) => self.sftp = Some(sftp),
                None => self.sftp_unavailable = true,
            }
        }
        Ok(self.sftp.is_some())
    }

    /// The SFTP channel with the session, when [`SshTransport::has_sftp`] said there is one.
    fn sftp_link(&self) -> Option<(Link<'_>, &ssh2::Sftp)> {
        self.sftp.as_ref().map(|s| (self.link(), s))
    }

    /// SFTP works as the login user only; with `become` to another user the shell does it.
    fn use_sftp(&self) -> bool {
        self.become_target().is_none()
    }

    fn read_via_shell(&mut self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        let p = shell_quote(path);
        let out = self.exec(
            &format!("[ -e {p} ] || exit {ABSENT}; exec cat -- {p}"),
            None,
        )?;
        match out.status {
            0 => Ok(Some(out.stdout)),
            ABSENT => Ok(None),
            _ => Err(self.io(&format!("cannot read {path}"), out.stderr_str().trim())),
        }
    }

    /// `sh -c CMD`, through `sudo -n` when `become` asks for another user.
    fn command_line(&self, cmd: &str) -> String {
        let quoted = shell_quote(cmd);
        let Some(target) = self.become_target() else {
            return format!("sh -c {quoted}");
        };
        let user = if target == "root" {
            String::new()
        } else {
            format!("-u {} ", shell_quote(target))
        };
        format!("sudo -n {user}-- sh -c {quoted}")
    }

    /// A `become` command that sudo refused is a become error, not the command's failure.
    fn check_become(&self, out: &ExecOutput) -> Result<(), TransportError> {
        match (self.become_target(), sudo_refusal(out)) {
            (Some(target), Some(why)) => Err(TransportError::Become(format!(
                "{}: sudo -n as {target} for {}: {why}",
                self.name, self.login
            ))),
            _ => Ok(()),
        }
    }

    /// Runs `cmd` as the command line `line` (no become wrapping of its own).
    fn exec_raw(
        &mut self,
        cmd: &str,
        line: &str,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, TransportError> {
        channel_io::run(self.link(), &label(cmd), line, stdin).map_err(|e| self.named(e))
    }

    /// Puts the host's name in front of a plain I/O error.
    fn named(&self, e: TransportError) -> TransportError {
        match e {
            TransportError::Io(m) if !m.starts_with(&self.name) => {
                TransportError::Io(format!("{}: {m}", self.name))
            }
            other => other,
        }
    }
}

impl Transport for SshTransport {
    fn set_become(&mut self, become_: &Become) {
        self.become_ = become_.clone();
    }

    fn host(&self) -> &str {
        &self.name
    }

    fn exec(&mut self, cmd: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, TransportError> {
        let line = self.command_line(cmd);
        let out = self.exec_raw(cmd, &line, stdin)?;
        self.check_become(&out)?;
        Ok(out)
    }

    fn stream(&mut self, cmd: &str, sink: &mut dyn StreamSink) -> Result<i32, TransportError> {
        let line = self.command_line(cmd);
        channel_io::stream(self.link(), &label(cmd), &line, sink).map_err(|e| self.named(e))
    }

    fn set_liveness(&mut self, keepalive: Duration, dead_after: Duration) {
        SshTransport::set_liveness(self, keepalive, dead_after);
    }

    fn read_file(&mut self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        if !self.use_sftp() || !self.has_sftp()? {
            return self.read_via_shell(path);
        }
        match self.sftp_link() {
            Some((link, sftp)) => sftp_io::read(link, sftp, path),
            None => self.read_via_shell(path),
        }
    }

    fn lstat(&mut self, path: &str) -> Option<Result<Option<super::FileMeta>, TransportError>> {
        if !self.use_sftp() {
            return None;
        }
        match self.has_sftp() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        let (link, sftp) = self.sftp_link()?;
        match sftp_io::lstat(link, sftp, path) {
            Ok(Lstat::Missing) => Some(Ok(None)),
            Ok(Lstat::Found(meta)) => Some(Ok(Some(meta))),
            // Permissions and the like: the shell's stat reports them as before.
            Ok(Lstat::AskShell) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn write_in_place(&mut self, path: &str, data: &[u8]) -> Option<Result<(), TransportError>> {
        if !self.use_sftp() {
            return None;
        }
        match self.has_sftp() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        let (link, sftp) = self.sftp_link()?;
        // No CREATE: only an existing file is written, as `sysctl -w` would.
        Some(sftp_io::write_in_place(link, sftp, path, data))
    }

    fn write_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), TransportError> {
        self.upload(path, data, mode)
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        self.sftp = None;
        let _ = self.session.disconnect(None, "c1m done", None);
    }
}

/// Why sudo refused to run the command, when it did.
fn sudo_refusal(out: &ExecOutput) -> Option<String> {
    if out.success() {
        return None;
    }
    let stderr = out.stderr_str();
    let line = stderr.lines().find(|l| {
        l.starts_with("sudo: a password is required")
            || l.starts_with("sudo: a terminal is required")
            || l.contains("is not in the sudoers file")
            || l.contains("is not allowed to execute")
            || l.contains("sudo: unknown user")
            || (out.status == 127 && l.contains("sudo") && l.contains("not found"))
    })?;
    Some(line.trim().to_string())
}

/// A command as messages name it: its first line, shortened.
fn label(cmd: &str) -> String {
    let first = cmd.lines().next().unwrap_or_default();
    let mut short: String = first.chars().take(60).collect();
    if short.len() < cmd.len() {
        short.push('…');
    }
    short
}

fn tcp_connect(cfg: &SshConfig) -> Result<TcpStream, TransportError> {
    let target = format!("{}:{}", cfg.address, cfg.port);
    let unreachable =
        |why: String| TransportError::Unreachable(format!("{} ({target}): {why}", cfg.name));
    let addrs: Vec<SocketAddr> = (cfg.address.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {}: {e}", cfg.address)))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
            Ok(s) => {
                tune_socket(&s);
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!(
                    "connect to {addr} timed out after {:?}",
                    cfg.connect_timeout
                )
            }
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(unreachable(last))
}

/// Low latency for the many small task round trips, and kernel-level dead-peer detection (TCP
/// keepalive while idle; the bound on unacknowledged data is set with the session's liveness).
fn tune_socket(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let fd = s.as_raw_fd();
    set_int_sockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set_int_sockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

fn set_int_sockopt(fd: RawFd, level: i32, opt: i32, val: i32) {
    // SAFETY: a socket fd we own and a pointer to an int of the stated size. A failure leaves
    // the kernel default, which only weakens dead-peer detection.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// `~/x` as the shell (and Ansible, for key files) would read it; other paths unchanged.
pub(crate) fn expand_tilde(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_means_home() {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
        assert_eq!(
            expand_tilde(Path::new("~/.ssh/id_rsa")),
            home.join(".ssh/id_rsa")
        );
        assert_eq!(expand_tilde(Path::new("/k/~/x")), PathBuf::from("/k/~/x"));
        assert_eq!(expand_tilde(Path::new("~user/x")), PathBuf::from("~user/x"));
    }

    #[test]
    fn commands_are_named_by_their_first_line() {
        assert_eq!(label("sleep 60"), "sleep 60");
        assert_eq!(label("a\nb"), "a…");
        assert_eq!(label(&"x".repeat(70)), format!("{}…", "x".repeat(60)));
    }

    #[test]
    fn sudo_refusals_are_recognised() {
        let out = |status, stderr: &str| ExecOutput {
            status,
            stdout: vec![],
            stderr: stderr.as_bytes().to_vec(),
        };
        assert!(sudo_refusal(&out(1, "sudo: a password is required\n")).is_some());
        assert!(sudo_refusal(&out(1, "some command failed\n")).is_none());
        assert!(sudo_refusal(&out(0, "sudo: a password is required\n")).is_none());
    }
}
