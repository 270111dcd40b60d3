//! The control connection of one host, in a thread of its own: it samples the host's kernel
//! memory and CPU once a second for the engine, and stops process groups when asked.

use super::Msg;
use crate::run::sampler::{cpu_times_from, KernelSample};
use crate::transport::Transport;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// One reading of a host.
#[derive(Debug, Clone)]
pub struct HostSample {
    pub kernel: KernelSample,
    /// /proc/stat: (all ticks, idle ticks).
    pub cpu: (u64, u64),
}

const SAMPLE: &str =
    "cat /proc/meminfo; echo @@; cat /proc/net/sockstat; echo @@; head -n 1 /proc/stat";

/// Stops group `-PGID`: SIGTERM, up to 2 s to go, then SIGKILL; says which it took. The group is
/// named by number, so nothing else on the host is touched.
fn kill_script(pgid: u32) -> String {
    format!(
        "kill -TERM -- -{pgid} 2>/dev/null || {{ echo gone; exit 0; }}; i=0; \
         while kill -0 -- -{pgid} 2>/dev/null; do \
           i=$((i+1)); if [ $i -ge 20 ]; then kill -KILL -- -{pgid} 2>/dev/null; echo killed; exit 0; fi; \
           sleep 0.1; \
         done; echo terminated"
    )
}

enum Request {
    Stop {
        pgid: u32,
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
        host: usize,
        every: Duration,
        events: UnboundedSender<Msg>,
    ) -> Control {
        let (requests, rx) = mpsc::channel::<Request>();
        let spawned = std::thread::Builder::new()
            .name(format!("control-{host}"))
            .spawn(move || {
                let mut sampling = true;
                // The first reading at once: it is the baseline of the run's kernel memory.
                let mut wait = Duration::ZERO;
                loop {
                    let got = rx.recv_timeout(wait);
                    wait = every;
                    match got {
                        Ok(Request::Stop { pgid, reply }) => {
                            let r = t
                                .exec(&kill_script(pgid), None)
                                .map(|o| o.stdout_str().trim().to_string())
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) if sampling => {
                            match t.exec(SAMPLE, None) {
                                Ok(out) if out.success() => {
                                    let text = out.stdout_str();
                                    let mut parts = text.split("@@\n");
                                    let meminfo = parts.next().unwrap_or("");
                                    let sockstat = parts.next().unwrap_or("");
                                    let stat = parts.next().unwrap_or("");
                                    let sample = HostSample {
                                        kernel: KernelSample::parse(meminfo, sockstat),
                                        cpu: cpu_times_from(stat),
                                    };
                                    let _ = events.send(Msg::Sample { host, sample });
                                }
                                Ok(_) => sampling = false,
                                Err(e) => {
                                    sampling = false;
                                    let _ = events.send(Msg::ControlLost {
                                        host,
                                        error: e.to_string(),
                                    });
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

    /// Asks the host to stop process group `pgid` and returns at once, so every host works on
    /// its groups at the same time; [`Stopping::answer`] waits for the outcome.
    pub fn stop_group(&self, pgid: u32) -> Stopping {
        if pgid <= 1 {
            return Stopping::Refused(format!("refusing to signal process group {pgid}"));
        }
        let (reply, answer) = mpsc::channel();
        match self.requests.send(Request::Stop { pgid, reply }) {
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
    /// `gone` (nothing was left), `terminated` or `killed`; an error after `deadline`.
    pub fn answer(self, deadline: std::time::Instant) -> Result<String, String> {
        match self {
            Stopping::Refused(why) => Err(why),
            Stopping::Asked(rx) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                rx.recv_timeout(left)
                    .map_err(|_| format!("no answer in {} s", STOP_TIMEOUT.as_secs()))?
            }
        }
    }
}

/// How long teardown waits for the hosts' answers to its group stops, all asked at once.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
