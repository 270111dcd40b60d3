//! Mistakes in every part of an Ansible project — INI inventories, ansible.cfg, group_vars and
//! host_vars, roles, task files, ssh_config — stop `c1m provision` before any host is touched,
//! with exit code 2 and `file:line:col` naming the place and what is wrong. Keywords Ansible has
//! but c1m does not run are refused by name; hostile YAML (alias bombs, deep nesting) is an error,
//! not an abort.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Project {
    dir: PathBuf,
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Project {
    /// A small valid project (local host, one role) with `files` written over it.
    fn with(name: &str, files: &[(&str, &str)]) -> Project {
        let dir = std::env::temp_dir().join(format!("c1m-errors-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let base: &[(&str, &str)] = &[
            ("ansible.cfg", "[defaults]\ninventory = hosts\n"),
            ("hosts", "[web]\nh1 ansible_connection=local\n"),
            (
                "site.yml",
                "- hosts: all\n  gather_facts: false\n  roles: [r]\n",
            ),
            ("roles/r/tasks/main.yml", "- name: ok\n  debug: msg=hi\n"),
            ("home/.keep", ""),
        ];
        for (rel, text) in base.iter().chain(files) {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        Project { dir }
    }

    /// `c1m provision site.yml` there: its exit code and stderr.
    fn provision(&self) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_c1m"))
            .current_dir(&self.dir)
            .env("HOME", self.dir.join("home"))
            .env_remove("ANSIBLE_CONFIG")
            .env_remove("ANSIBLE_INVENTORY")
            .env_remove("C1M_SSH_CONFIG")
            .args(["provision", "site.yml"])
            .output()
            .expect("c1m runs");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        )
    }
}

fn refused(name: &str, files: &[(&str, &str)], at: &str, needle: &str) {
    let p = Project::with(name, files);
    let (code, out) = p.provision();
    assert_eq!(code, Some(2), "{name}: expected exit 2:\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("c1m: error:"))
        .unwrap_or_else(|| panic!("{name}: no error line:\n{out}"));
    assert!(line.contains(at), "{name}: expected {at:?} in:\n{line}");
    assert!(
        line.contains(needle),
        "{name}: expected {needle:?} in:\n{line}"
    );
    assert!(!out.contains("PLAY ["), "{name}: something ran:\n{out}");
}

#[test]
fn malformed_projects_name_file_line_col() {
    refused(
        "ini_vars_of_undeclared_group",
        &[(
            "hosts",
            "[web]\nh1 ansible_connection=local\n[db:vars]\nx=1\n",
        )],
        "hosts:3:1:",
        "declared nowhere",
    );
    refused(
        "ini_bad_port",
        &[("hosts", "[web]\nh1 ansible_connection=local\nh2:http\n")],
        "hosts:3:1:",
        "not 1-65535",
    );
    refused(
        "ini_bad_range",
        &[("hosts", "[web]\nweb[01:100] ansible_connection=local\n")],
        "hosts:2:1:",
        "same number of digits",
    );
    refused(
        "cfg_bad_forks",
        &[(
            "ansible.cfg",
            "[defaults]\ninventory = hosts\nforks = lots\n",
        )],
        "ansible.cfg:3:9:",
        "forks: expected a number",
    );
    refused(
        "cfg_setting_before_section",
        &[("ansible.cfg", "inventory = hosts\n")],
        "ansible.cfg:1:1:",
        "before any [section]",
    );
    refused(
        "group_vars_yaml",
        &[("group_vars/web.yml", "a: 1\nb: [1, 2\n")],
        "group_vars/web.yml:",
        "YAML syntax error",
    );
    refused(
        "group_vars_dir_not_a_mapping",
        &[("group_vars/all/10-base.yml", "- just\n- a list\n")],
        "group_vars/all/10-base.yml:1:1:",
        "expected a mapping",
    );
    refused(
        "host_vars_bad_port",
        &[("host_vars/h1.yml", "ansible_port: ssh\n")],
        "host_vars/h1.yml:1:15:",
        "ansible_port",
    );
    refused(
        "role_not_found",
        &[("site.yml", "- hosts: all\n  roles:\n    - nosuch\n")],
        "site.yml:3:7:",
        "role `nosuch` not found",
    );
    refused(
        "role_meta_unknown_key",
        &[("roles/r/meta/main.yml", "dependencies: []\ndepends: [x]\n")],
        "roles/r/meta/main.yml:2:1:",
        "unknown key `depends`",
    );
    refused(
        "role_task_unknown_module",
        &[("roles/r/tasks/main.yml", "- name: ok\n  debug: msg=hi\n- name: typo\n  ansible.builtin.lineinfil: {path: /x, line: y}\n")],
        "roles/r/tasks/main.yml:4:3:",
        "did you mean `ansible.builtin.lineinfile`",
    );
    refused(
        "role_defaults_bad_name",
        &[("roles/r/defaults/main.yml", "ok: 1\n2bad: 2\n")],
        "roles/r/defaults/main.yml:2:1:",
        "not a valid variable name",
    );
    refused(
        "unsupported_task_keyword",
        &[(
            "roles/r/tasks/main.yml",
            "- name: elsewhere\n  debug: msg=hi\n  delegate_to: localhost\n",
        )],
        "roles/r/tasks/main.yml:3:3:",
        "does not support the task keyword `delegate_to`",
    );
    refused(
        "unsupported_play_keyword",
        &[("site.yml", "- hosts: all\n  serial: 2\n  roles: [r]\n")],
        "site.yml:2:3:",
        "does not support the play keyword `serial`",
    );
    refused(
        "include_of_a_missing_file",
        &[(
            "site.yml",
            "- hosts: all\n  tasks:\n    - include_tasks: missing.yml\n",
        )],
        "site.yml:3:22:",
        "cannot read",
    );
    refused(
        "import_playbook_of_itself",
        &[("site.yml", "- import_playbook: site.yml\n")],
        "site.yml:1:20:",
        "includes itself",
    );
    refused(
        "block_unknown_keyword",
        &[("site.yml", "- hosts: all\n  tasks:\n    - block:\n        - debug: msg=x\n      rescue_tasks: []\n")],
        "site.yml:5:7:",
        "unknown block keyword `rescue_tasks`",
    );
    refused(
        "ssh_config_bad_option",
        &[
            ("hosts", "[web]\nh1 ansible_host=127.0.0.1\n"),
            ("home/.ssh/config", "Host h1\n  HostNmae 10.0.0.1\n"),
        ],
        "home/.ssh/config:2:3:",
        "bad configuration option `HostNmae`",
    );
}

#[test]
fn hostile_yaml_is_an_error_in_bounded_time() {
    let mut laughs = String::from("- hosts: all\n  vars:\n    a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        .windows(2)
        .map(|w| (w[0], w[1]))
    {
        laughs.push_str(&format!(
            "    {name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    let started = std::time::Instant::now();
    refused(
        "billion_laughs",
        &[("site.yml", &laughs)],
        "site.yml:",
        "billion laughs",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let deep: String = (0..200)
        .map(|i| format!("{}- x{i}:\n", "  ".repeat(i)))
        .collect();
    refused(
        "deep_nesting",
        &[("roles/r/vars/main.yml", &format!("v:\n{deep}"))],
        "roles/r/vars/main.yml:",
        "nesting deeper than",
    );
    let _ = Path::new(".");
}
