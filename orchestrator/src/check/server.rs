//! The server under test: which server a run drives (`c1m-server`, a command c1m starts and
//! stops, or one already running), where it listens, how its process is found, and how many
//! connections its own open-file limits let it hold — the ceiling the preflight predicts.
//!
//! The server host's vars say it (`c1m_server_cmd`, `c1m_server_external`,
//! `c1m_server_address`, `c1m_server_ports`, `c1m_server_pid`, `c1m_server_pidfile`); the
//! command line's `--target`, `--server-cmd`, `--server-pid` and `--server-pidfile` are the same
//! vars set on the server host ([`ServerChoice::apply`]), so one check judges both and a hostile
//! value is a finding before anything runs. It does not start, stop or sample anything: the run
//! engine does, with what this module decided.

use super::apache::ApacheConf;
use super::capacity::Finding;
use super::haproxy::{self, HaproxyConf};
use super::nginx::{self, NginxConf};
use super::server_tree::TreeSample;
use c1m_ansible::inventory::Host;
use c1m_proto::fmt;
use c1m_rundir::{ProcessLimit, ServerKind};
use serde::Serialize;
use serde_json::Value;

/// How the server's root process is found when c1m does not start it itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PidSource {
    Pid(u32),
    /// A file on the server host holding the pid (read when the server is measured).
    File(String),
}

/// Which server the run drives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum UnderTest {
    /// `c1m-server`, deployed, started and stopped by the run.
    C1mServer,
    /// A shell command c1m starts on the server host in a process group of its own (inside the
    /// run's network namespace on a local run) and stops by that group at teardown. `pid`
    /// names the process to measure when it is not the command's own (a server that forks
    /// into the background).
    Command { cmd: String, pid: Option<PidSource> },
    /// Already running: nothing is started or stopped; measured when its pid is known.
    External { pid: Option<PidSource> },
}

impl UnderTest {
    pub fn kind(&self) -> ServerKind {
        match self {
            UnderTest::C1mServer => ServerKind::C1mServer,
            UnderTest::Command { .. } => ServerKind::Command,
            UnderTest::External { .. } => ServerKind::External,
        }
    }

    /// The command c1m starts, if it starts one other than c1m-server.
    pub fn command(&self) -> Option<&str> {
        match self {
            UnderTest::Command { cmd, .. } => Some(cmd),
            _ => None,
        }
    }

    pub fn pid_source(&self) -> Option<&PidSource> {
        match self {
            UnderTest::C1mServer => None,
            UnderTest::Command { pid, .. } | UnderTest::External { pid } => pid.as_ref(),
        }
    }

    /// How messages name it before its program is known.
    pub fn label(&self) -> String {
        match self {
            UnderTest::C1mServer => "c1m-server".into(),
            UnderTest::Command { cmd, .. } => program_of(cmd),
            UnderTest::External { .. } => "the server".into(),
        }
    }
}

/// The program a command line starts: its first word's file name (`nginx` for
/// `/usr/sbin/nginx -c …`), skipping `env`/`exec` and variable assignments.
pub fn program_of(cmd: &str) -> String {
    cmd.split_whitespace()
        .find(|w| !w.contains('=') && !matches!(*w, "exec" | "env" | "nice" | "setsid"))
        .map(|w| w.rsplit('/').next().unwrap_or(w).to_string())
        .unwrap_or_else(|| "the server".into())
}

/// The server of a plan: what runs, and on which ports.
#[derive(Debug, Clone, Serialize)]
pub struct ServerPlan {
    pub under_test: UnderTest,
    pub first_port: u16,
    pub port_count: u16,
    /// Its process tree as the preflight read it (an external server with a known pid).
    pub measured: Option<Measured>,
}

impl ServerPlan {
    /// `8080` or `20000-20019`.
    pub fn ports(&self) -> String {
        ports_text(self.first_port, self.port_count)
    }
}

pub fn ports_text(first: u16, count: u16) -> String {
    if count <= 1 {
        first.to_string()
    } else {
        format!("{first}-{}", u32::from(first) + u32::from(count) - 1)
    }
}

/// `--target HOST:PORT[-PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub first_port: u16,
    pub port_count: u16,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        let (host, ports) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not HOST:PORT or HOST:FIRST-LAST"))?;
        if host.is_empty() {
            return Err(format!("`{s}` has no host before the `:`"));
        }
        let (first_port, port_count) = parse_ports(ports).map_err(|e| format!("`{s}`: {e}"))?;
        Ok(Target {
            host: host.trim_matches(['[', ']']).to_string(),
            first_port,
            port_count,
        })
    }
}

/// Most ports one server is driven on.
pub const MAX_PORTS: u16 = 1024;

