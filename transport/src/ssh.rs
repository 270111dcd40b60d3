//! SSH transport over libssh2 (the `ssh2` crate): one session per host, reused for every command
//! and file transfer; strict host-key checking; auth by agent or key file; `become` via `sudo -n`.

mod auth;
mod channel_io;
pub mod config_file;
mod jump;
mod key_file;
mod known_hosts;

use super::{shell_quote, Become, ExecOutput, StreamSink, Transport, TransportError};
use ssh2::{MethodType, OpenFlags, OpenType, Session};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// How often a quiet session proves the host is alive, and how long unacknowledged data may
/// wait before the host counts as dead: a dead host becomes an error, not a hang.
const KEEPALIVE: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);
/// Least time allowed for the SSH handshake and authentication.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on any single blocking libssh2 wait once connected.
const OP_TIMEOUT: Duration = Duration::from_secs(120);
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
        _pump: jump::Tunnel,
    },
}

impl Carrier {
    fn fd(&self) -> RawFd {
        match self {
            Carrier::Tcp(s) => s.as_raw_fd(),
            Carrier::Tunnel { socket, .. } => socket.as_raw_fd(),
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
    keepalive: Duration,
    /// Keeps the socket whose fd we poll open as long as the session (libssh2 owns a clone),
    /// and a tunnel's pump running.
    _carrier: Carrier,
    sftp: Option<ssh2::Sftp>,
    sftp_unavailable: bool,
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
        Self::over(
            cfg,
            Carrier::Tunnel {
                socket: stream,
                _pump: tunnel,
            },
        )
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
        session.set_timeout(millis(OP_TIMEOUT));
        let mut t = Self {
            name: cfg.name.clone(),
            login: cfg.user.clone(),
            become_: cfg.become_.clone(),
            session,
            socket,
            _carrier: carrier,
            sftp: None,
            sftp_unavailable: false,
            keepalive: KEEPALIVE,
        };
        t.set_liveness(KEEPALIVE, DEAD_AFTER);
        Ok(t)
    }

    /// Sets how often a quiet session sends a keepalive (at least 2 s, libssh2's floor) and after
    /// how long without an acknowledgement from the host it is declared dead.
    pub fn set_liveness(&mut self, keepalive: Duration, dead_after: Duration) {
        let keepalive = keepalive.max(Duration::from_secs(2));
        self.keepalive = keepalive;
        self.session
            .set_keepalive(true, keepalive.as_secs().try_into().unwrap_or(u32::MAX));
        let ms = i32::try_from(dead_after.as_millis()).unwrap_or(i32::MAX);
        set_int_sockopt(self.socket, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms);
        let secs = i32::try_from(keepalive.as_secs()).unwrap_or(i32::MAX);
        set_int_sockopt(self.socket, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs);
        set_int_sockopt(self.socket, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs);
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

    /// The session's SFTP channel, opened on first use; `None` when the host offers no SFTP
    /// subsystem (files then go through the shell).
    fn sftp(&mut self) -> Option<&ssh2::Sftp> {
        if self.sftp.is_none() && !self.sftp_unavailable {
            match self.session.sftp() {
                Ok(sftp) => self.sftp = Some(sftp),
                Err(_) => self.sftp_unavailable = true,
            }
        }
        self.sftp.as_ref()
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

    /// The bytes go through the command's stdin (and so through sudo with `become`) into a
    /// temporary file beside the target, which then replaces it.
    fn write_via_shell(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<(), TransportError> {
        let p = shell_quote(path);
        let tmp = shell_quote(&temp_name(path));
        let script = format!(
            "umask 077; cat > {tmp} && chmod {:o} -- {tmp} && mv -f -- {tmp} {p} || {{ rm -f -- {tmp}; exit 1; }}",
            mode & 0o7777
        );
        let out = self.exec(&script, Some(data))?;
        if !out.success() {
            return Err(self.io(&format!("cannot write {path}"), out.stderr_str().trim()));
        }
        Ok(())
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

    /// Runs a command line exactly as given (no become wrapping).
    fn exec_raw(&mut self, line: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, TransportError> {
        channel_io::run(&self.session, self.socket, self.keepalive, line, stdin).map_err(
            |e| match e {
                TransportError::Io(m) => TransportError::Io(format!("{}: {m}", self.name)),
                other => other,
            },
        )
    }

    fn write_via_sftp(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), TransportError> {
        let tmp = temp_name(path);
        let result = (|| {
            let sftp = self
                .sftp()
                .ok_or_else(|| TransportError::Io("no SFTP subsystem".into()))?;
            let mut file = sftp
                .open_mode(
                    Path::new(&tmp),
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                    0o600,
                    OpenType::File,
                )
                .map_err(|e| TransportError::Io(format!("cannot create {tmp}: {e}")))?;
            file.write_all(data)
                .map_err(|e| TransportError::Io(format!("writing {tmp}: {e}")))?;
            // SFTP's chmod is not trimmed by the remote umask; set before the file is visible.
            let perm = ssh2::FileStat {
                size: None,
                uid: None,
                gid: None,
                perm: Some(mode & 0o7777),
                atime: None,
                mtime: None,
            };
            let moded = file.setstat(perm).is_ok();
            file.close()
                .map_err(|e| TransportError::Io(format!("closing {tmp}: {e}")))?;
            // A new file needs no shell: OpenSSH's SFTP rename links the name, which succeeds
            // only where nothing is there yet (no exec, so no fork on a slow host).
            if moded {
                if let Some(sftp) = &self.sftp {
                    let flags = ssh2::RenameFlags::ATOMIC | ssh2::RenameFlags::NATIVE;
                    if sftp
                        .rename(Path::new(&tmp), Path::new(path), Some(flags))
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            // An existing file: SFTP rename refuses to replace it, so the atomic replace (and
            // the mode, which the remote umask would otherwise trim) is one shell step.
            let out = self.exec_raw(
                &format!(
                    "chmod {:o} -- {t} && mv -f -- {t} {p}",
                    mode & 0o7777,
                    t = shell_quote(&tmp),
                    p = shell_quote(path)
                ),
                None,
            )?;
            if !out.success() {
                return Err(TransportError::Io(format!(
                    "cannot move {tmp} to {path}: {}",
                    out.stderr_str().trim()
                )));
            }
            Ok(())
        })();
        if result.is_err() {
            if let Some(sftp) = &self.sftp {
                let _ = sftp.unlink(Path::new(&tmp));
            }
        }
        result.map_err(|e| match e {
            TransportError::Io(m) if !m.starts_with(&self.name) => self.io("write_file", m),
            other => other,
        })
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
        let out = self.exec_raw(&line, stdin)?;
        self.check_become(&out)?;
        Ok(out)
    }

    fn stream(&mut self, cmd: &str, sink: &mut dyn StreamSink) -> Result<i32, TransportError> {
        let line = self.command_line(cmd);
        channel_io::stream(&self.session, self.socket, self.keepalive, &line, sink).map_err(|e| {
            match e {
                TransportError::Io(m) => TransportError::Io(format!("{}: {m}", self.name)),
                other => other,
            }
        })
    }

    fn set_liveness(&mut self, keepalive: Duration, dead_after: Duration) {
        SshTransport::set_liveness(self, keepalive, dead_after);
    }

    fn read_file(&mut self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        if !self.use_sftp() {
            return self.read_via_shell(path);
        }
        let opened = match self.sftp() {
            Some(sftp) => sftp.open(Path::new(path)),
            None => return self.read_via_shell(path),
        };
        let mut file = match opened {
            Ok(f) => f,
            // LIBSSH2_FX_NO_SUCH_FILE
            Err(e) if e.code() == ssh2::ErrorCode::SFTP(2) => return Ok(None),
            Err(e) => return Err(self.io(&format!("cannot open {path}"), e)),
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| self.io(&format!("reading {path}"), e))?;
        Ok(Some(data))
    }

    fn lstat(&mut self, path: &str) -> Option<Result<Option<super::FileMeta>, TransportError>> {
        if !self.use_sftp() {
            return None;
        }
        let st = match self.sftp()?.lstat(Path::new(path)) {
            Ok(st) => st,
            // LIBSSH2_FX_NO_SUCH_FILE
            Err(e) if e.code() == ssh2::ErrorCode::SFTP(2) => return Some(Ok(None)),
            // Anything else (permissions, a broken session) the shell's stat reports as before.
            Err(_) => return None,
        };
        let perm = st.perm?;
        let kind = perm & 0o170_000;
        Some(Ok(Some(super::FileMeta {
            is_dir: kind == 0o040_000,
            is_file: kind == 0o100_000,
            mode: perm & 0o7777,
            uid: st.uid,
            gid: st.gid,
        })))
    }

    fn write_in_place(&mut self, path: &str, data: &[u8]) -> Option<Result<(), TransportError>> {
        if !self.use_sftp() {
            return None;
        }
        let sftp = self.sftp()?;
        let result = (|| {
            // No CREATE: only an existing file is written, as `sysctl -w` would.
            let mut file = sftp
                .open_mode(
                    Path::new(path),
                    OpenFlags::WRITE | OpenFlags::TRUNCATE,
                    0,
                    OpenType::File,
                )
                .map_err(|e| format!("cannot open {path}: {e}"))?;
            file.write_all(data)
                .map_err(|e| format!("writing {path}: {e}"))?;
            file.close().map_err(|e| format!("closing {path}: {e}"))
        })();
        Some(result.map_err(|m| self.io("write_in_place", m)))
    }

    fn write_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), TransportError> {
        if self.use_sftp() && self.sftp().is_some() {
            return self.write_via_sftp(path, data, mode);
        }
        self.write_via_shell(path, data, mode)
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

/// A hidden name beside `path`, unique per process and call, so the rename stays on one
/// filesystem and concurrent writers never share a temporary file.
fn temp_name(path: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (dir, file) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    format!("{dir}.{file}.c1m-{}-{n}", std::process::id())
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
    fn temp_names_stay_beside_the_target() {
        let t = temp_name("/etc/c1m/app.conf");
        assert!(t.starts_with("/etc/c1m/.app.conf.c1m-"), "{t}");
        assert_ne!(temp_name("/x"), temp_name("/x"));
        assert!(temp_name("rel").starts_with(".rel.c1m-"));
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
