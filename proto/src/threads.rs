//! Starting a binary's worker threads, one per fd table: each sets itself up on its own thread
//! (so the fd table it unshares is its own), reports that it is ready, then runs. A worker whose
//! run fails ends the process with [`Exit::Failed`]: its connections can no longer be counted.

use crate::exit::Exit;
use std::io;
use std::sync::mpsc;

/// Worker threads being started, and their readiness.
pub struct Workers {
    binary: &'static str,
    tx: mpsc::Sender<io::Result<()>>,
    rx: mpsc::Receiver<io::Result<()>>,
}

impl Workers {
    /// `binary` names the process in a failing worker's message.
    pub fn new(binary: &'static str) -> Workers {
        let (tx, rx) = mpsc::channel();
        Workers { binary, tx, rx }
    }

    /// Starts worker thread `index` (`worker-INDEX`): `setup` on it, then `run`.
    pub fn spawn<W, S, R>(&self, index: usize, setup: S, run: R) -> io::Result<()>
    where
        S: FnOnce() -> io::Result<W> + Send + 'static,
        R: FnOnce(W) -> io::Result<()> + Send + 'static,
    {
        let (binary, ready) = (self.binary, self.tx.clone());
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                // A setup that panics must still answer, or the caller would wait forever.
                let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(setup))
                    .unwrap_or_else(|_| Err(io::Error::other("a worker thread died during setup")));
                match setup {
                    Ok(w) => {
                        let _ = ready.send(Ok(()));
                        if let Err(e) = run(w) {
                            eprintln!("{binary}: worker {index}: {e}");
                            std::process::exit(Exit::Failed.code().into());
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })
            .map(drop)
    }

    /// Waits until `n` more workers are set up; the first setup error otherwise.
    pub fn wait_ready(&self, n: usize) -> io::Result<()> {
        for _ in 0..n {
            // Never disconnected: `self` holds a sender.
            self.rx.recv().map_err(io::Error::other)??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Barrier;

    #[test]
    fn ready_workers_run_and_a_failed_setup_is_reported() {
        let w = Workers::new("test");
        let ran = Arc::new(Barrier::new(3));
        for i in 0..2 {
            let ran = ran.clone();
            let run = move |_| {
                ran.wait();
                Ok(())
            };
            w.spawn(i, move || Ok(i), run).unwrap();
        }
        w.wait_ready(2).unwrap();
        ran.wait();
        w.spawn(2, || Err::<(), _>(io::Error::other("no port")), |_| Ok(()))
            .unwrap();
        assert_eq!(w.wait_ready(1).unwrap_err().to_string(), "no port");
        w.spawn(
            3,
            || -> io::Result<()> { panic!("setup panics") },
            |_| Ok(()),
        )
        .unwrap();
        let died = w.wait_ready(1).unwrap_err().to_string();
        assert_eq!(died, "a worker thread died during setup");
    }
}
