//! Real servers from Debian's packages for tests that drive them: nginx, redis-server, memcached,
//! mosquitto, and WebSocket servers on Debian's Python (python3-websockets). Each starts on
//! 127.0.0.1 on a free port with a configuration the test writes into a directory of its own,
//! in a process group of its own; [`Server::stop`] (or drop) ends the whole group and checks that
//! no live process of it is left (PID 1 does not reap here: zombies are not counted).
//!
//! A fixture whose package is missing prints `SKIPPED …` and returns `None`; under
//! `C1M_REQUIRE_LAB=1` (CI) it panics instead.
//!
//! [`client`] runs the real `c1m-client` (`--json`) and returns its summary line. Other test
//! crates can reuse all of this with
//! `#[path = "../../client/tests/servers/mod.rs"] mod servers;` and `C1M_BIN_DIR` set.
#![allow(dead_code)] // each test binary uses a different part

use c1m_proto::stats::ClientStats;
use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Debian's interpreter: the one python3-websockets installs into (a `python3` earlier on PATH,
/// e.g. pyenv's, does not see it).
pub const PYTHON: &str = "/usr/bin/python3";

/// What a fixture needs: a program, or a Python module for [`PYTHON`].
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// A program by absolute path, and the Debian package that has it.
    Program(&'static str, &'static str),
    /// A module of Debian's Python, and its package.
    PythonModule(&'static str, &'static str),
}

pub const NGINX: Need = Need::Program("/usr/sbin/nginx", "nginx");
pub const REDIS: Need = Need::Program("/usr/bin/redis-server", "redis-server");
pub const MEMCACHED: Need = Need::Program("/usr/bin/memcached", "memcached");
pub const MOSQUITTO: Need = Need::Program("/usr/sbin/mosquitto", "mosquitto");
pub const MOSQUITTO_PASSWD: Need = Need::Program("/usr/bin/mosquitto_passwd", "mosquitto");
pub const WEBSOCKETS: Need = Need::PythonModule("websockets", "python3-websockets");

fn present(need: Need) -> bool {
    match need {
        Need::Program(path, _) => Path::new(path).is_file(),
        Need::PythonModule(module, _) => Command::new(PYTHON)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// Whether everything in `needs` is here. When not: panics under `C1M_REQUIRE_LAB=1`, else
/// prints `SKIPPED …` naming the packages and returns false.
pub fn require(test: &str, needs: &[Need]) -> bool {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|n| !present(**n))
        .map(|n| match n {
            Need::Program(_, pkg) | Need::PythonModule(_, pkg) => *pkg,
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: needs the Debian package(s) {} (apt-get install -y {})",
        missing.join(", "),
        missing.join(" ")
    );
    if std::env::var("C1M_REQUIRE_LAB").as_deref() == Ok("1") {
        panic!("{msg}; C1M_REQUIRE_LAB=1 forbids skipping");
    }
    eprintln!("SKIPPED {msg}");
    false
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// A fixture's scratch directory and port, or `None` when its packages are missing.
fn prepare(test: &str, needs: &[Need], name: &str) -> Option<(PathBuf, u16)> {
    require(test, needs).then(|| (scratch(name), free_port()))
}

/// A fresh directory for one server's files, removed when the server is.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "c1m-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch directory");
    // Servers that drop privileges (nginx's workers) must still read it.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    dir
}

fn write(path: &Path, text: &str) {
    File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Live (not zombie) processes whose process group is `pgid`.
pub fn live_in_group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let f: Vec<&str> = after.split_whitespace().collect();
            f.len() > 3 && f[0] != "Z" && f[2].parse() == Ok(pgid)
        })
        .collect()
}

/// A server under test: its process group, port and files.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    stopped: bool,
}

impl Server {
    /// Starts `cmd` in a process group of its own, output into `dir/log`, and waits until
    /// 127.0.0.1:`port` accepts connections.
    fn start(name: &'static str, mut cmd: Command, dir: PathBuf, port: u16) -> Server {
        let log = dir.join("log");
        let out = File::create(&log).expect("create the server log");
        let err = out.try_clone().expect("clone the log handle");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        let mut s = Server {
            name,
            port,
            child,
            dir,
            log,
            stopped: false,
        };
        s.wait_listening(Duration::from_secs(20));
        s
    }

