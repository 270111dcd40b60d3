//! The real `c1m provision` binary running playbooks against this machine through the local
//! transport, on scratch files: each module changes what differs, a second run changes nothing,
//! `--check` changes nothing, `--diff` shows before/after, hostile values run nothing, one failing
//! or unreachable host does not stop the others.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("c1m-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Whether `what` is available; without it the test is skipped, unless C1M_REQUIRE_LAB=1.
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

const LOCAL_INV: &str = "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n";

struct Run {
    code: i32,
    out: String,
}

impl Run {
    /// `(ok, changed, unreachable, failed, skipped)` of `host` from the recap.
    fn recap(&self, host: &str) -> (u32, u32, u32, u32, u32) {
        let recap = self
            .out
            .split("PLAY RECAP")
            .nth(1)
            .unwrap_or_else(|| panic!("no recap in:\n{}", self.out));
        let line = recap
            .lines()
            .find(|l| l.split_whitespace().next() == Some(host))
            .unwrap_or_else(|| panic!("no recap line for {host} in:\n{}", self.out));
        let get = |k: &str| -> u32 {
            let rest = line.split(&format!(" {k}=")).nth(1).unwrap();
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        (
            get("ok"),
            get("changed"),
            get("unreachable"),
            get("failed"),
            get("skipped"),
        )
    }

    fn changed(&self) -> u32 {
        self.recap("localhost").1
    }
}

fn provision(dir: &Path, inv: &str, book: &str, extra: &[&str]) -> Run {
    std::fs::write(dir.join("inv.yml"), inv).unwrap();
    std::fs::write(dir.join("book.yml"), book).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_c1m"))
        .arg("provision")
        .arg("-i")
        .arg(dir.join("inv.yml"))
        .arg(dir.join("book.yml"))
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        code: out.status.code().unwrap_or(-1),
        out: text,
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn sysctl_file_only_is_idempotent_check_and_diff() {
    let s = scratch("sysctl-file");
    let conf = s.0.join("sysctl.conf");
    std::fs::write(
        &conf,
        "# keep me\nvm.swappiness=60\nnet.core.somaxconn = 128\n",
    )
    .unwrap();
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: set\n      ansible.posix.sysctl:\n        name: vm.swappiness\n        value: \"{{{{ want }}}}\"\n        sysctl_file: {}\n        sysctl_set: false\n        reload: false\n",
        conf.display()
    );
    // --check: reports the change, changes nothing.
    let r = provision(
        &s.0,
        LOCAL_INV,
        &book,
        &["--check", "--diff", "-e", "want=10"],
    );
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(r.changed(), 1, "{}", r.out);
    assert!(
        r.out.contains("-vm.swappiness=60") && r.out.contains("+vm.swappiness=10"),
        "{}",
        r.out
    );
    assert_eq!(
        read(&conf),
        "# keep me\nvm.swappiness=60\nnet.core.somaxconn = 128\n"
    );
    // Real run changes exactly that line.
    let r = provision(&s.0, LOCAL_INV, &book, &["-e", "want=10"]);
    assert_eq!((r.code, r.changed()), (0, 1), "{}", r.out);
    assert_eq!(
        read(&conf),
        "# keep me\nvm.swappiness=10\nnet.core.somaxconn = 128\n"
    );
    // Second run: nothing to do.
    let r = provision(&s.0, LOCAL_INV, &book, &["-e", "want=10"]);
    assert_eq!((r.code, r.changed()), (0, 0), "{}", r.out);
}

/// A kernel value nothing on this machine depends on; restored on drop.
struct RestoreProc {
    path: PathBuf,
    value: String,
}

impl Drop for RestoreProc {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.value);
    }
}

