//! Real test hosts: OpenSSH servers (Debian's `/usr/sbin/sshd`), each in a network namespace of
//! its own with its own address, all on one bridge per [`Lab`] so they reach each other and the
//! test reaches them.
//!
//! ```text
//!   root namespace (the test)            netns c1mt-N-0          netns c1mt-N-1
//!   bridge c1mtbN 10.198.N.1/24 ── veth ── eth0 10.198.N.2 ┐      eth0 10.198.N.3 ...
//!                               └─ veth ──────────────────────────┘
//! ```
//!
//! `N` (1..=254) is claimed with an `flock` on `/run/c1m-lab/subnet-N.lock`, held for the life of
//! the lab, so parallel tests and test binaries never share a subnet, and every name derives from
//! `N` — which also lets a lab remove what a crashed predecessor with the same `N` left behind.
//! Everything is undone on drop, also when the test panics.
//!
//! A later distributed test starts its own processes inside a host with [`SshHost::netns_cmd`]
//! (or over SSH) and points clients at [`SshHost::address`].
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const LOCK_DIR: &str = "/run/c1m-lab";

/// Whether the lab can run here. When it cannot: panics under `C1M_REQUIRE_LAB=1` (CI), else
/// prints why and returns false so the test returns early as skipped.
pub fn require(test: &str, what: &[&str]) -> bool {
    let mut missing = Vec::new();
    for w in what {
        let ok = match *w {
            "root" => (unsafe { libc::geteuid() }) == 0,
            "sshd" => Path::new(SSHD).exists(),
            other => which(other),
        };
        if !ok {
            missing.push(*w);
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: needs {} (missing: {})",
        what.join(", "),
        missing.join(", ")
    );
    if std::env::var("C1M_REQUIRE_LAB").as_deref() == Ok("1") {
        panic!("{msg}; C1M_REQUIRE_LAB=1 forbids skipping");
    }
    eprintln!("SKIPPED {msg}");
    false
}

/// What a lab needs on the machine.
pub const LAB_NEEDS: &[&str] = &["root", "sshd", "ip", "ssh-keygen", "ssh-keyscan"];

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(bin).is_file()
}

/// Runs a command that must succeed; panics with its output otherwise.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a cleanup command, ignoring failure (the thing may already be gone).
fn quietly(cmd: &mut Command) {
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// Client key pairs, shared by every host of a lab.
#[derive(Debug, Clone)]
pub struct ClientKeys {
    pub ed25519: PathBuf,
    /// RSA in OpenSSH's own private-key format (ssh-keygen's default).
    pub rsa: PathBuf,
    /// RSA in the older PEM format (`ssh-keygen -m PEM`), as many existing setups have.
    pub rsa_pem: PathBuf,
    /// An authorized ed25519 key protected by the passphrase `secret`.
    pub encrypted: PathBuf,
    /// A valid key that no authorized_keys lists.
    pub unauthorized: PathBuf,
}

/// Options for [`Lab::start_with`].
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub hosts: usize,
    /// sshd's port in every namespace (22 makes known_hosts entries bare addresses; anything else
    /// gives `[addr]:port` entries).
    pub port: u16,
    /// Whether sshd offers the SFTP subsystem (minimal hosts may not).
    pub sftp: bool,
    /// Whether the SFTP server logs every file it closes, with the bytes it wrote (see
    /// [`SshHost::sftp_written`]); it then runs as the external `sftp-server`, as the built-in
    /// one can only log to syslog or into the session itself.
    pub sftp_log: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            hosts: 1,
            port: 22,
            sftp: true,
            sftp_log: false,
        }
    }
}

/// A set of SSH hosts on one private link.
pub struct Lab {
    /// `N` of 10.198.N.0/24.
    pub subnet: u8,
    pub dir: PathBuf,
    pub keys: ClientKeys,
    pub hosts: Vec<SshHost>,
    /// known_hosts (plain, from `ssh-keyscan`) for every host of the lab.
    pub known_hosts: PathBuf,
    bridge: String,
    users: Vec<String>,
    extra_addresses: usize,
    /// What the lab was started with: a host moved behind a bastion is configured again alike.
    opts: LabOptions,
    _lock: File,
}

