//! File operations over the session's SFTP channel, each judged by its progress (see
//! `progress`): a file that keeps moving over a slow link takes as long as it needs, one that
//! stops moving for the progress timeout fails with how far it got.
//!
//! This module moves bytes; when to retry and how an interrupted upload resumes is `resume`'s.

use super::progress::{classify, Failed, Link, Measure, NonBlocking, Stop, Watch, EAGAIN};
use crate::interrupted::Flow;
use crate::{FileMeta, TransportError};
use ssh2::{ErrorCode, File, FileStat, OpenFlags, OpenType, Sftp};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// `LIBSSH2_FX_NO_SUCH_FILE`.
const NO_SUCH_FILE: ErrorCode = ErrorCode::SFTP(2);
/// Bytes of an upload handed to libssh2 at once, as seconds of the rate measured so far, within
/// bounds. libssh2 pipelines them as 32 KiB write requests but reports confirmed bytes only
/// once all of them are on the wire, so this is both how much is in flight (it must cover the
/// link's bandwidth-delay product) and how often progress is seen (it must stay well inside
/// the progress timeout on a slow link).
const WINDOW_TIME: Duration = Duration::from_millis(500);
const WINDOW_MIN: usize = 128 << 10;
const WINDOW_MAX: usize = 8 << 20;
/// Longest sleep between looks at a transfer.
const TICK: Duration = Duration::from_secs(1);

/// Opens the session's SFTP subsystem; `Ok(None)` when the host offers none (files then go
/// through the shell).
pub(super) fn start(link: Link) -> Result<Option<Sftp>, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut w = link.watch("opening the SFTP channel", Flow::Received, Measure::Host);
    loop {
        match link.session.sftp() {
            Ok(sftp) => return Ok(Some(sftp)),
            Err(e) if e.code() == EAGAIN => w.wait(TICK).map_err(|h| w.interrupted(h))?,
            // Refused (no subsystem), or a broken link, which the shell's first command reports.
            Err(_) => return Ok(None),
        }
    }
}

/// A whole file; `Ok(None)` when it does not exist.
pub(super) fn read(link: Link, sftp: &Sftp, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut w = link.watch(format!("reading {path}"), Flow::Received, Measure::Host);
    let mut file = match w.call(|| sftp.open(Path::new(path))) {
        Ok(f) => f,
        Err(Failed::Refused(e)) if e.code() == NO_SUCH_FILE => return Ok(None),
        Err(f) => return Err(w.failed(&format!("cannot open {path}"), f)),
    };
    let data = read_up_to(&mut w, link, &mut file, path, usize::MAX)?;
    close(&mut w, &mut file, path)?;
    Ok(Some(data))
}

/// Reads from where `file` points until its end or `limit` bytes.
fn read_up_to(
    w: &mut Watch,
    link: Link,
    file: &mut File,
    path: &str,
    limit: usize,
) -> Result<Vec<u8>, TransportError> {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while data.len() < limit {
        let want = buf.len().min(limit - data.len());
        match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                w.moved(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                w.wait(TICK).map_err(|h| w.interrupted(h))?
            }
            Err(e) => return Err(w.failed(&format!("reading {path}"), io_failure(link, e))),
        }
    }
    Ok(data)
}

/// What SFTP's lstat says of a path.
pub(super) enum Lstat {
    Missing,
    Found(FileMeta),
    /// The host refused in another way (permissions, say): the shell's stat tells it better.
    AskShell,
}

pub(super) fn lstat(link: Link, sftp: &Sftp, path: &str) -> Result<Lstat, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut w = link.watch(format!("lstat {path}"), Flow::Received, Measure::Host);
    let st = match w.call(|| sftp.lstat(Path::new(path))) {
        Ok(st) => st,
        Err(Failed::Refused(e)) if e.code() == NO_SUCH_FILE => return Ok(Lstat::Missing),
        Err(Failed::Refused(_)) => return Ok(Lstat::AskShell),
        Err(Failed::Halted(h)) => return Err(w.interrupted(h)),
    };
    let Some(perm) = st.perm else {
        return Ok(Lstat::AskShell);
    };
    let kind = perm & 0o170_000;
    Ok(Lstat::Found(FileMeta {
        is_dir: kind == 0o040_000,
        is_file: kind == 0o100_000,
        mode: perm & 0o7777,
        uid: st.uid,
        gid: st.gid,
    }))
}

