//! `c1m run -i` against four real OpenSSH hosts, each in a network namespace of its own with
//! its own address (see `support`): one server, three clients. The binaries are deployed over
//! SFTP, run through exec channels, and must leave nothing behind however the run ends.

mod support;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::Lab;

fn c1m() -> Command {
    Command::new(env!("CARGO_BIN_EXE_c1m"))
}

/// The lab's inventory with a binary directory per host: the namespaced hosts share this
/// machine's filesystem, and per-host directories keep their deploys and processes apart. The
/// run needs no root, so it logs in as a plain user of the lab (whose shell starts in
/// milliseconds, unlike root's here, whose .bashrc runs `pyenv init` on every exec).
fn inventory(lab: &mut Lab) -> PathBuf {
    inventory_of(lab, &[0], &[1, 2, 3])
}

fn inventory_of(lab: &mut Lab, server: &[usize], clients: &[usize]) -> PathBuf {
    let user = lab.add_user(false);
    let mut y = format!(
        "all:\n  vars:\n    ansible_user: {user}\n    ansible_ssh_private_key_file: {}\n    \
         c1m_known_hosts: {}\n  children:\n",
        lab.keys.ed25519.display(),
        lab.known_hosts.display()
    );
    for (group, members) in [("server", server), ("clients", clients)] {
        y.push_str(&format!("    {group}:\n      hosts:\n"));
        for &i in members {
            let h = &lab.hosts[i];
            y.push_str(&format!(
                "        {}:\n          ansible_host: {}\n          ansible_port: {}\n          c1m_bin_dir: {}\n",
                h.name,
                h.address,
                h.port,
                bin_dir(lab, &user, i).display()
            ));
        }
    }
    let path = lab.dir.join("inventory.yml");
    fs::write(&path, y).unwrap();
    path
}

/// Under the user's home, which it owns: the deploy creates the directory itself.
fn bin_dir(lab: &Lab, user: &str, host: usize) -> PathBuf {
    lab.dir
        .join(format!("home-{user}"))
        .join(format!("bin-{}", lab.hosts[host].name))
}

fn run_args(lab: &Lab, inv: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        "-i".into(),
        inv.display().to_string(),
        "--runs-dir".into(),
        lab.dir.join("runs").display().to_string(),
        "--no-progress".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Live (not zombie) processes whose executable lies under `dir`.
fn processes_under(dir: &Path) -> Vec<(u32, PathBuf)> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat.rsplit(") ").next()?.chars().next()?;
            (exe.starts_with(dir) && state != 'Z').then_some((pid, exe))
        })
        .collect()
}

fn assert_nothing_left(lab: &Lab) {
    // The groups are stopped before `c1m run` exits; give the kernel a moment to reap.
    assert_nothing_left_within(lab, Duration::from_secs(5));
}

