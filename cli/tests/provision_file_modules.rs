//! `template`, `lineinfile`, `blockinfile`, `set_fact`, `assert`, `fail` and
//! `wait_for_connection` on this machine (`ansible_connection: local`, files in a scratch
//! directory): the change is made once, a second run changes nothing, `--check` changes nothing
//! and `--diff` shows what would change.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn provision(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_c1m"))
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("ANSIBLE_CONFIG")
        .args(["provision", "-i", "hosts", "book.yml"])
        .args(extra)
        .output()
        .expect("c1m runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn changed(out: &str) -> u32 {
    out.split("changed=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

#[test]
fn file_modules_change_once_check_and_diff() {
    let dir = std::env::temp_dir().join(format!("c1m-file-modules-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("templates")).unwrap();
    let _scratch = Scratch(dir.clone());
    let d = dir.display();
    fs::write(
        dir.join("hosts"),
        "[all:vars]\nansible_connection=local\n[web]\nlocalhost\n",
    )
    .unwrap();
    fs::write(dir.join("app.conf"), "# app\nport=80\nworkers=1\n").unwrap();
    fs::write(
        dir.join("templates/limits.j2"),
        "{% for k in kinds %}\n* {{ k }} nofile {{ n }}\n{% endfor %}\n",
    )
    .unwrap();
    fs::write(
        dir.join("book.yml"),
        format!(
            "- hosts: all\n  gather_facts: false\n  vars:\n    n: 4096\n    kinds: [soft, hard]\n  tasks:\n\
             \x20   - template: {{src: limits.j2, dest: '{d}/limits.conf', mode: '0600'}}\n\
             \x20   - lineinfile: {{path: '{d}/app.conf', regexp: '^port=', line: 'port=8080'}}\n\
             \x20   - lineinfile: {{path: '{d}/app.conf', line: 'backlog=1024', insertafter: '^port='}}\n\
             \x20   - lineinfile: {{path: '{d}/app.conf', regexp: '^(workers)=\\d+$', line: '\\1=4', backrefs: true}}\n\
             \x20   - lineinfile: {{path: '{d}/app.conf', regexp: '^# app', state: absent}}\n\
             \x20   - blockinfile: {{path: '{d}/app.conf', block: \"a=1\\nb=2\", marker: '# {{mark}} c1m'}}\n\
             \x20   - set_fact: {{doubled: \"{{{{ n | int * 2 }}}}\"}}\n\
             \x20   - assert: {{that: ['doubled | int == 8192', 'kinds | length == 2'], success_msg: facts hold}}\n\
             \x20   - wait_for_connection: {{timeout: 5}}\n\
             \x20   - fail: {{msg: 'not reached'}}\n      when: doubled | int != 8192\n"
        ),
    )
    .unwrap();

    let (code, out) = provision(&dir, &["--check", "--diff"]);
    assert_eq!(code, 0, "{out}");
    assert!(!dir.join("limits.conf").exists(), "{out}");
    assert_eq!(
        fs::read_to_string(dir.join("app.conf")).unwrap(),
        "# app\nport=80\nworkers=1\n"
    );
    assert!(out.contains("+port=8080"), "{out}");
    assert!(out.contains("+* soft nofile 4096"), "{out}");

    let (code, out) = provision(&dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(changed(&out), 6, "{out}");
    assert!(out.contains("facts hold"), "{out}");
    assert_eq!(
        fs::read_to_string(dir.join("limits.conf")).unwrap(),
        "* soft nofile 4096\n* hard nofile 4096\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(dir.join("limits.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::read_to_string(dir.join("app.conf")).unwrap(),
        "port=8080\nbacklog=1024\nworkers=4\n# BEGIN c1m\na=1\nb=2\n# END c1m\n"
    );

    let (code, out) = provision(&dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(changed(&out), 0, "{out}");

    // A failed assert fails the host with its message.
    fs::write(
        dir.join("book.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - assert: {that: '1 == 2', fail_msg: 'one is not two'}\n",
    )
    .unwrap();
    let (code, out) = provision(&dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("one is not two"), "{out}");
}
