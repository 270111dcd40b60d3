//! Inventories and playbooks as text: var inheritance, host patterns, and every kind of bad
//! input giving `file:line:col: what was expected` before anything runs.

use c1m_ansible::connect::{ConnectSettings, Sources, SourcesRef};
use c1m_ansible::inventory;
use c1m_ansible::playbook;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The SSH session a host of `inv` gets from its vars alone (no ansible.cfg, no ssh_config).
fn route(host: &inventory::Host, known_hosts: Option<&str>) -> c1m_transport::ssh::SshConfig {
    ConnectSettings {
        known_hosts: known_hosts.map(PathBuf::from),
        sources: SourcesRef::Given(Arc::new(Sources::inventory_only())),
        ..Default::default()
    }
    .ssh_route(host)
    .expect("a route")
    .0
}

fn inv_err(text: &str) -> String {
    match inventory::parse("inv.yml", text) {
        Ok(_) => panic!("inventory should be rejected:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn book_err(text: &str) -> String {
    match playbook::parse("book.yml", text, Path::new(".")) {
        Ok(_) => panic!("playbook should be rejected:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_at(err: &str, at: &str, needle: &str) {
    assert!(err.starts_with(at), "expected error at {at}, got: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn vars_inherit_all_then_parent_then_child_then_host() {
    let inv = inventory::parse(
        "inv.yml",
        r#"
all:
  vars:
    a: all
    b: all
    c: all
    d: all
  children:
    lab:
      vars:
        b: lab
        c: lab
        d: lab
      children:
        clients:
          vars:
            c: clients
            d: clients
          hosts:
            c1:
              d: host
            c2:
        server:
          hosts:
            s1:
              ansible_host: 10.199.0.10
              ansible_port: 2222
              ansible_user: root
              ansible_connection: ssh
"#,
    )
    .unwrap();
    let c1 = inv.host("c1").unwrap();
    assert_eq!(c1.vars["a"], "all");
    assert_eq!(c1.vars["b"], "lab");
    assert_eq!(c1.vars["c"], "clients");
    assert_eq!(c1.vars["d"], "host");
    let c2 = inv.host("c2").unwrap();
    assert_eq!(c2.vars["d"], "clients");
    let s1 = inv.host("s1").unwrap();
    assert_eq!(s1.vars["c"], "lab");
    assert_eq!(s1.groups, vec!["all", "lab", "server"]);
    let cfg = route(s1, Some("/k"));
    assert_eq!(
        (cfg.address.as_str(), cfg.port, cfg.user.as_str()),
        ("10.199.0.10", 2222, "root")
    );
    assert_eq!(s1.connection(), inventory::Connection::Ssh);

    assert_eq!(
        inventory::select(&inv, "clients").unwrap(),
        vec!["c1", "c2"]
    );
    assert_eq!(inventory::select(&inv, "s1,c2").unwrap(), vec!["c2", "s1"]);
    assert_eq!(
        inventory::select(&inv, "lab:!c1").unwrap(),
        vec!["c2", "s1"]
    );
    assert_eq!(inventory::select(&inv, "all:&server").unwrap(), vec!["s1"]);
    assert_eq!(inventory::select(&inv, "c*").unwrap(), vec!["c1", "c2"]);
    assert!(inventory::select(&inv, "nosuch")
        .unwrap_err()
        .contains("nosuch"));
}

#[test]
fn embedded_local_inventory_is_this_machine_in_both_groups() {
    let inv = inventory::embedded_local();
    assert_eq!(inv.hosts.len(), 1);
    let h = &inv.hosts[0];
    assert_eq!(h.name, "localhost");
    assert_eq!(h.connection(), inventory::Connection::Local);
    assert!(h.groups.contains(&"server".to_string()) && h.groups.contains(&"clients".to_string()));
    let on_disk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../inventory/local.yml"
    ))
    .unwrap();
    assert!(inventory::parse("local.yml", &on_disk).is_ok());
}

#[test]
fn malformed_inventories_name_file_line_col() {
    // 1. YAML syntax: unclosed flow sequence.
    let e = inv_err("all:\n  hosts: [a, b\n");
    assert!(e.starts_with("inv.yml:"), "{e}");
    assert!(e.contains("YAML syntax error"), "{e}");
    // 2. Unknown group key (typo of `hosts`).
    assert_at(
        &inv_err("all:\n  children:\n    server:\n      hostz:\n        s1:\n"),
        "inv.yml:4:7:",
        "unknown key `hostz`",
    );
    // 3. Wrong type: hosts as a list.
    assert_at(
        &inv_err("all:\n  hosts:\n    - s1\n"),
        "inv.yml:3:5:",
        "expected a mapping, found a list",
    );
    // 4. Bad ansible_connection value.
    assert_at(
        &inv_err("all:\n  hosts:\n    s1:\n      ansible_connection: telnet\n"),
        "inv.yml:4:27:",
        "expected `ssh` or `local`",
    );
    // 5. Bad port.
    assert_at(
        &inv_err("all:\n  vars:\n    ansible_port: http\n"),
        "inv.yml:3:19:",
        "ansible_port",
    );
    // 6. Duplicate key.
    assert_at(
        &inv_err("all:\n  hosts:\n    s1:\n    s1:\n"),
        "inv.yml:4:5:",
        "duplicate key s1",
    );
    // 7. Empty file.
    assert!(inv_err("").contains("empty inventory"));
}

const OK_TASK: &str = "    - name: ok\n      ansible.builtin.command: 'true'\n";

#[test]
fn malformed_playbooks_name_file_line_col() {
    // 1. Unknown module (typo), with a suggestion.
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - name: t\n      ansible.posix.sysctll:\n        name: a\n"),
        "book.yml:4:7:",
        "did you mean `ansible.posix.sysctl`",
    );
    // 2. Unknown argument.
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - sysctl:\n        name: a\n        valeu: 1\n"),
        "book.yml:5:9:",
        "unknown argument `valeu`",
    );
    // 3. Unknown play keyword.
    assert_at(
        &book_err("- hosts: all\n  tsks: []\n"),
        "book.yml:2:3:",
        "unknown play keyword `tsks`",
    );
    // 4. Wrong type: become as a word that is not a boolean.
    assert_at(
        &book_err("- hosts: all\n  become: maybe\n"),
        "book.yml:2:11:",
        "expected a boolean",
    );
    // 5. Wrong type of an argument: sysctl_set.
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - ansible.posix.sysctl: {name: a, value: 1, sysctl_set: sometimes}\n"),
        "book.yml:3:61:",
        "argument `sysctl_set`: expected a boolean",
    );
    // 6. Bad choice.
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - community.general.modprobe:\n        name: x\n        state: loaded\n"),
        "book.yml:5:16:",
        "expected one of present, absent",
    );
    // 7. Missing required argument.
    assert_at(
        &book_err(
            "- hosts: all\n  tasks:\n    - community.general.pam_limits:\n        domain: '*'\n",
        ),
        "book.yml:3:7:",
        "missing required argument `limit_type`",
    );
    // 8. Jinja syntax error in a value.
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - copy:\n        dest: /x\n        content: \"{{ a + }}\"\n"),
        "book.yml:5:18:",
        "bad Jinja template",
    );
    // 9. Bad `when` expression.
    assert_at(
        &book_err(&format!(
            "- hosts: all\n  tasks:\n{OK_TASK}      when: a ==\n"
        )),
        "book.yml:5:13:",
        "when: bad expression",
    );
    // 10. notify naming no handler.
    assert_at(
        &book_err(&format!(
            "- hosts: all\n  tasks:\n{OK_TASK}      notify: Reload\n  handlers: []\n"
        )),
        "book.yml:3:7:",
        "no handler named `Reload`",
    );
    // 11. Two modules in one task.
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - command: 'true'\n      shell: 'true'\n"),
        "book.yml:4:7:",
        "has `command` and `shell`",
    );
    // 12. YAML syntax error (bad indentation).
    let e = book_err("- hosts: all\n  tasks:\n    - name: a\n     command: x\n");
    assert!(e.starts_with("book.yml:4:"), "{e}");
    // 13. Play without hosts.
    assert_at(
        &book_err("- name: p\n  tasks: []\n"),
        "book.yml:1:3:",
        "no `hosts:`",
    );
    // 14. Playbook that is a mapping, not a list.
    assert_at(
        &book_err("hosts: all\n"),
        "book.yml:1:1:",
        "expected a list",
    );
    // 15. Bad mode.
    assert_at(
        &book_err(
            "- hosts: all\n  tasks:\n    - file: {path: /x, state: directory, mode: '0999'}\n",
        ),
        "book.yml:3:48:",
        "octal mode",
    );
    // 16. loop that is neither a list nor a template.
    assert_at(
        &book_err(&format!("- hosts: all\n  tasks:\n{OK_TASK}      loop: 3\n")),
        "book.yml:5:13:",
        "expected a list",
    );
}

