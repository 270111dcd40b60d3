//! The QEMU lab, for real: `c1m lab up` boots four Debian VMs, each answers SSH under strict
//! host-key checking with the known_hosts the lab wrote, each is its own kernel and host, and
//! `c1m lab down` leaves no QEMU and no namespace behind.
//!
//! Needs root, qemu-system-x86_64, qemu-img, debootstrap and ssh; skipped without them unless
//! `C1M_REQUIRE_LAB=1`. One test does the whole sequence so the lab boots once.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NETNS: &str = "c1m-lab";

fn c1m() -> Command {
    let bin = match std::env::var_os("C1M_BIN_DIR") {
        Some(dir) => PathBuf::from(dir).join("c1m"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_c1m")),
    };
    Command::new(bin)
}

/// Whether the test can run; panics instead of skipping when `C1M_REQUIRE_LAB=1`.
fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("C1M_REQUIRE_LAB").as_deref() == Ok("1") {
        panic!("C1M_REQUIRE_LAB=1 but {what} is missing");
    }
    eprintln!("skipped: needs {what}");
    false
}

fn on_path(prog: &str) -> bool {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .any(|d| Path::new(d).join(prog).is_file())
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Live (not zombie) QEMU processes whose command line names `marker`.
fn live_qemus(marker: &Path) -> Vec<u32> {
    let marker = marker.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("qemu-system-x86_64") && cmd.contains(&marker)
        })
        .collect()
}

/// Takes the lab down on every exit path, and removes the test's state directory.
struct LabGuard {
    dir: PathBuf,
}

