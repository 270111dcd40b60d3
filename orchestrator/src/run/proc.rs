//! One c1m binary running on one host through a streaming exec (an SSH channel, or pipes for
//! a local host), in a thread of its own: its stdout lines go to the run directory and to the
//! engine, its stderr to a log, and closing its stdin is its graceful stop (`--stop-on-eof`).

use super::msg::{Ended, Msg, Role};
use c1m_transport::{StreamSink, Transport};
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// A started binary; [`RemoteProc::stop`] closes its stdin.
pub struct RemoteProc {
    stop: Arc<AtomicBool>,
}

impl RemoteProc {
    /// Starts `cmd` over `t` (a connection of its own: the stream holds it for the whole run);
    /// `c1m_binary`: it is c1m-server or c1m-client, which print c1m's JSON lines.
    pub fn start(
        mut t: Box<dyn Transport>,
        host: usize,
        role: Role,
        c1m_binary: bool,
        cmd: String,
        dir: &Path,
        tx: UnboundedSender<Msg>,
    ) -> std::io::Result<RemoteProc> {
        let stop = Arc::new(AtomicBool::new(false));
        let stem = role.file_stem();
        // A server c1m did not write prints what it likes, not c1m's JSON lines: its stdout
        // goes to a file of its own, so readers of `server.jsonl` never meet it.
        let out = if role == Role::Server && !c1m_binary {
            "server-command.out".to_string()
        } else {
            format!("{stem}.jsonl")
        };
        let mut sink = Sink {
            host,
            role,
            tx: tx.clone(),
            stop: stop.clone(),
            jsonl: LineWriter::new(File::create(dir.join(out))?),
            log: LineWriter::new(File::create(dir.join(format!("{stem}.log")))?),
            last_err: None,
        };
        std::thread::Builder::new()
            .name(format!("{stem}-{host}"))
            .spawn(move || {
                let ended = match t.stream(&cmd, &mut sink) {
                    Ok(status) => Ended::Exited(status, sink.last_err.take()),
                    Err(e) => Ended::Lost(e.to_string()),
                };
                let _ = tx.send(Msg::Ended { host, role, ended });
            })?;
        Ok(RemoteProc { stop })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Sink {
    host: usize,
    role: Role,
    tx: UnboundedSender<Msg>,
    stop: Arc<AtomicBool>,
    jsonl: LineWriter<File>,
    log: LineWriter<File>,
    last_err: Option<String>,
}

impl StreamSink for Sink {
    fn line(&mut self, stderr: bool, line: &str) {
        // A failed write loses only the run directory's copy of the line.
        if stderr {
            let _ = writeln!(self.log, "{line}");
            if !line.trim().is_empty() {
                self.last_err = Some(line.trim().to_string());
            }
            return;
        }
        let _ = writeln!(self.jsonl, "{line}");
        let _ = self.tx.send(Msg::Line {
            host: self.host,
            role: self.role,
            line: line.to_string(),
        });
    }

    fn close_stdin(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}