/// Writes `data` into the existing file `path`, truncating it; never creates it.
pub(super) fn write_in_place(
    link: Link,
    sftp: &Sftp,
    path: &str,
    data: &[u8],
) -> Result<(), TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut w = link
        .watch(format!("writing {path}"), Flow::Sent, Measure::Host)
        .with_total(data.len() as u64);
    let flags = OpenFlags::WRITE | OpenFlags::TRUNCATE;
    let mut file = w
        .call(|| sftp.open_mode(Path::new(path), flags, 0, OpenType::File))
        .map_err(|f| w.failed(&format!("cannot open {path}"), f))?;
    write_from(&mut w, link, &mut file, data, 0, path)?;
    close(&mut w, &mut file, path)
}

/// How an upload attempt opens its temporary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    /// The first attempt: the name must be new.
    Create,
    /// A resumed attempt keeps what the file holds and writes from its end.
    Keep,
    /// A resumed attempt whose file cannot be trusted starts it over.
    Truncate,
}

/// One attempt's share of an upload: `data[from..]` into the temporary file `tmp`, opened as
/// `open` says, then given `mode`; `what` names the upload in messages.
pub(super) struct Piece<'a> {
    pub what: &'a str,
    pub tmp: &'a str,
    pub data: &'a [u8],
    pub from: u64,
    pub open: Open,
    pub mode: u32,
}

/// Sends a [`Piece`]. `Ok(false)` when the mode could not be set over SFTP (the shell then sets
/// it).
pub(super) fn send(link: Link, sftp: &Sftp, piece: &Piece) -> Result<bool, TransportError> {
    let Piece {
        what,
        tmp,
        data,
        from,
        open,
        mode,
    } = *piece;
    let _nb = NonBlocking::new(link.session);
    let mut w = link
        .watch(what, Flow::Sent, Measure::Host)
        .with_total(data.len() as u64)
        .already(from);
    let flags = match open {
        Open::Create => OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
        Open::Keep => OpenFlags::WRITE,
        Open::Truncate => OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
    };
    let mut file = w
        .call(|| sftp.open_mode(Path::new(tmp), flags, 0o600, OpenType::File))
        .map_err(|f| w.failed(&format!("cannot create {tmp}"), f))?;
    write_from(&mut w, link, &mut file, data, from, tmp)?;
    // SFTP's chmod is not trimmed by the remote umask; set before the file is visible.
    let perm = FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(mode & 0o7777),
        atime: None,
        mtime: None,
    };
    let moded = match w.call(|| file.setstat(perm.clone())) {
        Ok(()) => true,
        Err(Failed::Refused(_)) => false,
        Err(Failed::Halted(h)) => return Err(w.interrupted(h)),
    };
    close(&mut w, &mut file, tmp)?;
    Ok(moded)
}

