//! The QEMU lab, for real: `c1m lab up` boots four Debian VMs, each answers SSH under strict
//! host-key checking with the known_hosts the lab wrote, each is its own kernel and host,
//! `c1m provision` tunes all four (and ansible-playbook, with the same playbook and inventory,
//! reaches the same state), and `c1m lab down` leaves no QEMU and no namespace behind.
//!
//! Needs root, qemu-system-x86_64, qemu-img, debootstrap, ssh and ansible-playbook; skipped
//! without them unless `C1M_REQUIRE_LAB=1`. One test boots the lab once and runs its steps in
//! order against it.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

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

/// What the steps share: the lab (taken down when this is dropped), the inventory `up` wrote,
/// the login it gives and the hosts it lists.
struct Ctx {
    guard: LabGuard,
    inventory: PathBuf,
    key: String,
    known_hosts: PathBuf,
    /// (name, address), server first.
    hosts: Vec<(String, String)>,
}

/// The lab is booted for this many connections, and tuned for them.
const CONNECTIONS: u64 = 100_000;

const EXPECTED_HOSTS: [(&str, &str); 4] = [
    ("srv", "10.199.0.10"),
    ("cli1", "10.199.0.11"),
    ("cli2", "10.199.0.12"),
    ("cli3", "10.199.0.13"),
];

fn timed<T>(step: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    eprintln!("lab test: {step} took {:.1}s", t0.elapsed().as_secs_f64());
    r
}

/// One test boots the lab once and runs every step against it, in order.
#[test]
fn lab_up_provision_down() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !require("root", root)
        || !require("qemu-system-x86_64", on_path("qemu-system-x86_64"))
        || !require("qemu-img", on_path("qemu-img"))
        || !require("debootstrap", on_path("debootstrap"))
        || !require("ssh", on_path("ssh"))
        || !require("ansible-playbook", on_path("ansible-playbook"))
    {
        return;
    }
    assert!(
        !Path::new("/run/netns").join(NETNS).exists(),
        "a lab is already up (netns {NETNS}); `c1m lab down` it before running this test"
    );
    let t0 = Instant::now();
    let ctx = timed("step_up", step_up);
    timed("step_ssh_and_identity", || step_ssh_and_identity(&ctx));
    timed("step_host_keys_are_strict", || {
        step_host_keys_are_strict(&ctx)
    });
    timed("step_status_and_lab_ssh", || step_status_and_lab_ssh(&ctx));
    timed("step_pace", || step_pace(&ctx));
    timed("step_provision", || step_provision(&ctx));
    timed("step_project", || step_project(&ctx));
    timed("step_run", || step_run(&ctx));
    timed("step_up_again_keeps_the_lab", || {
        step_up_again_keeps_the_lab(&ctx)
    });
    timed("step_down_after_crash", || step_down_after_crash(&ctx));
    eprintln!("lab test: all steps {:.1}s", t0.elapsed().as_secs_f64());
}

/// `c1m lab up`, and the inventory it writes: two groups, four hosts, the key and the pinned
/// host keys.
fn step_up() -> Ctx {
    let guard = LabGuard {
        dir: std::env::temp_dir().join(format!("c1m-lab-test-{}", std::process::id())),
    };
    fs::create_dir_all(&guard.dir).unwrap();
    let inventory = guard.dir.join("lab.yml");
    let inv_arg = inventory.to_string_lossy().into_owned();

    let up = guard.lab(&[
        "up",
        "--connections",
        &CONNECTIONS.to_string(),
        "--inventory",
        &inv_arg,
    ]);
    assert!(up.status.success(), "lab up failed: {}", text(&up));
    let up_out = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(up_out.contains("lab: acceleration "), "{up_out}");
    println!("{up_out}");
    // `up` judges a boot by its progress; systemd's status lines on each console are the
    // progress it sees between the kernel and sshd.
    for (name, _) in EXPECTED_HOSTS {
        let console = guard.state_dir().join("vms").join(name).join("console.log");
        let text = fs::read_to_string(&console).unwrap_or_default();
        assert!(
            text.contains("Started"),
            "{name}: no systemd status lines on {}:\n{text}",
            console.display()
        );
    }

    let inv: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(&inventory).unwrap()).unwrap();
    let vars = &inv["all"]["vars"];
    assert_eq!(vars["ansible_user"].as_str(), Some("root"));
    let key = vars["ansible_ssh_private_key_file"]
        .as_str()
        .unwrap()
        .to_string();
    let known_hosts = PathBuf::from(vars["c1m_known_hosts"].as_str().unwrap());
    let hosts = inventory_hosts(&inventory);
    assert_eq!(
        hosts,
        EXPECTED_HOSTS
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .to_vec()
    );
    let kh = fs::read_to_string(&known_hosts).unwrap();
    let kh_keys: HashSet<&str> = kh.lines().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(kh.lines().count(), 4, "{kh}");
    assert_eq!(kh_keys.len(), 4, "every VM has its own host key: {kh}");
    Ctx {
        guard,
        inventory,
        key,
        known_hosts,
        hosts,
    }
}

