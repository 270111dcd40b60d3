//! `c1m provision` over real sshd hosts (see `support`): the paths that avoid execs on a slow
//! host (kernel values written over SFTP, files staged and written once per task, facts read
//! from files) give the same results as the shell did. Lab hosts share this machine's files but
//! each has its own network namespace, so only per-namespace `net.*` keys are changed here: they
//! vanish with the namespace, nothing global needs restoring.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::Lab;

struct Run {
    code: i32,
    out: String,
    /// `C1M_TRACE` lines of the run.
    trace: String,
}

impl Run {
    fn execs(&self) -> Vec<&str> {
        self.trace
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("exec"))
            .collect()
    }
}

fn provision(lab: &Lab, name: &str, book: &str, extra: &[&str]) -> Run {
    let inv = lab.dir.join("inventory.yml");
    std::fs::write(&inv, lab.inventory_yaml(&[("server", &[0])])).expect("inventory");
    let book_path = lab.dir.join(format!("{name}.yml"));
    std::fs::write(&book_path, book).expect("playbook");
    let trace = lab.dir.join(format!("{name}.trace"));
    let _ = std::fs::remove_file(&trace);
    let out = Command::new(env!("CARGO_BIN_EXE_c1m"))
        .env("C1M_TRACE", &trace)
        .arg("provision")
        .arg("-i")
        .arg(&inv)
        .arg("--known-hosts")
        .arg(&lab.known_hosts)
        .arg(&book_path)
        .args(extra)
        .output()
        .expect("c1m runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        trace: std::fs::read_to_string(&trace).unwrap_or_default(),
    }
}

/// The host's value of `key` (its network namespace).
fn kernel(lab: &Lab, key: &str) -> String {
    let out = lab.hosts[0]
        .netns_cmd("cat")
        .arg(format!("/proc/sys/{}", key.replace('.', "/")))
        .output()
        .expect("ip netns exec");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

const KEYS: [(&str, &str); 3] = [
    ("net.ipv4.tcp_fin_timeout", "17"),
    ("net.ipv4.tcp_keepalive_intvl", "23"),
    ("net.ipv4.ip_local_port_range", "20000 40000"),
];

fn sysctl_loop_book(file: &Path, limits: &Path) -> String {
    let items: String = KEYS
        .iter()
        .map(|(k, v)| format!("        - {{name: {k}, value: '{v}'}}\n"))
        .collect();
    format!(
        "- hosts: all\n  gather_facts: true\n  tasks:\n    - ansible.posix.sysctl:\n        \
         name: \"{{{{ item.name }}}}\"\n        value: \"{{{{ item.value }}}}\"\n        \
         sysctl_file: {}\n        sysctl_set: true\n        reload: false\n      loop:\n{items}\
         \x20   - community.general.pam_limits: {{domain: '*', limit_type: \"{{{{ item }}}}\", \
         limit_item: nofile, value: '4242', dest: {}}}\n      loop: [soft, hard]\n",
        file.display(),
        limits.display()
    )
}

#[test]
fn sysctl_and_pam_limits_loops_write_each_file_once_over_sftp() {
    let Some(lab) = Lab::start("sysctl_loops_over_ssh", 1) else {
        return;
    };
    let file = lab.dir.join("60-test.conf");
    std::fs::write(&file, "# kept\nnet.ipv4.tcp_fin_timeout=60\n").expect("sysctl file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let limits = lab.dir.join("limits.conf");
    let book = sysctl_loop_book(&file, &limits);
    let before: Vec<String> = KEYS.iter().map(|(k, _)| kernel(&lab, k)).collect();

    // --check changes nothing, but shows each item's diff against the file on the host.
    let r = provision(&lab, "check", &book, &["--check", "--diff"]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "# kept\nnet.ipv4.tcp_fin_timeout=60\n"
    );
    assert!(!limits.exists(), "{}", r.out);
    let now: Vec<String> = KEYS.iter().map(|(k, _)| kernel(&lab, k)).collect();
    assert_eq!(now, before);
    assert!(
        r.out.contains("+net.ipv4.tcp_keepalive_intvl=23"),
        "{}",
        r.out
    );
    assert!(r.execs().is_empty(), "{}", r.trace);

    let r = provision(&lab, "apply", &book, &[]);
    assert_eq!(r.code, 0, "{}", r.out);
    // Every item saw what the earlier ones staged: all keys are in the file.
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "# kept\nnet.ipv4.tcp_fin_timeout=17\nnet.ipv4.tcp_keepalive_intvl=23\n\
         net.ipv4.ip_local_port_range=20000 40000\n"
    );
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "a replaced file keeps its mode");
    for (k, v) in KEYS {
        assert_eq!(kernel(&lab, k), v, "{k}");
    }
    assert_eq!(
        std::fs::read_to_string(&limits).expect("limits"),
        "*\tsoft\tnofile\t4242\n*\thard\tnofile\t4242\n"
    );
    let mode = std::fs::metadata(&limits)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o644, "a new file gets 0644");
    // Kernel values over SFTP; each file written once (replacing the existing sysctl file costs
    // an exec inside the write, as SFTP cannot rename over it).
    let execs: Vec<&str> = r
        .execs()
        .into_iter()
        .filter(|l| !l.contains("kernel="))
        .collect();
    assert!(execs.is_empty(), "{}", r.trace);
    let writes = |f: &Path| {
        r.trace
            .lines()
            .filter(|l| l.contains(" write ") && l.ends_with(&*f.to_string_lossy()))
            .count()
    };
    assert_eq!(writes(&file), 1, "{}", r.trace);
    assert_eq!(writes(&limits), 1, "{}", r.trace);

    // Nothing left to do.
    let r = provision(&lab, "again", &book, &[]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("changed=0"), "{}", r.out);
    assert!(r.execs().is_empty(), "{}", r.trace);
}

