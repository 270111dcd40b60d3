//! A real-world-style Ansible project, run unchanged by `c1m provision` and by
//! `ansible-playbook` against the same sshd hosts (network namespaces, see `support`): an INI
//! inventory with a host range and `[g:children]`/`[g:vars]`, `group_vars/` and `host_vars/` as
//! files and directories (YAML and JSON), `ansible.cfg`, a role with defaults, vars, a template,
//! a handler, a meta dependency, tags (`never` included) and a block with rescue and always.
//! Both tools reach the same end state with the same recap counts, change nothing on a second
//! run, and select the same tasks with `--tags`/`--skip-tags`.
//!
//! The hosts share this machine's files, so the project writes under the test's directory and
//! changes only per-namespace kernel values, which vanish with the namespaces. HOME points at
//! the test's directory for both tools.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::Lab;

const KEYS: [&str; 3] = [
    "net.core.somaxconn",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.ip_local_port_range",
];

struct Project {
    lab: Lab,
    dir: PathBuf,
    home: PathBuf,
    state: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

impl Project {
    fn new(test: &str) -> Option<Project> {
        let lab = Lab::start(test, 3)?;
        let dir = lab.dir.join("project");
        let home = lab.dir.join("home");
        let state = lab.dir.join("state");
        fs::create_dir_all(&home).unwrap();
        // The project as shipped, with the test's hosts and paths in its own vars files.
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/project"),
            &dir,
        );
        let p = |rel: &str| dir.join(rel);
        write(
            &p("hosts"),
            &format!(
                "# The C1M test hosts: one server, clients by range.\n[server]\nsrv ansible_host={}\n\n\
                 [clients]\ncli[1:2]\n\n[lab:children]\nserver\nclients\n\n[lab:vars]\nc1m_root={}\n",
                lab.hosts[0].address,
                state.display()
            ),
        );
        write(
            &p("group_vars/all/connection.yml"),
            &format!(
                "ansible_ssh_private_key_file: {}\n\
                 ansible_ssh_common_args: -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes\n",
                lab.keys.ed25519.display(),
                lab.known_hosts.display()
            ),
        );
        // The namespaced hosts share this machine's files: everything goes under the test's
        // directory, one per host.
        write(
            &p("group_vars/all/paths.yml"),
            "c1m_connections: 30000\ntune_dir: \"{{ c1m_root }}/{{ inventory_hostname }}\"\n\
             tune_sysctl_file: \"{{ tune_dir }}/sysctl.conf\"\ntune_limits_file: \"{{ tune_dir }}/limits.conf\"\n\
             tune_profile_file: \"{{ tune_dir }}/profile\"\n",
        );
        fs::remove_file(p("group_vars/all/main.yml")).unwrap();
        write(
            &p("host_vars/cli1.yml"),
            &format!("ansible_host: {}\n", lab.hosts[1].address),
        );
        fs::remove_file(p("host_vars/cli2.yml")).unwrap();
        fs::remove_file(p("host_vars/cli3.yml")).unwrap();
        // A host_vars directory of several files.
        write(
            &p("host_vars/cli2/connection.yml"),
            &format!("ansible_host: {}\n", lab.hosts[2].address),
        );
        write(&p("host_vars/cli2/tuning.yml"), "tune_fin_timeout: 25\n");
        Some(Project {
            lab,
            dir,
            home,
            state,
        })
    }

    fn env(&self, cmd: &mut Command) {
        cmd.current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", self.home.join("ansible-tmp"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", self.home.join("cp"))
            .env_remove("ANSIBLE_CONFIG")
            .env_remove("C1M_SSH_CONFIG")
            .env_remove("SSH_AUTH_SOCK");
    }

    fn c1m(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
        self.env(&mut cmd);
        Run::of(cmd.arg("provision").args(args).output().expect("c1m runs"))
    }

    fn ansible(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("ansible-playbook");
        self.env(&mut cmd);
        Run::of(cmd.args(args).output().expect("ansible-playbook runs"))
    }

    /// Per host: the kernel values and every file the project wrote (name, mode, content).
    fn state(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for (i, name) in ["srv", "cli1", "cli2"].iter().enumerate() {
            let mut lines: Vec<String> = KEYS
                .iter()
                .map(|k| {
                    let o = self.lab.hosts[i]
                        .netns_cmd("cat")
                        .arg(format!("/proc/sys/{}", k.replace('.', "/")))
                        .output()
                        .unwrap();
                    let v: Vec<String> = String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    format!("{k}={}", v.join(" "))
                })
                .collect();
            let dir = self.state.join(name);
            if let Ok(entries) = fs::read_dir(&dir) {
                let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
                files.sort();
                for f in files {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o7777;
                    lines.push(format!(
                        "{} {mode:o}: {}",
                        f.file_name().unwrap().to_string_lossy(),
                        fs::read_to_string(&f).unwrap()
                    ));
                }
            }
            out.insert(name.to_string(), lines);
        }
        out
    }

    /// Back to how the hosts were: kernel values and no state directory.
    fn reset(&self, before: &BTreeMap<String, Vec<String>>) {
        for (i, name) in ["srv", "cli1", "cli2"].iter().enumerate() {
            for line in before[*name].iter().filter(|l| l.starts_with("net.")) {
                let (k, v) = line.split_once('=').unwrap();
                support::run(
                    self.lab.hosts[i]
                        .netns_cmd("sysctl")
                        .arg("-w")
                        .arg(format!("{k}={v}")),
                );
            }
        }
        let _ = fs::remove_dir_all(&self.state);
    }
}