    fn wait_listening(&mut self, budget: Duration) {
        let until = Instant::now() + budget;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {}: {}",
                    self.name,
                    self.port,
                    self.log_text()
                );
            }
            if Instant::now() > until {
                panic!(
                    "{} does not listen on 127.0.0.1:{} after {budget:?}: {}",
                    self.name,
                    self.port,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the server wrote to stdout and stderr (and its log, where it has one).
    pub fn log_text(&self) -> String {
        let mut t = fs::read_to_string(&self.log).unwrap_or_default();
        if let Ok(e) = fs::read_to_string(self.dir.join("error.log")) {
            t.push_str(&e);
        }
        t
    }

    /// Ends the whole process group: SIGTERM, then SIGKILL after 5 s. Returns the live pids
    /// left afterwards (none, unless something escaped its group).
    fn end(&mut self) -> Vec<u32> {
        if self.stopped {
            return Vec::new();
        }
        self.stopped = true;
        let pgid = self.child.id();
        // SAFETY: signalling a process group we created.
        unsafe { libc::kill(-(pgid as i32), libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let _ = self.child.try_wait();
            if live_in_group(pgid).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !live_in_group(pgid).is_empty() {
            // SAFETY: as above.
            unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.wait();
        live_in_group(pgid)
    }

    /// Stops the server and asserts that no process of it is left.
    pub fn stop(mut self) {
        let left = self.end();
        assert!(
            left.is_empty(),
            "{} left live processes {left:?} behind",
            self.name
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.end();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A server ready to start: its program and arguments, scratch directory and port. Either
/// [`Setup::start`]ed here, or handed to `c1m run --server-cmd` as [`Setup::shell_line`].
pub struct Setup {
    pub name: &'static str,
    pub dir: PathBuf,
    pub port: u16,
    pub cmd: Command,
}

impl Setup {
    /// Starts it as a [`Server`] of this test process.
    pub fn start(mut self) -> Server {
        let cmd = std::mem::replace(&mut self.cmd, Command::new("true"));
        let dir = std::mem::take(&mut self.dir);
        Server::start(self.name, cmd, dir, self.port)
    }

    /// The command as one shell line, every word quoted.
    pub fn shell_line(&self) -> String {
        let quote =
            |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
        std::iter::once(quote(self.cmd.get_program()))
            .chain(self.cmd.get_args().map(quote))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// nginx's knobs that matter for held connections.
#[derive(Debug, Clone)]
pub struct Nginx {
    pub workers: usize,
    pub worker_connections: usize,
    pub keepalive_timeout_s: u32,
    pub keepalive_requests: u32,
    /// A listening socket per worker (`listen … reuseport`): the kernel spreads connections
    /// evenly by hash, so no worker runs out of `worker_connections` while others have room.
    pub reuseport: bool,
}

impl Default for Nginx {
    fn default() -> Self {
        Nginx {
            workers: 2,
            worker_connections: 4096,
            keepalive_timeout_s: 75,
            keepalive_requests: 1000,
            reuseport: false,
        }
    }
}

/// Body of `/index.html` (the 200 the http protocol verifies).
pub const NGINX_INDEX: &str = "<html><body>c1m under test</body></html>\n";

/// nginx (master and workers, `daemon off`) serving `/` (index.html, Content-Length), `/gz/`
/// (the same file gzipped on the fly: a chunked body when the request says
/// `Accept-Encoding: gzip`) and 404 for anything missing, e.g. `/missing`.
pub fn nginx_setup(test: &str, conf: &Nginx) -> Option<Setup> {
    let (dir, port) = prepare(test, &[NGINX], "nginx")?;
    let www = dir.join("www");
    fs::create_dir_all(www.join("gz")).expect("create the docroot");
    write(&www.join("index.html"), NGINX_INDEX);
    write(&www.join("gz/index.html"), &NGINX_INDEX.repeat(20));
    for p in [&www, &www.join("gz")] {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
    }
    let d = dir.display();
    let text = format!(
        "daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {rlimit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {wc}; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout {kt}s;
    keepalive_requests {kr};
    default_type text/html;
    server {{
        listen 127.0.0.1:{port} backlog=4096{reuseport};
        root {www};
        location /gz/ {{ gzip on; gzip_min_length 0; }}
    }}
}}
",
        workers = conf.workers,
        rlimit = conf.worker_connections + 64,
        wc = conf.worker_connections,
        kt = conf.keepalive_timeout_s,
        kr = conf.keepalive_requests,
        reuseport = if conf.reuseport { " reuseport" } else { "" },
        www = www.display(),
    );
    let path = dir.join("nginx.conf");
    write(&path, &text);
    let mut cmd = Command::new("/usr/sbin/nginx");
    cmd.arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path);
    Some(Setup {
        name: "nginx",
        dir,
        port,
        cmd,
    })
}

/// [`nginx_setup`], started.
pub fn nginx(test: &str, conf: &Nginx) -> Option<Server> {
    nginx_setup(test, conf).map(Setup::start)
}

/// redis-server without persistence, `maxclients` as given, an accept backlog of 4096 (its
/// default, 511, drops SYNs under a burst of connects: each costs a 1 s retransmit).
pub fn redis_setup(test: &str, maxclients: usize) -> Option<Setup> {
    let (dir, port) = prepare(test, &[REDIS], "redis")?;
    let mut cmd = Command::new("/usr/bin/redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args([
            "--maxclients",
            &maxclients.to_string(),
            "--tcp-backlog",
            "4096",
        ])
        .arg("--dir")
        .arg(&dir);
    Some(Setup {
        name: "redis-server",
        dir,
        port,
        cmd,
    })
}

/// [`redis_setup`], started.
pub fn redis(test: &str, maxclients: usize) -> Option<Server> {
    redis_setup(test, maxclients).map(Setup::start)
}

/// memcached with `max_conns` (`-c`) and two threads.
pub fn memcached_setup(test: &str, max_conns: usize) -> Option<Setup> {
    let (dir, port) = prepare(test, &[MEMCACHED], "memcached")?;
    let mut cmd = Command::new("/usr/bin/memcached");
    cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
        .args(["-c", &max_conns.to_string(), "-t", "2", "-b", "4096"]);
    if is_root() {
        // memcached refuses to run as root unless told which user to be.
        cmd.args(["-u", "root"]);
    }
    Some(Setup {
        name: "memcached",
        dir,
        port,
        cmd,
    })
}

/// [`memcached_setup`], started.
pub fn memcached(test: &str, max_conns: usize) -> Option<Server> {
    memcached_setup(test, max_conns).map(Setup::start)
}

/// mosquitto: anonymous when `users` is empty, else only those (user, password) pairs.
///
/// mosquitto 2.0 listens with a fixed backlog of 100: more connects in flight than that
/// (`c1m-client --window`) overflow its accept queue, and each dropped SYN costs a retransmit a
/// second (then three) later.
pub fn mosquitto_setup(test: &str, users: &[(&str, &str)]) -> Option<Setup> {
    let needs: &[Need] = if users.is_empty() {
        &[MOSQUITTO]
    } else {
        &[MOSQUITTO, MOSQUITTO_PASSWD]
    };
    let (dir, port) = prepare(test, needs, "mosquitto")?;
    let mut text = format!(
        "listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\nmax_connections -1\n\
         max_keepalive 65535\n"
    );
    if is_root() {
        // Stay root: the files are the test's, and dropping to `mosquitto` gains nothing here.
        text.push_str("user root\n");
    }
    if users.is_empty() {
        text.push_str("allow_anonymous true\n");
    } else {
        let pw = dir.join("passwd");
        for (i, (u, p)) in users.iter().enumerate() {
            let mut c = Command::new("/usr/bin/mosquitto_passwd");
            if i == 0 {
                c.arg("-c");
            }
            let out = c.arg("-b").arg(&pw).args([u, p]).output();
            let ok = out.as_ref().is_ok_and(|o| o.status.success());
            assert!(ok, "mosquitto_passwd failed: {out:?}");
        }
        text.push_str(&format!(
            "allow_anonymous false\npassword_file {}\n",
            pw.display()
        ));
    }
    let conf = dir.join("mosquitto.conf");
    write(&conf, &text);
    let mut cmd = Command::new("/usr/sbin/mosquitto");
    cmd.arg("-c").arg(&conf);
    Some(Setup {
        name: "mosquitto",
        dir,
        port,
        cmd,
    })
}

/// [`mosquitto_setup`], started.
pub fn mosquitto(test: &str, users: &[(&str, &str)]) -> Option<Server> {
    mosquitto_setup(test, users).map(Setup::start)
}

/// The WebSocket servers, both on Debian's Python.
#[derive(Debug, Clone, Copy)]
pub enum WebSocket {
    /// python3-websockets echoing every message; it pings every `ping_s` seconds (and drops a
    /// connection whose pong does not come within as long), or never.
    Echo { ping_s: Option<f64> },
    /// A few lines of asyncio answering the handshake with a `Sec-WebSocket-Accept` computed
    /// from the wrong string: well-formed, wrong.
    WrongAccept,
}

const WS_ECHO: &str = r#"
import asyncio, sys, websockets
port, ping = int(sys.argv[1]), (None if sys.argv[2] == "none" else float(sys.argv[2]))
async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
async def main():
    async with websockets.serve(echo, "127.0.0.1", port, ping_interval=ping,
                                ping_timeout=ping, backlog=4096):
        await asyncio.Future()
asyncio.run(main())
"#;

const WS_WRONG_ACCEPT: &str = r#"
import asyncio, base64, hashlib, sys
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key:")][0]
        wrong = base64.b64encode(hashlib.sha1(key + b"!" + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + wrong + b"\r\n\r\n")
        await writer.drain()
        await reader.read()
    except Exception:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

pub fn websocket_setup(test: &str, kind: WebSocket) -> Option<Setup> {
    let (dir, port) = prepare(test, &[WEBSOCKETS], "websocket")?;
    let (script, ping) = match kind {
        WebSocket::Echo { ping_s } => (WS_ECHO, ping_s.map_or("none".into(), |p| p.to_string())),
        WebSocket::WrongAccept => (WS_WRONG_ACCEPT, String::new()),
    };
    let path = dir.join("server.py");
    write(&path, script);
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&path).arg(port.to_string()).arg(ping);
    Some(Setup {
        name: "websocket",
        dir,
        port,
        cmd,
    })
}

/// [`websocket_setup`], started.
pub fn websocket(test: &str, kind: WebSocket) -> Option<Server> {
    websocket_setup(test, kind).map(Setup::start)
}

/// `c1m-client`: the one this crate built, or the one in `C1M_BIN_DIR`.
pub fn client_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_c1m-client") {
        return PathBuf::from(p);
    }
    let dir = std::env::var_os("C1M_BIN_DIR").expect("C1M_BIN_DIR names the built binaries");
    PathBuf::from(dir).join("c1m-client")
}

/// How a client run ended.
#[derive(Debug)]
pub struct ClientRun {
    pub code: Option<i32>,
    pub summary: ClientStats,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ClientRun {
    pub fn error(&self, kind: &str) -> u64 {
        self.summary.errors.get(kind).copied().unwrap_or(0)
    }
}

/// Reads a pipe to its end on a thread of its own.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// Runs `c1m-client --json ARGS` against `server` (its port, `--ports 1`), at most `budget`
/// long, and parses its summary line. `args` are split at white space.
pub fn client(server: &Server, args: &str, budget: Duration) -> ClientRun {
    let port = server.port.to_string();
    let mut child = Command::new(client_bin())
        .args([
            "--json",
            "--target",
            "127.0.0.1",
            "--port",
            &port,
            "--ports",
            "1",
        ])
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("c1m-client starts");
    let started = Instant::now();
    // Drain the pipes while waiting, so a chatty client never blocks on a full pipe.
    let out_reader = drain(child.stdout.take());
    let err_reader = drain(child.stderr.take());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for c1m-client") {
            break s;
        }
        if started.elapsed() > budget {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "c1m-client {args:?} against {} ran past {budget:?}: {}",
                server.name,
                out_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<ClientStats>(l).ok())
        .rfind(|s| s.event == "summary")
        .unwrap_or_else(|| {
            panic!(
                "no summary line from c1m-client {args:?} ({status}): {stdout}\n{stderr}\n{}",
                server.log_text()
            )
        });
    ClientRun {
        code: status.code(),
        summary,
        stdout,
        stderr,
        elapsed,
    }
}
