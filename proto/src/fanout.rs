//! Running a binary as K worker processes when one process's fd tables are not enough (or
//! `--procs` asks for it): the parent re-executes itself K times, reads each child's JSON stats
//! lines, and forwards SIGTERM. Children die with the parent (PR_SET_PDEATHSIG).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// K running children and the lines they print.
pub struct Children {
    children: Vec<Child>,
    /// (child index, one stdout line); a `None` line means that child's stdout closed.
    pub lines: mpsc::Receiver<(usize, Option<String>)>,
}

impl Children {
    /// Starts this executable once per argument list.
    pub fn spawn(arg_lists: Vec<Vec<String>>) -> std::io::Result<Children> {
        let exe = std::env::current_exe()?;
        let (tx, lines) = mpsc::channel();
        let mut children = Vec::new();
        for (i, args) in arg_lists.into_iter().enumerate() {
            let mut child = Command::new(&exe)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let Some(out) = child.stdout.take() else {
                continue;
            };
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send((i, Some(l))).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send((i, None));
            });
            children.push(child);
        }
        Ok(Children { children, lines })
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Sends SIGTERM to every child still running.
    pub fn terminate(&self) {
        for c in &self.children {
            // SAFETY: kill with a pid we spawned.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// Kills every child still running (SIGKILL): for one that does not stop when asked.
    pub fn kill(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
        }
    }

    /// Waits for every child; returns how many exited non-zero.
    pub fn wait(&mut self) -> usize {
        self.children
            .iter_mut()
            .map(|c| c.wait())
            .filter(|r| !matches!(r, Ok(s) if s.success()))
            .count()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill();
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}