#[test]
fn shipped_playbooks_parse() {
    for name in ["tune.yml", "reset.yml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../playbooks")
            .join(name);
        let book = playbook::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(!book.plays.is_empty());
    }
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "[",
        "{",
        "- - -",
        "all: !!binary x",
        "a: &x [*x]",
        "a: *nope",
        "\t- x",
        "---\n...\n---\n",
        "all:\n  hosts:\n    ? [a, b]\n    : 1\n",
        "- hosts: all\n  tasks: {}\n",
        "- hosts: [1, {a: b}]\n",
        "- hosts: all\n  tasks:\n    - name: x\n      command:\n",
        "- hosts: all\n  tasks:\n    - 'just a string'\n",
        "- hosts: all\n  tasks:\n    - command: \"{{ unclosed\"\n",
        "\u{feff}all: {}\n",
        "- hosts: all\n  vars: [1]\n",
    ];
    for text in inputs {
        let inv = inventory::parse("g.yml", text);
        let book = playbook::parse("g.yml", text, Path::new("."));
        if let Err(e) = &inv {
            assert!(e.to_string().starts_with("g.yml:"), "{e}");
        }
        if let Err(e) = &book {
            assert!(e.to_string().starts_with("g.yml:"), "{e}");
        }
    }
}

#[test]
fn yaml_merge_keys_work_as_in_ansible() {
    let book = playbook::parse(
        "m.yml",
        "- hosts: all\n  vars:\n    base: &base {a: 1, b: 2}\n    merged:\n      <<: *base\n      b: 3\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(
        book.plays[0].vars["merged"],
        serde_json::json!({"a": 1, "b": 3})
    );
}