struct Run {
    code: Option<i32>,
    out: String,
}

impl Run {
    fn of(o: Output) -> Run {
        Run {
            code: o.status.code(),
            out: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }

    /// The PLAY RECAP counts per host.
    fn recap(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        let Some(recap) = self.out.split("PLAY RECAP").nth(1) else {
            return out;
        };
        for line in recap.lines().filter(|l| l.contains(" : ok=")) {
            let (host, counts) = line.split_once(" : ").unwrap();
            let m = counts
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
                .collect();
            out.insert(host.trim().to_string(), m);
        }
        out
    }

    fn changed(&self) -> u64 {
        self.recap().values().map(|m| m["changed"]).sum()
    }

    /// The task lines of `--list-tasks` (each play's tasks with their tags).
    fn listed(&self) -> Vec<String> {
        self.out
            .lines()
            .filter(|l| l.starts_with("      ") || l.starts_with("  play #"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }
}

#[test]
fn the_same_project_under_c1m_and_ansible_playbook() {
    const TEST: &str = "provision_project";
    if !support::require(TEST, &["ansible-playbook"]) {
        return;
    }
    let Some(p) = Project::new(TEST) else {
        return;
    };
    let fresh = p.state();

    // c1m: first run changes, second changes nothing.
    let first = p.c1m(&["site.yml"]);
    assert_eq!(first.code, Some(0), "{}", first.out);
    let c1m_state = p.state();
    assert_ne!(c1m_state, fresh, "{}", first.out);
    let second = p.c1m(&["site.yml"]);
    assert_eq!(second.code, Some(0), "{}", second.out);
    assert_eq!(second.changed(), 0, "{}", second.out);
    // What the project says, read back from the hosts.
    let srv = &c1m_state["srv"];
    assert!(
        srv.contains(&"net.core.somaxconn=8192".to_string()),
        "{srv:?}"
    );
    let cli2 = &c1m_state["cli2"];
    assert!(
        cli2.contains(&"net.ipv4.tcp_fin_timeout=25".to_string()),
        "{cli2:?}"
    );
    assert!(
        cli2.contains(&"net.ipv4.ip_local_port_range=10000 65000".to_string()),
        "{cli2:?}"
    );
    assert!(
        cli2.iter().any(|l| l.starts_with("probe 644: absent")),
        "{cli2:?}"
    );
    assert!(
        cli2.iter()
            .any(|l| l.starts_with("limits.changed 644: client")),
        "{cli2:?}"
    );
    assert!(
        cli2.iter().any(|l| l.starts_with(
            "limits.conf 640: # Ansible managed for cli2 (client)\n*    soft    nofile    61024\n"
        )),
        "{cli2:?}"
    );
    for h in ["srv", "cli1", "cli2"] {
        let r = &first.recap()[h];
        assert_eq!((r["rescued"], r["failed"]), (1, 0), "{}", first.out);
    }

    // ansible-playbook from the same fresh state: the same end state and counts.
    p.reset(&fresh);
    assert_eq!(p.state(), fresh);
    let a_first = p.ansible(&["site.yml"]);
    assert_eq!(a_first.code, Some(0), "{}", a_first.out);
    assert_eq!(
        a_first.recap(),
        first.recap(),
        "recaps differ:\nc1m:\n{}\nansible:\n{}",
        first.out,
        a_first.out
    );
    let a_state = p.state();
    assert_eq!(
        a_state, c1m_state,
        "end states differ (ansible-playbook's, then c1m's):\n{}",
        a_first.out
    );
    let a_second = p.ansible(&["site.yml"]);
    assert_eq!(a_second.changed(), 0, "{}", a_second.out);
    assert_eq!(
        a_second.recap(),
        second.recap(),
        "{}\n{}",
        second.out,
        a_second.out
    );
    // And each tool finds nothing to do after the other.
    let after = p.c1m(&["site.yml"]);
    assert_eq!(after.changed(), 0, "{}", after.out);

    // Tags select the same tasks under both.
    for (args, run_too) in [
        (vec!["--tags", "limits"], true),
        (vec!["--tags", "plan,record"], false),
        (vec!["--skip-tags", "sysctl,probe"], true),
        (vec!["--tags", "tuning", "--skip-tags", "limits"], false),
    ] {
        let mut a = vec!["site.yml", "--list-tasks"];
        a.extend(args.iter().copied());
        let ours = p.c1m(&a);
        let theirs = p.ansible(&a);
        assert_eq!(ours.code, Some(0), "{}", ours.out);
        assert_eq!(
            ours.listed(),
            theirs.listed(),
            "{args:?}:\n{}\n{}",
            ours.out,
            theirs.out
        );
        if !run_too {
            continue;
        }
        let mut run = vec!["site.yml"];
        run.extend(args.iter().copied());
        let ours = p.c1m(&run);
        let theirs = p.ansible(&run);
        assert_eq!(
            ours.recap(),
            theirs.recap(),
            "{args:?}:\n{}\n{}",
            ours.out,
            theirs.out
        );
    }
}
