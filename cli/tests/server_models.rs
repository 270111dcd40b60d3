//! `c1m run --server-model a,b,…` on this machine over loopback, with the real binaries: one run
//! per model through the one engine, each model reaching the target or stopping at the ceiling
//! its preflight named, a run directory per model, and the comparison beside them that
//! `c1m report --compare` renders the same way.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

/// The one `*-models` directory a series wrote under `runs`.
fn group_of(runs: &Path) -> PathBuf {
    let groups: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-models"))
        .collect();
    assert_eq!(groups.len(), 1, "{groups:?}");
    groups[0].clone()
}

#[test]
fn three_models_each_reach_or_name_their_ceiling_and_are_compared() {
    let runs = std::env::temp_dir().join(format!("c1m-test-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runs);
    let models = ["epoll-threads", "sync", "thread-per-conn"];
    let out = c1m()
        .args(["run", "--server-model", &models.join(",")])
        .args(["--connections", "25000", "--hold", "1s", "--port", "34000"])
        .arg("--runs-dir")
        .arg(&runs)
        .arg("--no-progress")
        .output()
        .unwrap();
    let said = show(&out);
    assert!(out.status.success(), "{said}");
    // The preflight names sync's one fd table as where it stops, and does not refuse.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("⚠ sync: RLIMIT_NOFILE (hard), one fd table")
            && stdout.contains("this model stops near"),
        "{said}"
    );
    assert!(stdout.contains("thread-per-conn: kernel.pid_max"), "{said}");

    let group = group_of(&runs);
    let mut dirs = Vec::new();
    let mut reached = 0;
    for m in models {
        let dir = std::fs::canonicalize(group.join(m).join("latest"))
            .unwrap_or_else(|e| panic!("{m}: no run directory: {e}\n{said}"));
        let s = read_json(&dir.join("run.json"));
        assert_eq!(s["server"]["name"], m, "{s}");
        assert_eq!(s["server"]["kind"], "c1m_server", "{s}");
        // The server ran the model asked for: sync's thread count says so below.
        let threads = s["server"]["threads"].as_u64().unwrap_or(0);
        match s["outcome"].as_str() {
            Some("reached") => {
                reached += 1;
                assert_eq!(s["established_peak"], 25000, "{m}: {s}");
            }
            _ => {
                // Not reached: the limit is the model's own ceiling, with its number and fix.
                let limit = &s["limit"];
                assert_eq!(limit["kind"], "model", "{m}: {s}");
                let ceiling = s["server"]["predicted_ceiling"].as_u64().unwrap();
                assert!(ceiling < 25000, "{m}: {s}");
                let sentence = limit["sentence"].as_str().unwrap();
                assert!(
                    sentence.starts_with(&format!("{m} stops near")),
                    "{sentence}"
                );
                assert!(limit["evidence"].as_str().unwrap().contains("fix:"), "{s}");
            }
        }
        if m == "sync" {
            // One thread, one fd table: it cannot reach 25,000 under a hard nofile of 20,000.
            assert_ne!(s["outcome"], "reached", "{s}");
            assert!(threads < 8, "sync ran {threads} threads: {s}");
        }
        dirs.push(dir);
    }
    assert!(reached >= 1, "{said}");

    // The comparison beside the runs: labelled by model, a sentence per model.
    let md = std::fs::read_to_string(group.join("compare.md")).unwrap();
    for m in models {
        assert!(md.contains(m), "{m} missing from compare.md:\n{md}");
    }
    assert!(md.contains("sync: sync stops near"), "{md}");
    let html = std::fs::read_to_string(group.join("compare.html")).unwrap();
    // Charts are embedded SVG images, one per figure, e.g. time to target.
    assert!(
        html.contains("data:image/svg+xml;base64,") && html.contains(r#"alt="Time to target""#),
        "no chart in compare.html"
    );
    // A model that stopped at its ceiling lost no data: its run is whole, only not reached.
    assert!(!md.contains("marks this run partial"), "{md}");

    // `c1m report --compare` over the same directories renders the same comparison.
    let again = c1m()
        .args(["report", "--compare", "--format", "markdown", "--no-charts"])
        .args(&dirs)
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", show(&again));
    let again = String::from_utf8_lossy(&again.stdout);
    for m in models {
        assert!(again.contains(m), "{m} missing from the report:\n{again}");
    }
    assert!(again.contains("sync: sync stops near"), "{again}");
    let _ = std::fs::remove_dir_all(&runs);
}

#[test]
fn under_message_interval_sync_answers_no_later_message_and_the_comparison_says_so() {
    let runs = std::env::temp_dir().join(format!("c1m-test-messages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runs);
    let out = c1m()
        .args(["run", "--server-model", "sync,epoll"])
        .args(["--connections", "2000", "--message-interval", "300ms"])
        .args(["--hold", "2s", "--port", "34100", "--runs-dir"])
        .arg(&runs)
        .arg("--no-progress")
        .output()
        .unwrap();
    let said = show(&out);
    assert!(out.status.success(), "{said}");
    let group = group_of(&runs);
    let run_of = |m: &str| read_json(&group.join(m).join("latest").join("run.json"));
    let (sync, epoll) = (run_of("sync"), run_of("epoll"));
    for s in [&sync, &epoll] {
        assert_eq!(s["outcome"], "reached", "{s}");
        // Every held connection got a message every 300 ms for 2 s.
        assert!(s["messages_sent"].as_u64().unwrap() >= 2000, "{s}");
    }
    // sync never reads a connection after its greeting; epoll answers all but those in flight
    // when the hold ended.
    assert_eq!(sync["messages_answered"], 0, "{sync}");
    assert!(sync["rtt_us"].is_null(), "{sync}");
    let (sent, answered) = (
        epoll["messages_sent"].as_u64().unwrap(),
        epoll["messages_answered"].as_u64().unwrap(),
    );
    assert!(answered + 2000 >= sent && answered > 0, "{epoll}");
    assert!(epoll["rtt_us"]["p99"].as_u64().unwrap() > 0, "{epoll}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("round trips: 0 of"), "{said}");

    let md = std::fs::read_to_string(group.join("compare.md")).unwrap();
    assert!(md.contains("| messages_answered | 0 |"), "{md}");
    assert!(
        md.contains("Later messages: none of") && md.contains("the server does not serve"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&runs);
}

/// A writable pids cgroup for this test (cgroup v1's pids hierarchy, or v2 with the pids
/// controller), capped at `max` tasks; `None` (with the reason) when there is none here.
fn capped_cgroup(max: u64) -> Result<PathBuf, String> {
    let roots = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"];
    let root = roots
        .iter()
        .map(Path::new)
        .find(|r| {
            r.join("cgroup.procs").exists()
                && (r.ends_with("pids")
                    || std::fs::read_to_string(r.join("cgroup.subtree_control"))
                        .is_ok_and(|c| c.split_whitespace().any(|x| x == "pids")))
        })
        .ok_or("no pids cgroup controller")?;
    let dir = root.join(format!("c1m-test-tasks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    std::fs::write(dir.join("pids.max"), max.to_string())
        .map_err(|e| format!("pids.max in {}: {e}", dir.display()))?;
    Ok(dir)
}

#[test]
fn thread_per_conn_in_a_task_capped_cgroup_stops_where_the_preflight_said() {
    // What a systemd login session does to a server started over SSH (its scope's TasksMax),
    // made here with a cgroup of our own: the preflight must name the cgroup, not threads-max.
    let cg = match capped_cgroup(600) {
        Ok(cg) => cg,
        Err(why) => {
            assert!(
                std::env::var("C1M_REQUIRE_LAB").as_deref() != Ok("1"),
                "C1M_REQUIRE_LAB=1 but {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    let runs = std::env::temp_dir().join(format!("c1m-test-tasks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runs);
    let c1m = c1m();
    // c1m joins the cgroup before it starts: the probe, the server and the client are in it.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && shift && exec "$@""#)
        .arg(&cg)
        .arg("--")
        .arg(c1m.get_program())
        .args(["run", "--server-model", "thread-per-conn"])
        .args(["--connections", "3000", "--hold", "1s", "--port", "34400"])
        .arg("--runs-dir")
        .arg(&runs)
        .arg("--no-progress");
    for (k, v) in c1m.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().unwrap();
    let said = show(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let name = cg.file_name().unwrap().to_string_lossy().to_string();
    // The preflight warns with the cgroup's path, its cap and the fix.
    let warned = stdout
        .lines()
        .find(|l| l.contains("thread-per-conn: cgroup pids.max"))
        .unwrap_or_else(|| panic!("no cgroup ceiling in the preflight:\n{said}"));
    assert!(warned.contains(&name) && warned.contains("600"), "{warned}");
    let s = read_json(&runs.join("latest").join("run.json"));
    assert_eq!(s["outcome"], "not_reached", "{said}\n{s}");
    let held = s["established_peak"].as_u64().unwrap();
    let predicted = s["server"]["predicted_ceiling"].as_u64().unwrap();
    // It held about what the cgroup leaves for connection threads, and the run says why.
    assert!(
        predicted < 600 && held <= 600,
        "held {held}, predicted {predicted}: {s}"
    );
    assert!(
        held + 100 >= predicted,
        "held {held} far below the predicted {predicted}: {s}"
    );
    assert_eq!(s["limit"]["kind"], "model", "{s}");
    let evidence = s["limit"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("cgroup pids.max") && evidence.contains(&name),
        "{s}"
    );
    // Everything the run started has left the cgroup.
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
    let live: Vec<&str> = procs
        .lines()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        })
        .collect();
    assert!(live.is_empty(), "left in {}: {live:?}", cg.display());
    let _ = std::fs::remove_dir(&cg);
    let _ = std::fs::remove_dir_all(&runs);
}