/// Each VM: strict host-key login works, and it is its own kernel, host and address.
fn step_ssh_and_identity(ctx: &Ctx) {
    let mut boot_ids = HashSet::new();
    let mut machine_ids = HashSet::new();
    for (name, addr) in &ctx.hosts {
        let out = ssh(
            addr,
            &ctx.key,
            &ctx.known_hosts,
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
}

/// Strictness is real: no known key, or another VM's key, and ssh refuses.
fn step_host_keys_are_strict(ctx: &Ctx) {
    let empty = ctx.guard.dir.join("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let out = ssh("10.199.0.10", &ctx.key, &empty, "true");
    assert!(
        !out.status.success(),
        "unknown host key accepted: {}",
        text(&out)
    );
    let kh = fs::read_to_string(&ctx.known_hosts).unwrap();
    let swapped = ctx.guard.dir.join("swapped_known_hosts");
    let cli1_key = kh.lines().find(|l| l.starts_with("10.199.0.11 ")).unwrap();
    fs::write(
        &swapped,
        cli1_key.replacen("10.199.0.11", "10.199.0.10", 1) + "\n",
    )
    .unwrap();
    let out = ssh("10.199.0.10", &ctx.key, &swapped, "true");
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
}

/// `status` shows every VM with its address and SSH up; `lab ssh NAME CMD` runs there.
fn step_status_and_lab_ssh(ctx: &Ctx) {
    let st = ctx.guard.lab(&["status"]);
    assert!(st.status.success(), "status: {}", text(&st));
    let st_out = String::from_utf8_lossy(&st.stdout).into_owned();
    for (name, addr) in &EXPECTED_HOSTS {
        let row = st_out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {st_out}"));
        assert!(row.contains(addr) && row.ends_with(" up"), "{row}");
        assert!(row.contains(" MiB"), "{row}");
    }
    println!("{st_out}");

    let out = ctx.guard.lab(&["ssh", "cli2", "hostname"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cli2");
}

/// Each guest's pace, measured as budgets on slow hosts are derived from it: an SFTP round
/// trip (no program started) and a program start through the shell. Printed for the notes;
/// the first must beat the second on any host.
fn step_pace(ctx: &Ctx) {
    let inv = c1m_ansible::inventory::load(&ctx.inventory).unwrap();
    for (name, _) in &ctx.hosts {
        let host = inv.host(name).unwrap();
        let mut t = c1m_ansible::connect::ConnectSettings::default()
            .connect(host)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let pace = c1m_transport::pace::measure(t.as_mut(), 5).unwrap();
        let round_trip = pace.round_trip.expect("the guests have SFTP");
        eprintln!(
            "lab test: pace of {name}: SFTP round trip {:.1} ms, exec {:.1} ms",
            round_trip.as_secs_f64() * 1e3,
            pace.exec.as_secs_f64() * 1e3
        );
        assert!(round_trip < pace.exec, "{name}: {pace:?}");
    }
}

/// `up` again keeps the running lab: same four QEMU processes.
fn step_up_again_keeps_the_lab(ctx: &Ctx) {
    let inv_arg = ctx.inventory.to_string_lossy().into_owned();
    let mut pids_before = live_qemus(&ctx.guard.state_dir());
    assert_eq!(pids_before.len(), 4, "four QEMU processes");
    let again = ctx.guard.lab(&[
        "up",
        "--connections",
        &CONNECTIONS.to_string(),
        "--inventory",
        &inv_arg,
    ]);
    assert!(again.status.success(), "second up: {}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already up"));
    let mut pids_after = live_qemus(&ctx.guard.state_dir());
    pids_before.sort();
    pids_after.sort();
    assert_eq!(pids_before, pids_after);
}

/// down after a crash: the state file and srv's pid file are gone; down still finds srv's QEMU
/// by its command line and stops all four, and leaves nothing behind.
fn step_down_after_crash(ctx: &Ctx) {
    let guard = &ctx.guard;
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

// ---- provisioning the four guests -----------------------------------------------------------

/// The kernel values playbooks/tune.yml sets.
const TUNED_KEYS: &[&str] = &[
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

/// Directories tune.yml writes into (or creates); every file in them is read back, so a stray
/// file left by either engine shows too.
const WATCHED_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/etc/security/limits.d",
    "/etc/modules-load.d",
    "/etc/modprobe.d",
    "/etc/systemd/system.conf.d",
    "/etc/systemd/system/user-.slice.d",
];

/// c1m's bookkeeping on the host: only whether it exists (the snapshot holds a timestamp).
const SNAPSHOT_DIRS: &[&str] = &["/var/lib/c1m", "/var/lib/c1m/snapshot"];

/// A guest's state as `tune.yml` may change it: `KIND NAME` -> value.
type GuestState = BTreeMap<String, String>;

/// The bash script that prints a guest's [`GuestState`], one `KIND NAME<TAB>VALUE` a line; a
/// file is `file PATH<TAB>MODE OWNER:GROUP` followed by its bytes as `od` prints them (od is in
/// every image, unlike xxd). Processes are slow to start under TCG, so the script uses builtins
/// where it can: one `stat`, one `od` per file and one `systemctl` in all.
fn state_script() -> String {
    r#"[ -n "$BASH_VERSION" ] || { echo "the state script needs bash" >&2; exit 1; }
for k in KEYS; do
  p=/proc/sys/${k//.//}
  if [ -r "$p" ]; then read -r -a v < "$p"; printf 'sysctl %s\t%s\n' "$k" "${v[*]}"
  else printf 'sysctl %s\tabsent\n' "$k"; fi
done
files=()
for d in WATCHED; do
  if [ -d "$d" ]; then
    printf 'dir %s\tpresent\n' "$d"
    for f in "$d"/* "$d"/.[!.]*; do [ -f "$f" ] && files+=("$f"); done
  else printf 'dir %s\tabsent\n' "$d"; fi
done
for d in SNAPSHOT; do
  if [ -d "$d" ]; then printf 'dir %s\tpresent\n' "$d"; else printf 'dir %s\tabsent\n' "$d"; fi
done
files+=(/etc/systemd/system.conf)
declare -A meta
while IFS=$'\t' read -r n m; do meta[$n]=$m; done < <(stat -c $'%n\t%a %U:%G' "${files[@]}")
for f in "${files[@]}"; do printf 'file %s\t%s\n' "$f" "${meta[$f]}"; od -An -tx1 -v "$f"; done
c=none; [ -d /sys/module/nf_conntrack ] && c=builtin
while read -r m _; do [ "$m" = nf_conntrack ] && c=module; done < /proc/modules
printf 'conntrack loaded\t%s\n' "$c"
while IFS== read -r k v; do declare "sd_$k=$v"; done \
  < <(systemctl show -p DefaultLimitNOFILE -p DefaultLimitNOFILESoft)
printf 'systemd DefaultLimitNOFILE\tDefaultLimitNOFILE=%s DefaultLimitNOFILESoft=%s\n' \
  "$sd_DefaultLimitNOFILE" "$sd_DefaultLimitNOFILESoft"
printf 'login nofile\t%s %s\n' "$(ulimit -Sn)" "$(ulimit -Hn)"
while read -r k v _; do [ "$k" = MemTotal: ] && printf 'meminfo MemTotal\t%s\n' "$v"; done < /proc/meminfo
true
"#
    .replace("KEYS", &TUNED_KEYS.join(" "))
    .replace("WATCHED", &WATCHED_DIRS.join(" "))
    .replace("SNAPSHOT", &SNAPSHOT_DIRS.join(" "))
}

fn read_state(ctx: &Ctx, name: &str, addr: &str) -> GuestState {
    let out = ssh(addr, &ctx.key, &ctx.known_hosts, &state_script());
    assert!(
        out.status.success(),
        "reading {name}'s state: {}",
        text(&out)
    );
    let mut state = GuestState::new();
    let mut last: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match (line.split_once('\t'), &last) {
            (Some((k, v)), _) => {
                state.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            // od's lines of the file before.
            (None, Some(k)) if k.starts_with("file ") => {
                let v = state.get_mut(k).unwrap();
                v.push(' ');
                v.push_str(line.trim());
            }
            _ => panic!("{name}: unexpected state line {line:?}"),
        }
    }
    state
}

/// Every guest's state, read over SSH from all four at once; in `ctx.hosts` order.
fn read_all(ctx: &Ctx) -> Vec<GuestState> {
    std::thread::scope(|s| {
        let readers: Vec<_> = ctx
            .hosts
            .iter()
            .map(|(name, addr)| s.spawn(move || read_state(ctx, name, addr)))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// The bytes `od -tx1` printed: hex pairs separated by whitespace.
fn unhex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A state value as people read it: files as mode, owner and text.
fn show(key: &str, v: Option<&String>) -> String {
    match v {
        None => "(missing)".into(),
        Some(v) if key.starts_with("file ") => {
            let mut f = v.splitn(3, ' ');
            let (mode, owner) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let body = String::from_utf8_lossy(&unhex(f.next().unwrap_or(""))).into_owned();
            format!("{mode} {owner} {body:?}")
        }
        Some(v) => v.clone(),
    }
}

/// Panics with every entry that differs, per host, when `now` is not `want`.
fn assert_same_state(ctx: &Ctx, now: &[GuestState], want: &[GuestState], what: &str) {
    let mut diffs = String::new();
    for ((name, _), (n, w)) in ctx.hosts.iter().zip(now.iter().zip(want)) {
        let keys: std::collections::BTreeSet<&String> = n.keys().chain(w.keys()).collect();
        for k in keys {
            if n.get(k) != w.get(k) {
                diffs.push_str(&format!(
                    "  {name} {k}:\n    expected {}\n    found    {}\n",
                    show(k, w.get(k)),
                    show(k, n.get(k))
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "{what}; differences:\n{diffs}");
}

fn value<'a>(s: &'a GuestState, key: &str) -> &'a str {
    s.get(key)
        .unwrap_or_else(|| panic!("no {key:?} in {s:?}"))
        .as_str()
}

fn number(s: &GuestState, key: &str) -> u64 {
    let v = value(s, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key} = {v:?} is not a number"))
}

fn file_text(s: &GuestState, path: &str) -> Option<String> {
    s.get(&format!("file {path}"))
        .map(|v| String::from_utf8(unhex(v.splitn(3, ' ').nth(2).unwrap_or(""))).unwrap())
}

/// A finished `c1m provision` or `ansible-playbook`.
struct Run {
    ok: bool,
    out: String,
    secs: f64,
}

impl Run {
    /// The PLAY RECAP counters of each host (c1m prints Ansible's recap).
    fn recap(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let tail = self.out.rsplit("PLAY RECAP").next().unwrap_or_default();
        tail.lines()
            .filter_map(|l| l.split_once(" : "))
            .map(|(host, counts)| {
                let counts = counts
                    .split_whitespace()
                    .filter_map(|c| c.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
                    .collect();
                (host.trim().to_string(), counts)
            })
            .collect()
    }

    /// `changed=` of each host, in `ctx.hosts` order; panics unless every host is in the recap
    /// with nothing failed or unreachable.
    fn changed(&self, ctx: &Ctx) -> Vec<u64> {
        let recap = self.recap();
        ctx.hosts
            .iter()
            .map(|(name, _)| {
                let c = recap
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} not in the PLAY RECAP:\n{}", self.out));
                assert_eq!(
                    (c["failed"], c["unreachable"]),
                    (0, 0),
                    "{name} failed or unreachable:\n{}",
                    self.out
                );
                c["changed"]
            })
            .collect()
    }
}

fn run(cmd: &mut Command) -> Run {
    let t0 = Instant::now();
    let out = cmd.output().unwrap();
    Run {
        ok: out.status.success(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        secs: t0.elapsed().as_secs_f64(),
    }
}

fn target_var() -> String {
    format!("c1m_connections={CONNECTIONS}")
}

/// `c1m provision -i <the lab's inventory> -e c1m_connections=N ARGS`, from the checkout so
/// playbooks/ on disk is what runs.
fn provision(ctx: &Ctx, args: &[&str]) -> Run {
    run(c1m()
        .current_dir(repo_root())
        .arg("provision")
        .arg("-i")
        .arg(&ctx.inventory)
        .args(["-e", &target_var()])
        .args(args))
}

/// c1m's tune.yml run on every guest, asserted to succeed.
fn tune(ctx: &Ctx, args: &[&str]) -> Run {
    let tune_yml = repo_root().join("playbooks/tune.yml");
    let mut all = vec![tune_yml.to_str().unwrap()];
    all.extend_from_slice(args);
    let r = provision(ctx, &all);
    assert!(r.ok, "c1m provision {args:?} failed:\n{}", r.out);
    r
}

fn revert(ctx: &Ctx) -> Run {
    let r = provision(ctx, &["--revert"]);
    assert!(r.ok, "c1m provision --revert failed:\n{}", r.out);
    r
}

/// `ansible-playbook` with the same tune.yml and the lab's inventory, which carries strict
/// host-key checking for OpenSSH in `ansible_ssh_common_args`. Its SSH control sockets live in
/// the test's directory and close soon after, so nothing of it outlives the test.
fn ansible_tune(ctx: &Ctx) -> Run {
    let dir = ctx.guard.dir.join("ansible");
    fs::create_dir_all(&dir).unwrap();
    let r = run(Command::new("ansible-playbook")
        .current_dir(&dir)
        .env("ANSIBLE_NOCOLOR", "1")
        // Fewer SSH round trips per task; the guests run Python slowly under TCG either way.
        .env("ANSIBLE_PIPELINING", "1")
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.join("cp"))
        .env(
            "ANSIBLE_SSH_ARGS",
            "-C -o ControlMaster=auto -o ControlPersist=20s",
        )
        .arg("-i")
        .arg(&ctx.inventory)
        .args(["-e", &target_var()])
        .arg(repo_root().join("playbooks/tune.yml")));
    assert!(r.ok, "ansible-playbook tune.yml failed:\n{}", r.out);
    r
}

/// The role-based project (playbooks/project: INI inventory with a range, group_vars and
/// host_vars, ansible.cfg, a role with a template, a handler, a meta dependency and a block with
/// rescue) on the four VMs under both tools, each from its own directory and ansible.cfg: the
/// same recap counts and kernel values, nothing to change on a second run under either tool,
/// and its reset.yml puts the guests back.
fn step_project(ctx: &Ctx) {
    let dir = ctx.guard.dir.join("project");
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo_root().join("playbooks/project"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    fs::write(
        dir.join("group_vars/all/connection.yml"),
        format!(
            "ansible_ssh_private_key_file: {}\nansible_ssh_common_args: -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes\n",
            ctx.key,
            ctx.known_hosts.display()
        ),
    )
    .unwrap();
    let c1m_in = |args: &[&str]| run(c1m().current_dir(&dir).arg("provision").args(args));
    let ansible_in = |book: &str| {
        run(Command::new("ansible-playbook")
            .current_dir(&dir)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_PIPELINING", "1")
            .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.join("cp"))
            .env(
                "ANSIBLE_SSH_ARGS",
                "-C -o ControlMaster=auto -o ControlPersist=20s",
            )
            .arg(book))
    };
    let kernel = || -> Vec<String> {
        ctx.hosts
            .iter()
            .map(|(_, addr)| {
                let o = ssh(
                    addr,
                    &ctx.key,
                    &ctx.known_hosts,
                    "sysctl -n net.core.somaxconn net.ipv4.tcp_fin_timeout net.ipv4.ip_local_port_range; cat /etc/security/limits.d/c1m-project.conf /var/lib/c1m-project/probe 2>&1",
                );
                String::from_utf8_lossy(&o.stdout).into_owned()
            })
            .collect()
    };
    let fresh = kernel();
    let first = c1m_in(&["site.yml"]);
    assert!(first.ok, "c1m site.yml failed:\n{}", first.out);
    let tuned = kernel();
    assert_ne!(tuned, fresh);
    assert!(tuned[0].starts_with("8192\n15\n1024\t65535\n"), "{tuned:?}");
    assert!(
        tuned[1].starts_with("4096\n15\n10000\t65000\n"),
        "{tuned:?}"
    );
    let second = c1m_in(&["site.yml"]);
    assert_eq!(second.changed(ctx), vec![0; 4], "{}", second.out);
    let reset = c1m_in(&["reset.yml"]);
    assert!(reset.ok, "{}", reset.out);
    assert_eq!(
        kernel(),
        fresh,
        "reset.yml did not restore the guests:\n{}",
        reset.out
    );
    let a_first = ansible_in("site.yml");
    assert!(
        a_first.ok,
        "ansible-playbook site.yml failed:\n{}",
        a_first.out
    );
    assert_eq!(
        a_first.recap(),
        first.recap(),
        "{}\n{}",
        first.out,
        a_first.out
    );
    assert_eq!(kernel(), tuned, "ansible-playbook left another state");
    let a_second = ansible_in("site.yml");
    assert_eq!(a_second.changed(ctx), vec![0; 4], "{}", a_second.out);
    let after = c1m_in(&["site.yml"]);
    assert_eq!(after.changed(ctx), vec![0; 4], "{}", after.out);
    let reset = c1m_in(&["reset.yml"]);
    assert!(reset.ok, "{}", reset.out);
    assert_eq!(kernel(), fresh);
    eprintln!(
        "project on 4 VMs: c1m first {:.1}s, second {:.1}s; ansible-playbook first {:.1}s, second {:.1}s",
        first.secs, second.secs, a_first.secs, a_second.secs
    );
}

/// The part of a c1m run's output that belongs to the task or handler titled `title` (up to the
/// next one).
fn task_section<'a>(out: &'a str, title: &str) -> &'a str {
    let start = out
        .find(&format!("TASK [{title}"))
        .or_else(|| out.find(&format!("RUNNING HANDLER [{title}")))
        .unwrap_or_else(|| panic!("no task {title:?} in:\n{out}"));
    let rest = &out[start..];
    let end = rest[1..]
        .find("\nTASK [")
        .or_else(|| rest[1..].find("\nRUNNING HANDLER ["))
        .or_else(|| rest[1..].find("\nPLAY RECAP"))
        .map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// What tune.yml computes for one host from `c1m_connections`, its role, its memory and the
/// values it had (it never lowers a limit), checked against what the guest really has.
fn assert_tuned(name: &str, server: bool, fresh: &GuestState, tuned: &GuestState) {
    let clients = 3;
    let per_client = CONNECTIONS.div_ceil(clients);
    let host_conns = if server { CONNECTIONS } else { per_client };
    let nofile = host_conns + 65_536;
    let mem_mb = number(tuned, "meminfo MemTotal") / 1024;
    let tcp_mem_max = (host_conns * 3).max(262_144).min(mem_mb * 256 * 9 / 10);
    let sys = |k: &str| value(tuned, &format!("sysctl {k}"));
    let sys_n = |k: &str| number(tuned, &format!("sysctl {k}"));
    let was = |k: &str| number(fresh, &format!("sysctl {k}"));

    let exact = [
        (
            "net.ipv4.tcp_mem",
            format!("{} {} {tcp_mem_max}", tcp_mem_max / 2, tcp_mem_max * 3 / 4),
        ),
        ("net.ipv4.tcp_rmem", "4096 4096 16384".to_string()),
        ("net.ipv4.tcp_wmem", "4096 4096 16384".to_string()),
        ("net.ipv4.ip_local_port_range", "1024 65535".to_string()),
        (
            "net.netfilter.nf_conntrack_tcp_timeout_established",
            "1200".to_string(),
        ),
        ("fs.nr_open", nofile.max(was("fs.nr_open")).to_string()),
        (
            "fs.file-max",
            (host_conns * 2 + 262_144)
                .max(was("fs.file-max"))
                .to_string(),
        ),
        (
            "net.ipv4.tcp_max_orphans",
            host_conns.max(was("net.ipv4.tcp_max_orphans")).to_string(),
        ),
        (
            "net.core.somaxconn",
            65_535u64.max(was("net.core.somaxconn")).to_string(),
        ),
        (
            "net.ipv4.tcp_max_syn_backlog",
            65_535u64
                .max(was("net.ipv4.tcp_max_syn_backlog"))
                .to_string(),
        ),
    ];
    for (key, want) in &exact {
        assert_eq!(sys(key), want, "{name}: {key} in the running kernel");
    }
    // The conntrack defaults appear with the module and stay below these (the kernel caps its
    // default nf_conntrack_max at 262144); the kernel rounds the bucket count up to a page of
    // 8-byte hash heads, 512 on x86-64, and tune.yml asks for the rounded count.
    assert_eq!(
        sys_n("net.netfilter.nf_conntrack_max"),
        host_conns + 262_144,
        "{name}: nf_conntrack_max is the host's share plus headroom"
    );
    assert_eq!(
        sys_n("net.netfilter.nf_conntrack_buckets"),
        ((host_conns + 262_144) / 4).div_ceil(512) * 512,
        "{name}: nf_conntrack_buckets"
    );

    // The drop-in: fs.nr_open first, then every key with exactly the kernel's value.
    let conf = file_text(tuned, "/etc/sysctl.d/60-c1m.conf")
        .unwrap_or_else(|| panic!("{name}: no /etc/sysctl.d/60-c1m.conf"));
    assert!(
        conf.starts_with("fs.nr_open="),
        "{name}: fs.nr_open first:\n{conf}"
    );
    for key in TUNED_KEYS {
        let line = conf
            .lines()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{name}: {key} not in the drop-in:\n{conf}"));
        assert_eq!(
            line.split_once('=').unwrap().1,
            sys(key),
            "{name}: {key} in the drop-in and in the kernel"
        );
    }
    assert_eq!(conf.lines().count(), TUNED_KEYS.len(), "{name}:\n{conf}");

    // nofile: in limits.d for everyone and root, for systemd's services, in a new login — and
    // never above fs.nr_open.
    assert!(
        nofile <= sys_n("fs.nr_open"),
        "{name}: nofile {nofile} above fs.nr_open {}",
        sys("fs.nr_open")
    );
    let limits = file_text(tuned, "/etc/security/limits.d/c1m.conf")
        .unwrap_or_else(|| panic!("{name}: no /etc/security/limits.d/c1m.conf"));
    for domain in ["*", "root"] {
        for kind in ["soft", "hard"] {
            let line = format!("{domain}\t{kind}\tnofile\t{nofile}\n");
            assert!(limits.contains(&line), "{name}: no {line:?} in:\n{limits}");
        }
    }
    let dropin = file_text(tuned, "/etc/systemd/system.conf.d/60-c1m.conf")
        .unwrap_or_else(|| panic!("{name}: no systemd drop-in"));
    assert!(
        dropin.contains(&format!("\nDefaultLimitNOFILE={nofile}:{nofile}\n")),
        "{name}:\n{dropin}"
    );
    assert_eq!(
        value(tuned, "systemd DefaultLimitNOFILE"),
        format!("DefaultLimitNOFILE={nofile} DefaultLimitNOFILESoft={nofile}"),
        "{name}: systemd reloaded its manager configuration"
    );
    assert_eq!(
        value(tuned, "login nofile"),
        format!("{nofile} {nofile}"),
        "{name}: a new SSH login gets the limit (pam_limits)"
    );

    assert_eq!(value(tuned, "conntrack loaded"), "module", "{name}");
    assert_eq!(
        file_text(tuned, "/etc/modules-load.d/nf_conntrack.conf").as_deref(),
        Some("nf_conntrack\n"),
        "{name}: nf_conntrack loaded at boot too"
    );
    assert_eq!(
        value(tuned, "dir /var/lib/c1m/snapshot"),
        "present",
        "{name}"
    );
}

/// playbooks/tune.yml and reset.yml under `c1m provision -i` on the four guests, and the same
/// tune.yml under `ansible-playbook`; every state is read back from each guest over SSH. Leaves
/// the guests tuned by c1m for whatever runs next.
fn step_provision(ctx: &Ctx) {
    let fresh = read_all(ctx);
    for ((name, _), s) in ctx.hosts.iter().zip(&fresh) {
        // The ordering below is only shown where the module is not loaded yet: in Debian's
        // kernel nf_conntrack is a module nothing loads at boot.
        assert!(
            value(s, "conntrack loaded") == "none"
                && value(s, "sysctl net.netfilter.nf_conntrack_max") == "absent",
            "{name}: nf_conntrack is already loaded in a fresh guest, so tune.yml's \
             modprobe-before-sysctl cannot be shown; did the lab image change? {s:?}"
        );
        assert_eq!(value(s, "dir /var/lib/c1m/snapshot"), "absent", "{name}");
    }

    // --check --diff on fresh guests: every host would change, the diff shows the values'
    // before and after, and nothing changes.
    let check = tune(ctx, &["--check", "--diff"]);
    let changed = check.changed(ctx);
    assert!(
        changed.iter().all(|&c| c > 0),
        "--check must report changes on fresh hosts: {changed:?}\n{}",
        check.out
    );
    assert_same_state(ctx, &read_all(ctx), &fresh, "--check changed a guest");
    let rmem_before = value(&fresh[0], "sysctl net.ipv4.tcp_rmem");
    for want in [
        "--- before: /proc/sys/net/ipv4/tcp_rmem\n+++ after: /proc/sys/net/ipv4/tcp_rmem\n"
            .to_string(),
        // The kernel separates the three numbers with tabs.
        format!("-{}\n+4096 4096 16384\n", rmem_before.replace(' ', "\t")),
        "+++ after: /etc/sysctl.d/60-c1m.conf\n".to_string(),
        "+net.ipv4.tcp_rmem=4096 4096 16384\n".to_string(),
        "+++ after: /etc/modules-load.d/nf_conntrack.conf\n".to_string(),
    ] {
        assert!(
            check.out.contains(&want),
            "--diff does not show {want:?}:\n{}",
            check.out
        );
    }
    let load = task_section(&check.out, "Load nf_conntrack");
    for (name, _) in &ctx.hosts {
        assert!(
            load.contains(&format!("changed: [{name}]")) && load.contains("loading nf_conntrack"),
            "--check must say nf_conntrack would be loaded on {name}:\n{load}"
        );
    }

    // First run: every host changes, nf_conntrack is loaded before the first conntrack sysctl
    // (tasks run in order on each host, and setting a key that does not exist yet fails).
    let first = tune(ctx, &[]);
    let changed = first.changed(ctx);
    assert!(
        changed.iter().all(|&c| c > 0),
        "first run changed nothing somewhere: {changed:?}\n{}",
        first.out
    );
    let load_at = first.out.find("TASK [Load nf_conntrack").unwrap();
    let sysctl_at = first
        .out
        .find("item=net.netfilter.nf_conntrack")
        .unwrap_or_else(|| panic!("no conntrack sysctl in:\n{}", first.out));
    assert!(
        load_at < sysctl_at,
        "sysctl before modprobe:\n{}",
        first.out
    );
    let load = task_section(&first.out, "Load nf_conntrack");
    let sysctls = task_section(&first.out, "Set kernel parameters");
    let reload = task_section(&first.out, "Reload systemd");
    for (name, _) in &ctx.hosts {
        assert!(
            reload.contains(&format!("ok: [{name}]")),
            "{name}: the systemd drop-in was written, so the handler ran:\n{reload}"
        );
        assert!(
            load.contains(&format!("changed: [{name}]")),
            "{name}: nf_conntrack not loaded by the first run:\n{load}"
        );
        assert!(
            sysctls.contains(&format!(
                "changed: [{name}] => (item=net.netfilter.nf_conntrack_max)"
            )),
            "{name}: nf_conntrack_max not set:\n{sysctls}"
        );
    }
    let tuned = read_all(ctx);
    for (((name, _), f), t) in ctx.hosts.iter().zip(&fresh).zip(&tuned) {
        assert_tuned(name, name == "srv", f, t);
    }

    // Second run: nothing to do anywhere, nothing changes.
    let second = tune(ctx, &[]);
    assert_eq!(
        second.changed(ctx),
        vec![0; 4],
        "second run must change nothing:\n{}",
        second.out
    );
    assert_same_state(
        ctx,
        &read_all(ctx),
        &tuned,
        "the second run changed a guest",
    );

    // reset.yml: every value and file as before the first tune.yml, nf_conntrack unloaded
    // again, the snapshot gone.
    let reset = revert(ctx);
    assert!(reset.changed(ctx).iter().all(|&c| c > 0), "{}", reset.out);
    assert_same_state(
        ctx,
        &read_all(ctx),
        &fresh,
        "reset.yml did not restore the guests",
    );

    // Interop: ansible-playbook runs the same tune.yml from the same fresh state (its snapshot
    // task takes the same snapshot c1m's did, as the first one was dropped by the reset) and
    // reaches the same end state.
    let ansible = ansible_tune(ctx);
    ansible.changed(ctx);
    assert_eq!(
        ansible.recap(),
        first.recap(),
        "ansible-playbook and c1m report different counts for the same first run:\n{}\n{}",
        ansible.out,
        first.out
    );
    assert_same_state(
        ctx,
        &read_all(ctx),
        &tuned,
        "ansible-playbook's tune.yml left another state than c1m's",
    );
    // c1m sees ansible's end state as its own: nothing to change.
    let after_ansible = tune(ctx, &[]);
    assert_eq!(
        after_ansible.changed(ctx),
        vec![0; 4],
        "c1m after ansible-playbook must change nothing:\n{}",
        after_ansible.out
    );
    // c1m's reset restores from the snapshot ansible's run took.
    revert(ctx);
    assert_same_state(
        ctx,
        &read_all(ctx),
        &fresh,
        "reset after ansible-playbook's tune did not restore the guests",
    );

    // Leave the guests tuned by c1m for the steps after this one.
    tune(ctx, &[]);
    assert_same_state(ctx, &read_all(ctx), &tuned, "the final tune");
    eprintln!(
        "lab test: tune.yml on four guests: c1m check {:.1}s, first {:.1}s, second {:.1}s, \
         revert {:.1}s; ansible-playbook first {:.1}s",
        check.secs, first.secs, second.secs, reset.secs, ansible.secs
    );
}

/// `c1m run -i` on the tuned guests: CONNECTIONS over the three clients through SSH, its report,
/// and no c1m process left in any guest afterwards.
fn step_run(ctx: &Ctx) {
    let runs = ctx.guard.dir.join("runs");
    let out = c1m()
        .arg("run")
        .arg("-i")
        .arg(&ctx.inventory)
        .args([
            "-n",
            &CONNECTIONS.to_string(),
            "--hold",
            "5s",
            "--no-progress",
        ])
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(out.status.success(), "c1m run -i the lab: {}", text(&out));
    assert!(stdout.contains("the plan fits"), "{stdout}");
    let dir = fs::canonicalize(runs.join("latest")).unwrap();
    let run: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["outcome"], "reached", "{run:#}");
    assert_eq!(run["partial"], false, "{run:#}");
    assert!(
        run["established_peak"].as_u64().unwrap() >= CONNECTIONS,
        "{run:#}"
    );
    assert!(
        run["server_open_peak"].as_u64().unwrap() >= CONNECTIONS,
        "{run:#}"
    );
    assert!(
        run["kernel_bytes_per_conn"].as_f64().unwrap() > 1000.0,
        "{run:#}"
    );
    let hosts = run["hosts"].as_array().unwrap();
    let by_name = |name: &str| {
        hosts
            .iter()
            .find(|h| h["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from run.json"))
    };
    assert_eq!(by_name("srv")["role"], "server");
    let mut shares = 0;
    for (name, addr) in &ctx.hosts[1..] {
        let h = by_name(name);
        assert_eq!(h["role"], "client", "{h:#}");
        assert_eq!(h["address"], addr.as_str(), "{h:#}");
        assert_eq!(h["established_peak"], h["share"], "{h:#}");
        shares += h["share"].as_u64().unwrap();
    }
    assert_eq!(shares, CONNECTIONS);
    // The run read each guest's tuning as it started: what tune.yml set was in effect.
    for (name, _) in &ctx.hosts {
        let t = &by_name(name)["tuning"];
        assert_eq!(t["net.ipv4.tcp_rmem"], "4096 4096 16384", "{name}: {t:#}");
        assert!(
            t["net.netfilter.nf_conntrack_max"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v >= CONNECTIONS / 3),
            "{name}: {t:#}"
        );
    }
    let report = c1m().arg("report").arg(&dir).output().unwrap();
    let report_out = String::from_utf8_lossy(&report.stdout).into_owned();
    assert!(report.status.success(), "c1m report: {}", text(&report));
    assert!(report_out.contains("reached"), "{report_out}");
    for (name, _) in &ctx.hosts {
        assert!(report_out.contains(name.as_str()), "{report_out}");
    }
    // Nothing c1m started is left in any guest (found by executable, not by name).
    for (name, addr) in &ctx.hosts {
        let out = ssh(
            addr,
            &ctx.key,
            &ctx.known_hosts,
            "for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null | grep -c '^/var/lib/c1m/bin/' || true",
        );
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "{name}: c1m processes left in the guest"
        );
    }
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
