//! Uploads that survive a broken link. A file goes into a temporary name beside its target and
//! is renamed into place once whole. When an attempt is interrupted (the link stopped moving or
//! broke), the upload opens a new session and resumes from what the temporary file already
//! holds — checked against our bytes first, never sent again — and verifies the whole file's
//! SHA-256 on the host before the rename. It gives up once it has gone twice the progress
//! timeout without moving a byte: the first timeout notices the stall, the second gives the
//! link time to come back.
//!
//! Every writer puts each byte at its own offset (SFTP writes name their offset; the shell's
//! `cat >` and `dd seek=` write sequentially from where they start), so a writer of an abandoned
//! session that is still draining its last bytes on the host writes what we would write there.

use super::progress::Link;
use super::sftp_io::{self, Open, Piece};
use super::{shell_quote, SshTransport};
use crate::interrupted::{Flow, Halt, Interrupted};
use crate::{Transport, TransportError};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Pause before the first reconnect; doubled after each attempt that moved nothing.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// Bytes at the end of a temporary file compared with ours before a resume trusts it.
const TAIL_CHECK: u64 = 64 * 1024;
/// Exit status of the shell's verification when the file's SHA-256 is not ours.
const MISMATCH: i32 = 3;

/// One file on its way.
struct Upload<'a> {
    path: &'a str,
    tmp: String,
    data: &'a [u8],
    mode: u32,
    sha256: String,
    route: Route,
}

/// How the bytes travel; chosen by the first attempt and kept, as the temporary file belongs to
/// the user who wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Sftp,
    /// Through a command's stdin, so through sudo when `become` asks for another user.
    Shell,
}

/// Where an attempt starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The first attempt: a new temporary file.
    Fresh,
    /// After an interruption: from what the temporary file holds, if it checks out.
    Resume,
    /// After a verification failure: the temporary file is written again from the start.
    Over,
}

/// Why an attempt did not finish the upload.
enum Setback {
    /// The link stopped or broke partway: resume.
    Interrupted(Box<Interrupted>),
    /// A new session could not be opened: try again.
    Unreachable(String),
    /// The file on the host does not hash to ours: write it again.
    Corrupt(String),
    /// Anything else (the host refused): give up.
    Fatal(TransportError),
}

impl From<TransportError> for Setback {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Interrupted(i) => Setback::Interrupted(i),
            TransportError::Unreachable(why) => Setback::Unreachable(why),
            other => Setback::Fatal(other),
        }
    }
}

