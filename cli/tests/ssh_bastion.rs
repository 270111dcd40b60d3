//! Hosts behind a bastion, configured through `~/.ssh/config` alone: three sshd hosts in
//! network namespaces, two of them on a network only the third (the bastion) joins, so routing
//! leaves no way to them but through it. `c1m provision`, `c1m check` and a small `c1m run`
//! all go through the bastion; a bastion whose host key changed is refused; a dead bastion is
//! one clear error per host behind it. HOME points at a directory of the test's, so nothing
//! reads or writes the real `~/.ssh`.

mod support;

use serde_json::Value;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::Lab;

struct Bastion {
    lab: Lab,
    home: PathBuf,
    inventory: PathBuf,
    user: String,
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Bastion {
    fn start(test: &str) -> Option<Bastion> {
        let mut lab = Lab::start(test, 3)?;
        lab.isolate_behind(0, &[1, 2]);
        // Root: provisioning sets kernel values.
        let user = "root".to_string();
        let home = lab.dir.join("home");
        fs::create_dir_all(home.join(".ssh")).unwrap();
        fs::copy(&lab.known_hosts, home.join(".ssh/known_hosts")).unwrap();
        let key = lab.keys.ed25519.display().to_string();
        let n = lab.subnet;
        fs::write(
            home.join(".ssh/config"),
            format!(
                "# Hosts of the test, as an operator writes them.\n\
                 Host bastion\n    HostName {bastion}\n    User {user}\n    IdentityFile {key}\n\n\
                 Host 10.197.{n}.* !10.197.{n}.1\n    ProxyJump bastion\n    User {user}\n    IdentityFile {key}\n",
                bastion = lab.hosts[0].address,
            ),
        )
        .unwrap();
        // The inventory says nothing about the bastion, keys or users.
        let inventory = lab.dir.join("hosts");
        let bin = |i: usize| lab.dir.join(format!("bin-h{i}"));
        fs::write(
            &inventory,
            format!(
                "[server]\nh1 ansible_host={} c1m_bin_dir={}\n[clients]\nh2 ansible_host={} c1m_bin_dir={}\n",
                lab.hosts[1].address,
                bin(1).display(),
                lab.hosts[2].address,
                bin(2).display(),
            ),
        )
        .unwrap();
        Some(Bastion {
            lab,
            home,
            inventory,
            user,
        })
    }

    fn c1m(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_c1m"))
            .env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("C1M_SSH_CONFIG")
            .env_remove("ANSIBLE_CONFIG")
            .current_dir(&self.lab.dir)
            .args(args)
            .output()
            .expect("c1m runs")
    }

    fn book(&self, name: &str, text: &str) -> PathBuf {
        let p = self.lab.dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }
}

fn kernel(lab: &Lab, host: usize, key: &str) -> String {
    let out = lab.hosts[host]
        .netns_cmd("cat")
        .arg(format!("/proc/sys/{}", key.replace('.', "/")))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn provision_check_and_run_through_a_bastion() {
    let Some(b) = Bastion::start("ssh_bastion") else {
        return;
    };
    let lab = &b.lab;
    // Routing makes the bastion the only way: from here the targets' network is unreachable
    // (the kernel refuses at once; nothing leaves the machine).
    for h in &lab.hosts[1..] {
        let addr: SocketAddr = format!("{}:{}", h.address, h.port).parse().unwrap();
        let e = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .expect_err("a target must not be reachable directly");
        assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "{e}");
    }
    let marker = lab.dir.join("provisioned");
    let book = b.book(
        "tune.yml",
        &format!(
            "- hosts: all\n  tasks:\n    - ansible.posix.sysctl: {{name: net.ipv4.tcp_fin_timeout, value: '17', sysctl_set: true, \
             sysctl_file: '{}/sysctl-{{{{ inventory_hostname }}}}.conf', reload: false}}\n    - copy: {{dest: '{}-{{{{ inventory_hostname }}}}', content: \"{{{{ ansible_hostname }}}}\\n\"}}\n",
            lab.dir.display(),
            marker.display()
        ),
    );
    let inv = b.inventory.display().to_string();
    let out = b.c1m(&["provision", "-i", &inv, book.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (i, h) in [(1, "h1"), (2, "h2")] {
        assert_eq!(
            kernel(lab, i, "net.ipv4.tcp_fin_timeout"),
            "17",
            "{}",
            text(&out)
        );
        assert!(lab.dir.join(format!("provisioned-{h}")).exists());
    }
    // The sessions really went through the bastion: it accepted a login per target.
    assert!(
        lab.hosts[0].accepted_logins() >= 2,
        "{}",
        lab.hosts[0].log_text()
    );
    let again = b.c1m(&["provision", "-i", &inv, book.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("changed=0"),
        "{}",
        text(&again)
    );

    // c1m check reads both hosts through it.
    let out = b.c1m(&["check", "-i", &inv, "-n", "2000", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = plan["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{plan:#}");
    assert!(hosts.iter().all(|h| h["error"].is_null()), "{plan:#}");
    assert!(hosts[1]["facts"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == lab.hosts[2].address.as_str()));

    // A small run: deploy, start, connect 2,000, tear down — all through the bastion.
    let runs = lab.dir.join("runs");
    let out = b.c1m(&[
        "run",
        "-i",
        &inv,
        "-n",
        "2000",
        "--hold",
        "1s",
        "--no-progress",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run: Value =
        serde_json::from_str(&fs::read_to_string(runs.join("latest/run.json")).unwrap()).unwrap();
    assert_eq!(run["outcome"], "reached", "{run:#}");
    let _ = &b.user;
}

#[test]
fn a_changed_bastion_key_is_refused_and_a_dead_bastion_is_one_error_per_host() {
    let Some(mut b) = Bastion::start("ssh_bastion_refusals") else {
        return;
    };
    let inv = b.inventory.display().to_string();
    let book = b.book(
        "ping.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - command: 'true'\n",
    );
    let ok = b.c1m(&["provision", "-i", &inv, book.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    // The bastion is reinstalled: its new key differs from the one known, so nothing goes
    // through it — not even to targets whose own keys did not change.
    b.lab.hosts[0].regenerate_host_keys();
    let out = b.c1m(&["provision", "-i", &inv, book.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for h in ["h1", "h2"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("[{h}]")) && l.contains("UNREACHABLE"))
            .unwrap_or_else(|| panic!("no unreachable line for {h}: {}", text(&out)));
        assert!(line.contains("HOST KEY CHANGED"), "{line}");
        assert!(line.contains("through jump host bastion"), "{line}");
    }
    assert!(
        fs::read_to_string(b.home.join(".ssh/known_hosts"))
            .unwrap()
            .contains(&b.lab.hosts[1].address),
        "the known keys stay"
    );

    // A dead bastion: one clear error per host behind it, naming the bastion.
    b.lab.hosts[0].stop();
    let out = b.c1m(&["provision", "-i", &inv, book.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bastion_addr = format!("{}:22", b.lab.hosts[0].address);
    for h in ["h1", "h2"] {
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains(&format!("[{h}]")) && l.contains("UNREACHABLE"))
            .collect();
        assert_eq!(lines.len(), 1, "{}", text(&out));
        assert!(lines[0].contains("jump host bastion"), "{}", lines[0]);
        assert!(lines[0].contains(&bastion_addr), "{}", lines[0]);
    }
    assert!(stdout.contains("unreachable=1"), "{stdout}");
    let _ = Path::new(&inv);
}
