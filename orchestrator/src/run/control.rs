//! The control connection of one host, in a thread of its own: it samples the host's kernel
//! memory and CPU once a second for the engine (and the process tree of the server under test,
//! once the engine names its root), and stops process groups when asked.

use super::listening;
use super::msg::{HostSample, Msg};
use super::sampler::{cpu_times_from, KernelSample};
use crate::check::gather::read_tree;
use c1m_transport::Transport;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Opens a fresh connection to the host. Teardown needs it: a host closing a million sockets
/// under emulation can drop the control connection while it works through their FINs.
pub type Reconnect = Box<dyn Fn() -> Result<Box<dyn Transport>, String> + Send>;

const SAMPLE: &str =
    "cat /proc/meminfo; echo @@; cat /proc/net/sockstat; echo @@; head -n 1 /proc/stat";

/// One reading of the host. Over SFTP (when `files`) the three /proc files are read without
/// starting a program: the shell and its three children every second are real load on a host
/// that is busy with a million sockets, an emulated one above all.
fn sample(t: &mut dyn Transport, files: bool) -> Result<Option<HostSample>, String> {
    let texts = if files {
        let mut read = |path: &str| -> Result<String, String> {
            let bytes = t.read_file(path).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
        };
        [
            read("/proc/meminfo")?,
            read("/proc/net/sockstat")?,
            read("/proc/stat")?,
        ]
    } else {
        let out = t.exec(SAMPLE, None).map_err(|e| e.to_string())?;
        if !out.success() {
            return Ok(None);
        }
        let text = out.stdout_str();
        let mut parts = text.split("@@\n").map(str::to_string);
        let mut next = || parts.next().unwrap_or_default();
        [next(), next(), next()]
    };
    let [meminfo, sockstat, stat] = texts;
    Ok(Some(HostSample {
        kernel: KernelSample::parse(&meminfo, &sockstat),
        cpu: cpu_times_from(&stat),
    }))
}

/// Stops group `-PGID`: SIGTERM, up to 2 s to go, then SIGKILL, then up to 60 s for the group
/// to be gone; says which it took, or `exiting` when it is still there (a process that is
/// closing many sockets in exit() cannot be hurried, not even by SIGKILL). The group is named by
/// number, so nothing else on the host is touched. Bounded well below the SSH operation timeout.
///
/// A process counts while it is not a zombie: where PID 1 does not reap orphans, a stopped
/// server's processes stay zombies in their group, and `kill -0` would call them alive for the
/// whole minute. `kill -SIG -PGID`, never `kill -SIG -- -PGID`: dash (Debian's `sh`) takes no
/// `--` there and fails.
fn kill_script(pgid: u32) -> String {
    format!(
        "alive() {{ cat /proc/[0-9]*/stat 2>/dev/null | awk -v g={pgid} \
           '{{ s = $0; sub(/^.*\\) /, \"\", s); split(s, f, \" \"); \
              if (f[1] != \"Z\" && f[1] != \"X\" && f[3] == g) {{ found = 1; exit }} }} \
            END {{ exit !found }}'; }}; \
         alive || {{ echo gone; exit 0; }}; \
         kill -TERM -{pgid} 2>/dev/null; i=0; \
         while alive; do \
           i=$((i+1)); if [ $i -ge 20 ]; then break; fi; sleep 0.1; \
         done; \
         alive || {{ echo terminated; exit 0; }}; \
         kill -KILL -{pgid} 2>/dev/null; i=0; \
         while alive; do \
           i=$((i+1)); if [ $i -ge 300 ]; then echo exiting; exit 0; fi; sleep 0.2; \
         done; echo killed"
    )
}

/// Connections to `pid`'s listeners `(first port, count)` it has not taken, as its network
/// namespace's sockets show them; `None` when they cannot be read.
fn unaccepted(
    t: &mut dyn Transport,
    pid: u32,
    (first, count): (u16, u16),
) -> Option<listening::Unaccepted> {
    let out = t
        .exec(&listening::unaccepted_script(pid, first, count), None)
        .ok()?;
    listening::unaccepted(&out.stdout_str())
}

/// Pause between attempts to reach a host that did not answer a group stop.
const RETRY_PAUSE: Duration = Duration::from_secs(3);

/// Runs [`kill_script`] until it has an answer or `until` passes; a broken connection is opened
/// again, as the host may only be too busy to answer for a while.
fn stop_until(
    t: &mut Box<dyn Transport>,
    reconnect: &Reconnect,
    pgid: u32,
    until: Instant,
) -> Result<String, String> {
    let started = Instant::now();
    loop {
        // (why not yet, whether the connection is still good)
        let (why, connected) = match t.exec(&kill_script(pgid), None) {
            Ok(out) if out.success() => {
                let answer = out.stdout_str().trim().to_string();
                if answer != "exiting" {
                    return Ok(answer);
                }
                ("it was still exiting after SIGKILL".to_string(), true)
            }
            Ok(out) => (
                format!("the stop script failed: {}", out.stderr_str().trim()),
                true,
            ),
            Err(e) => (e.to_string(), false),
        };
        if Instant::now() + RETRY_PAUSE >= until {
            return Err(format!(
                "{why} (tried for {} s)",
                started.elapsed().as_secs()
            ));
        }
        std::thread::sleep(RETRY_PAUSE);
        if !connected {
            match reconnect() {
                Ok(fresh) => *t = fresh,
                // The next attempt on the old connection fails at once and tries again.
                Err(e) => eprintln!("c1m run: {}: reconnecting for teardown: {e}", t.host()),
            }
        }
    }
}

