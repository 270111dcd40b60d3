//! `c1m run` against servers c1m did not write, from Debian's packages: started by
//! `--server-cmd` (in the run's network namespace when it has one) or already running
//! (`--target`), measured from /proc, their own limits predicted before the run and named when
//! the run stops there. Every server listens on loopback (or inside the run's namespace).
//!
//! The runs share two cores, so they go one at a time; the whole file stays within a few
//! minutes (the largest run is nginx's 50,000).

#[path = "../../client/tests/servers/mod.rs"]
mod servers;

use serde_json::Value;
use servers::{free_port, live_in_group, Nginx, Setup, WebSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One run at a time: they would only fight over the two cores and blur each other's figures.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn bin_dir() -> PathBuf {
    std::env::var_os("C1M_BIN_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_BIN_EXE_c1m"))
                .parent()
                .unwrap()
                .to_path_buf()
        },
        PathBuf::from,
    )
}

fn c1m() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c1m"));
    let dir = bin_dir();
    // The fixtures' client_bin() and c1m itself both look here.
    std::env::set_var("C1M_BIN_DIR", &dir);
    c.env("C1M_BIN_DIR", dir);
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("c1m-ext-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `c1m run ARGS` into a fresh runs directory: its output, and the run directory.
fn run(name: &str, args: &[&str]) -> (Output, PathBuf) {
    let out_dir = tmp(name);
    let out = c1m()
        .arg("run")
        .args(args)
        .arg("--runs-dir")
        .arg(&out_dir)
        .arg("--no-progress")
        .output()
        .unwrap();
    let dir = std::fs::canonicalize(out_dir.join("latest")).unwrap_or(out_dir);
    (out, dir)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn summary(dir: &Path) -> Value {
    let p = dir.join("run.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .unwrap()
}

fn report(dir: &Path, extra: &[&str]) -> String {
    let o = c1m()
        .arg("report")
        .args(extra)
        .arg(dir)
        .arg("--no-charts")
        .output()
        .unwrap();
    assert!(o.status.success(), "c1m report: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Live processes whose command line mentions `needle` (a test's own scratch directory).
fn live_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// `--target 127.0.0.1:PORT --server-cmd LINE` for a fixture.
fn server_args(s: &Setup) -> Vec<String> {
    vec![
        format!("--target=127.0.0.1:{}", s.port),
        format!("--server-cmd={}", s.shell_line()),
    ]
}

fn args_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[test]
fn a_target_with_nothing_listening_is_refused_by_name() {
    let _one = serial();
    let port = free_port().to_string();
    let target = format!("--target=127.0.0.1:{port}");
    let (o, dir) = run("refused", &[&target, "-n", "50", "--hold", "0s"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("ECONNREFUSED"), "{out}");
    assert!(out.contains("nothing listens"), "{out}");
    let s = summary(&dir);
    assert_eq!(s["server"]["kind"], "external", "{s}");
    assert!(u(&s["errors"]["ECONNREFUSED"]) > 0, "{s}");
}

#[test]
fn hostile_server_vars_are_findings_and_nothing_runs() {
    let _one = serial();
    let d = tmp("hostile");
    let marker = d.join("ran");
    let inv = d.join("inv.yml");
    std::fs::write(
        &inv,
        format!(
            "all:\n  vars:\n    ansible_connection: local\n  children:\n    server:\n      hosts:\n        localhost:\n          c1m_server_cmd: \"touch {m}\\ntouch {m}\"\n          c1m_server_pid: \"1; reboot\"\n          c1m_server_ports: \"80-70\"\n    clients:\n      hosts:\n        localhost:\n",
            m = marker.display()
        ),
    )
    .unwrap();
    let (o, _) = run("hostile-run", &["-i", inv.to_str().unwrap(), "-n", "10"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    for var in ["c1m_server_cmd", "c1m_server_pid", "c1m_server_ports"] {
        assert!(out.contains(&format!("✗ {var}")), "{var} not named: {out}");
    }
    assert!(!marker.exists(), "the hostile command ran");
    // --force covers limits, never values c1m cannot use.
    let (o, _) = run(
        "hostile-force",
        &["-i", inv.to_str().unwrap(), "-n", "10", "--force"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!marker.exists(), "the hostile command ran under --force");
}

#[test]
fn nginx_holds_50k_keepalive_connections_and_a_404_is_an_error() {
    let _one = serial();
    let test = "nginx_holds_50k";
    let conf = Nginx {
        workers: 4,
        worker_connections: 16_000,
        keepalive_timeout_s: 300,
        keepalive_requests: 1000,
        reuseport: true,
    };
    let Some(setup) = servers::nginx_setup(test, &conf) else {
        return;
    };
    let mut args = server_args(&setup);
    args.extend(["--protocol=http", "-n", "50000", "--hold", "2s"].map(String::from));
    let (o, dir) = run("nginx", &args_of(&args));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let s = summary(&dir);
    assert!(u(&s["established_peak"]) >= 50_000, "{s}");
    let sv = &s["server"];
    assert_eq!(
        (sv["kind"].as_str(), sv["name"].as_str()),
        (Some("command"), Some("nginx")),
        "{sv}"
    );
    assert_eq!(sv["protocol"], "http");
    // master + 4 workers (under the shell the command ran in, if it stayed).
    assert!(u(&sv["processes"]) >= 5, "{sv}");
    let per_conn = sv["rss_bytes_per_conn"].as_f64().unwrap();
    assert!(per_conn > 100.0 && per_conn < 100_000.0, "{sv}");
    // Four workers at 16,064 open files each, but nginx closes idle keep-alive connections
    // once fewer than 1/16 of its 16,000 worker_connections are free: about 14,990 each. Room
    // for the run, so no blocking finding.
    let ceiling = u(&sv["predicted_ceiling"]);
    assert!(ceiling > 55_000 && ceiling <= 60_000, "{sv}");
    assert!(out.contains("✓ nginx's worker_connections"), "{out}");
    let r = report(&dir, &[]);
    assert!(
        r.contains("nginx (started by c1m)") && r.contains("http"),
        "{r}"
    );
    assert!(r.contains("memory per conn, server RSS"), "{r}");
    // nginx's own output is kept apart from c1m's JSON lines: the run directory is whole.
    assert!(!r.contains("damaged"), "{r}");
    assert!(
        live_mentioning(&setup.dir.to_string_lossy()).is_empty(),
        "nginx left behind"
    );

    // The same nginx, asked for a page it does not have: every 404 is an error, none verified.
    let mut args = server_args(&setup);
    args.extend(
        [
            "--protocol=http",
            "--path=/missing",
            "-n",
            "200",
            "--hold",
            "0s",
            "--max-errors",
            "100",
        ]
        .map(String::from),
    );
    let (o, dir) = run("nginx-404", &args_of(&args));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let s = summary(&dir);
    assert!(u(&s["errors"]["http_404"]) > 100, "{s}");
    assert_eq!(u(&s["established_peak"]), 0, "{s}");
}

/// nginx with room in its open-file limit but not in `worker_connections`: past 15/16 of them a
/// worker closes idle keep-alive connections to accept new ones. The preflight predicts where
/// from the configuration the running nginx reads (and refuses without --force), nginx starts
/// reusing connections there, and run.json and the report name the rule.
#[test]
fn nginx_stops_where_its_keepalive_reuse_rule_predicts() {
    let _one = serial();
    let conf = Nginx {
        workers: 2,
        worker_connections: 1024,
        keepalive_timeout_s: 300,
        keepalive_requests: 1000,
        reuseport: true,
    };
    let Some(setup) = servers::nginx_setup("nginx_reuse", &conf) else {
        return;
    };
    let mut args = server_args(&setup);
    args.extend(["--protocol=http", "-n", "3000", "--hold", "2s"].map(String::from));
    let (o, _) = run("nginx-reuse-refused", &args_of(&args));
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "no refusal without --force: {out}"
    );
    let rule = "nginx reuses idle keep-alive connections when fewer than 1/16 of \
                worker_connections 1,024 are free: about";
    assert!(
        out.contains("✗ nginx's worker_connections") && out.contains(rule),
        "{out}"
    );
    args.push("--force".into());
    let (o, dir) = run("nginx-reuse", &args_of(&args));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let s = summary(&dir);
    let sv = &s["server"];
    let ceiling = u(&sv["predicted_ceiling"]);
    // 2 × (1,024 − 64 − the worker's own descriptors); 2 × 1,024 + 128 by the open-file limit.
    assert!((1_800..=1_920).contains(&ceiling), "{sv}");
    assert!(
        sv["ceiling_rule"]
            .as_str()
            .is_some_and(|r| r.contains(rule)),
        "{sv}"
    );
    // nginx really started reusing connections, and where the preflight said.
    let log = std::fs::read_to_string(setup.dir.join("error.log")).unwrap_or_default();
    assert!(
        log.contains("worker_connections are not enough, reusing connections"),
        "{log}"
    );
    let held = u(&s["established_peak"]);
    assert!(
        held <= ceiling + 64 && held + ceiling / 20 >= ceiling,
        "held {held}, predicted {ceiling}: {out}"
    );
    names_the_server_limit(&s, &dir, "server_keepalive_reuse", rule, &setup, "nginx");
}

/// run.json's limit is `kind` and its sentence names `what`; the report shows the predicted
/// ceiling and `what`; nothing of the server (`who`) is left running.
fn names_the_server_limit(s: &Value, dir: &Path, kind: &str, what: &str, setup: &Setup, who: &str) {
    assert_eq!(s["limit"]["kind"], kind, "{}", s["limit"]);
    assert!(
        s["limit"]["sentence"].as_str().unwrap().contains(what),
        "{}",
        s["limit"]
    );
    let r = report(dir, &[]);
    assert!(r.contains("predicted ceiling") && r.contains(what), "{r}");
    assert!(
        live_mentioning(&setup.dir.to_string_lossy()).is_empty(),
        "{who} left behind"
    );
}

/// A server whose own fd limit is below the target: the preflight predicts where it stops (and
/// refuses without --force), the run stops there, and run.json names the server as the limit.
fn runs_to_its_ceiling(name: &str, setup: Setup, extra: &[&str], n: u64) -> Value {
    let mut args = server_args(&setup);
    args.extend(["-n", &n.to_string(), "--hold", "1s"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let (o, _) = run(&format!("{name}-refused"), &args_of(&args));
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "no refusal without --force: {out}"
    );
    assert!(
        out.contains(&format!("✗ {name}'s RLIMIT_NOFILE"))
            && out.contains("the run will stop near"),
        "{out}"
    );
    args.push("--force".into());
    let (o, dir) = run(name, &args_of(&args));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let s = summary(&dir);
    let sv = &s["server"];
    let ceiling = u(&sv["predicted_ceiling"]);
    let held = u(&s["established_peak"]);
    assert!(ceiling > 1000 && ceiling < n, "{sv}");
    // What it reached is what was predicted, within what the server keeps for itself.
    assert!(
        held <= ceiling && held + ceiling / 20 + 64 >= ceiling,
        "held {held}, predicted {ceiling}: {out}"
    );
    names_the_server_limit(&s, &dir, "server_fd_cap", name, &setup, name);
    s
}

#[test]
fn redis_stops_at_its_fd_limit_as_predicted() {
    let _one = serial();
    // maxclients above the hard limit: redis lowers it to what its fd limit allows.
    let Some(setup) = servers::redis_setup("redis_fd_limit", 100_000) else {
        return;
    };
    let s = runs_to_its_ceiling(
        "redis-server",
        setup,
        &["--protocol=redis", "--window=1024", "--max-errors=3000"],
        25_000,
    );
    assert_eq!(s["server"]["protocol"], "redis");
}

#[test]
fn memcached_stops_at_its_fd_limit_as_predicted() {
    let _one = serial();
    // memcached sets its open-file limit to -c.
    let Some(setup) = servers::memcached_setup("memcached_fd_limit", 12_000) else {
        return;
    };
    runs_to_its_ceiling(
        "memcached",
        setup,
        &["--protocol=memcached", "--window=1024", "--max-errors=3000"],
        15_000,
    );
}

#[test]
fn mosquitto_stops_at_the_hard_nofile_as_predicted() {
    let _one = serial();
    let Some(setup) = servers::mosquitto_setup("mosquitto_fd_limit", &[]) else {
        return;
    };
    // Its accept backlog is 100: a small window keeps SYNs from being dropped; past its ceiling
    // every connect waits out a timeout, so the client gives up after a few.
    runs_to_its_ceiling(
        "mosquitto",
        setup,
        &["--protocol=mqtt", "--window=64", "--max-errors=64"],
        25_000,
    );
}

#[test]
fn websocket_echo_5k_and_a_wrong_accept_is_caught() {
    let _one = serial();
    let Some(setup) = servers::websocket_setup("ws_5k", WebSocket::Echo { ping_s: None }) else {
        return;
    };
    let mut args = server_args(&setup);
    args.extend(
        [
            "--protocol=websocket",
            "-n",
            "5000",
            "--hold",
            "1s",
            "--window",
            "512",
        ]
        .map(String::from),
    );
    let (o, dir) = run("ws", &args_of(&args));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let s = summary(&dir);
    assert!(u(&s["established_peak"]) >= 5000, "{s}");
    assert_eq!(s["server"]["protocol"], "websocket");
    assert!(
        s["server"]["name"].as_str().unwrap().starts_with("python3"),
        "{}",
        s["server"]
    );
    drop(setup);

    let Some(wrong) = servers::websocket_setup("ws_wrong", WebSocket::WrongAccept) else {
        return;
    };
    let mut args = server_args(&wrong);
    args.extend(
        [
            "--protocol=websocket",
            "-n",
            "50",
            "--hold",
            "0s",
            "--max-errors",
            "20",
        ]
        .map(String::from),
    );
    let (o, dir) = run("ws-wrong", &args_of(&args));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = summary(&dir);
    assert!(u(&s["errors"]["ws_bad_accept"]) > 20, "{s}");
}

#[test]
fn server_cmd_leaves_nothing_behind_on_ctrl_c() {
    let _one = serial();
    let conf = Nginx {
        workers: 2,
        ..Nginx::default()
    };
    let Some(setup) = servers::nginx_setup("ctrl_c", &conf) else {
        return;
    };
    let out_dir = tmp("ctrl-c");
    let mut child = c1m()
        .arg("run")
        .args(server_args(&setup))
        .args([
            "--protocol=http",
            "-n",
            "1000",
            "--hold",
            "forever",
            "--no-progress",
        ])
        .arg("--runs-dir")
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let needle = setup.dir.to_string_lossy().into_owned();
    // Holding: the server's tree is up and the clients connected.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let ev = std::fs::read_to_string(out_dir.join("latest/events.jsonl")).unwrap_or_default();
        if ev
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| u(&e["established"]) >= 1000)
        {
            seen = live_mentioning(&needle);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.len() >= 3,
        "nginx master and workers should be running: {seen:?}"
    );
    // SAFETY: signalling the c1m this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(
        live_mentioning(&needle).is_empty(),
        "left behind: {:?}\n{stdout}",
        live_mentioning(&needle)
    );
    let pgid = summary(&std::fs::canonicalize(out_dir.join("latest")).unwrap())["server"]["pid"]
        .as_u64()
        .unwrap() as u32;
    assert!(live_in_group(pgid).is_empty());
}

/// A scratch directory (world-readable: apache's children drop to www-data) and a free port.
fn scratch(name: &str) -> (PathBuf, u16) {
    use std::os::unix::fs::PermissionsExt;
    let d = tmp(&format!("{name}-files"));
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    (d, free_port())
}

#[test]
fn haproxy_in_tcp_mode_in_front_of_c1m_server() {
    let _one = serial();
    if !servers::require(
        "haproxy_in_front_of_c1m_server",
        &[servers::Need::Program("/usr/sbin/haproxy", "haproxy")],
    ) {
        return;
    }
    let (dir, port) = scratch("haproxy");
    let backend = free_port();
    // c1m-server behind it, on this machine's loopback: the run stays in this namespace.
    let mut c1m_server = Command::new(bin_dir().join("c1m-server"))
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &backend.to_string(),
            "--ports",
            "1",
        ])
        .args(["--connections", "20000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  maxconn 6000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\nbackend b\n  server s1 127.0.0.1:{backend}\n"
        ),
    )
    .unwrap();
    let target = format!("--target=127.0.0.1:{port}");
    let cmd = format!(
        "--server-cmd=exec /usr/sbin/haproxy -db -f {}",
        conf.display()
    );
    let (o, run_dir) = run(
        "haproxy",
        &[
            &target,
            &cmd,
            "--no-netns",
            "-n",
            "5000",
            "--hold",
            "1s",
            "--window",
            "1024",
        ],
    );
    let _ = c1m_server.kill();
    let _ = c1m_server.wait();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let s = summary(&run_dir);
    assert!(u(&s["established_peak"]) >= 5000, "{s}");
    let sv = &s["server"];
    assert_eq!(sv["name"], "haproxy", "{sv}");
    assert!(sv["rss_bytes_per_conn"].as_f64().unwrap() > 0.0, "{sv}");
    // haproxy raised its soft limit to fit maxconn 6000 at two descriptors a connection: the
    // ceiling is maxconn, not the descriptors (twice as many).
    assert_eq!(u(&sv["predicted_ceiling"]), 6000, "{sv}");
    assert!(out.contains("✓ haproxy's maxconn"), "{out}");
    // What stopped it: nothing but the target (or the CPU it shares with both ends).
    let kind = s["limit"]["kind"].as_str().unwrap().to_string();
    assert!(kind == "none" || kind == "cpu", "{}", s["limit"]);
    assert!(
        live_mentioning(&dir.to_string_lossy()).is_empty(),
        "haproxy left behind"
    );
}

/// c1m-server on a free loopback port, as haproxy's backend: stopped when dropped.
struct Backend(std::process::Child, u16);

impl Backend {
    fn start() -> Backend {
        let port = free_port();
        let child = Command::new(bin_dir().join("c1m-server"))
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--ports",
                "1",
            ])
            .args(["--connections", "20000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Backend(child, port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The preflight's line about the server under test (`✓`/`✗ SETTING: …`).
fn preflight_line<'a>(out: &'a str, setting: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(setting) && (l.contains('✗') || l.contains('✓')))
        .unwrap_or_else(|| panic!("no preflight line for {setting}: {out}"))
}

/// haproxy in TCP mode holds two descriptors per client connection (the client's and the
/// backend's): the preflight predicts half its open-file room, or its global maxconn when that
/// is lower, refuses a target above it, the run stops there, and run.json's limit says the same
/// thing with the same figure as the preflight line.
#[test]
fn haproxy_stops_at_half_its_open_files_or_its_maxconn() {
    let _one = serial();
    if !servers::require(
        "haproxy_ceiling",
        &[servers::Need::Program("/usr/sbin/haproxy", "haproxy")],
    ) {
        return;
    }
    let backend = Backend::start();
    // (name, global section, shell prefix, setting named, limit kind, what the sentence says)
    let cases = [
        (
            "haproxy-fds",
            "",
            "ulimit -n 3000 && ",
            "haproxy's RLIMIT_NOFILE",
            "server_fd_cap",
            "no global maxconn in",
        ),
        (
            "haproxy-maxconn",
            "  maxconn 1000\n",
            "",
            "haproxy's maxconn",
            "server_maxconn",
            "its global maxconn 1,000 (from",
        ),
    ];
    for (name, global, prefix, setting, kind, says) in cases {
        let (dir, port) = scratch(name);
        let conf = dir.join("haproxy.cfg");
        std::fs::write(
            &conf,
            format!(
                "global\n{global}\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\nbackend b\n  server s1 127.0.0.1:{}\n",
                backend.1
            ),
        )
        .unwrap();
        let target = format!("--target=127.0.0.1:{port}");
        let cmd = format!(
            "--server-cmd={prefix}exec /usr/sbin/haproxy -db -f {}",
            conf.display()
        );
        let mut args = vec![
            target,
            cmd,
            "--no-netns".into(),
            "-n".into(),
            "2000".into(),
            "--hold".into(),
            "1s".into(),
            "--window".into(),
            "256".into(),
            "--max-errors".into(),
            "20".into(),
        ];
        let (o, _) = run(&format!("{name}-refused"), &args_of(&args));
        let out = text(&o);
        assert_eq!(
            o.status.code(),
            Some(3),
            "no refusal without --force: {out}"
        );
        let line = preflight_line(&out, setting).to_string();
        assert!(
            line.contains("✗")
                && line.contains("2 descriptors per connection (the client's and the backend's)")
                && line.contains(says)
                && line.contains("the run will stop near"),
            "{line}"
        );
        args.push("--force".into());
        let (o, run_dir) = run(name, &args_of(&args));
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}");
        let s = summary(&run_dir);
        let sv = &s["server"];
        let ceiling = u(&sv["predicted_ceiling"]);
        // Half of 3,000 descriptors less those open; or maxconn.
        let expected = if global.is_empty() {
            1_400..=1_500
        } else {
            1_000..=1_000
        };
        assert!(expected.contains(&ceiling), "{sv}");
        let figure = c1m_proto::fmt::int(ceiling);
        assert!(
            line.contains(&format!("at most {figure} connections")),
            "{figure}: {line}"
        );
        let held = u(&s["established_peak"]);
        assert!(
            held <= ceiling + 64 && held + ceiling / 20 >= ceiling,
            "held {held}, predicted {ceiling}: {out}"
        );
        let rule = sv["ceiling_rule"].as_str().unwrap_or_default();
        assert!(rule.contains(says), "{sv}");
        let sentence = s["limit"]["sentence"].as_str().unwrap_or_default();
        assert!(
            sentence.contains(rule) && sentence.contains(&format!("predicted ceiling {figure}")),
            "{}",
            s["limit"]
        );
        assert_eq!(s["limit"]["kind"], kind, "{}", s["limit"]);
        assert!(out.contains(&format!("limit: {sentence}")), "{out}");
        assert!(
            live_mentioning(&dir.to_string_lossy()).is_empty(),
            "haproxy left behind"
        );
    }
}

#[test]
fn apache_prefork_stops_at_its_process_limit() {
    let _one = serial();
    if !servers::require(
        "apache_prefork",
        &[servers::Need::Program("/usr/sbin/apache2", "apache2")],
    ) {
        return;
    }
    let (dir, port) = scratch("apache");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), servers::NGINX_INDEX).unwrap();
    let d = dir.display();
    let workers = 50;
    let conf = dir.join("apache2.conf");
    std::fs::write(
        &conf,
        format!(
            "ServerRoot /etc/apache2\nServerName localhost\nDefaultRuntimeDir {d}\nPidFile {d}/apache2.pid\n\
             ErrorLog {d}/error.log\nLogLevel warn\n\
             LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so\n\
             LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\n\
             User www-data\nGroup www-data\nListen 127.0.0.1:{port}\nDocumentRoot {www}\n\
             <Directory {www}>\n  Require all granted\n</Directory>\n\
             KeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 300\nListenBacklog 4096\n\
             StartServers 8\nMinSpareServers 8\nMaxSpareServers 1000\nServerLimit {workers}\nMaxRequestWorkers {workers}\n",
            www = www.display()
        ),
    )
    .unwrap();
    let target = format!("--target=127.0.0.1:{port}");
    let cmd = format!(
        "--server-cmd=exec /usr/sbin/apache2 -DFOREGROUND -f {}",
        conf.display()
    );
    // 100 connections, all in flight at once; each run below adds its protocol and hold.
    let base = [target.as_str(), &cmd, "-n", "100", "--window", "100"];
    let mut args = [
        &base[..],
        &[
            "--protocol=http",
            "--path=/index.html",
            "--hold",
            "1s",
            "--max-errors",
            "10",
        ],
    ]
    .concat();
    // The preflight reads MaxRequestWorkers from the -f file, not the children's open files
    // (hundreds of millions, summed over a tree read while apache forks), and refuses.
    let (o, _) = run("apache-refused", &args);
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "no refusal without --force: {out}"
    );
    let line = preflight_line(&out, "apache2's MaxRequestWorkers");
    let rule = format!(
        "apache2 (prefork MPM) serves one connection per child process: at most 50 at once by \
         MaxRequestWorkers 50 (from {})",
        conf.display()
    );
    assert!(
        line.contains('✗')
            && line.contains(&rule)
            && line.contains("the run will stop near 50")
            && line.contains("raise MaxRequestWorkers"),
        "{line}"
    );
    args.push("--force");
    let (o, run_dir) = run("apache", &args);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let s = summary(&run_dir);
    let held = u(&s["established_peak"]);
    assert!(
        (workers - 5..=workers).contains(&(held as usize)),
        "held {held}: {out}"
    );
    assert_eq!(s["server"]["name"], "apache2", "{}", s["server"]);
    assert_eq!(u(&s["server"]["predicted_ceiling"]), 50, "{}", s["server"]);
    // Past MaxRequestWorkers the kernel completed the handshakes and apache never answered:
    // answer timeouts, not connect timeouts (no SYN was dropped).
    assert!(u(&s["errors"]["answer_timeout"]) > 0, "{}", s["errors"]);
    assert!(s["errors"].get("ETIMEDOUT").is_none(), "{}", s["errors"]);
    assert_eq!(s["limit"]["kind"], "server_processes", "{}", s["limit"]);
    let sentence = s["limit"]["sentence"].as_str().unwrap_or_default();
    assert!(
        sentence.contains("apache2 stopped at its own MaxRequestWorkers 50")
            && sentence.contains("never answered")
            && !sentence.contains("conntrack"),
        "{}",
        s["limit"]
    );
    assert!(
        live_mentioning(&dir.to_string_lossy()).is_empty(),
        "apache left behind"
    );

    // Idle, nothing is sent: the clients count each connection at its handshake, but apache's
    // listener defers accepting until a request comes (AcceptFilter, TCP_DEFER_ACCEPT), and
    // at most its 50 children could take one each. That is not reached.
    let idle = [&base[..], &["--protocol=idle", "--hold", "2s", "--force"]].concat();
    let (o, run_dir) = run("apache-idle", &idle);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let s = summary(&run_dir);
    assert_eq!(s["outcome"], "not_reached", "{out}");
    assert_eq!(u(&s["established_peak"]), 100, "{out}");
    let reason = s["reason"].as_str().unwrap_or_default();
    let taken: u64 = reason
        .rsplit("the server had taken only ")
        .next()
        .and_then(|t| t.trim().replace(',', "").parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        reason.contains("still waiting for the server to accept them") && (0..=55).contains(&taken),
        "{reason}"
    );
    // apache never saw them, so its worker limit is not what stopped it.
    assert_eq!(s["limit"]["kind"], "server_not_accepting", "{out}");
    assert!(
        s["limit"]["sentence"]
            .as_str()
            .is_some_and(|t| t.starts_with("apache2 did not take")),
        "{out}"
    );
    assert!(
        live_mentioning(&dir.to_string_lossy()).is_empty(),
        "apache left behind after the idle run"
    );
}
