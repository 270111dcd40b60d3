//! The shipped `tune.yml` and `reset.yml` for real on this machine (`ansible_connection: local`),
//! under `c1m provision` and under `ansible-playbook`: values really set, second run 0 changed,
//! `--check` changes nothing, reset puts back every value and file, both engines reach the same
//! end state. This changes global kernel settings of a shared machine, so every value and file
//! the playbooks touch is captured first and put back by a guard, also on failure.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// The two tests change the same global state; never at the same time.
static MACHINE: Mutex<()> = Mutex::new(());

const KEYS: &[&str] = &[
    "fs.nr_open",
    "fs.file-max",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.ip_local_port_range",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
];
const FILES: &[&str] = &[
    "/etc/sysctl.d/60-c1m.conf",
    "/etc/security/limits.d/c1m.conf",
    "/etc/systemd/system.conf.d/60-c1m.conf",
    "/etc/systemd/system/user-.slice.d/60-c1m.conf",
    "/etc/modules-load.d/nf_conntrack.conf",
    "/etc/modprobe.d/nf_conntrack.conf",
];
const DIRS: &[&str] = &[
    "/etc/systemd/system.conf.d",
    "/etc/systemd/system/user-.slice.d",
    "/var/lib/c1m/snapshot",
    "/var/lib/c1m",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    sysctls: BTreeMap<String, Option<String>>,
    files: BTreeMap<String, Option<(Vec<u8>, u32)>>,
    dirs: BTreeMap<String, bool>,
}

fn proc_path(key: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/{}", key.replace('.', "/")))
}

fn capture() -> State {
    State {
        sysctls: KEYS
            .iter()
            .map(|k| {
                let v = std::fs::read_to_string(proc_path(k))
                    .ok()
                    .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
                (k.to_string(), v)
            })
            .collect(),
        files: FILES
            .iter()
            .map(|f| {
                let v = std::fs::read(f).ok().map(|b| {
                    (
                        b,
                        std::fs::metadata(f).unwrap().permissions().mode() & 0o7777,
                    )
                });
                (f.to_string(), v)
            })
            .collect(),
        dirs: DIRS
            .iter()
            .map(|d| (d.to_string(), Path::new(d).is_dir()))
            .collect(),
    }
}

/// Puts the captured state back, whatever happened in between.
struct Restore(State);

impl Drop for Restore {
    fn drop(&mut self) {
        let now = capture();
        if now == self.0 {
            return;
        }
        for (k, v) in &self.0.sysctls {
            if let Some(v) = v {
                if now.sysctls.get(k) != Some(&Some(v.clone())) {
                    let _ = std::fs::write(proc_path(k), v);
                }
            }
        }
        for (f, v) in &self.0.files {
            match v {
                Some((bytes, mode)) => {
                    let _ = std::fs::write(f, bytes);
                    let _ = std::fs::set_permissions(f, std::fs::Permissions::from_mode(*mode));
                }
                None => {
                    let _ = std::fs::remove_file(f);
                }
            }
        }
        if !self.0.dirs["/var/lib/c1m/snapshot"] {
            let _ = std::fs::remove_dir_all("/var/lib/c1m/snapshot");
        }
        for (d, existed) in &self.0.dirs {
            if !existed {
                let _ = std::fs::remove_dir(d);
            }
        }
        let after = capture();
        if after != self.0 {
            eprintln!(
                "WARNING: could not restore the machine exactly:\nwas {:?}\nnow {:?}",
                self.0, after
            );
        }
    }
}