/// What each sample reads of the server under test once it is known.
#[derive(Clone, Copy)]
pub struct Watch {
    /// The root of its process tree.
    pub root: u32,
    /// The host's clock ticks per second, as the first reading found them.
    pub clk_tck: u64,
    /// Its listeners' ports (first, count), whose connections not yet taken are read too: in
    /// a run that sends nothing the clients count a connection at its handshake, which the
    /// kernel completes before the server accepts it.
    pub queues: Option<(u16, u16)>,
}

enum Request {
    /// From now on, each sample also reads the server's process tree (and accept queues).
    Watch(Watch),
    Stop {
        pgid: u32,
        until: Instant,
        reply: mpsc::Sender<Result<String, String>>,
    },
}

/// Handle to a host's control thread.
pub struct Control {
    requests: mpsc::Sender<Request>,
}

impl Control {
    pub fn start(
        mut t: Box<dyn Transport>,
        reconnect: Reconnect,
        host: usize,
        every: Duration,
        events: UnboundedSender<Msg>,
    ) -> Control {
        let (requests, rx) = mpsc::channel::<Request>();
        let spawned = std::thread::Builder::new()
            .name(format!("control-{host}"))
            .spawn(move || {
                let mut sampling = true;
                let mut watched: Option<Watch> = None;
                // `lstat` answers only where file operations need no program on the host.
                let files = t.lstat("/proc/meminfo").is_some();
                // The first reading at once: it is the baseline of the run's kernel memory.
                let mut wait = Duration::ZERO;
                loop {
                    let got = rx.recv_timeout(wait);
                    wait = every;
                    match got {
                        Ok(Request::Stop { pgid, until, reply }) => {
                            let _ = reply.send(stop_until(&mut t, &reconnect, pgid, until));
                        }
                        Ok(Request::Watch(w)) => watched = Some(w),
                        Err(mpsc::RecvTimeoutError::Timeout) if sampling => {
                            if let Some(w) = watched {
                                // Before the kernel's sample: a fresh kernel reading after the
                                // peak then comes with a fresh tree.
                                let tree =
                                    read_tree(t.as_mut(), w.root, false, Some(w.clk_tck)).ok();
                                let queued =
                                    w.queues.and_then(|q| unaccepted(t.as_mut(), w.root, q));
                                let _ = events.send(Msg::Tree { host, tree, queued });
                            }
                            match sample(t.as_mut(), files) {
                                Ok(Some(sample)) => {
                                    let _ = events.send(Msg::Sample { host, sample });
                                }
                                Ok(None) => sampling = false,
                                Err(error) => {
                                    sampling = false;
                                    let _ = events.send(Msg::ControlLost { host, error });
                                }
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        if let Err(e) = spawned {
            // Without it the host still runs; only its samples and group stops are missing.
            eprintln!("c1m run: host #{host}: cannot start its control thread: {e}");
        }
        Control { requests }
    }

    /// Reads the server's process tree (and accept queues) with every sample from now on.
    pub fn watch(&self, w: Watch) {
        let _ = self.requests.send(Request::Watch(w));
    }

    /// Asks the host to stop process group `pgid`, trying until `until`, and returns at once,
    /// so every host works on its groups at the same time; [`Stopping::answer_by`] waits for
    /// the outcome.
    pub fn stop_group(&self, pgid: u32, until: Instant) -> Stopping {
        if pgid <= 1 {
            return Stopping::Refused(format!("refusing to signal process group {pgid}"));
        }
        let (reply, answer) = mpsc::channel();
        match self.requests.send(Request::Stop { pgid, until, reply }) {
            Ok(()) => Stopping::Asked(answer),
            Err(_) => Stopping::Refused("the control connection is gone".into()),
        }
    }
}

/// A group stop on its way.
pub enum Stopping {
    Asked(mpsc::Receiver<Result<String, String>>),
    Refused(String),
}

impl Stopping {
    /// `gone` (nothing was left), `terminated` or `killed`, or an error; `None` while there is
    /// no answer yet at `deadline`.
    pub fn answer_by(&self, deadline: Instant) -> Option<Result<String, String>> {
        match self {
            Stopping::Refused(why) => Some(Err(why.clone())),
            Stopping::Asked(rx) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(answer) => Some(answer),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        Some(Err("the control thread ended".into()))
                    }
                }
            }
        }
    }
}

/// How long teardown tries to stop a host's process groups: 20 s, plus 1 ms for each socket the
/// host held. A loaded host or an emulated one (a TCG guest works through ~2,000 FINs a second)
/// needs that long before its processes are gone; a healthy one answers in a second.
pub fn stop_budget(sockets: u64) -> Duration {
    Duration::from_secs(20) + Duration::from_millis(sockets)
}

#[cfg(test)]
mod tests {
    use super::kill_script;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// The script stops a real group under Debian's `sh`, and says `gone` for none.
    #[test]
    fn the_group_stop_works_under_sh() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let out = Command::new("sh")
            .arg("-c")
            .arg(kill_script(pgid))
            .output()
            .unwrap();
        let _ = child.wait();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "terminated",
            "{out:?}"
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(kill_script(pgid))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "gone");
    }
}