#[test]
fn sysctl_set_changes_the_running_kernel_key_by_key() {
    if !require("root (to write /proc/sys)", is_root())
        || !require(
            "sysctl(8)",
            Path::new("/usr/sbin/sysctl").exists() || Path::new("/sbin/sysctl").exists(),
        )
    {
        return;
    }
    let s = scratch("sysctl-proc");
    let proc_path = PathBuf::from("/proc/sys/kernel/msgmax");
    let before = read(&proc_path).trim().to_string();
    let _restore = RestoreProc {
        path: proc_path.clone(),
        value: before.clone(),
    };
    let want: u64 = before.parse::<u64>().unwrap() - 1;
    let conf = s.0.join("60-test.conf");
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.posix.sysctl: {{name: kernel.msgmax, value: '{want}', sysctl_file: {}, sysctl_set: true, reload: false}}\n",
        conf.display()
    );
    let r = provision(&s.0, LOCAL_INV, &book, &["--check"]);
    assert_eq!((r.code, r.changed()), (0, 1), "{}", r.out);
    assert_eq!(
        read(&proc_path).trim(),
        before,
        "--check changed the kernel"
    );
    let r = provision(&s.0, LOCAL_INV, &book, &["--diff"]);
    assert_eq!((r.code, r.changed()), (0, 1), "{}", r.out);
    assert_eq!(read(&proc_path).trim(), want.to_string());
    assert_eq!(read(&conf), format!("kernel.msgmax={want}\n"));
    assert!(
        r.out.contains(&format!("-{before}")) && r.out.contains(&format!("+{want}")),
        "{}",
        r.out
    );
    let r = provision(&s.0, LOCAL_INV, &book, &[]);
    assert_eq!((r.code, r.changed()), (0, 0), "{}", r.out);
}