/// `PORT` or `FIRST-LAST`: (first, count).
pub fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{p}` is not a port (1-65535)"))
    };
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(s)?, port(s)?),
    };
    if last < first {
        return Err(format!("the port range {first}-{last} runs backwards"));
    }
    let count = last - first + 1;
    if count > MAX_PORTS {
        return Err(format!(
            "{count} ports is more than {MAX_PORTS}, the most one server is driven on"
        ));
    }
    Ok((first, count))
}

/// What the command line says about the server: set as the server host's vars, over what the
/// inventory says.
#[derive(Debug, Clone, Default)]
pub struct ServerChoice {
    pub target: Option<Target>,
    pub cmd: Option<String>,
    pub pid: Option<u32>,
    pub pidfile: Option<String>,
}

impl ServerChoice {
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.cmd.is_none() && self.pid.is_none() && self.pidfile.is_none()
    }

    /// Sets the vars on `server`. A target without a command is a server that is already
    /// running.
    pub fn apply(&self, server: &mut Host) {
        let mut set = |k: &str, v: Value| {
            server.vars.insert(k.into(), v);
        };
        if let Some(t) = &self.target {
            set("c1m_server_address", Value::String(t.host.clone()));
            set(
                "c1m_server_ports",
                Value::String(ports_text(t.first_port, t.port_count)),
            );
            if self.cmd.is_none() {
                set("c1m_server_external", Value::Bool(true));
            }
        }
        if let Some(c) = &self.cmd {
            set("c1m_server_cmd", Value::String(c.clone()));
            set("c1m_server_external", Value::Bool(false));
        }
        if let Some(p) = self.pid {
            set("c1m_server_pid", Value::from(p));
        }
        if let Some(f) = &self.pidfile {
            set("c1m_server_pidfile", Value::String(f.clone()));
        }
    }
}

/// A blocking finding about a host var.
fn bad(var: &str, found: &Value, needed: &str, host: &str) -> Finding {
    Finding {
        setting: var.into(),
        found: found.to_string(),
        needed: needed.into(),
        fix: format!("correct {var} of host {host} (or the flag that sets it)"),
        blocks: true,
        stops_near: None,
    }
}

/// Text with no control character (a newline would end the command c1m wraps it in).
fn clean_text(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_control() && c != '\t')
}

/// Ansible's booleans: true/false, yes/no, on/off, 1/0, as YAML or as strings.
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().filter(|n| *n <= 1).map(|n| n == 1),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Largest pid Linux hands out (`pid_max` can be at most 2^22).
const PID_MAX: u64 = 1 << 22;

/// Reads the server host's vars into the server's plan; every unusable value is a finding.
/// `ports` is the run's `--first-port`/`--port-count`, used unless `c1m_server_ports` says.
pub fn from_vars(host: &Host, ports: (u16, u16), findings: &mut Vec<Finding>) -> ServerPlan {
    let name = &host.name;
    let get = |k: &str| host.vars.get(k).filter(|v| !v.is_null());
    let cmd = match get("c1m_server_cmd") {
        None => None,
        Some(Value::String(s)) if clean_text(s.trim()) => Some(s.trim().to_string()),
        Some(v) => {
            findings.push(bad(
                "c1m_server_cmd",
                v,
                "a shell command on one line, without control characters",
                name,
            ));
            None
        }
    };
    let external = match get("c1m_server_external") {
        None => false,
        Some(v) => boolean(v).unwrap_or_else(|| {
            findings.push(bad("c1m_server_external", v, "true or false", name));
            false
        }),
    };
    let pid = match (get("c1m_server_pid"), get("c1m_server_pidfile")) {
        (Some(_), Some(_)) => {
            findings.push(bad(
                "c1m_server_pidfile",
                &Value::String("set together with c1m_server_pid".into()),
                "one of c1m_server_pid and c1m_server_pidfile",
                name,
            ));
            None
        }
        (Some(v), None) => {
            let n = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|n| (2..=PID_MAX).contains(n));
            if n.is_none() {
                findings.push(bad(
                    "c1m_server_pid",
                    v,
                    "a process id (2 to 4194304)",
                    name,
                ));
            }
            n.map(|n| PidSource::Pid(n as u32))
        }
        (None, Some(v)) => match v.as_str() {
            Some(p) if p.starts_with('/') && clean_text(p) => Some(PidSource::File(p.into())),
            _ => {
                findings.push(bad(
                    "c1m_server_pidfile",
                    v,
                    "an absolute path on the server host",
                    name,
                ));
                None
            }
        },
        (None, None) => None,
    };
    let (first_port, port_count) = match get("c1m_server_ports") {
        None => ports,
        Some(v) => {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            parse_ports(&text).unwrap_or_else(|e| {
                findings.push(bad(
                    "c1m_server_ports",
                    v,
                    &format!("PORT or FIRST-LAST ({e})"),
                    name,
                ));
                ports
            })
        }
    };
    let under_test = match (cmd, external) {
        (Some(_), true) => {
            findings.push(bad(
                "c1m_server_external",
                &Value::Bool(true),
                "false when c1m_server_cmd is set (c1m starts that command; an external server is already running)",
                name,
            ));
            UnderTest::External { pid }
        }
        (Some(cmd), false) => UnderTest::Command { cmd, pid },
        (None, true) => UnderTest::External { pid },
        (None, false) => {
            if pid.is_some() {
                findings.push(bad(
                    "c1m_server_pid",
                    get("c1m_server_pid")
                        .or(get("c1m_server_pidfile"))
                        .unwrap_or(&Value::Null),
                    "a server other than c1m-server (c1m_server_cmd or c1m_server_external: true)",
                    name,
                ));
            }
            UnderTest::C1mServer
        }
    };
    ServerPlan {
        under_test,
        first_port,
        port_count,
        measured: None,
    }
}

/// The server's process tree as read before the clients start: each process's open-file limit,
/// and how many connections those let it hold.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub name: String,
    pub pid: u32,
    pub processes: u64,
    pub threads: u64,
    pub limits: Vec<ProcessLimit>,
    /// The processes that hold connections (see [`holders`]).
    pub holders: Vec<u32>,
    /// `None` when a holder's limit is unlimited or unreadable.
    pub ceiling: Option<u64>,
    /// What bounds the ceiling besides the open-file limits.
    pub rule: CeilingRule,
}

/// What the ceiling comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CeilingRule {
    /// Each holder's open-file limit, nothing else known.
    OpenFiles,
    /// nginx, its `worker_connections` read: each worker holds the lesser of what its
    /// open-file limit and nginx's keep-alive reuse rule allow.
    NginxReuse(KeepaliveReuse),
    /// nginx, but its configuration could not be read: the open-file limits alone.
    NginxUnread { error: String },
    /// apache with a process- or thread-per-connection MPM (prefork, worker): it serves at most
    /// MaxRequestWorkers connections at once, whatever its open-file limits allow.
    ApacheWorkers(ApacheWorkers),
    /// apache whose configuration could not be read: one connection per worker process, how
    /// many workers unknown, so no ceiling is predicted (its open-file limits would be far off).
    ApacheUnread { error: String },
    /// haproxy: two descriptors per client connection, and its global maxconn.
    Haproxy(HaproxyLimit),
}

/// apache's MaxRequestWorkers applied to the measured tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApacheWorkers {
    /// `apache2` or `httpd`.
    pub program: String,
    pub conf: ApacheConf,
    /// The tree's open-file room summed: what the ceiling would be without the rule.
    pub fd_ceiling: Option<u64>,
}

impl ApacheWorkers {
    /// The sentence that names the rule, its figure and where it was read.
    pub fn sentence(&self) -> String {
        format!(
            "{} ({} MPM) serves one connection per {}: at most {} at once by {} (from {})",
            self.program,
            self.conf.mpm,
            self.conf.unit(),
            fmt::int(self.conf.max_workers),
            self.conf.directive,
            self.conf.source
        )
    }
}

/// haproxy's two descriptors a connection and its maxconn, applied to the measured tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HaproxyLimit {
    /// Its processes' open-file room (soft limit less what is open), halved: one descriptor for
    /// the client, one for the backend. `None` when unlimited or unreadable.
    pub fd_ceiling: Option<u64>,
    /// Its processes' soft RLIMIT_NOFILE.
    pub nofile_soft: Vec<u64>,
    /// What the configuration says, or why it could not be read.
    pub conf: Result<HaproxyConf, String>,
}

impl HaproxyLimit {
    pub fn maxconn(&self) -> Option<u64> {
        self.conf.as_ref().ok().and_then(|c| c.maxconn)
    }

    /// Whether maxconn, not the open-file limit, sets the ceiling.
    pub fn maxconn_binds(&self) -> bool {
        match (self.maxconn(), self.fd_ceiling) {
            (Some(m), Some(f)) => m < f,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The directive a person raises: `maxconn` or RLIMIT_NOFILE.
    pub fn binding(&self) -> &'static str {
        if self.maxconn_binds() {
            "maxconn"
        } else {
            "RLIMIT_NOFILE"
        }
    }

    /// The sentence that names both bounds and which one binds.
    pub fn sentence(&self) -> String {
        let soft: Vec<String> = self.nofile_soft.iter().map(|s| fmt::int(*s)).collect();
        let fds = format!(
            "haproxy holds {} descriptors per connection (the client's and the backend's): its RLIMIT_NOFILE (soft {}) allows about {}",
            haproxy::FDS_PER_CONNECTION,
            soft.join(", "),
            self.fd_ceiling.map_or("an unlimited number".into(), fmt::int)
        );
        match &self.conf {
            Ok(HaproxyConf {
                maxconn: Some(m),
                source,
            }) => format!(
                "{fds}; its global maxconn {} (from {source}) {}",
                fmt::int(*m),
                if self.maxconn_binds() {
                    "is lower and stops it first"
                } else {
                    "allows more"
                }
            ),
            Ok(HaproxyConf {
                maxconn: None,
                source,
            }) => {
                format!("{fds}; no global maxconn in {source} (haproxy derives it from that limit)")
            }
            Err(e) => format!("{fds}; maxconn unread ({e})"),
        }
    }
}

/// nginx's keep-alive reuse rule applied to the measured workers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeepaliveReuse {
    pub conf: NginxConf,
    /// What the smallest worker holds before nginx closes idle keep-alive connections.
    pub per_worker: u64,
    /// The workers' open-file room summed: the ceiling without the rule.
    pub fd_ceiling: Option<u64>,
}

impl KeepaliveReuse {
    /// Whether the rule, not the open-file limits, sets the ceiling.
    pub fn binds(&self, ceiling: Option<u64>) -> bool {
        ceiling.is_some() && ceiling != self.fd_ceiling
    }

    /// The sentence that names the rule.
    pub fn sentence(&self) -> String {
        format!(
            "nginx reuses idle keep-alive connections when fewer than 1/16 of worker_connections \
             {} are free: about {} held per worker",
            fmt::int(self.conf.worker_connections),
            fmt::int(self.per_worker)
        )
    }
}

/// The process whose configuration nginx's workers run: the tree's first (oldest) `nginx`,
/// its master; `None` when the server is not nginx.
pub fn nginx_master(m: &Measured, tree: &TreeSample) -> Option<u32> {
    (m.name == "nginx")
        .then(|| tree.processes.iter().find(|p| p.comm == "nginx"))
        .flatten()
        .map(|p| p.pid)
}

/// Applies nginx's keep-alive reuse rule (see [`nginx`]) to what `m`'s workers can hold, with
/// `conf` as read from the server host.
pub fn apply_nginx(m: &mut Measured, tree: &TreeSample, conf: Result<NginxConf, String>) {
    let conf = match conf {
        Ok(c) => c,
        Err(error) => {
            m.rule = CeilingRule::NginxUnread { error };
            return;
        }
    };
    let holding = holders(tree);
    // A worker's own connection objects (listeners, channel) are among its open descriptors.
    let reuse = |p: &super::server_tree::TreeProcess| {
        nginx::held_per_worker(conf.worker_connections, p.open_fds.unwrap_or(0))
    };
    let per_worker = holding.iter().map(|p| reuse(p)).min().unwrap_or(0);
    let fd_ceiling = m.ceiling;
    let room = |p: &super::server_tree::TreeProcess| {
        p.nofile
            .map(|(soft, _)| soft.saturating_sub(p.open_fds.unwrap_or(0)))
            .unwrap_or(u64::MAX)
    };
    m.ceiling = Some(holding.iter().map(|p| room(p).min(reuse(p))).sum());
    m.rule = CeilingRule::NginxReuse(KeepaliveReuse {
        conf,
        per_worker,
        fd_ceiling,
    });
}

/// The first process of the tree named `names` whose parent is not: a server's master, whose
/// command line says which configuration it runs.
fn master_of(tree: &TreeSample, names: &[&str]) -> Option<u32> {
    let named = |pid: u32| {
        tree.processes
            .iter()
            .any(|p| p.pid == pid && names.contains(&p.comm.as_str()))
    };
    tree.processes
        .iter()
        .find(|p| names.contains(&p.comm.as_str()) && !named(p.ppid))
        .map(|p| p.pid)
}

/// apache's master and its program (`apache2` on Debian, `httpd` elsewhere); `None` when the
/// server is not apache.
pub fn apache_master(m: &Measured, tree: &TreeSample) -> Option<(u32, String)> {
    let names = ["apache2", "httpd"];
    names
        .contains(&m.name.as_str())
        .then(|| master_of(tree, &names))
        .flatten()
        .map(|pid| (pid, m.name.clone()))
}

/// Applies apache's MaxRequestWorkers to `m`: with prefork or worker the ceiling is the most
/// workers, not the open-file room of processes that each serve one connection (summed over a
/// tree read while apache forks, that room is hundreds of millions). The event MPM holds idle
/// keep-alive connections off its workers: its open-file limits stay the estimate.
pub fn apply_apache(m: &mut Measured, conf: Result<ApacheConf, String>) {
    match conf {
        Ok(conf) if conf.per_connection() => {
            let fd_ceiling = m.ceiling;
            m.ceiling = Some(conf.max_workers);
            m.rule = CeilingRule::ApacheWorkers(ApacheWorkers {
                program: m.name.clone(),
                conf,
                fd_ceiling,
            });
        }
        Ok(_) => {}
        Err(error) => {
            m.ceiling = None;
            m.rule = CeilingRule::ApacheUnread { error };
        }
    }
}

/// haproxy's first process (the master of `-W`, or the only one); `None` when the server is not
/// haproxy.
pub fn haproxy_master(m: &Measured, tree: &TreeSample) -> Option<u32> {
    (m.name == "haproxy")
        .then(|| master_of(tree, &["haproxy"]))
        .flatten()
}

/// Applies haproxy's rule: the haproxy processes that hold connections (those without a haproxy
/// child: the worker of `-W`, or the only one — never a backend started beside it in the same
/// command) hold half their open-file room, and at most maxconn.
pub fn apply_haproxy(m: &mut Measured, tree: &TreeSample, conf: Result<HaproxyConf, String>) {
    let ours = |p: &&super::server_tree::TreeProcess| p.comm == "haproxy";
    let holding: Vec<&super::server_tree::TreeProcess> = tree
        .processes
        .iter()
        .filter(ours)
        .filter(|p| {
            !tree
                .processes
                .iter()
                .any(|c| c.ppid == p.pid && c.comm == "haproxy")
        })
        .collect();
    let fd_ceiling = holding.iter().try_fold(0u64, |sum, p| {
        let (soft, _) = p.nofile?;
        (soft != u64::MAX).then(|| {
            sum + soft.saturating_sub(p.open_fds.unwrap_or(0)) / haproxy::FDS_PER_CONNECTION
        })
    });
    let rule = HaproxyLimit {
        fd_ceiling,
        nofile_soft: holding
            .iter()
            .filter_map(|p| p.nofile.map(|n| n.0))
            .collect(),
        conf,
    };
    m.ceiling = match (fd_ceiling, rule.maxconn()) {
        (Some(f), Some(c)) => Some(f.min(c)),
        (f, c) => f.or(c),
    };
    m.holders = holding.iter().map(|p| p.pid).collect();
    m.rule = CeilingRule::Haproxy(rule);
}

/// The server's program: the first process of the tree that is not a shell (a command runs
/// under `sh -c`), else the root's.
fn program(tree: &TreeSample, root: u32) -> String {
    let shells = ["sh", "dash", "bash", "setsid", "ip"];
    tree.processes
        .iter()
        .find(|p| !shells.contains(&p.comm.as_str()))
        .or_else(|| tree.processes.iter().find(|p| p.pid == root))
        .map(|p| p.comm.clone())
        .unwrap_or_else(|| "the server".into())
}

/// The processes that hold connections: the tree's leaves (nginx's workers, apache's children,
/// a single-process server itself; never a master that only forks, nor the shell a command
/// runs under).
fn holders(tree: &TreeSample) -> Vec<&super::server_tree::TreeProcess> {
    tree.processes
        .iter()
        .filter(|p| !tree.processes.iter().any(|c| c.ppid == p.pid))
        .collect()
}

/// What `tree` (rooted at `root`) can hold: each holder's soft limit less the descriptors it
/// already has open, summed.
pub fn measure(tree: &TreeSample, root: u32) -> Measured {
    let limits: Vec<ProcessLimit> = tree
        .processes
        .iter()
        .map(|p| ProcessLimit {
            pid: p.pid,
            comm: p.comm.clone(),
            nofile_soft: p.nofile.map_or(0, |l| l.0),
            nofile_hard: p.nofile.map_or(0, |l| l.1),
            open_fds: p.open_fds.unwrap_or(0),
        })
        .collect();
    let holding = holders(tree);
    let ceiling = holding.iter().try_fold(0u64, |sum, p| {
        let (soft, _) = p.nofile?;
        (soft != u64::MAX).then(|| sum + soft.saturating_sub(p.open_fds.unwrap_or(0)))
    });
    Measured {
        name: program(tree, root),
        pid: root,
        processes: tree.processes.len() as u64,
        threads: tree.threads(),
        limits,
        holders: holding.iter().map(|p| p.pid).collect(),
        ceiling,
        rule: CeilingRule::OpenFiles,
    }
}

/// How a server raises the limit that caps it: its own setting where it has one.
fn fix_for(program: &str, need: u64) -> String {
    let raise = format!(
        "start it with a higher open-file limit (`ulimit -n {need}`, LimitNOFILE={need} in its \
         systemd unit; the hard limit itself: c1m provision or /etc/security/limits.d)"
    );
    match program {
        "nginx" => format!("raise worker_rlimit_nofile and worker_connections, or add worker_processes; {raise}"),
        "redis-server" => format!("raise maxclients (redis raises its soft limit to maxclients + 32, up to the hard limit); {raise}"),
        "memcached" => format!("raise -c (memcached sets its limit to it), within the hard limit; {raise}"),
        "mosquitto" => format!("mosquitto raises its soft limit to the hard one: {raise}"),
        "haproxy" => format!("raise maxconn (haproxy sizes its limit from it); {raise}"),
        _ => raise,
    }
}

/// The preflight's judgement of a measured server against the run's connections: blocks when
/// its limits stop it short of the target, naming the server and the fix.
pub fn ceiling_finding(m: &Measured, connections: u64) -> Finding {
    let holders: Vec<&ProcessLimit> = m
        .limits
        .iter()
        .filter(|l| m.holders.contains(&l.pid))
        .collect();
    let softs: Vec<u64> = holders.iter().map(|l| l.nofile_soft).collect();
    let (lo, hi) = (
        softs.iter().min().copied().unwrap_or(0),
        softs.iter().max().copied().unwrap_or(0),
    );
    let hard = holders.iter().map(|l| l.nofile_hard).max().unwrap_or(0);
    let soft_text = if lo == hi {
        fmt::int(lo)
    } else {
        format!("{}–{}", fmt::int(lo), fmt::int(hi))
    };
    let found = format!(
        "soft {soft_text}, hard {} in {} process(es) holding connections (pid {}) → at most {}",
        fmt::int(hard),
        holders.len(),
        m.pid,
        m.ceiling
            .map_or("an unlimited number of".into(), |c| format!(
                "{} connections",
                fmt::int(c)
            ))
    );
    let blocks = m.ceiling.is_some_and(|c| c < connections);
    match &m.rule {
        CeilingRule::NginxReuse(r) if r.binds(m.ceiling) => {
            return reuse_finding(m, r, holders.len(), connections);
        }
        CeilingRule::ApacheWorkers(a) => return apache_finding(m, a, connections),
        CeilingRule::ApacheUnread { error } => {
            return Finding {
                setting: format!("{}'s MaxRequestWorkers (server under test)", m.name),
                found: format!(
                    "{} (pid {}) serves one connection per worker process; how many workers it may start is unknown: {error}",
                    m.name, m.pid
                ),
                needed: format!("room for {} connections", fmt::int(connections)),
                fix: String::new(),
                blocks: false,
                stops_near: None,
            };
        }
        CeilingRule::Haproxy(h) => return haproxy_finding(m, h, connections),
        _ => {}
    }
    let found = match &m.rule {
        CeilingRule::NginxReuse(r) => format!(
            "{found}; worker_connections {} allows more",
            fmt::int(r.conf.worker_connections)
        ),
        CeilingRule::NginxUnread { error } => {
            format!("{found}; worker_connections unread ({error})")
        }
        _ => found,
    };
    Finding {
        setting: format!("{}'s RLIMIT_NOFILE (server under test)", m.name),
        found,
        needed: format!("room for {} connections", fmt::int(connections)),
        fix: if blocks {
            format!(
                "the run will stop near {} connections: {}",
                fmt::int(m.ceiling.unwrap_or(0)),
                fix_for(&m.name, connections + 64)
            )
        } else {
            String::new()
        },
        blocks,
        stops_near: None,
    }
}

/// The finding when nginx's keep-alive reuse rule, not its open-file limit, sets the ceiling.
fn reuse_finding(m: &Measured, r: &KeepaliveReuse, workers: usize, connections: u64) -> Finding {
    let ceiling = m.ceiling.unwrap_or(0);
    let blocks = ceiling < connections;
    Finding {
        setting: "nginx's worker_connections (server under test)".into(),
        found: format!(
            "{} × {workers} worker(s) (pid {}) → at most {} connections (RLIMIT_NOFILE alone: {}; from {})",
            r.sentence(),
            m.pid,
            fmt::int(ceiling),
            r.fd_ceiling.map_or("no limit".into(), fmt::int),
            r.conf.source
        ),
        needed: format!("room for {} connections", fmt::int(connections)),
        fix: if blocks {
            format!(
                "the run will stop near {}: nginx closes idle keep-alive connections past it; \
                 raise worker_connections in the events block (worker_rlimit_nofile with it), \
                 or add worker_processes",
                fmt::int(ceiling)
            )
        } else {
            String::new()
        },
        blocks,
        stops_near: None,
    }
}

/// The finding for apache: MaxRequestWorkers, not its open-file limits, sets the ceiling.
fn apache_finding(m: &Measured, a: &ApacheWorkers, connections: u64) -> Finding {
    let ceiling = a.conf.max_workers;
    let blocks = ceiling < connections;
    Finding {
        setting: format!("{}'s MaxRequestWorkers (server under test)", a.program),
        found: format!(
            "{} (pid {}) → at most {} connections (RLIMIT_NOFILE alone: {})",
            a.sentence(),
            m.pid,
            fmt::int(ceiling),
            a.fd_ceiling.map_or("no limit".into(), fmt::int)
        ),
        needed: format!("room for {} connections", fmt::int(connections)),
        fix: if blocks {
            format!(
                "the run will stop near {}: connections past it complete the TCP handshake in the \
                 kernel but are never answered; raise MaxRequestWorkers (ServerLimit with it{}) \
                 in {}",
                fmt::int(ceiling),
                if a.conf.mpm == "prefork" {
                    ""
                } else {
                    ", or ThreadsPerChild"
                },
                a.conf.source
            )
        } else {
            String::new()
        },
        blocks,
        stops_near: None,
    }
}

/// The finding for haproxy: half its open-file room, or its maxconn when lower.
fn haproxy_finding(m: &Measured, h: &HaproxyLimit, connections: u64) -> Finding {
    let blocks = m.ceiling.is_some_and(|c| c < connections);
    let need = connections + 64;
    Finding {
        setting: format!("haproxy's {} (server under test)", h.binding()),
        found: format!(
            "{} (pid {}) → at most {}",
            h.sentence(),
            m.pid,
            m.ceiling
                .map_or("an unlimited number of connections".into(), |c| format!(
                    "{} connections",
                    fmt::int(c)
                ))
        ),
        needed: format!("room for {} connections", fmt::int(connections)),
        fix: if blocks {
            format!(
                "the run will stop near {}: raise maxconn in haproxy's global section to {} and \
                 start it with an open-file limit of at least {} (`ulimit -n`, LimitNOFILE= in its \
                 systemd unit; haproxy raises its soft limit from maxconn up to the hard one)",
                fmt::int(m.ceiling.unwrap_or(0)),
                fmt::int(connections),
                fmt::int(need * haproxy::FDS_PER_CONNECTION)
            )
        } else {
            String::new()
        },
        blocks,
        stops_near: None,
    }
}

/// Before a command is started, all that is known is the limit it inherits on its host.
pub fn inherited_finding(program: &str, soft: Option<u64>, hard: Option<u64>) -> Finding {
    let n = |v: Option<u64>| v.map_or("unknown".to_string(), fmt::int);
    Finding {
        setting: format!("{program}'s RLIMIT_NOFILE (inherited)"),
        found: format!("soft {}, hard {}", n(soft), n(hard)),
        needed: "its own limits, read from /proc once it listens".into(),
        fix: String::new(),
        blocks: false,
        stops_near: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::server_tree::TreeProcess;
    use super::*;

    fn host(vars: &[(&str, Value)]) -> Host {
        let mut h = Host {
            name: "srv".into(),
            groups: vec![],
            vars: Default::default(),
            own: Default::default(),
        };
        for (k, v) in vars {
            h.vars.insert((*k).into(), v.clone());
        }
        h
    }

    fn plan(vars: &[(&str, Value)]) -> (ServerPlan, Vec<String>) {
        let mut f = Vec::new();
        let p = from_vars(&host(vars), (20000, 20), &mut f);
        (p, f.into_iter().map(|f| f.setting).collect())
    }

    #[test]
    fn targets_and_port_ranges() {
        let t: Target = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.first_port, t.port_count),
            ("127.0.0.1", 8080, 1)
        );
        let t: Target = "localhost:9000-9009".parse().unwrap();
        assert_eq!((t.first_port, t.port_count), (9000, 10));
        for bad in [
            "127.0.0.1",
            ":80",
            "h:0",
            "h:70000",
            "h:9-8",
            "h:1-2000",
            "h:x",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_server_host_vars_choose_the_server() {
        assert_eq!(plan(&[]).0.under_test, UnderTest::C1mServer);
        let (p, f) = plan(&[
            ("c1m_server_cmd", Value::from("nginx -c /etc/x.conf")),
            ("c1m_server_ports", Value::from(8080)),
        ]);
        assert!(f.is_empty());
        assert_eq!((p.first_port, p.port_count), (8080, 1));
        assert_eq!(p.under_test.command(), Some("nginx -c /etc/x.conf"));
        let (p, f) = plan(&[
            ("c1m_server_external", Value::from("yes")),
            ("c1m_server_pid", Value::from("4242")),
            ("c1m_server_ports", Value::from("6379-6380")),
        ]);
        assert!(f.is_empty());
        assert_eq!(
            p.under_test,
            UnderTest::External {
                pid: Some(PidSource::Pid(4242))
            }
        );
        assert_eq!(p.ports(), "6379-6380");
    }

    #[test]
    fn hostile_values_are_findings() {
        for (vars, var) in [
            (
                vec![("c1m_server_cmd", Value::from("nginx\nrm -rf /"))],
                "c1m_server_cmd",
            ),
            (vec![("c1m_server_cmd", Value::from(""))], "c1m_server_cmd"),
            (vec![("c1m_server_cmd", Value::from(7))], "c1m_server_cmd"),
            (
                vec![("c1m_server_external", Value::from("maybe"))],
                "c1m_server_external",
            ),
            (
                vec![
                    ("c1m_server_external", Value::from(true)),
                    ("c1m_server_pid", Value::from("1; reboot")),
                ],
                "c1m_server_pid",
            ),
            (
                vec![
                    ("c1m_server_external", Value::from(true)),
                    ("c1m_server_pid", Value::from(1)),
                ],
                "c1m_server_pid",
            ),
            (
                vec![
                    ("c1m_server_external", Value::from(true)),
                    ("c1m_server_pidfile", Value::from("run/x.pid")),
                ],
                "c1m_server_pidfile",
            ),
            (
                vec![("c1m_server_ports", Value::from("80;ls"))],
                "c1m_server_ports",
            ),
            (
                vec![
                    ("c1m_server_cmd", Value::from("redis-server")),
                    ("c1m_server_external", Value::from(true)),
                ],
                "c1m_server_external",
            ),
            (
                vec![("c1m_server_pid", Value::from(4242))],
                "c1m_server_pid",
            ),
        ] {
            let (_, f) = plan(&vars);
            assert_eq!(f, [var], "{vars:?}");
        }
    }

    #[test]
    fn the_command_line_sets_the_same_vars() {
        let mut h = host(&[("c1m_server_cmd", Value::from("old"))]);
        ServerChoice {
            target: Some("127.0.0.1:6379".parse().unwrap()),
            ..Default::default()
        }
        .apply(&mut h);
        let mut f = Vec::new();
        let p = from_vars(&h, (20000, 20), &mut f);
        // A target alone is a server that already runs: and c1m_server_cmd with it is refused.
        assert_eq!(f.len(), 1);
        assert!(matches!(p.under_test, UnderTest::External { .. }));
        let mut h = host(&[]);
        ServerChoice {
            target: Some("127.0.0.1:6379".parse().unwrap()),
            cmd: Some("redis-server --port 6379".into()),
            ..Default::default()
        }
        .apply(&mut h);
        let mut f = Vec::new();
        let p = from_vars(&h, (20000, 20), &mut f);
        assert!(f.is_empty());
        assert_eq!(program_of(p.under_test.command().unwrap()), "redis-server");
    }

    fn proc(pid: u32, ppid: u32, comm: &str, soft: u64, open: u64) -> TreeProcess {
        TreeProcess {
            pid,
            ppid,
            comm: comm.into(),
            threads: 1,
            nofile: Some((soft, 20_000)),
            open_fds: Some(open),
            ..Default::default()
        }
    }

    #[test]
    fn the_ceiling_is_what_the_workers_can_still_open() {
        // sh → nginx master → two workers: only the workers hold connections.
        let tree = TreeSample {
            processes: vec![
                proc(10, 1, "sh", 1024, 3),
                proc(11, 10, "nginx", 1024, 8),
                proc(12, 11, "nginx", 8000, 10),
                proc(13, 11, "nginx", 8000, 10),
            ],
            clk_tck: 100,
        };
        let m = measure(&tree, 10);
        assert_eq!((m.name.as_str(), m.ceiling), ("nginx", Some(15_980)));
        let f = ceiling_finding(&m, 20_000);
        assert!(f.blocks && f.fix.contains("15,980") && f.fix.contains("worker_rlimit_nofile"));
        assert!(!ceiling_finding(&m, 10_000).blocks);
        let one = TreeSample {
            processes: vec![proc(20, 1, "redis-server", 10_032, 7)],
            clk_tck: 100,
        };
        assert_eq!(measure(&one, 20).ceiling, Some(10_025));
        let mut open = one.clone();
        open.processes[0].nofile = Some((u64::MAX, u64::MAX));
        assert_eq!(measure(&open, 20).ceiling, None);
    }

    fn nginx_tree(soft: u64) -> TreeSample {
        TreeSample {
            processes: vec![
                proc(11, 1, "nginx", 1024, 8),
                proc(12, 11, "nginx", soft, 12),
                proc(13, 11, "nginx", soft, 12),
            ],
            clk_tck: 100,
        }
    }

    fn conf(wc: u64) -> Result<NginxConf, String> {
        Ok(NginxConf {
            worker_connections: wc,
            source: "nginx -T -c /x.conf".into(),
        })
    }

    #[test]
    fn nginx_holds_what_its_keepalive_reuse_rule_leaves() {
        // Room for 1,076 open files a worker, but 1,024 worker_connections less 1/16 less 12.
        let tree = nginx_tree(1088);
        let mut m = measure(&tree, 11);
        assert_eq!(nginx_master(&m, &tree), Some(11));
        apply_nginx(&mut m, &tree, conf(1024));
        assert_eq!(m.ceiling, Some(2 * 948));
        let f = ceiling_finding(&m, 3000);
        assert!(f.blocks, "{f}");
        assert_eq!(f.setting, "nginx's worker_connections (server under test)");
        assert!(
            f.found.contains(
                "nginx reuses idle keep-alive connections when fewer than 1/16 of \
                 worker_connections 1,024 are free: about 948 held per worker"
            ) && f.found.contains("RLIMIT_NOFILE alone: 2,152"),
            "{f}"
        );
        assert!(f.fix.contains("stop near 1,896"), "{f}");
        assert!(!ceiling_finding(&m, 1800).blocks);
        // A lower open-file limit binds first: the finding stays RLIMIT_NOFILE's.
        let tree = nginx_tree(512);
        let mut m = measure(&tree, 11);
        apply_nginx(&mut m, &tree, conf(1024));
        assert_eq!(m.ceiling, Some(2 * 500));
        let f = ceiling_finding(&m, 3000);
        assert!(f.setting.contains("RLIMIT_NOFILE") && f.found.contains("1,024 allows more"));
        // Unread configuration: the open-file limits alone, and the finding says why.
        let mut m = measure(&tree, 11);
        apply_nginx(&mut m, &tree, Err("nginx -T failed".into()));
        assert_eq!(m.ceiling, Some(1000));
        assert!(ceiling_finding(&m, 3000)
            .found
            .contains("worker_connections unread"));
        // Not nginx: no master to read.
        let one = TreeSample {
            processes: vec![proc(20, 1, "redis-server", 10_032, 7)],
            clk_tck: 100,
        };
        assert_eq!(nginx_master(&measure(&one, 20), &one), None);
    }

    #[test]
    fn apache_prefork_holds_max_request_workers_not_its_open_files() {
        // A master and 300 children read while forking: 300 × 1,016 open files of room, but
        // each child serves one connection.
        let mut processes = vec![proc(30, 1, "apache2", 1024, 8)];
        processes.extend((0..300).map(|i| proc(31 + i, 30, "apache2", 1024, 8)));
        let tree = TreeSample {
            processes,
            clk_tck: 100,
        };
        let mut m = measure(&tree, 30);
        assert_eq!(m.ceiling, Some(300 * 1016));
        assert_eq!(apache_master(&m, &tree), Some((30, "apache2".to_string())));
        let conf = ApacheConf {
            mpm: "prefork".into(),
            max_workers: 50,
            directive: "MaxRequestWorkers 50".into(),
            source: "/x/apache2.conf".into(),
        };
        apply_apache(&mut m, Ok(conf.clone()));
        assert_eq!(m.ceiling, Some(50));
        let f = ceiling_finding(&m, 100);
        assert!(f.blocks, "{f}");
        assert_eq!(f.setting, "apache2's MaxRequestWorkers (server under test)");
        assert!(
            f.found.contains("apache2 (prefork MPM) serves one connection per child process: at most 50 at once by MaxRequestWorkers 50 (from /x/apache2.conf)")
                && f.fix.contains("raise MaxRequestWorkers"),
            "{f}"
        );
        assert!(!ceiling_finding(&m, 50).blocks);
        // Unread: no ceiling, and no finding that blocks on a guess.
        let mut m = measure(&tree, 30);
        apply_apache(&mut m, Err("no /etc/apache2/apache2.conf".into()));
        assert_eq!(m.ceiling, None);
        let f = ceiling_finding(&m, 100_000);
        assert!(
            !f.blocks && f.found.contains("one connection per worker process"),
            "{f}"
        );
        // The event MPM is left to its open-file limits.
        let mut m = measure(&tree, 30);
        apply_apache(
            &mut m,
            Ok(ApacheConf {
                mpm: "event".into(),
                ..conf
            }),
        );
        assert_eq!(
            (m.ceiling, &m.rule),
            (Some(300 * 1016), &CeilingRule::OpenFiles)
        );
    }

    #[test]
    fn haproxy_holds_half_its_open_files_or_its_maxconn() {
        // haproxy with c1m-server started beside it in one command: only haproxy holds proxied
        // connections.
        let tree = TreeSample {
            processes: vec![
                proc(40, 1, "haproxy", 3000, 20),
                proc(41, 40, "c1m-server", 20_000, 10),
            ],
            clk_tck: 100,
        };
        let mut m = measure(&tree, 40);
        assert_eq!(haproxy_master(&m, &tree), Some(40));
        let conf = |maxconn| {
            Ok(HaproxyConf {
                maxconn,
                source: "/x/haproxy.cfg".into(),
            })
        };
        apply_haproxy(&mut m, &tree, conf(None));
        assert_eq!((m.ceiling, m.holders.as_slice()), (Some(1490), &[40][..]));
        let f = ceiling_finding(&m, 2000);
        assert!(f.blocks, "{f}");
        assert_eq!(f.setting, "haproxy's RLIMIT_NOFILE (server under test)");
        assert!(
            f.found.contains("2 descriptors per connection") && f.found.contains("about 1,490"),
            "{f}"
        );
        let mut m = measure(&tree, 40);
        apply_haproxy(&mut m, &tree, conf(Some(1000)));
        assert_eq!(m.ceiling, Some(1000));
        let f = ceiling_finding(&m, 2000);
        assert_eq!(f.setting, "haproxy's maxconn (server under test)");
        assert!(
            f.found
                .contains("global maxconn 1,000 (from /x/haproxy.cfg) is lower"),
            "{f}"
        );
        // A maxconn above the open-file room does not raise the ceiling.
        let mut m = measure(&tree, 40);
        apply_haproxy(&mut m, &tree, conf(Some(9000)));
        assert_eq!(m.ceiling, Some(1490));
        let mut m = measure(&tree, 40);
        apply_haproxy(&mut m, &tree, Err("unreadable".into()));
        assert_eq!(m.ceiling, Some(1490));
    }
}
