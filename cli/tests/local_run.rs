//! `c1m run` on this machine over loopback, with the real binaries.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn c1m() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c1m"));
    if std::env::var_os("C1M_BIN_DIR").is_none() {
        // c1m finds c1m-server/c1m-client beside itself; under cargo test they are built there.
        let dir = Path::new(env!("CARGO_BIN_EXE_c1m"))
            .parent()
            .unwrap()
            .to_path_buf();
        c.env("C1M_BIN_DIR", dir);
    }
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("c1m-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `c1m run ARGS --out <fresh dir> --no-progress`: its output and the run directory it wrote.
fn run_local(name: &str, args: &[&str]) -> (Output, PathBuf) {
    let out_dir = tmp(name);
    let out = c1m()
        .arg("run")
        .args(args)
        .arg("--runs-dir")
        .arg(&out_dir)
        .arg("--no-progress")
        .output()
        .unwrap();
    (out, out_dir)
}

/// The run directory `OUT/latest` points at.
fn latest(out_dir: &Path) -> PathBuf {
    std::fs::canonicalize(out_dir.join("latest")).unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn lines(p: &Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(p).unwrap())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// PIDs of the server and client that a run directory's raw lines name.
fn pids(run: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for f in ["server.jsonl", "client.jsonl"] {
        for v in lines(&run.join("hosts/localhost").join(f)) {
            if v["event"] == "layout" {
                out.push(v["pid"].as_u64().unwrap());
            }
        }
    }
    out
}

fn assert_gone(pids: &[u64]) {
    for pid in pids {
        let p = format!("/proc/{pid}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&p).exists() && Instant::now() < deadline {
            // A zombie is gone for our purposes only once reaped; give the reaper a moment.
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !Path::new(&p).exists(),
            "process {pid} is still there after the run"
        );
    }
}

/// The kernel's socket memory is one figure for the whole machine, and the 50k test asserts on
/// its growth: tests that open or tear down thousands of sockets at the same time would move
/// it. That test runs alone; the others share.
static SOCKETS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    SOCKETS.write().unwrap_or_else(|e| e.into_inner())
}

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SOCKETS.read().unwrap_or_else(|e| e.into_inner())
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn fifty_thousand_connections_all_echoed_and_nothing_left() {
    let _sockets = alone();
    let (out, out_dir) = run_local(
        "50k",
        &["--connections", "50000", "--hold", "1s", "--port", "32000"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let run = latest(&out_dir);
    let s = read_json(&run.join("run.json"));
    assert_eq!(s["outcome"], "reached", "{s}");
    assert_eq!(s["target"], 50000);
    assert_eq!(s["established_peak"], 50000);
    assert!(
        s["errors"].as_object().unwrap().is_empty(),
        "{}",
        s["errors"]
    );
    assert!(s["time_to_target_s"].as_f64().unwrap() > 0.0);
    assert!(s["connect_rate_peak"].as_f64().unwrap() > 0.0);
    assert!(s["kernel_bytes_per_conn"].as_f64().unwrap() > 1000.0);
    assert!(s["user_bytes_per_conn"].as_f64().unwrap() > 0.0);
    // The server saw exactly what the client verified.
    let server = lines(&run.join("hosts/localhost/server.jsonl"));
    let client = lines(&run.join("hosts/localhost/client.jsonl"));
    let ssum = server
        .iter()
        .find(|v| v["event"] == "summary")
        .expect("server summary");
    let csum = client
        .iter()
        .find(|v| v["event"] == "summary")
        .expect("client summary");
    assert_eq!(ssum["greeted"], 50000);
    assert_eq!(csum["verified"], 50000);
    assert!(
        server.iter().any(|v| v["open"] == 50000),
        "server never held all 50,000 at once"
    );
    let events = lines(&run.join("events.jsonl"));
    assert!(events.iter().any(|e| e["established"] == 50000));
    assert_gone(&pids(&run));
}

#[test]
fn a_low_fd_limit_is_met_with_more_fd_tables() {
    let _sockets = shared();
    let out_dir = tmp("lowfd");
    let out = Command::new("prlimit")
        .arg("--nofile=1000:1000")
        .arg(env!("CARGO_BIN_EXE_c1m"))
        .args([
            "run",
            "--connections",
            "20000",
            "--hold",
            "0s",
            "--port",
            "33000",
        ])
        .arg("--runs-dir")
        .arg(&out_dir)
        .arg("--no-progress")
        .env(
            "C1M_BIN_DIR",
            std::env::var_os("C1M_BIN_DIR").unwrap_or_else(|| {
                Path::new(env!("CARGO_BIN_EXE_c1m"))
                    .parent()
                    .unwrap()
                    .into()
            }),
        )
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(out.status.success(), "{}", show(&out));
    let run = latest(&out_dir);
    let layouts: Vec<Value> = ["server.jsonl", "client.jsonl"]
        .iter()
        .flat_map(|f| lines(&run.join("hosts/localhost").join(f)))
        .filter(|v| v["event"] == "layout")
        .collect();
    assert_eq!(layouts.len(), 2);
    for l in &layouts {
        assert_eq!(l["nofile_hard"], 1000);
        let tables = l["procs"].as_u64().unwrap() * l["threads_per_proc"].as_u64().unwrap();
        assert!(
            tables >= 21,
            "20,000 sockets under a 1,000 fd cap need ≥ 21 tables: {l}"
        );
    }
    assert_eq!(read_json(&run.join("run.json"))["established_peak"], 20000);
    assert_gone(&pids(&run));
}

#[test]
fn worker_processes_when_asked() {
    let _sockets = shared();
    let (out, out_dir) = run_local(
        "procs",
        &[
            "--connections",
            "12000",
            "--hold",
            "0s",
            "--port",
            "34000",
            "--procs",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let run = latest(&out_dir);
    let s = read_json(&run.join("run.json"));
    assert_eq!(s["established_peak"], 12000);
    let client = lines(&run.join("hosts/localhost/client.jsonl"));
    let csum = client.iter().find(|v| v["event"] == "summary").unwrap();
    assert_eq!(csum["procs"], 3);
    assert_eq!(csum["verified"], 12000);
}

/// Whether `pid` is a live process (a zombie left to a PID 1 that does not reap is not).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(") ").next()?.chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Waits up to `limit` for every pid to be gone; panics naming those still alive.
fn assert_dead_within(pids: &[u64], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u64> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still alive {limit:?} after the controller ended: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `c1m run` holding 20,000 connections forever in `out_dir` and returns once the
/// server and the client both printed their layout lines and the client holds its share.
fn start_holding(out_dir: &Path, port: &str) -> std::process::Child {
    let mut child = c1m()
        .args(["run", "--connections", "20000", "--hold", "forever"])
        .args(["--first-port", port, "--rate", "20000"])
        .arg("--runs-dir")
        .arg(out_dir)
        .arg("--no-progress")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The run directory and the client's file appear while the run starts: absent is "not
        // yet", not a failure.
        let holding = std::fs::canonicalize(out_dir.join("latest"))
            .and_then(|run| std::fs::read_to_string(run.join("hosts/localhost/client.jsonl")))
            .is_ok_and(|text| json_lines(&text).iter().any(|v| v["open"] == 20000));
        if holding {
            return child;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the run did not come to hold its 20,000 connections");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// SIGINT (Ctrl-C), SIGTERM (kill, timeout, service managers) and SIGHUP (the terminal
/// closed) each tear the run down: exit 130, a run directory that says interrupted with both
/// binaries' summaries, no binary alive, the run's namespace gone.
fn a_signal_tears_the_run_down(sig: libc::c_int, name: &str, port: &str) {
    let out_dir = tmp(name);
    let mut child = start_holding(&out_dir, port);
    let netns = format!("c1m-run-{}", child.id());
    let run = latest(&out_dir);
    let started = pids(&run);
    assert_eq!(started.len(), 2, "server and client layout lines");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "c1m run did not stop after {name}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{name}: {status:?}");
    let s = read_json(&run.join("run.json"));
    assert_eq!(s["outcome"], "interrupted", "{s:#}");
    assert!(
        s["reason"].as_str().unwrap().contains(name),
        "{}",
        s["reason"]
    );
    assert_eq!(s["established_peak"], 20000);
    // The signal came while holding: that, not an error counted while closing, is the limit.
    assert_eq!(s["limit"]["kind"], "interrupted", "{s:#}");
    let sentence = s["limit"]["sentence"].as_str().unwrap_or_default();
    assert!(
        sentence.starts_with("The target was reached; then the run was stopped while holding")
            && sentence.contains(name),
        "{sentence}"
    );
    assert_eq!(
        s["partial"], false,
        "both binaries wrote their summaries: {s:#}"
    );
    assert_dead_within(&started, Duration::from_secs(5));
    assert!(!netns_exists(&netns), "{netns} is left behind");
}

#[test]
fn sigint_tears_the_run_down() {
    let _sockets = shared();
    a_signal_tears_the_run_down(libc::SIGINT, "SIGINT", "35000");
}

#[test]
fn sigterm_tears_the_run_down() {
    let _sockets = shared();
    a_signal_tears_the_run_down(libc::SIGTERM, "SIGTERM", "35100");
}

#[test]
fn sighup_tears_the_run_down() {
    let _sockets = shared();
    a_signal_tears_the_run_down(libc::SIGHUP, "SIGHUP", "35200");
}

/// SIGKILL cannot be caught: the binaries see their stdin end and stop by themselves within
/// seconds, and the next run removes the namespace the killed one left.
#[test]
fn after_sigkill_the_binaries_stop_themselves_and_the_next_run_clears_the_namespace() {
    let _sockets = shared();
    let out_dir = tmp("sigkill");
    let mut child = start_holding(&out_dir, "35300");
    let netns = format!("c1m-run-{}", child.id());
    let had_netns = netns_exists(&netns);
    let run = latest(&out_dir);
    let started = pids(&run);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_dead_within(&started, Duration::from_secs(10));
    assert!(
        !run.join("run.json").exists(),
        "a killed controller writes nothing"
    );
    let (out, _) = run_local(
        "after-sigkill",
        &[
            "--connections",
            "1000",
            "--hold",
            "0s",
            "--first-port",
            "35400",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    if had_netns {
        assert!(!netns_exists(&netns), "the next run left {netns} behind");
    }
}

#[test]
fn a_run_that_cannot_fit_is_refused_with_the_fix() {
    let _sockets = shared();
    let out = c1m()
        .args([
            "run",
            "--connections",
            "1000000",
            "--source-ips",
            "127.0.0.2",
            "--ports",
            "1",
        ])
        .arg("--runs-dir")
        .arg(tmp("refuse"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stdout.contains("✗ 4-tuples"), "{stdout}");
    assert!(stdout.contains("source IPs"), "{stdout}");
}

#[test]
fn a_forced_run_whose_client_gives_up_ends_at_once() {
    let _sockets = shared();
    let t = Instant::now();
    let (out, out_dir) = run_local(
        "forced",
        &[
            "--connections",
            "30000",
            "--ports",
            "1",
            "--source-ips",
            "127.0.0.2",
            "--port",
            "36000",
            "--force",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    let run = latest(&out_dir);
    let s = read_json(&run.join("run.json"));
    assert_eq!(s["outcome"], "not_reached");
    assert!(
        s["reason"].as_str().unwrap().contains("4-tuples"),
        "{}",
        s["reason"]
    );
    assert_gone(&pids(&run));
}

#[test]
fn connections_max_is_this_machines_alone_and_only_for_run() {
    // An inventory with a host over SSH: refused before anything is reached or started.
    let dir = tmp("max-remote");
    let inv = dir.join("hosts.yml");
    std::fs::write(
        &inv,
        "all:\n  children:\n    server:\n      hosts:\n        far:\n          ansible_host: 192.0.2.10\n    \
         clients:\n      hosts:\n        localhost:\n          ansible_connection: local\n",
    )
    .unwrap();
    let out = c1m()
        .args(["run", "--connections", "max", "-i"])
        .arg(&inv)
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr.contains("this machine's ceiling"), "{stderr}");
    assert!(stderr.contains("far"), "{stderr}");
    assert!(
        !dir.join("runs").exists(),
        "no run directory for a refused max"
    );

    // c1m check has no calibration run to measure with.
    let out = c1m()
        .args(["check", "--connections", "max"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("c1m check needs a number"),
        "{}",
        show(&out)
    );

    // Neither a number nor `max`; a memory cap on a run of a given number.
    for (args, says) in [
        (
            &["--connections", "lots"][..],
            "neither a number of connections nor `max`",
        ),
        (
            &["--connections", "1000", "--max-memory", "1G"][..],
            "--max-memory caps the ceiling",
        ),
        (
            &["--connections", "max", "--max-memory", "lots"][..],
            "is not a size",
        ),
    ] {
        let out = c1m().arg("run").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            show(&out)
        );
    }
}

/// The number after `before` in `text`, commas dropped ("… calibration run of 8,080 …").
fn figure_after(text: &str, before: &str) -> f64 {
    let rest = &text[text
        .find(before)
        .unwrap_or_else(|| panic!("no {before:?} in:\n{text}"))
        + before.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '-'))
        .filter(|c| *c != ',')
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("no figure after {before:?} in:\n{text}"))
}

#[test]
fn connections_max_within_a_memory_cap_calibrates_then_runs_its_ceiling() {
    // Its calibration reads the machine's kernel memory growth: no sibling may tear down
    // thousands of sockets meanwhile.
    let _sockets = alone();
    let before = std::fs::read_to_string("/proc/sys/fs/file-max").unwrap();

    // Too little memory for any calibration run: refused before anything starts.
    let (out, dir) = run_local(
        "max-tiny",
        &["--connections", "max", "--max-memory", "8MiB"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no ceiling to find"),
        "{}",
        show(&out)
    );
    assert!(!dir.join("latest").exists(), "a refused max started a run");

    // 128 MiB: a calibration run of half what that holds at the preflight's 8,300 B a
    // connection, then the ceiling its measured cost gives, reached with every echo verified.
    let cap = 128u64 << 20;
    let (out, dir) = run_local(
        "max-small",
        &[
            "--connections",
            "max",
            "--max-memory",
            "128MiB",
            "--hold",
            "0s",
            "--port",
            "37000",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let calibration = figure_after(&stdout, "a calibration run of") as u64;
    assert_eq!(calibration, 8_080, "{stdout}");
    let ceiling = figure_after(&stdout, "ceiling:") as u64;
    let per_conn = figure_after(&stdout, "(--max-memory 128.0 MiB) /");
    let kernel = figure_after(&stdout, "measured: kernel");
    let user = figure_after(&stdout, "and the binaries");
    // Counted at what the calibration measured, never below the preflight's two sockets.
    assert!(per_conn >= 8_300.0, "{stdout}");
    assert!(
        (per_conn - (kernel + user).max(8_300.0)).abs() <= 1.0,
        "{stdout}"
    );
    assert!(ceiling as f64 * per_conn <= cap as f64, "{stdout}");
    // Three significant digits, rounded down: one more in the third digit would not fit.
    let unit = 10u64.pow((ceiling as f64).log10().floor() as u32 - 2);
    assert_eq!(ceiling % unit, 0, "{stdout}");
    assert!((ceiling + unit) as f64 * per_conn > cap as f64, "{stdout}");
    assert!(ceiling > calibration, "{stdout}");

    // Two run directories: the calibration run's and the ceiling's, both passed.
    let mut targets: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "latest" && e.path().join("run.json").exists())
        .map(|e| {
            let s = read_json(&e.path().join("run.json"));
            assert_eq!(s["outcome"], "reached", "{s}");
            assert!(
                s["errors"].as_object().unwrap().is_empty(),
                "{}",
                s["errors"]
            );
            assert_eq!(s["established_peak"], s["target"], "{s}");
            s["target"].as_u64().unwrap()
        })
        .collect();
    targets.sort();
    assert_eq!(targets, [calibration, ceiling]);
    let last = read_json(&latest(&dir).join("run.json"));
    assert_eq!(last["target"], ceiling);
    assert_gone(&pids(&latest(&dir)));
    // This ceiling needed no more file handles than there were: fs.file-max untouched.
    assert!(!stdout.contains("fs.file-max raised"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/fs/file-max").unwrap(),
        before
    );
}

/// `--protocol idle`: connections opened and held with nothing sent, each counted at its
/// handshake; c1m-server holds them all (its default model never waits for a greeting).
#[test]
fn idle_connections_are_held_without_a_greeting() {
    let _sockets = shared();
    let (out, out_dir) = run_local(
        "idle",
        &[
            "--protocol",
            "idle",
            "--connections",
            "5000",
            "--hold",
            "1s",
            "--port",
            "38000",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("greeting rides in its SYN"),
        "no Fast Open for idle: {stdout}"
    );
    let run = latest(&out_dir);
    let s = read_json(&run.join("run.json"));
    assert_eq!(s["outcome"], "reached", "{s:#}");
    assert_eq!(s["established_peak"], 5000);
    assert!(s["server_open_peak"].as_u64().unwrap() >= 5000, "{s:#}");
    assert!(
        s["errors"].as_object().unwrap().is_empty(),
        "{}",
        s["errors"]
    );
    assert_eq!(s["server"]["protocol"], "idle", "{s:#}");
    assert!(
        s["connect_latency_us"]["p50"].as_u64().unwrap() > 0,
        "{s:#}"
    );
    let server = lines(&run.join("hosts/localhost/server.jsonl"));
    let ssum = server.iter().find(|v| v["event"] == "summary").unwrap();
    assert_eq!(ssum["greeted"], 0, "nothing was sent: {ssum}");
    assert_eq!(ssum["bytes_in"], 0, "{ssum}");
    let client = lines(&run.join("hosts/localhost/client.jsonl"));
    let csum = client.iter().find(|v| v["event"] == "summary").unwrap();
    assert_eq!(csum["verified"], 5000);
    assert_eq!(csum["dropped"], 0, "{csum}");
    assert_gone(&pids(&run));
}

/// A message interval asks for messages that an idle connection never sends: refused before
/// anything starts, by `c1m run` and by `c1m-client` alike, naming both flags.
#[test]
fn idle_with_a_message_interval_is_refused_naming_both_flags() {
    let (out, out_dir) = run_local(
        "idle-interval",
        &[
            "--protocol",
            "idle",
            "--message-interval",
            "1s",
            "--connections",
            "10",
            "--port",
            "38100",
        ],
    );
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--message-interval") && err.contains("--protocol idle"),
        "{}",
        show(&out)
    );
    assert!(
        !out_dir.join("latest").exists(),
        "nothing ran: {}",
        show(&out)
    );
    let bin_dir = std::env::var_os("C1M_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_c1m"))
                .parent()
                .unwrap()
                .into()
        });
    let client = bin_dir.join("c1m-client");
    if !client.exists() {
        eprintln!(
            "skipping c1m-client's half: {} is not built",
            client.display()
        );
        return;
    }
    let out = Command::new(client)
        .args(["--protocol", "idle", "--message-interval", "1s"])
        .args(["--connections", "10", "--port", "38100"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--message-interval") && err.contains("--protocol idle"),
        "{}",
        show(&out)
    );
}
