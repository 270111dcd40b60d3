//! `ansible_connection: local`: the same operations on this machine, without SSH. With `become`
//! as root, commands run directly; otherwise through `sudo -n` like the SSH transport.

use super::{shell_quote, Become, ExecOutput, StreamSink, Transport, TransportError, STREAM_POLL};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

pub struct LocalTransport {
    name: String,
    /// `sudo -n [-u USER]` prefix when escalation is needed; empty when running directly.
    sudo: Vec<String>,
}

impl LocalTransport {
    pub fn new(name: &str, become_: &Become) -> Self {
        LocalTransport {
            name: name.to_string(),
            sudo: sudo_prefix(become_),
        }
    }

    fn direct(&self) -> bool {
        self.sudo.is_empty()
    }
}

/// `sudo -n [-u USER] --` when `become_` needs escalation from the user running c1m.
fn sudo_prefix(become_: &Become) -> Vec<String> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let target_root = become_.user.as_deref().is_none_or(|u| u == "root");
    if !become_.enabled || (euid == 0 && target_root) {
        return Vec::new();
    }
    let mut v = vec!["sudo".to_string(), "-n".to_string()];
    if let Some(u) = &become_.user {
        v.push("-u".into());
        v.push(u.clone());
    }
    v.push("--".into());
    v
}

impl LocalTransport {
    fn argv(&self, cmd: &str) -> Vec<String> {
        let mut argv: Vec<String> = self.sudo.clone();
        argv.extend(["sh".to_string(), "-c".to_string(), cmd.to_string()]);
        argv
    }

    fn spawn_error(&self, e: std::io::Error) -> TransportError {
        if self.direct() {
            io(e)
        } else {
            TransportError::Become(format!("{}: cannot run sudo -n: {e}", self.name))
        }
    }
}

/// Sends each line of `from` as `(stderr, Some(line))`, then `(stderr, None)` at its end.
fn forward_lines(
    from: impl Read + Send + 'static,
    stderr: bool,
    to: mpsc::Sender<(bool, Option<String>)>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if to.send((stderr, Some(line))).is_err() {
                return;
            }
        }
        let _ = to.send((stderr, None));
    });
}

fn io(e: std::io::Error) -> TransportError {
    TransportError::Io(e.to_string())
}

impl Transport for LocalTransport {
    fn set_become(&mut self, become_: &Become) {
        self.sudo = sudo_prefix(become_);
    }

    fn host(&self) -> &str {
        &self.name
    }

    fn stream(&mut self, cmd: &str, sink: &mut dyn StreamSink) -> Result<i32, TransportError> {
        let argv = self.argv(cmd);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            forward_lines(out, false, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, true, tx);
        }
        let mut stdin = child.stdin.take();
        let mut open_streams = 2;
        while open_streams > 0 {
            if stdin.is_some() && sink.close_stdin() {
                stdin = None;
            }
            match rx.recv_timeout(STREAM_POLL) {
                Ok((stderr, Some(line))) => sink.line(stderr, &line),
                Ok((_, None)) => open_streams -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(stdin);
        let status = child.wait().map_err(io)?;
        Ok(status.code().unwrap_or(-1))
    }

    fn exec(&mut self, cmd: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, TransportError> {
        let argv = self.argv(cmd);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A command that does not read its stdin closes the pipe; that is not our error.
            let _ = pipe.write_all(data);
        }
        let out = child.wait_with_output().map_err(io)?;
        let status = out.status.code().unwrap_or(-1);
        if !self.direct()
            && status == 1
            && String::from_utf8_lossy(&out.stderr).contains("sudo: a password is required")
        {
            return Err(TransportError::Become(format!(
                "{}: sudo -n needs a password",
                self.name
            )));
        }
        Ok(ExecOutput {
            status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn read_file(&mut self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        if self.direct() {
            return match std::fs::read(path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(TransportError::Io(format!("{path}: {e}"))),
            };
        }
        let q = shell_quote(path);
        let out = self.exec(
            &format!("if [ -e {q} ]; then cat -- {q}; else exit 3; fi"),
            None,
        )?;
        match out.status {
            0 => Ok(Some(out.stdout)),
            3 => Ok(None),
            _ => Err(TransportError::Io(format!(
                "{path}: {}",
                out.stderr_str().trim()
            ))),
        }
    }

    fn lstat(&mut self, path: &str) -> Option<Result<Option<super::FileMeta>, TransportError>> {
        if !self.direct() {
            return None;
        }
        use std::os::unix::fs::PermissionsExt;
        match std::fs::symlink_metadata(path) {
            Ok(m) => Some(Ok(Some(super::FileMeta {
                is_dir: m.file_type().is_dir(),
                is_file: m.file_type().is_file(),
                mode: m.permissions().mode() & 0o7777,
                uid: Some(std::os::unix::fs::MetadataExt::uid(&m)),
                gid: Some(std::os::unix::fs::MetadataExt::gid(&m)),
            }))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Ok(None)),
            Err(_) => None,
        }
    }

    fn write_in_place(&mut self, path: &str, data: &[u8]) -> Option<Result<(), TransportError>> {
        // Through sudo only a program can write it.
        if !self.direct() {
            return None;
        }
        let write = || -> std::io::Result<()> {
            // No create: only an existing file is written, as `sysctl -w` would.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)?;
            f.write_all(data)
        };
        Some(write().map_err(|e| TransportError::Io(format!("{path}: {e}"))))
    }

    fn write_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), TransportError> {
        if self.direct() {
            use std::os::unix::fs::PermissionsExt;
            let p = std::path::Path::new(path);
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let base = p
                .file_name()
                .map(|b| b.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Ok(meta) = std::fs::symlink_metadata(p) {
                if !meta.file_type().is_file() {
                    return Err(TransportError::Io(format!(
                        "{path}: not a regular file; not replacing it"
                    )));
                }
            }
            let tmp = dir.join(format!(".{base}.c1m-{}", std::process::id()));
            let write = || -> std::io::Result<()> {
                std::fs::write(&tmp, data)?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
                std::fs::rename(&tmp, p)
            };
            return write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                TransportError::Io(format!("{path}: {e}"))
            });
        }
        let q = shell_quote(path);
        let tmp = shell_quote(&format!("{path}.c1m-tmp"));
        let cmd = format!(
            "cat > {tmp} && chmod {mode:o} {tmp} && mv -f {tmp} {q} || {{ rm -f {tmp}; exit 1; }}"
        );
        let out = self.exec(&cmd, Some(data))?;
        if out.success() {
            Ok(())
        } else {
            Err(TransportError::Io(format!(
                "{path}: {}",
                out.stderr_str().trim()
            )))
        }
    }
}