impl SshTransport {
    /// Writes `data` to `path` with `mode` through a temporary file, riding out broken links
    /// (see the module docs).
    pub(super) fn upload(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<(), TransportError> {
        let route = if self.use_sftp() && self.has_sftp()? {
            Route::Sftp
        } else {
            Route::Shell
        };
        let up = Upload {
            path,
            tmp: temp_name(path),
            data,
            mode,
            sha256: hex(&Sha256::digest(data)),
            route,
        };
        let started = Instant::now();
        let mut last_progress = started;
        // The most bytes the host confirmed; where the last attempt began.
        let mut best = 0u64;
        let mut start = Start::Fresh;
        let mut attempts = 0u32;
        let mut pause = FIRST_PAUSE;
        loop {
            attempts += 1;
            let error = match self.attempt(&up, start) {
                Ok(()) => return Ok(()),
                Err(Setback::Fatal(e)) => {
                    self.discard(&up);
                    return Err(e);
                }
                Err(Setback::Corrupt(why)) => {
                    start = Start::Over;
                    Some(why)
                }
                Err(Setback::Unreachable(why)) => Some(format!("reconnecting: {why}")),
                Err(Setback::Interrupted(i)) => {
                    if i.done > best {
                        best = i.done;
                        last_progress = Instant::now()
                            .checked_sub(i.quiet)
                            .unwrap_or(last_progress)
                            .max(last_progress);
                        pause = FIRST_PAUSE;
                    }
                    if start == Start::Fresh {
                        start = Start::Resume;
                    }
                    i.error
                }
            };
            if last_progress.elapsed() >= self.patience * 2 {
                self.discard(&up);
                return Err(TransportError::Interrupted(Box::new(Interrupted {
                    host: self.name.clone(),
                    what: format!("uploading {path}"),
                    flow: Flow::Sent,
                    done: best,
                    total: Some(data.len() as u64),
                    quiet: last_progress.elapsed(),
                    took: started.elapsed(),
                    attempts,
                    halt: Halt::NoProgress,
                    error,
                })));
            }
            std::thread::sleep(pause);
            pause *= 2;
        }
    }

    /// One attempt: a new session unless this is the first, then the bytes, then the rename.
    fn attempt(&mut self, up: &Upload, start: Start) -> Result<(), Setback> {
        if start != Start::Fresh {
            self.reopen()?;
            if up.route == Route::Sftp && !self.has_sftp()? {
                return Err(Setback::Fatal(self.io(
                    "write_file",
                    "the SFTP subsystem went away between two attempts",
                )));
            }
        }
        match up.route {
            Route::Sftp => self.attempt_sftp(up, start),
            Route::Shell => self.attempt_shell(up, start),
        }
    }

    fn sftp_or_fatal(&self) -> Result<(Link<'_>, &ssh2::Sftp), Setback> {
        self.sftp_link()
            .ok_or_else(|| Setback::Fatal(self.io("write_file", "no SFTP subsystem")))
    }

    fn attempt_sftp(&mut self, up: &Upload, start: Start) -> Result<(), Setback> {
        let what = format!("uploading {}", up.path);
        let (from, open) = match start {
            Start::Fresh => (0, Open::Create),
            Start::Over => (0, Open::Truncate),
            Start::Resume => self.sftp_resume_point(up)?,
        };
        let (link, sftp) = self.sftp_or_fatal()?;
        let piece = Piece {
            what: &what,
            tmp: &up.tmp,
            data: up.data,
            from,
            open,
            mode: up.mode,
        };
        let moded = sftp_io::send(link, sftp, &piece)?;
        // One connection carried the whole file (SSH's MAC vouches for it); pieces from several
        // are checked as a whole.
        if start != Start::Fresh {
            self.verify_sha256(up)?;
        }
        // A new file needs no shell: OpenSSH's SFTP rename links the name, which succeeds
        // only where nothing is there yet (no exec, so no fork on a slow host).
        if moded {
            let (link, sftp) = self.sftp_or_fatal()?;
            if sftp_io::rename_new(link, sftp, &up.tmp, up.path)? {
                return Ok(());
            }
        }
        // An existing file: SFTP rename refuses to replace it, so the atomic replace (and
        // the mode, which the remote umask would otherwise trim) is one shell step.
        let (t, p) = (shell_quote(&up.tmp), shell_quote(up.path));
        let cmd = format!("chmod {:o} -- {t} && mv -f -- {t} {p}", up.mode & 0o7777);
        let out = self.exec(&cmd, None)?;
        if !out.success() {
            return Err(Setback::Fatal(self.io(
                "write_file",
                format!(
                    "cannot move {} to {}: {}",
                    up.tmp,
                    up.path,
                    out.stderr_str().trim()
                ),
            )));
        }
        Ok(())
    }

    /// What the temporary file holds that we can build on: its size when it is no longer than
    /// ours and its last bytes are ours, else nothing.
    fn sftp_resume_point(&mut self, up: &Upload) -> Result<(u64, Open), Setback> {
        let (link, sftp) = self.sftp_or_fatal()?;
        let Some(have) = sftp_io::size(link, sftp, &up.tmp)? else {
            return Ok((0, Open::Truncate));
        };
        let len = up.data.len() as u64;
        if have > len {
            return Ok((0, Open::Truncate));
        }
        let from = have.saturating_sub(TAIL_CHECK);
        let tail = sftp_io::read_at(link, sftp, &up.tmp, from, (have - from) as usize)?;
        if tail != up.data[from as usize..have as usize] {
            return Ok((0, Open::Truncate));
        }
        Ok((have, Open::Keep))
    }

    /// Whether the temporary file on the host hashes to ours, by the host's `sha256sum`.
    fn verify_sha256(&mut self, up: &Upload) -> Result<(), Setback> {
        let out = self.exec(&format!("sha256sum < {}", shell_quote(&up.tmp)), None)?;
        let stdout = out.stdout_str();
        let got = stdout.split_whitespace().next().unwrap_or_default();
        if !out.success() {
            return Err(Setback::Fatal(self.io(
                "write_file",
                format!("cannot verify {}: {}", up.tmp, out.stderr_str().trim()),
            )));
        }
        if got != up.sha256 {
            return Err(Setback::Corrupt(format!(
                "{} has SHA-256 {got} on the host, not {}",
                up.tmp, up.sha256
            )));
        }
        Ok(())
    }

    /// The shell route: the bytes through a command's stdin, the SHA-256 verified and the file
    /// moved into place by the same command.
    fn attempt_shell(&mut self, up: &Upload, start: Start) -> Result<(), Setback> {
        let t = shell_quote(&up.tmp);
        let from = match start {
            Start::Fresh | Start::Over => 0,
            Start::Resume => self.shell_resume_point(up)?,
        };
        let write = if from == 0 {
            format!("umask 077; cat > {t} || exit 1")
        } else {
            format!(
                "dd of={t} bs=65536 seek={from} oflag=seek_bytes conv=notrunc status=none || exit 1"
            )
        };
        // The temporary file is kept on a mismatch: it may be the prefix of an interrupted
        // feed, which the next attempt resumes from.
        let script = format!(
            "{write}; set -- $(sha256sum < {t}) || exit 1; \
             [ \"$1\" = {sum} ] || {{ echo \"$1\" >&2; exit {MISMATCH}; }}; \
             chmod {mode:o} -- {t} && mv -f -- {t} {p} || {{ rm -f -- {t}; exit 1; }}",
            sum = up.sha256,
            mode = up.mode & 0o7777,
            p = shell_quote(up.path),
        );
        let out = match self.exec(&script, Some(&up.data[from as usize..])) {
            Ok(out) => out,
            // The command counted its stdin from where this attempt began.
            Err(TransportError::Interrupted(mut i)) => {
                i.done += from;
                i.total = Some(up.data.len() as u64);
                return Err(Setback::Interrupted(i));
            }
            Err(e) => return Err(e.into()),
        };
        match out.status {
            0 => Ok(()),
            MISMATCH => Err(Setback::Corrupt(format!(
                "{} has SHA-256 {} on the host, not {}",
                up.tmp,
                out.stderr_str().trim(),
                up.sha256
            ))),
            _ => Err(Setback::Fatal(self.io(
                &format!("cannot write {}", up.path),
                out.stderr_str().trim(),
            ))),
        }
    }

    /// How many bytes of ours the temporary file holds (0 when it is missing or too long; the
    /// final SHA-256 check catches anything else).
    fn shell_resume_point(&mut self, up: &Upload) -> Result<u64, Setback> {
        let t = shell_quote(&up.tmp);
        let out = self.exec(&format!("[ -f {t} ] && wc -c < {t} || echo 0"), None)?;
        let have: u64 = out.stdout_str().trim().parse().unwrap_or(0);
        Ok(if have <= up.data.len() as u64 {
            have
        } else {
            0
        })
    }

    /// Removes the temporary file of an upload that gave up, when the session still works.
    fn discard(&mut self, up: &Upload) {
        match up.route {
            Route::Sftp => {
                if let Some((link, sftp)) = self.sftp_link() {
                    sftp_io::remove(link, sftp, &up.tmp);
                }
            }
            Route::Shell => {
                let _ = self.exec(&format!("rm -f -- {}", shell_quote(&up.tmp)), None);
            }
        }
    }
}

/// A hidden name beside `path`, unique per process and call, so the rename stays on one
/// filesystem and concurrent writers never share a temporary file.
pub(super) fn temp_name(path: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (dir, file) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    format!("{dir}.{file}.c1m-{}-{n}", std::process::id())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_stay_beside_the_target() {
        let t = temp_name("/etc/c1m/app.conf");
        assert!(t.starts_with("/etc/c1m/.app.conf.c1m-"), "{t}");
        assert_ne!(temp_name("/x"), temp_name("/x"));
        assert!(temp_name("rel").starts_with(".rel.c1m-"));
    }
}