#[test]
fn a_value_the_kernel_refuses_fails_with_sysctls_own_message() {
    let Some(lab) = Lab::start("sysctl_refused_over_ssh", 1) else {
        return;
    };
    let file = lab.dir.join("60-bad.conf");
    std::fs::write(&file, "").expect("sysctl file");
    let before = kernel(&lab, "net.ipv4.tcp_fin_timeout");
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.posix.sysctl: \
         {{name: net.ipv4.tcp_fin_timeout, value: not-a-number, sysctl_file: {}, \
         sysctl_set: true, reload: false}}\n",
        file.display()
    );
    let r = provision(&lab, "bad", &book, &[]);
    assert_ne!(r.code, 0, "{}", r.out);
    assert!(
        r.out.contains("sysctl -w net.ipv4.tcp_fin_timeout failed"),
        "{}",
        r.out
    );
    assert!(r.out.contains("Invalid argument"), "{}", r.out);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "");
    assert_eq!(kernel(&lab, "net.ipv4.tcp_fin_timeout"), before);
}

#[test]
fn a_file_that_cannot_be_written_fails_the_task_naming_it() {
    let Some(lab) = Lab::start("staged_write_fails_over_ssh", 1) else {
        return;
    };
    let dest = lab.dir.join("no-such-dir/limits.conf");
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - community.general.pam_limits: \
         {{domain: '*', limit_type: \"{{{{ item }}}}\", limit_item: nofile, value: '7', \
         dest: {}}}\n      loop: [soft, hard]\n    - shell: touch {}/ran\n",
        dest.display(),
        lab.dir.display()
    );
    let r = provision(&lab, "fails", &book, &[]);
    assert_ne!(r.code, 0, "{}", r.out);
    assert!(
        r.out.contains(&format!("writing {}", dest.display())),
        "{}",
        r.out
    );
    assert!(r.out.contains("does not exist"), "{}", r.out);
    assert!(!lab.dir.join("ran").exists(), "the host stopped");
}

#[test]
fn stat_answers_from_sftp_and_leaves_symlinks_to_the_shell() {
    let Some(lab) = Lab::start("stat_over_ssh", 1) else {
        return;
    };
    let d = lab.dir.join("statdir");
    std::fs::create_dir(&d).expect("mkdir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::symlink(&d, lab.dir.join("statlink")).expect("symlink");
    let show = "\"{{ r.stat.exists }} {{ r.stat.isdir | default('-') }} {{ r.stat.mode | default('-') }} {{ r.stat.pw_name | default('-') }} {{ r.stat.gr_name | default('-') }}\"";
    let tasks: String = ["statdir", "statlink", "absent"]
        .iter()
        .map(|p| {
            format!(
                "    - stat: {{path: {}/{p}}}\n      register: r\n    - debug: {{msg: {show}}}\n",
                lab.dir.display()
            )
        })
        .collect();
    let book = format!("- hosts: all\n  gather_facts: false\n  tasks:\n{tasks}");
    let r = provision(&lab, "stat", &book, &[]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("True True 0750 root root"), "{}", r.out);
    // The shell's `stat` (without -L) describes the link itself, as it always did.
    assert!(r.out.contains("True False 0777 root root"), "{}", r.out);
    assert!(r.out.contains("False - - - -"), "{}", r.out);
    // Only the symlink needed the shell's stat.
    let execs = r.execs();
    assert_eq!(execs.len(), 1, "{}", r.trace);
    assert!(execs[0].contains("statlink"), "{}", r.trace);
}