#[test]
fn pam_limits_copy_file_and_handlers() {
    let s = scratch("files");
    let d = s.0.display();
    std::fs::create_dir_all(s.0.join("files")).unwrap();
    std::fs::write(s.0.join("files/src.txt"), "from src\n").unwrap();
    std::fs::write(
        s.0.join("limits.conf"),
        "# existing\n*\tsoft\tnofile\t1024\n",
    )
    .unwrap();
    let book = format!(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - name: nofile
      community.general.pam_limits:
        domain: "*"
        limit_type: "{{{{ item }}}}"
        limit_item: nofile
        value: "{{{{ n }}}}"
        dest: {d}/limits.conf
      loop: [soft, hard]
    - name: dir
      ansible.builtin.file: {{path: {d}/sub/dir, state: directory, mode: "0750"}}
    - name: content
      ansible.builtin.copy:
        dest: {d}/sub/dir/a.conf
        content: "n={{{{ n }}}}\n"
        mode: "0600"
      notify: mark
    - name: src
      copy: src=src.txt dest={d}/sub/b.txt
    - name: gone
      file: path={d}/gone state=absent
  handlers:
    - name: mark
      ansible.builtin.shell: echo ran >> {d}/handler.log
"#
    );
    std::fs::write(s.0.join("gone"), "x").unwrap();
    let r = provision(&s.0, LOCAL_INV, &book, &["-e", "n=4096"]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(r.recap("localhost"), (6, 6, 0, 0, 0), "{}", r.out);
    assert_eq!(
        read(&s.0.join("limits.conf")),
        "# existing\n*\tsoft\tnofile\t4096\n*\thard\tnofile\t4096\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&s.0.join("sub/dir")), 0o750);
    assert_eq!(read(&s.0.join("sub/dir/a.conf")), "n=4096\n");
    assert_eq!(mode(&s.0.join("sub/dir/a.conf")), 0o600);
    assert_eq!(read(&s.0.join("sub/b.txt")), "from src\n");
    assert!(!s.0.join("gone").exists());
    assert_eq!(read(&s.0.join("handler.log")), "ran\n");

    // Second run: nothing changes, the handler is not notified.
    let r = provision(&s.0, LOCAL_INV, &book, &["-e", "n=4096"]);
    assert_eq!((r.code, r.changed()), (0, 0), "{}", r.out);
    assert_eq!(read(&s.0.join("handler.log")), "ran\n");

    // A new value under --check --diff: reported with before/after, nothing written.
    let r = provision(
        &s.0,
        LOCAL_INV,
        &book,
        &["-e", "n=8192", "--check", "--diff"],
    );
    assert_eq!((r.code, r.changed()), (0, 2), "{}", r.out);
    assert!(
        r.out.contains("-*\tsoft\tnofile\t4096") && r.out.contains("+*\tsoft\tnofile\t8192"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("-n=4096") && r.out.contains("+n=8192"),
        "{}",
        r.out
    );
    assert_eq!(read(&s.0.join("sub/dir/a.conf")), "n=4096\n");
    assert_eq!(
        read(&s.0.join("handler.log")),
        "ran\n",
        "handler ran in check mode"
    );

    // Only the mode differs: changed, content kept.
    std::fs::set_permissions(
        s.0.join("sub/dir/a.conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let r = provision(&s.0, LOCAL_INV, &book, &["-e", "n=4096"]);
    assert_eq!(
        (r.code, r.changed()),
        (0, 2),
        "the copy and its handler:\n{}",
        r.out
    );
    assert_eq!(mode(&s.0.join("sub/dir/a.conf")), 0o600);
    assert_eq!(read(&s.0.join("sub/dir/a.conf")), "n=4096\n");
    assert_eq!(read(&s.0.join("handler.log")), "ran\nran\n");
}

#[test]
fn command_shell_creates_register_when_and_facts() {
    let s = scratch("cmd");
    let d = s.0.display();
    let book = format!(
        r#"- hosts: all
  tasks:
    - name: once
      ansible.builtin.shell:
        cmd: echo made > {d}/made
        creates: "{d}/made"
    - name: probe
      ansible.builtin.stat: {{path: "{d}/made"}}
      register: made
    - name: facts into a file
      ansible.builtin.copy:
        dest: "{d}/facts"
        content: "{{{{ ansible_processor_vcpus }}}} {{{{ ansible_kernel }}}} {{{{ (ansible_memtotal_mb | int) > 0 }}}}\n"
      when: made.stat.exists and ansible_facts.kernel | length > 0
    - name: never
      ansible.builtin.command: touch {d}/never
      when: not made.stat.exists
    - name: read back
      ansible.builtin.command: cat {d}/made
      register: out
      changed_when: false
      failed_when: out.stdout != 'made'
    - name: exit 3 is fine here
      ansible.builtin.shell: exit 3
      register: three
      failed_when: three.rc != 3
      changed_when: false
"#
    );
    let r = provision(&s.0, LOCAL_INV, &book, &[]);
    assert_eq!(r.code, 0, "{}", r.out);
    let nproc = String::from_utf8(Command::new("nproc").output().unwrap().stdout).unwrap();
    let kernel =
        String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout).unwrap();
    assert_eq!(
        read(&s.0.join("facts")),
        format!("{} {} True\n", nproc.trim(), kernel.trim())
    );
    assert!(!s.0.join("never").exists());
    // gather, shell, stat, copy, read back, exit 3: ok; `never` skipped.
    assert_eq!(r.recap("localhost"), (6, 2, 0, 0, 1), "{}", r.out);
    let r = provision(&s.0, LOCAL_INV, &book, &[]);
    assert_eq!((r.code, r.changed()), (0, 0), "{}", r.out);
    assert!(r.out.contains("skipped, since"), "{}", r.out);
}

#[test]
fn hostile_inventory_values_run_nothing() {
    let s = scratch("hostile");
    let d = s.0.display();
    let pwned = std::env::temp_dir().join(format!("c1m-pwned-{}", std::process::id()));
    let _ = std::fs::remove_file(&pwned);
    let evil = format!("; touch {} #", pwned.display());
    let inv = format!("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n      c1m_evil: \"{evil}\"\n      c1m_sub: \"$(touch {})\"\n", pwned.display());
    let book = format!(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - command: echo {{{{ c1m_evil }}}} {{{{ c1m_sub }}}}
    - ansible.posix.sysctl: {{name: "{{{{ c1m_evil }}}}", value: "{{{{ c1m_sub }}}}", sysctl_file: "{d}/s.conf", reload: false}}
    - file: {{path: "{d}/{{{{ c1m_sub }}}}", state: directory}}
    - community.general.pam_limits: {{domain: "{{{{ c1m_evil }}}}", limit_type: soft, limit_item: nofile, value: 1, dest: "{d}/l.conf"}}
    - copy: {{dest: "{d}/copied", content: "{{{{ c1m_evil }}}} {{{{ c1m_sub }}}}"}}
    - community.general.modprobe: {{name: "{{{{ c1m_evil }}}}", params: "{{{{ c1m_sub }}}}"}}
      ignore_errors: true
"#
    );
    let r = provision(&s.0, &inv, &book, &[]);
    assert!(!pwned.exists(), "a hostile value was executed:\n{}", r.out);
    assert_eq!(r.recap("localhost").3, 0, "{}", r.out);
    // The values arrived verbatim where they were meant to go.
    assert!(read(&s.0.join("s.conf")).contains(&format!("{}=$(touch", evil.trim())));
    let odd_dir = PathBuf::from(format!("{d}/$(touch {})", pwned.display()));
    assert!(
        odd_dir.is_dir(),
        "file: the path is taken literally: {}\n{}",
        odd_dir.display(),
        r.out
    );
    assert!(read(&s.0.join("l.conf")).starts_with(&format!("{evil}\tsoft\tnofile\t1")));
    assert_eq!(
        read(&s.0.join("copied")),
        format!("{evil} $(touch {})", pwned.display())
    );
}

#[test]
fn unreachable_or_failed_host_does_not_stop_the_others() {
    let s = scratch("hosts");
    let d = s.0.display();
    // A host on a closed local port: unreachable however far the SSH transport has got.
    let inv = r#"all:
  hosts:
    good:
      ansible_connection: local
    bad:
      ansible_connection: local
    gone:
      ansible_connection: ssh
      ansible_host: 127.0.0.1
      ansible_port: 1
      ansible_user: nobody
"#;
    let book = format!(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - name: fails on bad only
      command: test {{{{ inventory_hostname }}}} != bad
    - name: mark
      shell: echo {{{{ inventory_hostname }}}} > {d}/{{{{ inventory_hostname }}}}
"#
    );
    let r = provision(&s.0, inv, &book, &[]);
    assert_eq!(r.code, 1, "a failed host means exit 1:\n{}", r.out);
    assert_eq!(r.recap("good"), (2, 2, 0, 0, 0), "{}", r.out);
    assert_eq!(r.recap("bad"), (0, 0, 0, 1, 0), "{}", r.out);
    assert_eq!(r.recap("gone"), (0, 0, 1, 0, 0), "{}", r.out);
    assert!(r.out.contains("fatal: [gone]: UNREACHABLE!"), "{}", r.out);
    assert!(s.0.join("good").exists() && !s.0.join("bad").exists());

    // Only the unreachable host left: exit 4, and --limit picks hosts.
    let r = provision(&s.0, inv, &book, &["--limit", "good,gone"]);
    assert_eq!(r.code, 4, "{}", r.out);
    assert!(!r.out.contains("[bad]"), "{}", r.out);
    let r = provision(&s.0, inv, &book, &["--limit", "good", "--forks", "1"]);
    assert_eq!(r.code, 0, "{}", r.out);
}

#[test]
fn bad_playbook_stops_before_any_host_runs() {
    let s = scratch("badbook");
    let d = s.0.display();
    let book = format!("- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: touch {d}/ran\n    - sysctl: {{name: a, value: 1, sysctl_fille: /x}}\n");
    let r = provision(&s.0, LOCAL_INV, &book, &[]);
    assert_eq!(r.code, 2, "{}", r.out);
    assert!(
        r.out
            .contains("book.yml:5:35: ansible.posix.sysctl: unknown argument `sysctl_fille`"),
        "{}",
        r.out
    );
    assert!(r.out.contains("did you mean `sysctl_file`"), "{}", r.out);
    assert!(
        !s.0.join("ran").exists(),
        "a task ran before the error was reported"
    );
}

#[test]
fn modprobe_reports_builtin_and_fails_on_missing() {
    let s = scratch("modprobe");
    let builtin = Path::new("/sys/module/nf_conntrack").exists()
        && !std::fs::read_to_string("/proc/modules")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("nf_conntrack "));
    let book = "- hosts: all\n  gather_facts: false\n  tasks:\n    - community.general.modprobe: {name: nf_conntrack, state: present}\n    - community.general.modprobe: {name: c1m_no_such_module_x, state: present}\n";
    let r = provision(&s.0, LOCAL_INV, book, &[]);
    assert_eq!(r.code, 1, "a module that does not exist fails:\n{}", r.out);
    assert_eq!(r.recap("localhost").3, 1, "{}", r.out);
    if builtin {
        assert!(
            r.out.contains("nf_conntrack is built into the kernel"),
            "{}",
            r.out
        );
        assert_eq!(r.recap("localhost").1, 0, "{}", r.out);
    } else {
        eprintln!("nf_conntrack is not built in here: only the missing-module case was checked");
    }
}

#[test]
fn variable_precedence_inventory_play_extra() {
    let s = scratch("precedence");
    let d = s.0.display();
    let inv = "all:\n  vars:\n    x: all\n    y: all\n    z: all\n  children:\n    g:\n      vars:\n        x: group\n      hosts:\n        localhost:\n          ansible_connection: local\n          w: host\n";
    let book = format!(
        "- hosts: g\n  gather_facts: false\n  vars:\n    y: play\n    z: play\n    derived: \"{{{{ x }}}}-{{{{ y }}}}\"\n  tasks:\n    - copy: {{dest: \"{d}/out\", content: \"{{{{ w }}}} {{{{ x }}}} {{{{ y }}}} {{{{ z }}}} {{{{ derived }}}} {{{{ group_names | join(',') }}}}\"}}\n"
    );
    let r = provision(&s.0, inv, &book, &["-e", "z=extra"]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(read(&s.0.join("out")), "host group play extra group-play g");
}

#[test]
fn hosts_run_in_parallel_and_forks_limits_them() {
    let s = scratch("forks");
    let inv = "all:\n  vars:\n    ansible_connection: local\n  hosts:\n    h1:\n    h2:\n    h3:\n";
    let book = "- hosts: all\n  gather_facts: false\n  tasks:\n    - command: sleep 1\n    - command: sleep 1\n";
    let t0 = std::time::Instant::now();
    let r = provision(&s.0, inv, book, &[]);
    let parallel = t0.elapsed().as_secs_f64();
    assert_eq!(r.code, 0, "{}", r.out);
    for h in ["h1", "h2", "h3"] {
        assert_eq!(r.recap(h), (2, 2, 0, 0, 0), "{}", r.out);
    }
    let t0 = std::time::Instant::now();
    let r = provision(&s.0, inv, book, &["--forks", "1"]);
    let serial = t0.elapsed().as_secs_f64();
    assert_eq!(r.code, 0, "{}", r.out);
    // Three hosts x two 1 s tasks: ~2 s all at once, ~6 s one host at a time.
    assert!(parallel < 4.0, "parallel run took {parallel:.1}s");
    assert!(serial >= 6.0, "--forks 1 took only {serial:.1}s");
}

#[test]
fn become_without_root_goes_through_sudo_n_and_fails_cleanly() {
    if !require("root (to drop to nobody with runuser)", is_root())
        || !require(
            "runuser",
            Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists(),
        )
    {
        return;
    }
    let s = scratch("become");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(s.0.join("inv.yml"), LOCAL_INV).unwrap();
    std::fs::write(
        s.0.join("book.yml"),
        format!(
            "- hosts: all\n  become: true\n  tasks:\n    - shell: touch {}/made\n",
            s.0.display()
        ),
    )
    .unwrap();
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(env!("CARGO_BIN_EXE_c1m"))
        .arg("provision")
        .arg("-i")
        .arg(s.0.join("inv.yml"))
        .arg(s.0.join("book.yml"))
        .output()
        .unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    // No password-less sudo for nobody here: the host fails (not unreachable), nothing ran.
    assert_eq!(r.code, 1, "{}", r.out);
    assert_eq!(r.recap("localhost").3, 1, "{}", r.out);
    assert!(r.out.contains("sudo"), "{}", r.out);
    assert!(!s.0.join("made").exists());
}

#[test]
fn check_mode_on_a_fresh_host_simulates_dependent_tasks() {
    let s = scratch("fresh-check");
    let d = s.0.display();
    let book = format!("- hosts: all\n  gather_facts: false\n  tasks:\n    - file: {{path: \"{d}/new\", state: directory}}\n    - copy: {{dest: \"{d}/new/f.conf\", content: \"x\\n\"}}\n    - pam_limits: {{domain: '*', limit_type: soft, limit_item: nofile, value: 10, dest: \"{d}/new/l.conf\"}}\n    - copy: {{dest: \"{d}/missing/f.conf\", content: \"x\\n\"}}\n");
    let r = provision(&s.0, LOCAL_INV, &book, &["--check"]);
    assert_eq!((r.code, r.changed()), (0, 4), "{}", r.out);
    assert!(!s.0.join("new").exists());
    // For real, the copy into a directory nothing creates fails; the others succeed.
    let r = provision(&s.0, LOCAL_INV, &book, &[]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert_eq!(r.recap("localhost"), (3, 3, 0, 1, 0), "{}", r.out);
    assert!(r.out.contains("destination directory"), "{}", r.out);
    assert_eq!(read(&s.0.join("new/f.conf")), "x\n");
}

#[test]
fn special_files_are_never_replaced() {
    let s = scratch("special");
    let fifo = s.0.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - sysctl: {{name: vm.x, value: 1, sysctl_file: \"{}\", reload: false}}\n",
        fifo.display()
    );
    let r = provision(&s.0, LOCAL_INV, &book, &[]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("not a regular file"), "{}", r.out);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn with_items_flattens_and_loop_does_not() {
    let s = scratch("loops");
    let d = s.0.display();
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  vars:\n    more: [c, d]\n  tasks:\n    - shell: echo {{{{ item }}}} >> {d}/flat\n      with_items: [a, [b], \"{{{{ more }}}}\"]\n    - shell: echo {{{{ item | length }}}} >> {d}/nested\n      loop: [[1, 2], [3]]\n"
    );
    let r = provision(&s.0, LOCAL_INV, &book, &[]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(read(&s.0.join("flat")), "a\nb\nc\nd\n");
    assert_eq!(read(&s.0.join("nested")), "2\n1\n");
}

#[test]
fn several_plays_and_playbooks_target_their_own_hosts() {
    let s = scratch("plays");
    let d = s.0.display();
    let inv = "all:\n  vars:\n    ansible_connection: local\n  children:\n    server:\n      hosts:\n        s1:\n    clients:\n      hosts:\n        c1:\n        c2:\n";
    let book = format!(
        "- name: everyone\n  hosts: all\n  gather_facts: false\n  tasks:\n    - shell: echo all >> {d}/{{{{ inventory_hostname }}}}\n- name: clients only\n  hosts: clients\n  gather_facts: false\n  tasks:\n    - shell: echo client >> {d}/{{{{ inventory_hostname }}}}\n- hosts: nosuchgroup\n  tasks: []\n"
    );
    let r = provision(&s.0, inv, &book, &["--limit", "s1,c1"]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(read(&s.0.join("s1")), "all\n");
    assert_eq!(read(&s.0.join("c1")), "all\nclient\n");
    assert!(!s.0.join("c2").exists(), "--limit left c2 out");
    assert_eq!(r.recap("c1"), (2, 2, 0, 0, 0), "{}", r.out);
    assert_eq!(r.recap("s1"), (1, 1, 0, 0, 0), "{}", r.out);
    assert!(
        r.out.contains("PLAY [clients only]") && r.out.contains("[WARNING]"),
        "{}",
        r.out
    );
}

/// `systemd: daemon_reload` alone reports ok, as ansible.builtin.systemd does, also when run as
/// a notified handler; only what changes a unit counts as changed. (Check mode: this machine
/// need not run systemd; the lab test runs the reload for real on four guests.)
#[test]
fn systemd_daemon_reload_alone_is_ok_not_changed() {
    let s = scratch("daemon-reload");
    let d = s.0.display();
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - copy: {{dest: \"{d}/a.conf\", content: \"x\\n\"}}\n      notify: reload\n  handlers:\n    - name: reload\n      ansible.builtin.systemd: {{daemon_reload: true}}\n"
    );
    let r = provision(&s.0, LOCAL_INV, &book, &["--check"]);
    assert_eq!(r.recap("localhost"), (2, 1, 0, 0, 0), "{}", r.out);
    assert!(
        r.out.contains("RUNNING HANDLER [reload]")
            && r.out
                .contains("ok: [localhost] => {\"msg\":\"daemon reloaded\"}"),
        "{}",
        r.out
    );
}