fn assert_nothing_left_within(lab: &Lab, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_under(&lab.dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "c1m processes left on the hosts: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn latest_run(lab: &Lab) -> (PathBuf, Value) {
    let dir = fs::canonicalize(lab.dir.join("runs/latest")).unwrap();
    let v: Value = serde_json::from_slice(&fs::read(dir.join("run.json")).unwrap()).unwrap();
    (dir, v)
}

fn host<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {run:#}"))
}

/// Waits until `cond` holds, polling; after `limit`, stops the run and panics with its output.
fn wait_for(child: &mut Child, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            // SAFETY: signalling the child we started; SIGINT lets it tear down.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let mut stdout = String::new();
            let mut stderr = String::new();
            use std::io::Read;
            let _ = child
                .stdout
                .take()
                .map(|mut o| o.read_to_string(&mut stdout));
            let _ = child
                .stderr
                .take()
                .map(|mut o| o.read_to_string(&mut stderr));
            panic!("gave up waiting for {what}:\nstdout:\n{stdout}\nstderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The newest run directory's last JSON line of `file` for `host`, once there is one.
fn last_line(lab: &Lab, host: &str, file: &str) -> Option<Value> {
    let dir = fs::canonicalize(lab.dir.join("runs/latest")).ok()?;
    let text = fs::read_to_string(dir.join("hosts").join(host).join(file)).ok()?;
    serde_json::from_str(text.lines().last()?).ok()
}

fn spawn_run(args: &[String]) -> Child {
    spawn_run_to(args, Stdio::piped())
}

fn spawn_run_to(args: &[String], stdout: Stdio) -> Child {
    c1m()
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`; kills it and panics if it takes longer.
fn finish_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("c1m run did not end within {limit:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// Starts a run of 30,000 connections paced at 3,000/s (so it is still connecting seconds later)
/// and returns once `host`'s client has connections open.
fn start_paced_run(lab: &Lab, inv: &Path, hold: &str, host: &str) -> Child {
    start_paced_run_to(lab, inv, hold, host, Stdio::piped())
}

/// [`start_paced_run`] with the run's stdout going to `stdout`.
fn start_paced_run_to(lab: &Lab, inv: &Path, hold: &str, host: &str, stdout: Stdio) -> Child {
    let mut child = spawn_run_to(
        &run_args(lab, inv, &["-n", "30000", "--rate", "3000", "--hold", hold]),
        stdout,
    );
    wait_for(
        &mut child,
        &format!("{host}'s client connecting"),
        Duration::from_secs(60),
        || last_line(lab, host, "client.jsonl").is_some_and(|l| l["open"].as_u64() > Some(0)),
    );
    child
}

/// Takes `host`'s network link down or up: no FIN, no RST, just silence, as a crashed VM.
fn set_link(lab: &Lab, host: usize, state: &str) {
    let out = lab.hosts[host]
        .netns_cmd("ip")
        .args(["link", "set", "eth0", state])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

fn kill_binary(lab: &Lab, host: usize, name: &str) {
    let dir = lab.dir.clone();
    let host_dir = format!("bin-{}", lab.hosts[host].name);
    let procs: Vec<u32> = processes_under(&dir)
        .into_iter()
        .filter(|(_, exe)| {
            exe.file_name().is_some_and(|f| f == name)
                && exe
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|d| *d == *host_dir)
        })
        .map(|p| p.0)
        .collect();
    assert!(
        !procs.is_empty(),
        "no {name} running on {}",
        lab.hosts[host].name
    );
    for pid in procs {
        // SAFETY: signalling a test process found by its executable.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

#[test]
fn a_run_over_four_sshd_hosts_reaches_its_target_and_leaves_nothing() {
    let Some(mut lab) = Lab::start("remote_run_reaches", 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let out = c1m()
        .args(run_args(
            &lab,
            &inv,
            &["-n", "30000", "--hold", "2s", "--message-interval", "500ms"],
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("the plan fits"), "{stdout}");
    for h in &lab.hosts {
        assert!(
            stdout.contains(&format!(
                "deploy {}: uploaded c1m-server, c1m-client",
                h.name
            )),
            "{stdout}"
        );
    }
    // Each host's pace, which the engine's waits there are derived from, was measured.
    let deploys: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("deploy "))
        .collect();
    assert_eq!(deploys.len(), lab.hosts.len(), "{stdout}");
    assert!(
        deploys.iter().all(|l| l.contains("starts a program in")),
        "{stdout}"
    );
    let (dir, run) = latest_run(&lab);
    assert_eq!(run["outcome"], "reached", "{run:#}");
    assert_eq!(run["partial"], false, "{run:#}");
    assert_eq!(run["target"], 30000);
    assert!(
        run["established_peak"].as_u64().unwrap() >= 30000,
        "{run:#}"
    );
    assert!(
        run["server_open_peak"].as_u64().unwrap() >= 30000,
        "{run:#}"
    );
    assert!(run["time_to_target_s"].as_f64().unwrap() > 0.0);
    assert!(run["connect_latency_us"]["count"].as_u64().unwrap() >= 30000);
    // While holding, every connection sent messages and their round trips were timed.
    assert!(run["rtt_us"]["count"].as_u64().unwrap() >= 30000, "{run:#}");
    // The shares add up, each client reached its own, the server's kernel memory was measured.
    let shares: u64 = lab.hosts[1..]
        .iter()
        .map(|h| {
            let hs = host(&run, &h.name);
            assert_eq!(hs["role"], "client");
            assert_eq!(hs["established_peak"], hs["share"], "{hs:#}");
            assert_eq!(hs["address"], h.address.as_str());
            hs["share"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(shares, 30000);
    assert_eq!(host(&run, "h0")["role"], "server");
    assert!(
        run["kernel_bytes_per_conn"].as_f64().unwrap() > 500.0,
        "{run:#}"
    );
    assert_eq!(run["kernel_memory"]["both_ends"], false);
    // The run directory is complete.
    for f in ["run.json", "events.jsonl", "plan.json"] {
        assert!(fs::metadata(dir.join(f)).unwrap().len() > 0, "{f}");
    }
    assert!(
        fs::metadata(dir.join("hosts/h0/server.jsonl"))
            .unwrap()
            .len()
            > 0
    );
    for h in &lab.hosts {
        assert!(dir.join("hosts").join(&h.name).join("facts.json").is_file());
    }
    for h in &lab.hosts[1..] {
        let last = last_line(&lab, &h.name, "client.jsonl").unwrap();
        assert_eq!(last["event"], "summary", "{last:#}");
        assert!(dir.join("hosts").join(&h.name).join("client.log").is_file());
    }
    assert_nothing_left(&lab);

    // The same binaries again: nothing is uploaded.
    let out = c1m()
        .args(run_args(&lab, &inv, &["-n", "3000", "--hold", "0s"]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout.contains("uploaded"), "{stdout}");
    assert_eq!(
        stdout
            .matches("c1m-server, c1m-client unchanged (sha256 matches)")
            .count(),
        4,
        "{stdout}"
    );
    assert_nothing_left(&lab);
}

#[test]
fn a_client_killed_mid_run_is_marked_and_the_rest_finish() {
    let Some(mut lab) = Lab::start("remote_run_client_killed", 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let child = start_paced_run(&lab, &inv, "1s", "h2");
    kill_binary(&lab, 2, "c1m-client");
    let out = finish_within(child, Duration::from_secs(90));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (_, run) = latest_run(&lab);
    assert_eq!(run["partial"], true, "{run:#}");
    assert_ne!(run["outcome"], "reached", "{run:#}");
    let h2 = host(&run, "h2");
    assert!(
        h2["failure"]
            .as_str()
            .is_some_and(|f| f.contains("c1m-client on h2 exited")),
        "{h2:#}"
    );
    let mut others = 0;
    for other in ["h1", "h3"] {
        let h = host(&run, other);
        assert!(h["failure"].is_null(), "{h:#}");
        assert_eq!(h["established_peak"], h["share"], "{h:#}");
        others += h["share"].as_u64().unwrap_or(0);
    }
    // Held at once: the killed client's last count closed with it and is not added to the
    // others' (it was killed seconds in, with far fewer than they hold at the end).
    assert_eq!(run["established_peak"].as_u64(), Some(others), "{run:#}");
    assert_nothing_left(&lab);
}

#[test]
fn a_server_killed_mid_run_stops_the_run_promptly() {
    let Some(mut lab) = Lab::start("remote_run_server_killed", 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let child = start_paced_run(&lab, &inv, "30s", "h1");
    let killed = Instant::now();
    kill_binary(&lab, 0, "c1m-server");
    let out = finish_within(child, Duration::from_secs(60));
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "took {:?}",
        killed.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (_, run) = latest_run(&lab);
    assert_eq!(run["outcome"], "failed", "{run:#}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the server stopped during the run") && reason.contains("h0"),
        "{reason}"
    );
    assert_nothing_left(&lab);
}

/// Starts a run holding 30,000 connections over three client hosts, forever; returns once
/// every client holds its share.
fn start_holding_forever(lab: &Lab, inv: &Path) -> Child {
    let mut child = spawn_run(&run_args(lab, inv, &["-n", "30000", "--hold", "forever"]));
    wait_for(
        &mut child,
        "every client holding",
        Duration::from_secs(90),
        || {
            lab.hosts[1..].iter().all(|h| {
                last_line(lab, &h.name, "client.jsonl")
                    .is_some_and(|l| l["open"].as_u64() == Some(10000))
            })
        },
    );
    child
}

/// SIGINT, SIGTERM and SIGHUP to `c1m` each stop every host within seconds: exit 130, a run
/// directory that says interrupted, nothing left on any host.
fn a_signal_stops_every_host(test: &str, sig: libc::c_int, name: &str) {
    let Some(mut lab) = Lab::start(test, 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let child = start_holding_forever(&lab, &inv);
    let sent = Instant::now();
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(child.id() as i32, sig) };
    let out = finish_within(child, Duration::from_secs(30));
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let (_, run) = latest_run(&lab);
    assert_eq!(run["outcome"], "interrupted", "{run:#}");
    assert!(run["reason"].as_str().unwrap().contains(name), "{run:#}");
    assert_eq!(run["established_peak"], 30000, "{run:#}");
    assert_nothing_left(&lab);
}

#[test]
fn sigint_stops_every_host_within_seconds() {
    a_signal_stops_every_host("remote_run_sigint", libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_stops_every_host_within_seconds() {
    a_signal_stops_every_host("remote_run_sigterm", libc::SIGTERM, "SIGTERM");
}

#[test]
fn sighup_stops_every_host_within_seconds() {
    a_signal_stops_every_host("remote_run_sighup", libc::SIGHUP, "SIGHUP");
}

/// SIGKILL to `c1m`: its SSH connections die with it, each sshd closes its binary's stdin, and
/// the binaries stop by themselves within seconds.
#[test]
fn after_sigkill_every_binary_stops_by_itself() {
    let Some(mut lab) = Lab::start("remote_run_sigkill", 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let mut child = start_holding_forever(&lab, &inv);
    child.kill().unwrap();
    child.wait().unwrap();
    let (dir, _) = (fs::canonicalize(lab.dir.join("runs/latest")).unwrap(), ());
    assert!(
        !dir.join("run.json").exists(),
        "a killed controller writes nothing"
    );
    assert_nothing_left_within(&lab, Duration::from_secs(15));
}

#[test]
fn a_client_host_that_goes_silent_is_declared_lost_and_its_binary_stops_when_it_returns() {
    let Some(mut lab) = Lab::start("remote_run_host_lost", 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let child = start_paced_run(&lab, &inv, "1s", "h3");
    set_link(&lab, 3, "down");
    let out = finish_within(child, Duration::from_secs(120));
    set_link(&lab, 3, "up");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (_, run) = latest_run(&lab);
    assert_eq!(run["partial"], true, "{run:#}");
    let h3 = host(&run, "h3");
    let failure = h3["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("lost h3"), "{h3:#}");
    for other in ["h1", "h2"] {
        let h = host(&run, other);
        assert_eq!(h["established_peak"], h["share"], "{h:#}");
    }
    // Back on the network, h3's sshd learns the controller is gone and closes the binary's
    // stdin: the client stops by itself.
    assert_nothing_left_within(&lab, Duration::from_secs(60));
}

/// Teardown's check of a host's process groups outlasts a host that does not answer for a while
/// (a TCG guest closing a million sockets drops its SSH connections): it opens a new connection
/// when the host is back and confirms there, instead of giving up with "could not check".
#[test]
fn teardown_reconnects_to_a_host_that_was_silent_and_confirms_its_processes_ended() {
    let Some(mut lab) = Lab::start("remote_run_teardown_retry", 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let out_path = lab.dir.join("run-stdout.txt");
    let stdout = fs::File::create(&out_path).unwrap();
    let mut child = start_paced_run_to(&lab, &inv, "1s", "h3", stdout.into());
    set_link(&lab, 3, "down");
    // h3 is declared lost, the others finish, and teardown finds h3 silent: only then is it back.
    wait_for(
        &mut child,
        "teardown waiting for h3",
        Duration::from_secs(120),
        || fs::read_to_string(&out_path).is_ok_and(|t| t.contains("teardown: waiting for h3")),
    );
    set_link(&lab, 3, "up");
    let out = finish_within(child, Duration::from_secs(90));
    let printed = fs::read_to_string(&out_path).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{printed}\n{}", text(&out));
    let (_, run) = latest_run(&lab);
    let h3 = host(&run, "h3");
    assert!(
        h3["failure"]
            .as_str()
            .unwrap_or_default()
            .contains("lost h3"),
        "{h3:#}"
    );
    let findings = h3["teardown"].to_string();
    assert!(
        !findings.contains("could not check"),
        "{findings}\n{printed}"
    );
    // Confirmed over the new connection: the group is gone (or was stopped just now).
    assert_nothing_left_within(&lab, Duration::from_secs(5));
}

/// Benchmark, not a test: `scripts/remote-bench` runs it. C1M_BENCH_CONNECTIONS connections
/// (default 300,000) over the four sshd hosts, then the same number on this machine over
/// loopback, and prints how long each took and at what rate.
#[test]
#[ignore]
fn bench_remote_run_against_the_local_engine() {
    let n: u64 = std::env::var("C1M_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let Some(mut lab) = Lab::start("remote_run_bench", 4) else {
        return;
    };
    let inv = inventory(&mut lab);
    let ns = n.to_string();
    // Warm-up: deploys the binaries and faults the kernel's memory in, like hyperfine's --warmup.
    let warm = c1m()
        .args(run_args(&lab, &inv, &["-n", &ns, "--hold", "0s"]))
        .output()
        .unwrap();
    assert!(warm.status.success(), "{}", text(&warm));
    assert_nothing_left(&lab);
    let started = Instant::now();
    let out = c1m()
        .args(run_args(&lab, &inv, &["-n", &ns, "--hold", "0s"]))
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    let (_, remote) = latest_run(&lab);
    assert_nothing_left(&lab);

    let local_out = lab.dir.join("local-runs");
    let out = c1m()
        .args([
            "run",
            "-n",
            &ns,
            "--hold",
            "0s",
            "--no-progress",
            "--runs-dir",
        ])
        .arg(&local_out)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dir = fs::canonicalize(local_out.join("latest")).unwrap();
    let local: Value = serde_json::from_slice(&fs::read(dir.join("run.json")).unwrap()).unwrap();

    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!("\n== c1m run over 4 sshd hosts (1 server + 3 clients, netns on this machine) vs local, {n} connections");
    println!(
        "remote: c1m run → all clients connected {:.2} s (clients' start → target {:.2} s), mean {:.0} conn/s, peak {:.0} conn/s, whole command {wall:.2} s",
        f(&remote, "run_to_target_s"),
        f(&remote, "time_to_target_s"),
        f(&remote, "connect_rate_mean"),
        f(&remote, "connect_rate_peak")
    );
    println!(
        "local:  clients' start → target {:.2} s, mean {:.0} conn/s, peak {:.0} conn/s",
        f(&local, "time_to_target_s"),
        f(&local, "connect_rate_mean"),
        f(&local, "connect_rate_peak")
    );
    println!(
        "remote/local connect rate: {:.2}; remote connect latency p50 {} µs p99 {} µs; server kernel {:.0} B/conn",
        f(&remote, "connect_rate_mean") / f(&local, "connect_rate_mean"),
        remote["connect_latency_us"]["p50"],
        remote["connect_latency_us"]["p99"],
        f(&remote, "kernel_bytes_per_conn")
    );
}

#[test]
fn an_unreachable_client_host_refuses_the_run_before_anything_starts() {
    let Some(mut lab) = Lab::start("remote_run_unreachable", 2) else {
        return;
    };
    let inv = inventory_of(&mut lab, &[0], &[1]);
    let dead = lab.dead_address();
    let text_inv = fs::read_to_string(&inv).unwrap();
    // A third client at an address where nothing answers.
    let with_dead = text_inv.replace(
        "    clients:\n      hosts:\n",
        &format!("    clients:\n      hosts:\n        ghost:\n          ansible_host: {dead}\n"),
    );
    fs::write(&inv, with_dead).unwrap();
    let out = c1m()
        .args(run_args(&lab, &inv, &["-n", "1000", "--hold", "0s"]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Exit 4: a host could not be reached.
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(stdout.contains("ghost (client"), "{stdout}");
    assert!(stdout.contains(&dead), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to start"),
        "{}",
        text(&out)
    );
    // Nothing was deployed or started on the reachable hosts.
    assert!(!stdout.contains("deploy "), "{stdout}");
    assert!(!lab.dir.join("runs").exists());
    assert_nothing_left(&lab);
}

#[test]
fn a_hostile_source_ip_value_is_refused_and_runs_nothing() {
    let Some(mut lab) = Lab::start("remote_run_hostile", 2) else {
        return;
    };
    let inv = inventory_of(&mut lab, &[0], &[1]);
    let pwned = lab.dir.join("pwned");
    let hostile = format!("10.0.0.1; touch {}", pwned.display());
    let text_inv = fs::read_to_string(&inv).unwrap();
    let h1 = format!("        {}:\n", lab.hosts[1].name);
    let with_var = text_inv.replace(
        &h1,
        &format!("{h1}          c1m_source_ips: \"{hostile}\"\n"),
    );
    assert_ne!(with_var, text_inv);
    fs::write(&inv, with_var).unwrap();
    // `c1m check` and `c1m run` judge the value with the same code: both refuse it (exit 3),
    // naming the variable and the host, and nothing runs.
    let finding = "✗ c1m_source_ips: found `10.0.0.1; touch";
    let check = c1m()
        .args(["check", "-i", inv.to_str().unwrap(), "-n", "1000"])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(3), "{}", text(&check));
    assert!(text(&check).contains(finding), "{}", text(&check));
    let out = c1m()
        .args(run_args(&lab, &inv, &["-n", "1000", "--hold", "0s"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains(finding), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "correct c1m_source_ips of host {}",
            lab.hosts[1].name
        )),
        "{}",
        text(&out)
    );
    assert!(!pwned.exists(), "the hostile value ran a command");
    assert_nothing_left(&lab);
}