#[test]
fn lab_style_inventory_maps_to_ssh_settings() {
    let inv = inventory::parse(
        "lab.yml",
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: /var/lib/c1m/lab/id_ed25519\n    c1m_known_hosts: /var/lib/c1m/lab/known_hosts\n  children:\n    server:\n      hosts:\n        srv:\n          ansible_host: 10.199.0.10\n    clients:\n      hosts:\n        cli1:\n          ansible_host: 10.199.0.11\n",
    )
    .unwrap();
    let srv = inv.host("srv").unwrap();
    assert_eq!(srv.connection(), inventory::Connection::Ssh);
    let cfg = route(srv, None);
    assert_eq!(cfg.address, "10.199.0.10");
    assert_eq!(cfg.port, 22);
    assert_eq!(cfg.user, "root");
    assert_eq!(
        cfg.key_file.as_deref(),
        Some(Path::new("/var/lib/c1m/lab/id_ed25519"))
    );
    assert_eq!(cfg.known_hosts, Path::new("/var/lib/c1m/lab/known_hosts"));
    assert_eq!(inventory::select(&inv, "clients").unwrap(), vec!["cli1"]);
}

#[test]
fn tune_yml_orders_snapshot_modprobe_nr_open_before_the_rest() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/tune.yml");
    let book = playbook::load(&path).unwrap();
    let tasks = book.plays[0].task_list();
    let first = |module: &str| {
        tasks
            .iter()
            .position(|t| t.module.fqcn == module)
            .unwrap_or_else(|| panic!("no {module} task"))
    };
    let snapshot = tasks
        .iter()
        .position(|t| t.args.iter().any(|(k, _)| k == "creates"))
        .expect("snapshot task");
    let modprobe = first("community.general.modprobe");
    let sysctl = first("ansible.posix.sysctl");
    let limits = first("community.general.pam_limits");
    assert_eq!(snapshot, 0, "the snapshot comes before any change");
    assert!(
        modprobe < sysctl,
        "nf_conntrack must be loaded before any conntrack sysctl"
    );
    assert!(
        sysctl < limits,
        "fs.nr_open is raised before nofile limits ask for that many files"
    );
    let items = tasks[sysctl]
        .loop_
        .as_ref()
        .and_then(|l| l.items.as_array())
        .expect("sysctl loop");
    assert_eq!(items[0]["name"], "fs.nr_open", "fs.nr_open first");
    // Every sysctl written goes to the one drop-in and is applied key by key.
    for t in tasks
        .iter()
        .filter(|t| t.module.fqcn == "ansible.posix.sysctl")
    {
        let arg = |k: &str| t.args.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            arg("sysctl_file"),
            Some(serde_json::json!("{{ c1m_sysctl_file }}"))
        );
        assert_eq!(arg("sysctl_set"), Some(serde_json::json!(true)));
        assert_eq!(arg("reload"), Some(serde_json::json!(false)));
    }
    assert_eq!(
        book.plays[0].vars["c1m_sysctl_file"],
        "/etc/sysctl.d/60-c1m.conf"
    );
}

#[test]
fn listen_is_for_handlers_only() {
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - command: 'true'\n      listen: x\n"),
        "book.yml:4:7:",
        "unknown module or task keyword `listen`",
    );
    let book = playbook::parse(
        "b.yml",
        "- hosts: all\n  tasks:\n    - command: 'true'\n      notify: restart all\n  handlers:\n    - name: h\n      command: 'true'\n      listen: restart all\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(book.plays[0].handlers[0].listen, vec!["restart all"]);
}

#[test]
fn key_value_arguments_point_at_the_bad_word() {
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - sysctl: name=a valeu=1\n"),
        "book.yml:3:22:",
        "unknown argument `valeu`",
    );
    assert_at(
        &book_err("- hosts: all\n  tasks:\n    - file: \"path=/x stat=directory\"\n"),
        "book.yml:3:22:",
        "did you mean `state`",
    );
}
