//! `C1M_TRACE=FILE`: every transport operation of every host appended to FILE as
//! `host op ms summary`, and a per-host total when the connection closes. On a slow host the
//! run's time is its round trips (each exec forks a shell there), so this is how a change to a
//! module is judged. A file rather than stderr so it works under tests that capture output.

use super::{ExecOutput, StreamSink, Transport, TransportError};
use std::io::Write;
use std::time::{Duration, Instant};

/// Wraps `inner` when `C1M_TRACE` names a file; otherwise returns it as it is.
pub fn wrap(inner: Box<dyn Transport>) -> Box<dyn Transport> {
    match std::env::var_os("C1M_TRACE") {
        Some(path) if !path.is_empty() => Box::new(Traced {
            inner,
            path: path.into(),
            counts: [0; 4],
            time: Duration::ZERO,
        }),
        _ => inner,
    }
}

struct Traced {
    inner: Box<dyn Transport>,
    path: std::path::PathBuf,
    /// exec (and stream), read, write, lstat.
    counts: [u32; 4],
    time: Duration,
}

const OPS: [&str; 4] = ["exec", "read", "write", "lstat"];

impl Traced {
    fn log(&mut self, op: usize, started: Instant, what: &str) {
        let took = started.elapsed();
        self.counts[op] += 1;
        self.time += took;
        // First line of a command is enough to tell which task sent it.
        let what: String = what
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect();
        self.append(&format!(
            "{} {} {} {what}\n",
            self.inner.host(),
            OPS[op],
            took.as_millis()
        ));
    }

    fn append(&self, line: &str) {
        // Tracing must never fail a run.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        let [e, r, w, s] = self.counts;
        self.append(&format!(
            "{} TOTAL exec={e} read={r} write={w} lstat={s} ms={}\n",
            self.inner.host(),
            self.time.as_millis()
        ));
    }
}

impl Transport for Traced {
    fn set_become(&mut self, become_: &super::Become) {
        self.inner.set_become(become_);
    }

    fn host(&self) -> &str {
        self.inner.host()
    }
    fn exec(&mut self, cmd: &str, stdin: Option<&[u8]>) -> Result<ExecOutput, TransportError> {
        let t = Instant::now();
        let r = self.inner.exec(cmd, stdin);
        self.log(0, t, cmd);
        r
    }
    fn read_file(&mut self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        let t = Instant::now();
        let r = self.inner.read_file(path);
        self.log(1, t, path);
        r
    }
    fn write_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), TransportError> {
        let t = Instant::now();
        let r = self.inner.write_file(path, data, mode);
        self.log(2, t, path);
        r
    }
    fn write_in_place(&mut self, path: &str, data: &[u8]) -> Option<Result<(), TransportError>> {
        let t = Instant::now();
        let r = self.inner.write_in_place(path, data);
        // Like lstat: a `None` did nothing; the shell's fallback is traced as an exec.
        if r.is_some() {
            self.log(2, t, &format!("in place {path}"));
        }
        r
    }
    fn lstat(&mut self, path: &str) -> Option<Result<Option<super::FileMeta>, TransportError>> {
        let t = Instant::now();
        let r = self.inner.lstat(path);
        // A `None` did nothing on the host: the shell's stat that follows is traced as an exec.
        if r.is_some() {
            self.log(3, t, path);
        }
        r
    }
    fn stream(&mut self, cmd: &str, sink: &mut dyn StreamSink) -> Result<i32, TransportError> {
        let t = Instant::now();
        let r = self.inner.stream(cmd, sink);
        self.log(0, t, cmd);
        r
    }
    fn set_liveness(&mut self, keepalive: Duration, dead_after: Duration) {
        self.inner.set_liveness(keepalive, dead_after);
    }
}