fn require(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var("C1M_REQUIRE_LAB").as_deref() == Ok("1") {
        panic!("C1M_REQUIRE_LAB=1 but {what} is missing");
    }
    eprintln!("skipped: needs {what}");
    false
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Run {
    code: i32,
    out: String,
    secs: f64,
}

impl Run {
    fn changed(&self) -> u32 {
        let recap = self.out.split("PLAY RECAP").last().unwrap_or_default();
        recap
            .lines()
            .filter_map(|l| l.split(" changed=").nth(1))
            .map(|r| r.split_whitespace().next().unwrap().parse::<u32>().unwrap())
            .sum()
    }
}

fn run(cmd: &mut Command) -> Run {
    let t0 = Instant::now();
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// `c1m provision ARGS` from a directory without playbooks/, so the built-in inventory and
/// playbooks are what runs.
fn c1m(args: &[&str]) -> Run {
    run(Command::new(env!("CARGO_BIN_EXE_c1m"))
        .current_dir(std::env::temp_dir())
        .arg("provision")
        .args(args))
}

fn ansible(playbook: &str, args: &[&str]) -> Run {
    let r = repo();
    run(Command::new("ansible-playbook")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .arg("-i")
        .arg(r.join("inventory/local.yml"))
        .arg(r.join("playbooks").join(playbook))
        .args(args))
}

fn preconditions() -> bool {
    require("root", unsafe { libc::geteuid() } == 0)
        && require(
            "sysctl(8)",
            Path::new("/usr/sbin/sysctl").exists() || Path::new("/sbin/sysctl").exists(),
        )
        && require(
            "no c1m snapshot left on this machine",
            !Path::new("/var/lib/c1m/snapshot").exists(),
        )
}

const TARGET: &str = "c1m_connections=100000";

#[test]
fn tune_yml_for_real_then_reset_restores_everything() {
    let _lock = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    if !preconditions() {
        return;
    }
    let before = capture();
    let _restore = Restore(before.clone());

    // --check on the untouched machine: every change reported, none made.
    let check0 = c1m(&["-e", TARGET, "--check", "--diff"]);
    assert_eq!(check0.code, 0, "{}", check0.out);
    assert!(check0.changed() > 0, "{}", check0.out);
    assert_eq!(
        capture(),
        before,
        "--check changed the machine:\n{}",
        check0.out
    );

    let first = c1m(&["-e", TARGET]);
    assert_eq!(first.code, 0, "{}", first.out);
    assert!(first.changed() > 0, "{}", first.out);
    let tuned = capture();
    // 100000 connections, server and clients on this one host: 200000 sockets + 65536.
    let nofile = 265_536u64;
    assert_eq!(
        tuned.sysctls["net.ipv4.tcp_rmem"].as_deref(),
        Some("4096 4096 16384")
    );
    assert_eq!(
        tuned.sysctls["net.ipv4.tcp_wmem"].as_deref(),
        Some("4096 4096 16384")
    );
    assert_eq!(
        tuned.sysctls["net.ipv4.ip_local_port_range"].as_deref(),
        Some("1024 65535")
    );
    let nr_open: u64 = tuned.sysctls["fs.nr_open"]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        nr_open >= nofile,
        "nofile {nofile} above fs.nr_open {nr_open}"
    );
    let sysctl_conf =
        String::from_utf8(tuned.files["/etc/sysctl.d/60-c1m.conf"].clone().unwrap().0).unwrap();
    assert!(
        sysctl_conf.starts_with("fs.nr_open="),
        "fs.nr_open first:\n{sysctl_conf}"
    );
    for key in KEYS {
        if tuned.sysctls[*key].is_some() {
            let line = sysctl_conf
                .lines()
                .find(|l| l.starts_with(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} not in drop-in"));
            let file_value = line.split_once('=').unwrap().1;
            assert_eq!(
                Some(file_value.to_string()),
                tuned.sysctls[*key],
                "{key}: file and kernel agree"
            );
        }
    }
    let limits = String::from_utf8(
        tuned.files["/etc/security/limits.d/c1m.conf"]
            .clone()
            .unwrap()
            .0,
    )
    .unwrap();
    assert!(
        limits.contains(&format!("*\thard\tnofile\t{nofile}\n")),
        "{limits}"
    );
    let dropin = String::from_utf8(
        tuned.files["/etc/systemd/system.conf.d/60-c1m.conf"]
            .clone()
            .unwrap()
            .0,
    )
    .unwrap();
    assert!(
        dropin.contains(&format!("DefaultLimitNOFILE={nofile}:{nofile}")),
        "{dropin}"
    );
    assert!(Path::new("/var/lib/c1m/snapshot/complete").exists());

    let second = c1m(&["-e", TARGET]);
    assert_eq!(
        (second.code, second.changed()),
        (0, 0),
        "second run changes nothing:\n{}",
        second.out
    );

    // A bigger target under --check --diff: changes reported with before/after, none made.
    let check = c1m(&["-e", "c1m_connections=300000", "--check", "--diff"]);
    assert_eq!(check.code, 0, "{}", check.out);
    assert!(check.changed() > 0, "{}", check.out);
    // tcp_mem: 3 pages per socket, 600000 sockets here; max/2, 3/4 max, max.
    let mem_before = tuned.sysctls["net.ipv4.tcp_mem"].as_deref().unwrap();
    assert!(
        check
            .out
            .contains(&format!("-net.ipv4.tcp_mem={mem_before}")),
        "{}",
        check.out
    );
    assert!(
        check
            .out
            .contains("+net.ipv4.tcp_mem=900000 1350000 1800000"),
        "{}",
        check.out
    );
    assert_eq!(capture(), tuned, "--check changed the machine");

    let revert = c1m(&["--revert"]);
    assert_eq!(revert.code, 0, "{}", revert.out);
    assert_eq!(
        capture(),
        before,
        "reset did not restore everything:\n{}",
        revert.out
    );
    let again = c1m(&["--revert"]);
    assert_eq!((again.code, again.changed()), (0, 0), "{}", again.out);
    eprintln!(
        "c1m provision tune.yml local: first {:.2}s, second {:.2}s, check {:.2}s, revert {:.2}s",
        first.secs, second.secs, check.secs, revert.secs
    );
}

#[test]
fn ansible_playbook_reaches_the_same_end_state() {
    let _lock = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    if !preconditions()
        || !require(
            "ansible-playbook",
            Command::new("ansible-playbook")
                .arg("--version")
                .output()
                .is_ok(),
        )
    {
        return;
    }
    let before = capture();
    let _restore = Restore(before.clone());

    let c1m_first = c1m(&["-e", TARGET]);
    assert_eq!(c1m_first.code, 0, "{}", c1m_first.out);
    let c1m_second = c1m(&["-e", TARGET]);
    let c1m_state = capture();
    let c1m_check = c1m(&["-e", TARGET, "--check"]);
    let r = c1m(&["--revert"]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(capture(), before);

    let a_check_first = ansible("tune.yml", &["--check", "-e", TARGET]);
    assert_eq!(a_check_first.code, 0, "{}", a_check_first.out);
    // community.general.pam_limits creates an empty dest even in check mode; remove it so the
    // real run starts from the same state as c1m did.
    if before.files["/etc/security/limits.d/c1m.conf"].is_none() {
        let _ = std::fs::remove_file("/etc/security/limits.d/c1m.conf");
    }
    let a_first = ansible("tune.yml", &["-e", TARGET]);
    assert_eq!(a_first.code, 0, "{}", a_first.out);
    let a_second = ansible("tune.yml", &["-e", TARGET]);
    assert_eq!(
        (a_second.code, a_second.changed()),
        (0, 0),
        "{}",
        a_second.out
    );
    let a_state = capture();
    let a_check = ansible("tune.yml", &["--check", "-e", TARGET]);
    assert_eq!(
        a_state.sysctls, c1m_state.sysctls,
        "kernel values differ between c1m and ansible-playbook"
    );
    assert_eq!(
        a_state.files, c1m_state.files,
        "files differ between c1m and ansible-playbook"
    );
    assert_eq!(a_state.dirs, c1m_state.dirs);

    let a_reset = ansible("reset.yml", &[]);
    assert_eq!(a_reset.code, 0, "{}", a_reset.out);
    assert_eq!(
        capture(),
        before,
        "ansible-playbook reset.yml did not restore everything"
    );
    eprintln!(
        "wall time, tune.yml on localhost (ansible_connection: local):\n  c1m:     first {:.2}s  second {:.2}s  check {:.2}s\n  ansible: first {:.2}s  second {:.2}s  check {:.2}s\n  speed-up: first {:.1}x  second {:.1}x  check {:.1}x",
        c1m_first.secs, c1m_second.secs, c1m_check.secs, a_first.secs, a_second.secs, a_check.secs,
        a_first.secs / c1m_first.secs, a_second.secs / c1m_second.secs, a_check.secs / c1m_check.secs
    );
}
