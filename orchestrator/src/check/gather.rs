//! Reaching the run's hosts: one connection to each (at most `forks` being opened at once) and
//! its facts, kept open for what follows (a run deploys and controls over them); the process
//! tree of a server under test (and nginx's configuration), read over such a connection.

use super::facts::{self, HostFacts};
use super::plan::run_hosts;
use super::server::{self, PidSource};
use super::server_tree::{self, TreeSample};
use c1m_ansible::connect::ConnectSettings;
use c1m_ansible::inventory::Inventory;
use c1m_transport::Transport;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A host's open connection and its facts, or why it could not be had.
pub type Reached = Result<(Box<dyn Transport>, HostFacts), String>;

/// Connects to every run host (server first, then clients) and reads its facts, `forks` hosts at
/// a time.
pub fn connect_and_gather(
    inv: &Inventory,
    conn: &ConnectSettings,
    forks: usize,
) -> Vec<(String, Reached)> {
    let hosts = run_hosts(inv);
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<Reached>> = hosts.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..forks.clamp(1, hosts.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(h) = hosts.get(i) else {
                            return mine;
                        };
                        let r = conn
                            .connect(h)
                            .map_err(|e| e.to_string())
                            .and_then(|mut t| match facts::gather(t.as_mut()) {
                                Ok(f) => Ok((t, f)),
                                Err(e) => Err(e.to_string()),
                            });
                        mine.push((i, r));
                    }
                })
            })
            .collect();
        for w in workers {
            // A panicking worker leaves its hosts unanswered; they are reported below.
            if let Ok(done) = w.join() {
                for (i, r) in done {
                    out[i] = Some(r);
                }
            }
        }
    });
    hosts
        .iter()
        .zip(out)
        .map(|(h, r)| {
            (
                h.name.clone(),
                r.unwrap_or_else(|| Err("fact gathering panicked".into())),
            )
        })
        .collect()
}

/// The facts alone, for a plan that is only printed.
pub fn facts_of(reached: &[(String, Reached)]) -> Vec<(String, Result<HostFacts, String>)> {
    reached
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                r.as_ref().map(|(_, f)| f.clone()).map_err(Clone::clone),
            )
        })
        .collect()
}

/// The pid `src` names on the host: itself, or the number in its pid file.
pub fn resolve_pid(t: &mut dyn Transport, src: &PidSource) -> Result<u32, String> {
    match src {
        PidSource::Pid(p) => Ok(*p),
        PidSource::File(path) => {
            let bytes = t
                .read_file(path)
                .map_err(|e| format!("reading the pid file {path}: {e}"))?
                .ok_or_else(|| format!("the pid file {path} does not exist"))?;
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
            text.trim()
                .parse::<u32>()
                .ok()
                .filter(|p| *p > 1)
                .ok_or_else(|| format!("the pid file {path} holds {:?}, not a pid", text.trim()))
        }
    }
}

/// The process tree of the server `src` names, its open descriptors counted.
pub fn server_tree(t: &mut dyn Transport, src: &PidSource) -> Result<(u32, TreeSample), String> {
    let pid = resolve_pid(t, src)?;
    read_tree(t, pid, true, None).map(|tree| (pid, tree))
}

/// One reading of the tree under `pid` (`count_fds`: its open descriptors too, which costs a
/// directory listing per process).
pub fn read_tree(
    t: &mut dyn Transport,
    pid: u32,
    count_fds: bool,
    clk_tck: Option<u64>,
) -> Result<TreeSample, String> {
    let out = t
        .exec(&server_tree::script(pid, count_fds, clk_tck), None)
        .map_err(|e| format!("reading /proc for pid {pid}: {e}"))?;
    server_tree::parse(&out.stdout_str()).ok_or_else(|| format!("no process {pid} on {}", t.host()))
}

/// The server under test measured from its tree (see [`server::measure`]), with the rule of a
/// server whose own ceiling is not its open-file limits, read from the configuration its master
/// runs: nginx's keep-alive reuse, apache's MaxRequestWorkers, haproxy's two descriptors a
/// connection and maxconn.
pub fn measure_server(t: &mut dyn Transport, tree: &TreeSample, root: u32) -> server::Measured {
    let mut m = server::measure(tree, root);
    if let Some(master) = server::nginx_master(&m, tree) {
        server::apply_nginx(&mut m, tree, super::nginx::read(t, master));
    } else if let Some((master, program)) = server::apache_master(&m, tree) {
        let conf = super::apache::read(t, master, &program);
        server::apply_apache(&mut m, conf);
    } else if let Some(master) = server::haproxy_master(&m, tree) {
        server::apply_haproxy(&mut m, tree, super::haproxy::read(t, master));
    }
    m
}