impl LabGuard {
    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    fn lab(&self, args: &[&str]) -> Output {
        c1m()
            .args(["lab", "--state-dir"])
            .arg(self.state_dir())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.lab(&["down"]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `ssh` with the lab key and strict checking against `known_hosts`; returns the output.
fn ssh(addr: &str, key: &str, known_hosts: &Path, cmd: &str) -> Output {
    Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-i", key])
        .arg(format!("root@{addr}"))
        .arg(cmd)
        .output()
        .unwrap()
}

#[test]
fn lab_up_ssh_status_down() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !require("root", root)
        || !require("qemu-system-x86_64", on_path("qemu-system-x86_64"))
        || !require("qemu-img", on_path("qemu-img"))
        || !require("debootstrap", on_path("debootstrap"))
        || !require("ssh", on_path("ssh"))
    {
        return;
    }
    assert!(
        !Path::new("/run/netns").join(NETNS).exists(),
        "a lab is already up (netns {NETNS}); `c1m lab down` it before running this test"
    );
    let guard = LabGuard {
        dir: std::env::temp_dir().join(format!("c1m-lab-test-{}", std::process::id())),
    };
    fs::create_dir_all(&guard.dir).unwrap();
    let inv_path = guard.dir.join("lab.yml");
    let inv_arg = inv_path.to_string_lossy().into_owned();

    let up = guard.lab(&["up", "--connections", "100000", "--inventory", &inv_arg]);
    assert!(up.status.success(), "lab up failed: {}", text(&up));
    let up_out = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(up_out.contains("lab: acceleration "), "{up_out}");
    println!("{up_out}");

    // The inventory: two groups, four hosts, the key and the pinned host keys.
    let inv: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(&inv_path).unwrap()).unwrap();
    let vars = &inv["all"]["vars"];
    assert_eq!(vars["ansible_user"].as_str(), Some("root"));
    let key = vars["ansible_ssh_private_key_file"]
        .as_str()
        .unwrap()
        .to_string();
    let known_hosts = PathBuf::from(vars["c1m_known_hosts"].as_str().unwrap());
    let mut hosts = Vec::new();
    for group in ["server", "clients"] {
        let members = inv["all"]["children"][group]["hosts"].as_mapping().unwrap();
        for (name, hv) in members {
            hosts.push((
                name.as_str().unwrap().to_string(),
                hv["ansible_host"].as_str().unwrap().to_string(),
            ));
        }
    }
    let expected = [
        ("srv", "10.199.0.10"),
        ("cli1", "10.199.0.11"),
        ("cli2", "10.199.0.12"),
        ("cli3", "10.199.0.13"),
    ];
    assert_eq!(
        hosts,
        expected
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .to_vec()
    );
    let kh = fs::read_to_string(&known_hosts).unwrap();
    let kh_keys: HashSet<&str> = kh.lines().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(kh.lines().count(), 4, "{kh}");
    assert_eq!(kh_keys.len(), 4, "every VM has its own host key: {kh}");

    // Each VM: strict host-key login works, and it is its own kernel, host and address.
    let mut boot_ids = HashSet::new();
    let mut machine_ids = HashSet::new();
    for (name, addr) in &hosts {
        let out = ssh(
            addr,
            &key,
            &known_hosts,
            "hostname; cat /proc/sys/kernel/random/boot_id; cat /etc/machine-id; \
             ip -4 -o addr show dev eth0; ip route show default | wc -l",
        );
        assert!(out.status.success(), "ssh {name}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], name, "{stdout}");
        assert!(
            boot_ids.insert(lines[1].to_string()),
            "shared kernel: {stdout}"
        );
        assert_eq!(
            lines[2].len(),
            32,
            "machine-id made at first boot: {stdout}"
        );
        assert!(machine_ids.insert(lines[2].to_string()), "{stdout}");
        assert!(lines[3].contains(&format!("inet {addr}/24")), "{stdout}");
        assert_eq!(lines[4], "0", "the guest must have no route out: {stdout}");
    }

    // Strictness is real: no known key, or another VM's key, and ssh refuses.
    let empty = guard.dir.join("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let out = ssh("10.199.0.10", &key, &empty, "true");
    assert!(
        !out.status.success(),
        "unknown host key accepted: {}",
        text(&out)
    );
    let swapped = guard.dir.join("swapped_known_hosts");
    let cli1_key = kh.lines().find(|l| l.starts_with("10.199.0.11 ")).unwrap();
    fs::write(
        &swapped,
        cli1_key.replacen("10.199.0.11", "10.199.0.10", 1) + "\n",
    )
    .unwrap();
    let out = ssh("10.199.0.10", &key, &swapped, "true");
    assert!(
        !out.status.success(),
        "wrong host key accepted: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&out)
    );

    // status: every VM with its address and SSH up.
    let st = guard.lab(&["status"]);
    assert!(st.status.success(), "status: {}", text(&st));
    let st_out = String::from_utf8_lossy(&st.stdout).into_owned();
    for (name, addr) in &expected {
        let row = st_out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {st_out}"));
        assert!(row.contains(addr) && row.ends_with(" up"), "{row}");
        assert!(row.contains(" MiB"), "{row}");
    }
    println!("{st_out}");

    // `lab ssh NAME CMD` runs there.
    let out = guard.lab(&["ssh", "cli2", "hostname"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cli2");

    // `up` again keeps the running lab.
    let pids_before = live_qemus(&guard.state_dir());
    assert_eq!(pids_before.len(), 4, "four QEMU processes");
    let again = guard.lab(&["up", "--connections", "100000", "--inventory", &inv_arg]);
    assert!(again.status.success(), "second up: {}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already up"));
    let mut pids_after = live_qemus(&guard.state_dir());
    let mut pids_before = pids_before;
    pids_before.sort();
    pids_after.sort();
    assert_eq!(pids_before, pids_after);

    // down after a crash: the state file and srv's pid file are gone; down still finds srv's
    // QEMU by its command line and stops all four.
    fs::remove_file(guard.state_dir().join("lab.json")).unwrap();
    fs::remove_file(guard.state_dir().join("vms/srv/qemu.pid")).unwrap();
    let down = guard.lab(&["down"]);
    let down_out = String::from_utf8_lossy(&down.stdout).into_owned();
    assert!(down_out.contains("stopped stray QEMU"), "{down_out}");
    assert_eq!(down_out.matches("lab: stopped ").count(), 4, "{down_out}");
    assert!(down.status.success(), "down: {}", text(&down));
    assert!(
        live_qemus(&guard.state_dir()).is_empty(),
        "QEMU left running"
    );
    assert!(!Path::new("/run/netns").join(NETNS).exists(), "netns left");
    assert!(
        !Command::new("ip")
            .args(["link", "show", "c1m-lab0"])
            .output()
            .unwrap()
            .status
            .success(),
        "veth left in the root namespace"
    );
    assert!(!guard.state_dir().join("vms").exists(), "overlays left");
    let again = guard.lab(&["down"]);
    assert!(again.status.success(), "second down: {}", text(&again));
    let st = guard.lab(&["status"]);
    assert!(!st.status.success(), "status after down must say not up");
}

#[test]
fn lab_ssh_without_a_lab_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("c1m-lab-none-{}", std::process::id()));
    let out = c1m()
        .args(["lab", "--state-dir"])
        .arg(&dir)
        .args(["ssh", "srv", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the lab is not up"), "{err}");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `ansible_host` of every host of an inventory, as (name, address), server first.
fn inventory_hosts(path: &Path) -> Vec<(String, String)> {
    let inv: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let mut hosts = Vec::new();
    for group in ["server", "clients"] {
        for (name, hv) in inv["all"]["children"][group]["hosts"].as_mapping().unwrap() {
            hosts.push((
                name.as_str().unwrap().to_string(),
                hv["ansible_host"].as_str().unwrap().to_string(),
            ));
        }
    }
    hosts
}

/// `vagrant validate` in a scratch copy of vm/ (the Vagrantfile makes keys next to itself).
fn vagrant_validate(dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(dir)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .env("VAGRANT_HOME", dir.join("vagrant.d"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn vagrantfile_validates_and_matches_the_inventories() {
    let root = repo_root();
    let vagrantfile = fs::read_to_string(root.join("vm/Vagrantfile")).unwrap();
    // The Vagrant lab and `c1m lab` have the same names and addresses, and each inventory
    // says so.
    let lab = inventory_hosts(&root.join("inventory/lab.yml"));
    let vagrant = inventory_hosts(&root.join("inventory/vagrant.yml"));
    assert_eq!(lab, vagrant);
    for (name, addr) in &vagrant {
        let line = format!("name: \"{name}\",");
        let vm_line = vagrantfile
            .lines()
            .find(|l| l.contains(&line))
            .unwrap_or_else(|| panic!("{name} not defined in vm/Vagrantfile"));
        assert!(vm_line.contains(&format!("ip: \"{addr}\"")), "{vm_line}");
    }

    if !require("vagrant", on_path("vagrant")) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("c1m-vagrant-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::copy(root.join("vm/Vagrantfile"), dir.join("Vagrantfile")).unwrap();
    let ok = vagrant_validate(&dir, &[]);
    let bad = vagrant_validate(&dir, &[("C1M_SERVER_MEMORY", "lots")]);
    let known_hosts = fs::read_to_string(dir.join(".c1m/known_hosts")).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    assert!(ok.status.success(), "vagrant validate: {}", text(&ok));
    assert!(
        !bad.status.success(),
        "a bad memory size validated: {}",
        text(&bad)
    );
    // The host keys the Vagrantfile made are pinned, one per VM address.
    let pinned: Vec<&str> = known_hosts
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        pinned,
        vagrant.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>()
    );
}

#[test]
fn a_concurrent_up_or_down_is_refused() {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join(format!("c1m-lab-lock-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    // This test holds the lab's lock, as a running `c1m lab up` would.
    let held = fs::File::create(dir.join("lock")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = c1m()
        .args(["lab", "--state-dir"])
        .arg(&dir)
        .arg("down")
        .output()
        .unwrap();
    drop(held);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another `c1m lab up` or `down` is running"),
        "{}",
        text(&out)
    );
}