/// One OpenSSH server in its own network namespace.
pub struct SshHost {
    /// A name for inventories and messages: `h0`, `h1`, ...
    pub name: String,
    pub netns: String,
    pub address: String,
    pub port: u16,
    /// The login every lab host accepts with the lab's client keys (see [`Lab::add_user`] for
    /// unprivileged ones).
    pub user: String,
    /// sshd's stderr (`-e`, LogLevel VERBOSE): one "Accepted publickey" line per login.
    pub log: PathBuf,
    /// known_hosts with this host's keys as `ssh-keyscan` prints them.
    pub known_hosts: PathBuf,
    /// The same, hashed (`ssh-keyscan -H`).
    pub known_hosts_hashed: PathBuf,
    pub config: PathBuf,
    pub dir: PathBuf,
    /// Root-namespace end of the veth pair.
    veth: String,
    sshd: Option<Child>,
}

impl Lab {
    /// `hosts` sshd hosts on port 22; `None` (skipped) when the machine cannot run them.
    pub fn start(test: &str, hosts: usize) -> Option<Lab> {
        Self::start_with(
            test,
            LabOptions {
                hosts,
                ..Default::default()
            },
        )
    }

    pub fn start_with(test: &str, opts: LabOptions) -> Option<Lab> {
        if !require(test, LAB_NEEDS) {
            return None;
        }
        assert!((1..=200).contains(&opts.hosts), "1..=200 hosts per lab");
        let (subnet, lock) = claim_subnet();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "c1mt-{subnet}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut lab = Lab {
            subnet,
            keys: ClientKeys {
                ed25519: dir.join("client/id_ed25519"),
                rsa: dir.join("client/id_rsa"),
                rsa_pem: dir.join("client/id_rsa_pem"),
                encrypted: dir.join("client/id_encrypted"),
                unauthorized: dir.join("client/id_unauthorized"),
            },
            known_hosts: dir.join("known_hosts"),
            dir,
            hosts: Vec::new(),
            bridge: format!("c1mtb{subnet}"),
            users: Vec::new(),
            extra_addresses: 0,
            opts: opts.clone(),
            _lock: lock,
        };
        lab.remove_leftovers();
        lab.setup(&opts);
        Some(lab)
    }

    fn setup(&mut self, opts: &LabOptions) {
        fs::create_dir_all(self.dir.join("client")).expect("lab dir");
        fs::create_dir_all(self.dir.join("authorized_keys")).expect("lab dir");
        // Test users log in with their home inside; sshd reads authorized_keys as the user.
        for d in [&self.dir, &self.dir.join("authorized_keys")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        fs::create_dir_all("/run/sshd").expect("sshd privilege separation dir");
        keygen(&self.keys.ed25519, "ed25519");
        keygen(&self.keys.rsa, "rsa");
        keygen(&self.keys.unauthorized, "ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-m", "PEM", "-t", "rsa", "-b", "2048", "-f"])
            .arg(&self.keys.rsa_pem));
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", "secret", "-t", "ed25519", "-f"])
            .arg(&self.keys.encrypted));
        self.authorize("root");

        run(Command::new("ip").args(["link", "add", &self.bridge, "type", "bridge"]));
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("10.198.{}.1/24", self.subnet),
            "dev",
            &self.bridge,
        ]));
        run(Command::new("ip").args(["link", "set", &self.bridge, "up"]));

        for k in 0..opts.hosts {
            let host = self.add_host(k, opts);
            self.hosts.push(host);
        }
        for h in &mut self.hosts {
            h.start();
        }
        let mut all = String::new();
        for h in &self.hosts {
            all.push_str(&h.scan_keys());
        }
        fs::write(&self.known_hosts, all).expect("write known_hosts");
    }

    fn add_host(&self, k: usize, opts: &LabOptions) -> SshHost {
        let port = opts.port;
        let netns = format!("c1mt-{}-{k}", self.subnet);
        let address = format!("10.198.{}.{}", self.subnet, k + 2);
        let outer = format!("c1mt{}h{k}", self.subnet);
        let dir = self.dir.join(format!("h{k}"));
        fs::create_dir_all(&dir).expect("host dir");
        let host = SshHost {
            name: format!("h{k}"),
            netns: netns.clone(),
            address: address.clone(),
            port,
            user: "root".into(),
            log: dir.join("sshd.log"),
            known_hosts: dir.join("known_hosts"),
            known_hosts_hashed: dir.join("known_hosts.hashed"),
            config: dir.join("sshd_config"),
            dir: dir.clone(),
            veth: outer.clone(),
            sshd: None,
        };
        run(Command::new("ip").args(["netns", "add", &netns]));
        run(Command::new("ip").args([
            "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]));
        run(Command::new("ip").args(["link", "set", &outer, "master", &self.bridge, "up"]));
        let in_ns = |args: &[&str]| {
            let mut c = Command::new("ip");
            c.args(["-n", &netns]).args(args);
            run(&mut c);
        };
        in_ns(&["link", "set", "lo", "up"]);
        in_ns(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        in_ns(&["link", "set", "eth0", "up"]);

        keygen(&dir.join("ssh_host_ed25519_key"), "ed25519");
        keygen(&dir.join("ssh_host_rsa_key"), "rsa");
        host.write_config(&self.dir.join("authorized_keys"), opts);
        host
    }

    /// Lists both client public keys in `user`'s authorized_keys.
    fn authorize(&self, user: &str) {
        let mut keys = String::new();
        for k in [
            &self.keys.ed25519,
            &self.keys.rsa,
            &self.keys.rsa_pem,
            &self.keys.encrypted,
        ] {
            keys.push_str(&fs::read_to_string(k.with_extension("pub")).expect("public key"));
        }
        let path = self.dir.join("authorized_keys").join(user);
        fs::write(&path, keys).expect("authorized_keys");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// Creates a local user (so it exists on every host of the lab: namespaces share /etc/passwd)
    /// that logs in with the lab's client keys, with passwordless sudo or with no sudo rights.
    /// Removed again with the lab.
    pub fn add_user(&mut self, sudo: bool) -> String {
        let user = format!("c1mt{}u{}", self.subnet, self.users.len());
        let home = self.dir.join(format!("home-{user}"));
        fs::create_dir_all(&home).expect("home");
        // Registered before creation so a failure half-way is still cleaned up.
        self.users.push(user.clone());
        let mut last = String::new();
        let created = (0..20).any(|_| {
            let out = Command::new("useradd")
                // `*`: no password, but not locked (`!`), which sshd without PAM refuses.
                .args(["-M", "-p", "*", "-s", "/bin/sh", "-d"])
                .arg(&home)
                .arg(&user)
                .output()
                .expect("useradd runs");
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            // Another test may hold the passwd lock for a moment.
            out.status.success() || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(created, "useradd {user}: {last}");
        run(Command::new("chown").arg(&user).arg(&home));
        self.authorize(&user);
        if sudo {
            let path = sudoers_file(&user);
            fs::write(&path, format!("{user} ALL=(ALL:ALL) NOPASSWD: ALL\n")).expect("sudoers");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).expect("chmod");
        }
        user
    }

    /// An Ansible YAML inventory of the lab: `groups` maps a group name to host indexes, e.g.
    /// `[("server", &[0]), ("clients", &[1, 2, 3])]`. Hosts log in as root with the ed25519
    /// client key; `ansible_ssh_common_args` points OpenSSH (for `ansible-playbook`) at the
    /// lab's known_hosts with strict checking, so both c1m and Ansible can run it unchanged.
    pub fn inventory_yaml(&self, groups: &[(&str, &[usize])]) -> String {
        let mut y = format!(
            "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    \
             ansible_ssh_common_args: -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes\n  \
             children:\n",
            self.keys.ed25519.display(),
            self.known_hosts.display()
        );
        for (group, members) in groups {
            y.push_str(&format!("    {group}:\n      hosts:\n"));
            for &i in *members {
                let h = &self.hosts[i];
                y.push_str(&format!(
                    "        {}:\n          ansible_host: {}\n          ansible_port: {}\n",
                    h.name, h.address, h.port
                ));
            }
        }
        y
    }

    /// Gives host `host` `count` more addresses on its link (10.198.N.100 upwards, shared out
    /// across the lab's hosts), e.g. source addresses for a client opening more connections than
    /// one address has ports. Removed with the namespace.
    pub fn add_addresses(&mut self, host: usize, count: usize) -> Vec<String> {
        let first = 100 + self.extra_addresses;
        assert!(
            first + count <= 250,
            "10.198.N.100-249 holds 150 extra addresses per lab"
        );
        self.extra_addresses += count;
        let h = &self.hosts[host];
        (first..first + count)
            .map(|i| {
                let a = format!("10.198.{}.{i}", self.subnet);
                run(Command::new("ip").args([
                    "-n",
                    &h.netns,
                    "addr",
                    "add",
                    &format!("{a}/24"),
                    "dev",
                    "eth0",
                ]));
                a
            })
            .collect()
    }

    /// The bridge of the network only a bastion reaches (see [`Lab::isolate_behind`]).
    fn inner_bridge(&self) -> String {
        format!("c1mti{}", self.subnet)
    }

    fn inner_net(&self) -> String {
        format!("10.197.{}.0/24", self.subnet)
    }

    /// Moves `hosts` onto a second network, 10.197.N.0/24 on a bridge with no address in this
    /// namespace, which host `bastion` also joins (as 10.197.N.1): from here they can then be
    /// reached only through the bastion, as hosts behind a jump host are.
    ///
    /// ```text
    ///   root namespace ── c1mtbN 10.198.N.0/24 ── bastion eth0 10.198.N.2
    ///                                               bastion eth1 10.197.N.1 ─┐
    ///   (no address, no route)   c1mtiN 10.197.N.0/24 ── targets 10.197.N.k ──┘
    /// ```
    /// Their known_hosts entries are rescanned from inside the bastion and appended to the
    /// lab's known_hosts file.
    pub fn isolate_behind(&mut self, bastion: usize, hosts: &[usize]) {
        let inner = self.inner_bridge();
        let n = self.subnet;
        run(Command::new("ip").args(["link", "add", &inner, "type", "bridge"]));
        run(Command::new("ip").args(["link", "set", &inner, "up"]));
        // Nothing for the inner network leaves this namespace (not even by the default route):
        // it is unreachable from here by routing, as a network behind a bastion is.
        run(Command::new("ip").args(["route", "add", "unreachable", &self.inner_net()]));
        let b_ns = self.hosts[bastion].netns.clone();
        let b_outer = format!("c1mt{n}b");
        run(Command::new("ip").args([
            "link", "add", &b_outer, "type", "veth", "peer", "name", "eth1", "netns", &b_ns,
        ]));
        run(Command::new("ip").args(["link", "set", &b_outer, "master", &inner, "up"]));
        run(Command::new("ip").args([
            "-n",
            &b_ns,
            "addr",
            "add",
            &format!("10.197.{n}.1/24"),
            "dev",
            "eth1",
        ]));
        run(Command::new("ip").args(["-n", &b_ns, "link", "set", "eth1", "up"]));
        let mut keys = String::new();
        for &k in hosts {
            let h = &mut self.hosts[k];
            h.stop();
            let address = format!("10.197.{n}.{}", k + 2);
            run(Command::new("ip").args(["link", "set", &h.veth, "nomaster"]));
            run(Command::new("ip").args(["link", "set", &h.veth, "master", &inner, "up"]));
            run(Command::new("ip").args(["-n", &h.netns, "addr", "flush", "dev", "eth0"]));
            run(Command::new("ip").args([
                "-n",
                &h.netns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]));
            h.address = address;
            h.write_config(&self.dir.join("authorized_keys"), &self.opts);
            h.start_inside();
            let out = run(Command::new("ip").args([
                "netns",
                "exec",
                &b_ns,
                "ssh-keyscan",
                "-T",
                "5",
                "-t",
                "ed25519,rsa",
                "-p",
                &h.port.to_string(),
                &h.address,
            ]));
            assert!(
                out.lines().count() >= 2,
                "ssh-keyscan {} from the bastion: {out:?}",
                h.address
            );
            fs::write(&h.known_hosts, &out).expect("known_hosts");
            keys.push_str(&out);
        }
        let mut all = fs::read_to_string(&self.known_hosts).unwrap_or_default();
        all.push_str(&keys);
        fs::write(&self.known_hosts, all).expect("known_hosts");
    }

    /// An address on the lab's link where nothing answers.
    pub fn dead_address(&self) -> String {
        format!("10.198.{}.250", self.subnet)
    }

    /// Removes what a crashed run with the same subnet may have left (we hold its lock now).
    fn remove_leftovers(&self) {
        let netns = run(Command::new("ip").args(["netns", "list"]));
        let prefix = format!("c1mt-{}-", self.subnet);
        for line in netns.lines() {
            if let Some(ns) = line
                .split_whitespace()
                .next()
                .filter(|n| n.starts_with(&prefix))
            {
                kill_netns_processes(ns);
                quietly(Command::new("ip").args(["netns", "del", ns]));
            }
        }
        quietly(Command::new("ip").args(["link", "del", &self.bridge]));
        quietly(Command::new("ip").args(["link", "del", &self.inner_bridge()]));
        quietly(Command::new("ip").args(["route", "del", "unreachable", &self.inner_net()]));
        let links = run(Command::new("ip").args(["-o", "link", "show"]));
        let veth_prefix = format!("c1mt{}h", self.subnet);
        for line in links.lines() {
            // "7: c1mt5h0@if2: <...>"
            if let Some(name) = line
                .split(": ")
                .nth(1)
                .and_then(|n| n.split('@').next())
                .filter(|n| n.starts_with(&veth_prefix))
            {
                quietly(Command::new("ip").args(["link", "del", name]));
            }
        }
        // Lab dirs of this subnet: a live lab would hold the lock we now have.
        let dir_prefix = format!("c1mt-{}-", self.subnet);
        if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&dir_prefix) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let user_prefix = format!("c1mt{}u", self.subnet);
        for line in passwd.lines() {
            if let Some(user) = line
                .split(':')
                .next()
                .filter(|u| u.starts_with(&user_prefix))
            {
                quietly(Command::new("userdel").arg(user));
                let _ = fs::remove_file(sudoers_file(user));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.hosts.clear(); // stops sshd and deletes each namespace (and its veth)
        quietly(Command::new("ip").args(["link", "del", &self.bridge]));
        quietly(Command::new("ip").args(["link", "del", &self.inner_bridge()]));
        quietly(Command::new("ip").args(["route", "del", "unreachable", &self.inner_net()]));
        for user in &self.users {
            let _ = fs::remove_file(sudoers_file(user));
            quietly(Command::new("userdel").arg(user));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl SshHost {
    fn write_config(&self, authorized_keys: &Path, opts: &LabOptions) {
        let d = self.dir.display();
        let subsystem = match (opts.sftp, opts.sftp_log) {
            (false, _) => String::new(),
            (true, false) => "Subsystem sftp internal-sftp\n".to_string(),
            (true, true) => {
                // Every test user's sftp-server appends to it.
                let log = self.sftp_log();
                fs::write(&log, "").expect("sftp log");
                fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).expect("chmod");
                format!(
                    "Subsystem sftp exec /usr/lib/openssh/sftp-server -e -l INFO 2>>{}\n",
                    log.display()
                )
            }
        };
        let config = format!(
            "Port {port}\n\
             ListenAddress {addr}\n\
             HostKey {d}/ssh_host_ed25519_key\n\
             HostKey {d}/ssh_host_rsa_key\n\
             PidFile none\n\
             AuthorizedKeysFile {ak}/%u\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UseDNS no\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n\
             MaxStartups 200\n\
             MaxSessions 50\n\
             {subsystem}",
            port = self.port,
            addr = self.address,
            ak = authorized_keys.display(),
            subsystem = subsystem,
        );
        fs::write(&self.config, config).expect("sshd_config");
    }

    /// Starts sshd (again) and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.sshd.is_none(), "{}: sshd already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("sshd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, SSHD, "-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        self.sshd = Some(child);
        let addr: SocketAddr = format!("{}:{}", self.address, self.port)
            .parse()
            .expect("address");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.sshd.as_mut().map(Child::try_wait) {
                panic!("{}: sshd exited ({status}): {}", self.name, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{}: sshd not accepting on {addr}: {}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts sshd (again) on a host this namespace cannot reach, waiting until it listens.
    pub fn start_inside(&mut self) {
        assert!(self.sshd.is_none(), "{}: sshd already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("sshd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, SSHD, "-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        self.sshd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let filter = format!("sport = :{}", self.port);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.netns, "ss", "-Hltn", &filter])
                .output()
                .expect("ss");
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: sshd not listening: {}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops sshd; the namespace and its address stay, so connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Sessions still open belong to sshd's children, which outlive the listener.
        kill_netns_processes(&self.netns);
    }

    /// Replaces the host keys (as a reinstall would) and restarts sshd.
    pub fn regenerate_host_keys(&mut self) {
        self.stop();
        for t in ["ed25519", "rsa"] {
            let key = self.dir.join(format!("ssh_host_{t}_key"));
            let _ = fs::remove_file(&key);
            let _ = fs::remove_file(key.with_extension("pub"));
            keygen(&key, t);
        }
        self.start();
    }

    /// `ssh-keyscan` of this host, written to its two known_hosts files; returns the plain one.
    fn scan_keys(&self) -> String {
        let scan = |hashed: bool| {
            let mut c = Command::new("ssh-keyscan");
            c.args(["-T", "5", "-t", "ed25519,rsa", "-p", &self.port.to_string()]);
            if hashed {
                c.arg("-H");
            }
            let out = run(c.arg(&self.address));
            assert!(
                out.lines().count() >= 2,
                "ssh-keyscan {}: {out:?}",
                self.address
            );
            out
        };
        let plain = scan(false);
        fs::write(&self.known_hosts, &plain).expect("known_hosts");
        fs::write(&self.known_hosts_hashed, scan(true)).expect("known_hosts");
        plain
    }

    /// A command run inside this host's namespace (for servers a distributed test starts).
    pub fn netns_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns]).arg(program);
        c
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// How many logins sshd accepted so far.
    pub fn accepted_logins(&self) -> usize {
        self.log_text().matches("Accepted publickey").count()
    }

    fn sftp_log(&self) -> PathBuf {
        self.dir.join("sftp.log")
    }

    /// The bytes each SFTP handle on a file whose path contains `name` wrote, in the order the
    /// handles were closed (sftp-server logs `close "PATH" bytes read R written W`); needs
    /// [`LabOptions::sftp_log`].
    pub fn sftp_written(&self, name: &str) -> Vec<u64> {
        fs::read_to_string(self.sftp_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("close \"") && l.contains(name))
            .filter_map(|l| l.rsplit(" written ").next()?.trim().parse().ok())
            .collect()
    }

    /// Limits what reaches this host (uploads to it) to `rate` (tc's syntax, e.g. `1mbit`)
    /// with a `tbf` qdisc on the root-namespace end of its veth, until the guard drops.
    pub fn throttle_to_host(&self, rate: &str) -> Throttle {
        Throttle::add(None, &self.veth, rate)
    }

    /// Limits what this host sends (downloads from it) to `rate`, on its own `eth0`.
    pub fn throttle_from_host(&self, rate: &str) -> Throttle {
        Throttle::add(Some(&self.netns), "eth0", rate)
    }

    /// Takes the host's link down (no FIN, no RST: silence, as a cable pulled) until the guard
    /// drops or [`LinkDown::restore`] is called.
    pub fn link_down(&self) -> LinkDown {
        set_link(&self.netns, "down");
        LinkDown {
            netns: Some(self.netns.clone()),
        }
    }
}

fn set_link(netns: &str, state: &str) {
    run(Command::new("ip").args(["-n", netns, "link", "set", "eth0", state]));
}

/// A host's link taken down; up again on drop.
pub struct LinkDown {
    netns: Option<String>,
}

impl LinkDown {
    pub fn restore(mut self) {
        if let Some(ns) = self.netns.take() {
            set_link(&ns, "up");
        }
    }
}

impl Drop for LinkDown {
    fn drop(&mut self) {
        if let Some(ns) = self.netns.take() {
            quietly(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]));
        }
    }
}

/// A `tbf` qdisc on one device (`netem` is not in every kernel; `tbf` is); removed on drop.
pub struct Throttle {
    netns: Option<String>,
    dev: String,
}

impl Throttle {
    fn add(netns: Option<&str>, dev: &str, rate: &str) -> Throttle {
        let t = Throttle {
            netns: netns.map(str::to_string),
            dev: dev.to_string(),
        };
        // A 4 KiB bucket keeps bursts short, so the rate holds from the first second; the
        // 400 ms queue is what a slow link's buffer would hold.
        run(t
            .tc()
            .args(["qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate])
            .args(["burst", "4kb", "latency", "400ms"]));
        t
    }

    fn tc(&self) -> Command {
        let mut c = Command::new("tc");
        if let Some(ns) = &self.netns {
            c.args(["-n", ns]);
        }
        c
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let dev = self.dev.clone();
        quietly(self.tc().args(["qdisc", "del", "dev", &dev, "root"]));
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.stop();
        // Deleting our end removes the pair at once; the namespace itself is torn down by the
        // kernel asynchronously, and its veth end with it, which would block reusing the name.
        quietly(Command::new("ip").args(["link", "del", &self.veth]));
        quietly(Command::new("ip").args(["netns", "del", &self.netns]));
    }
}

/// Kills every process whose network namespace is `ns` (sshd's session children).
fn kill_netns_processes(ns: &str) {
    let out = Command::new("ip").args(["netns", "pids", ns]).output();
    if let Ok(out) = out {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain kill(2) of a process inside our own test namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn sudoers_file(user: &str) -> PathBuf {
    Path::new("/etc/sudoers.d").join(user)
}

fn keygen(path: &Path, kind: &str) {
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-N", "", "-C", "c1m-test", "-t", kind]);
    if kind == "rsa" {
        c.args(["-b", "2048"]);
    }
    run(c.arg("-f").arg(path));
}

/// Claims a free 10.198.N.0/24 for this lab (see the module docs).
fn claim_subnet() -> (u8, File) {
    fs::create_dir_all(LOCK_DIR).expect("lock dir");
    // Start at a per-process offset so parallel binaries rarely contend for the same N.
    let start = (std::process::id() % 254) as u8;
    for i in 0..254u16 {
        let n = ((u16::from(start) + i) % 254 + 1) as u8;
        let mut f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Path::new(LOCK_DIR).join(format!("subnet-{n}.lock")))
            .expect("lock file");
        // SAFETY: flock on a file we own; released when the file is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = writeln!(f, "{}", std::process::id());
            return (n, f);
        }
    }
    panic!("no free 10.198.N.0/24 subnet: 254 labs running?");
}