/// Writes `data[from..]` at offset `from`, the bytes judged as they are confirmed by the host.
fn write_from(
    w: &mut Watch,
    link: Link,
    file: &mut File,
    data: &[u8],
    from: u64,
    path: &str,
) -> Result<(), TransportError> {
    // No I/O: libssh2 only notes where the next write request points.
    file.seek(SeekFrom::Start(from))
        .map_err(|e| TransportError::Io(format!("{}: seeking in {path}: {e}", link.host)))?;
    w.measure(Measure::Payload);
    let start = usize::try_from(from).unwrap_or(data.len()).min(data.len());
    let started = std::time::Instant::now();
    let mut pos = start;
    while pos < data.len() {
        let rate = (pos - start) as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let window = ((rate * WINDOW_TIME.as_secs_f64()) as usize).clamp(WINDOW_MIN, WINDOW_MAX);
        // libssh2 takes the same bytes again after "would block"; what it already sent is
        // skipped, and what it returns is what the host confirmed.
        let end = (pos + window).min(data.len());
        match file.write(&data[pos..end]) {
            // Nothing confirmed yet and nothing to wait for in libssh2's view: look again soon.
            Ok(0) => w.wait(TICK).map_err(|h| w.interrupted(h))?,
            Ok(n) => {
                pos += n;
                w.moved(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                w.wait(TICK).map_err(|h| w.interrupted(h))?
            }
            Err(e) => return Err(w.failed(&format!("writing {path}"), io_failure(link, e))),
        }
    }
    w.measure(Measure::Host);
    Ok(())
}

fn close(w: &mut Watch, file: &mut File, path: &str) -> Result<(), TransportError> {
    w.call(|| file.close())
        .map_err(|f| w.failed(&format!("closing {path}"), f))
}

/// How many bytes the file `path` holds; `Ok(None)` when it does not exist.
pub(super) fn size(link: Link, sftp: &Sftp, path: &str) -> Result<Option<u64>, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut w = link.watch(format!("stat {path}"), Flow::Received, Measure::Host);
    match w.call(|| sftp.lstat(Path::new(path))) {
        Ok(st) => Ok(Some(st.size.unwrap_or(0))),
        Err(Failed::Refused(e)) if e.code() == NO_SUCH_FILE => Ok(None),
        Err(f) => Err(w.failed(&format!("stat {path}"), f)),
    }
}

/// The `len` bytes of `path` at `offset` (fewer at its end).
pub(super) fn read_at(
    link: Link,
    sftp: &Sftp,
    path: &str,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut w = link.watch(
        format!("reading back {path}"),
        Flow::Received,
        Measure::Host,
    );
    let mut file = w
        .call(|| sftp.open(Path::new(path)))
        .map_err(|f| w.failed(&format!("cannot open {path}"), f))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| TransportError::Io(format!("{}: seeking in {path}: {e}", link.host)))?;
    let data = read_up_to(&mut w, link, &mut file, path, len)?;
    close(&mut w, &mut file, path)?;
    Ok(data)
}

/// Renames `from` to `to` where `to` does not exist yet (OpenSSH's SFTP rename links the name);
/// `Ok(false)` when the host refused (e.g. `to` exists).
pub(super) fn rename_new(
    link: Link,
    sftp: &Sftp,
    from: &str,
    to: &str,
) -> Result<bool, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut w = link.watch(format!("renaming {from}"), Flow::Received, Measure::Host);
    let flags = ssh2::RenameFlags::ATOMIC | ssh2::RenameFlags::NATIVE;
    match w.call(|| sftp.rename(Path::new(from), Path::new(to), Some(flags))) {
        Ok(()) => Ok(true),
        Err(Failed::Refused(_)) => Ok(false),
        Err(Failed::Halted(h)) => Err(w.interrupted(h)),
    }
}

/// Removes `path`, ignoring any failure (a leftover temporary file is harmless).
pub(super) fn remove(link: Link, sftp: &Sftp, path: &str) {
    let _nb = NonBlocking::new(link.session);
    let mut w = link.watch(format!("removing {path}"), Flow::Received, Measure::Host);
    if let Err(Failed::Halted(h)) = w.call(|| sftp.unlink(Path::new(path))) {
        w.interrupted(h);
    }
}

/// A failed read or write: ssh2 folds libssh2's code into an `io::Error`, so the session's
/// last error tells whether the host refused (an SFTP status, say a full disk) or the link
/// failed.
fn io_failure(link: Link, e: io::Error) -> Failed {
    match ssh2::Error::last_session_error(link.session) {
        Some(last) => classify(last),
        None => Failed::Halted(Stop::Lost(e.to_string())),
    }
}
