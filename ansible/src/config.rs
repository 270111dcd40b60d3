//! `ansible.cfg`, found as Ansible finds it — the file `ANSIBLE_CONFIG` names (or the
//! `ansible.cfg` in the directory it names), else `./ansible.cfg` (unless the current directory
//! is world-writable, as Ansible refuses it), else `~/.ansible.cfg`, else
//! `/etc/ansible/ansible.cfg`; the first found is the only one read — and the `ANSIBLE_*`
//! environment variables that override it.
//!
//! c1m reads the settings that decide which hosts a command reaches and how:
//! `[defaults]` `inventory`, `remote_user`, `remote_port`, `private_key_file`, `forks`,
//! `host_key_checking`, `roles_path`, `timeout`; `[privilege_escalation]` `become`,
//! `become_user`, `become_method`. Paths are relative to the file's directory, as in Ansible.
//! Settings that need something c1m never does (asking for a password) are refused; every other
//! setting (output, caching, plugins, ssh arguments) has no bearing on what c1m does and is
//! left alone. Syntax errors and bad values name `file:line:col`.

use crate::yaml::{Pos, SourceError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The settings c1m takes from ansible.cfg and the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnsibleConfig {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// `inventory` (`ANSIBLE_INVENTORY`): sources, comma-separated.
    pub inventory: Vec<PathBuf>,
    /// `remote_user` (`ANSIBLE_REMOTE_USER`): the login when the inventory names none.
    pub remote_user: Option<String>,
    /// `remote_port` (`ANSIBLE_REMOTE_PORT`).
    pub remote_port: Option<u16>,
    /// `private_key_file` (`ANSIBLE_PRIVATE_KEY_FILE`).
    pub private_key_file: Option<PathBuf>,
    /// `forks` (`ANSIBLE_FORKS`).
    pub forks: Option<usize>,
    /// `host_key_checking` (`ANSIBLE_HOST_KEY_CHECKING`); `false` accepts new host keys (a
    /// changed key is still refused: c1m never connects to one).
    pub host_key_checking: Option<bool>,
    /// `become` (`ANSIBLE_BECOME`): the default of plays that do not say.
    pub become_: Option<bool>,
    /// `become_user` (`ANSIBLE_BECOME_USER`).
    pub become_user: Option<String>,
    /// `roles_path` (`ANSIBLE_ROLES_PATH`), colon-separated, searched after `roles/` beside
    /// the playbook.
    pub roles_path: Vec<PathBuf>,
    /// `timeout` (`ANSIBLE_TIMEOUT`): seconds to wait for the TCP connect.
    pub timeout: Option<u64>,
}

/// Where settings come from: the process environment and file system, or given ones (tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn cwd(&self) -> PathBuf;
    fn home(&self) -> Option<PathBuf>;
}

/// The real environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn cwd(&self) -> PathBuf {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    }
    fn home(&self) -> Option<PathBuf> {
        std::env::var_os("HOME").map(PathBuf::from)
    }
}

impl AnsibleConfig {
    /// The configuration of this process: the file Ansible would read, then the environment.
    pub fn discover() -> anyhow::Result<AnsibleConfig> {
        Self::discover_in(&ProcessEnv)
    }

    pub fn discover_in(env: &dyn Env) -> anyhow::Result<AnsibleConfig> {
        let mut cfg = match find(env) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    anyhow::anyhow!("cannot read ansible.cfg {}: {e}", path.display())
                })?;
                parse_in(&path, &text, env)?
            }
            None => AnsibleConfig::default(),
        };
        cfg.apply_env(env)?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        let cwd = env.cwd();
        let bad = |name: &str, v: &str, what: &str| {
            anyhow::anyhow!("environment variable {name}={v:?}: expected {what}")
        };
        if let Some(v) = env.var("ANSIBLE_INVENTORY") {
            self.inventory = path_list(&v, ',', &cwd, env);
        }
        if let Some(v) = env.var("ANSIBLE_REMOTE_USER") {
            self.remote_user = Some(v);
        }
        if let Some(v) = env.var("ANSIBLE_REMOTE_PORT") {
            self.remote_port =
                Some(port(&v).ok_or_else(|| bad("ANSIBLE_REMOTE_PORT", &v, "a port 1-65535"))?);
        }
        if let Some(v) = env.var("ANSIBLE_PRIVATE_KEY_FILE") {
            self.private_key_file = Some(resolve(&v, &cwd, env));
        }
        if let Some(v) = env.var("ANSIBLE_FORKS") {
            self.forks = Some(
                forks(&v)
                    .ok_or_else(|| bad("ANSIBLE_FORKS", &v, "a number of hosts (1 or more)"))?,
            );
        }
        if let Some(v) = env.var("ANSIBLE_HOST_KEY_CHECKING") {
            self.host_key_checking =
                Some(boolean(&v).ok_or_else(|| bad("ANSIBLE_HOST_KEY_CHECKING", &v, "a boolean"))?);
        }
        if let Some(v) = env.var("ANSIBLE_BECOME") {
            self.become_ = Some(boolean(&v).ok_or_else(|| bad("ANSIBLE_BECOME", &v, "a boolean"))?);
        }
        if let Some(v) = env.var("ANSIBLE_BECOME_USER") {
            self.become_user = Some(v);
        }
        if let Some(v) = env.var("ANSIBLE_BECOME_METHOD") {
            if v != "sudo" {
                return Err(bad(
                    "ANSIBLE_BECOME_METHOD",
                    &v,
                    "sudo (the only method c1m has)",
                ));
            }
        }
        if let Some(v) = env.var("ANSIBLE_ROLES_PATH") {
            self.roles_path = path_list(&v, ':', &cwd, env);
        }
        if let Some(v) = env.var("ANSIBLE_TIMEOUT") {
            self.timeout = Some(
                v.parse()
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or_else(|| bad("ANSIBLE_TIMEOUT", &v, "seconds (1 or more)"))?,
            );
        }
        Ok(())
    }

    /// The one inventory source it names, if any (c1m reads one: list a directory for more).
    pub fn inventory(&self) -> anyhow::Result<Option<PathBuf>> {
        match self.inventory.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            more => anyhow::bail!(
                "{}: inventory names {} sources ({}); c1m reads one — put them in one directory \
                 and name that",
                self.file
                    .as_ref()
                    .map_or("ANSIBLE_INVENTORY".into(), |f| f.display().to_string()),
                more.len(),
                more.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The file Ansible would read, if any.
fn find(env: &dyn Env) -> Option<PathBuf> {
    if let Some(v) = env.var("ANSIBLE_CONFIG") {
        let p = resolve(&v, &env.cwd(), env);
        let p = if p.is_dir() { p.join("ansible.cfg") } else { p };
        if p.is_file() {
            return Some(p);
        }
    }
    let cwd = env.cwd();
    let here = cwd.join("ansible.cfg");
    if here.is_file() && !world_writable(&cwd) {
        return Some(here);
    }
    if let Some(home) = env.home() {
        let p = home.join(".ansible.cfg");
        if p.is_file() {
            return Some(p);
        }
    }
    let system = PathBuf::from("/etc/ansible/ansible.cfg");
    system.is_file().then_some(system)
}

fn world_writable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
}

fn expand_home(p: &str, env: &dyn Env) -> PathBuf {
    match (p.strip_prefix("~/"), env.home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if p == "~" => env.home().unwrap_or_else(|| PathBuf::from("~")),
        _ => PathBuf::from(p),
    }
}

/// A path as Ansible resolves a config path: `~` is home, relative is from `base`.
fn resolve(p: &str, base: &Path, env: &dyn Env) -> PathBuf {
    let p = expand_home(p.trim(), env);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn path_list(v: &str, sep: char, base: &Path, env: &dyn Env) -> Vec<PathBuf> {
    v.split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            // A host list (`a,b`) in `inventory` is not a path, but each piece stands alone.
            resolve(s, base, env)
        })
        .collect()
}

/// Ansible's `boolean()` for config values.
fn boolean(v: &str) -> Option<bool> {
    crate::yaml::parse_bool(v.trim())
}

fn port(v: &str) -> Option<u16> {
    v.trim().parse().ok().filter(|p| *p > 0)
}

fn forks(v: &str) -> Option<usize> {
    v.trim().parse().ok().filter(|f| *f > 0)
}

/// One `key = value` of the file and where its value starts.
struct Setting {
    value: String,
    pos: Pos,
}

/// Parses ansible.cfg text as Python's configparser does (Ansible's settings: `;` starts an
/// inline comment after whitespace, `#` and `;` whole-line comments, `key = value` or
/// `key: value`, keys case-insensitive, indented lines continue a value, a key or section
/// given twice is an error).
pub fn parse(path: &Path, text: &str) -> Result<AnsibleConfig, SourceError> {
    parse_in(path, text, &ProcessEnv)
}

fn parse_in(path: &Path, text: &str, env: &dyn Env) -> Result<AnsibleConfig, SourceError> {
    let file = path.display().to_string();
    let err =
        |line: usize, col: usize, msg: String| SourceError::new(&file, Pos { line, col }, msg);
    let mut sections: BTreeMap<String, BTreeMap<String, Setting>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (n, raw) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line_no = n + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            if trimmed.is_empty() {
                last_key = None;
            }
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if indent > 0 {
            if let (Some(sec), Some(key)) = (&current, &last_key) {
                if let Some(s) = sections.get_mut(sec).and_then(|m| m.get_mut(key)) {
                    s.value.push('\n');
                    s.value.push_str(strip_inline_comment(trimmed));
                    continue;
                }
            }
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(err(
                    line_no,
                    indent + 1,
                    format!("bad section header `{trimmed}`: expected [name]"),
                ));
            };
            if sections.contains_key(name) {
                return Err(err(
                    line_no,
                    indent + 1,
                    format!("section [{name}] given twice"),
                ));
            }
            sections.insert(name.to_string(), BTreeMap::new());
            current = Some(name.to_string());
            last_key = None;
            continue;
        }
        let Some(sec) = &current else {
            return Err(err(
                line_no,
                indent + 1,
                "a setting before any [section]: ansible.cfg starts with [defaults]".into(),
            ));
        };
        let split = trimmed.find(['=', ':']).ok_or_else(|| {
            err(
                line_no,
                indent + 1,
                format!("expected `key = value` in [{sec}], found `{trimmed}`"),
            )
        })?;
        let key = trimmed[..split].trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(err(
                line_no,
                indent + 1,
                format!("a value without a key in [{sec}]"),
            ));
        }
        let after = &trimmed[split + 1..];
        let value = strip_inline_comment(after.trim_start()).trim_end();
        let col = indent + split + 1 + (after.len() - after.trim_start().len()) + 1;
        let section = sections.entry(sec.clone()).or_default();
        if section.contains_key(&key) {
            return Err(err(
                line_no,
                indent + 1,
                format!("`{key}` given twice in [{sec}]"),
            ));
        }
        section.insert(
            key.clone(),
            Setting {
                value: value.to_string(),
                pos: Pos { line: line_no, col },
            },
        );
        last_key = Some(key);
    }
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut cfg = AnsibleConfig {
        file: Some(path.to_path_buf()),
        ..AnsibleConfig::default()
    };
    let get = |sec: &str, key: &str| sections.get(sec).and_then(|m| m.get(key));
    let bad = |s: &Setting, key: &str, what: &str| {
        SourceError::new(
            &file,
            s.pos,
            format!("{key}: expected {what}, found {:?}", s.value),
        )
    };
    let d = "defaults";
    if let Some(s) = get(d, "inventory").or_else(|| get(d, "hostfile")) {
        cfg.inventory = path_list(&s.value, ',', &base, env);
    }
    if let Some(s) = get(d, "remote_user") {
        cfg.remote_user = Some(s.value.clone());
    }
    if let Some(s) = get(d, "remote_port") {
        cfg.remote_port =
            Some(port(&s.value).ok_or_else(|| bad(s, "remote_port", "a port 1-65535"))?);
    }
    if let Some(s) = get(d, "private_key_file") {
        cfg.private_key_file = Some(resolve(&s.value, &base, env));
    }
    if let Some(s) = get(d, "forks") {
        cfg.forks =
            Some(forks(&s.value).ok_or_else(|| bad(s, "forks", "a number of hosts (1 or more)"))?);
    }
    if let Some(s) = get(d, "host_key_checking") {
        cfg.host_key_checking =
            Some(boolean(&s.value).ok_or_else(|| bad(s, "host_key_checking", "a boolean"))?);
    }
    if let Some(s) = get(d, "roles_path") {
        cfg.roles_path = path_list(&s.value, ':', &base, env);
    }
    if let Some(s) = get(d, "timeout") {
        cfg.timeout = Some(
            s.value
                .trim()
                .parse()
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| bad(s, "timeout", "seconds (1 or more)"))?,
        );
    }
    for (sec, key) in [(d, "ask_pass"), ("privilege_escalation", "become_ask_pass")] {
        if let Some(s) = get(sec, key) {
            if boolean(&s.value).ok_or_else(|| bad(s, key, "a boolean"))? {
                return Err(SourceError::new(
                    &file,
                    s.pos,
                    format!(
                        "{key} = {}: c1m never asks for passwords (keys, the agent and `sudo -n`)",
                        s.value
                    ),
                ));
            }
        }
    }
    let pe = "privilege_escalation";
    if let Some(s) = get(pe, "become") {
        cfg.become_ = Some(boolean(&s.value).ok_or_else(|| bad(s, "become", "a boolean"))?);
    }
    if let Some(s) = get(pe, "become_user") {
        cfg.become_user = Some(s.value.clone());
    }
    if let Some(s) = get(pe, "become_method") {
        if s.value != "sudo" {
            return Err(bad(s, "become_method", "sudo (the only method c1m has)"));
        }
    }
    Ok(cfg)
}

/// configparser's inline comments: `;` after whitespace.
fn strip_inline_comment(v: &str) -> &str {
    let b = v.as_bytes();
    for i in 1..b.len() {
        if b[i] == b';' && b[i - 1].is_ascii_whitespace() {
            return v[..i].trim_end();
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeEnv {
        vars: Vec<(&'static str, String)>,
        cwd: PathBuf,
        home: PathBuf,
    }

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
        fn cwd(&self) -> PathBuf {
            self.cwd.clone()
        }
        fn home(&self) -> Option<PathBuf> {
            Some(self.home.clone())
        }
    }

    #[test]
    fn settings_and_paths_relative_to_the_file() {
        let cfg = parse(
            Path::new("/p/ansible.cfg"),
            "# c\n[defaults]\ninventory = hosts\nremote_user=admin ; who\nforks: 7\nhost_key_checking = False\n\
             roles_path = roles:/shared/roles\nprivate_key_file = keys/id\nstdout_callback = yaml\n\
             [privilege_escalation]\nbecome = True\nbecome_user = root\n[ssh_connection]\npipelining = True\n",
        )
        .unwrap();
        assert_eq!(cfg.inventory, [PathBuf::from("/p/hosts")]);
        assert_eq!(cfg.remote_user.as_deref(), Some("admin"));
        assert_eq!(cfg.forks, Some(7));
        assert_eq!(cfg.host_key_checking, Some(false));
        assert_eq!(
            cfg.roles_path,
            [PathBuf::from("/p/roles"), PathBuf::from("/shared/roles")]
        );
        assert_eq!(cfg.private_key_file, Some(PathBuf::from("/p/keys/id")));
        assert_eq!(cfg.become_, Some(true));
        assert_eq!(cfg.become_user.as_deref(), Some("root"));
    }

    #[test]
    fn malformed_files_name_line_and_column() {
        for (text, at, needle) in [
            ("remote_user = x\n", "c:1:1:", "before any [section]"),
            ("[defaults\n", "c:1:1:", "bad section header"),
            (
                "[defaults]\nforks = many\n",
                "c:2:9:",
                "forks: expected a number",
            ),
            (
                "[defaults]\n  \nhost_key_checking: perhaps\n",
                "c:3:20:",
                "expected a boolean",
            ),
            (
                "[defaults]\njust words\n",
                "c:2:1:",
                "expected `key = value`",
            ),
            ("[defaults]\nforks=1\nforks=2\n", "c:3:1:", "given twice"),
            (
                "[privilege_escalation]\nbecome_method = su\n",
                "c:2:17:",
                "sudo",
            ),
            (
                "[defaults]\nask_pass = yes\n",
                "c:2:12:",
                "never asks for passwords",
            ),
        ] {
            let e = parse(Path::new("c"), text).unwrap_err().to_string();
            assert!(e.starts_with(at), "{text:?}: want {at}, got {e}");
            assert!(e.contains(needle), "{text:?}: want {needle:?} in {e}");
        }
    }

    #[test]
    fn found_where_ansible_looks_and_overridden_by_the_environment() {
        let dir = std::env::temp_dir().join(format!("c1m-cfg-{}", std::process::id()));
        let (home, project, other) = (dir.join("home"), dir.join("project"), dir.join("other"));
        for d in [&home, &project, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(home.join(".ansible.cfg"), "[defaults]\nforks = 3\n").unwrap();
        std::fs::write(
            project.join("ansible.cfg"),
            "[defaults]\nforks = 4\ninventory = inv\n",
        )
        .unwrap();
        std::fs::write(other.join("ansible.cfg"), "[defaults]\nforks = 5\n").unwrap();
        let env = |cwd: &Path, vars: Vec<(&'static str, String)>| FakeEnv {
            vars,
            cwd: cwd.to_path_buf(),
            home: home.clone(),
        };
        let c = AnsibleConfig::discover_in(&env(&project, vec![])).unwrap();
        assert_eq!(c.forks, Some(4));
        assert_eq!(c.inventory().unwrap(), Some(project.join("inv")));
        let c = AnsibleConfig::discover_in(&env(&dir, vec![])).unwrap();
        assert_eq!(c.forks, Some(3));
        let c = AnsibleConfig::discover_in(&env(
            &project,
            vec![("ANSIBLE_CONFIG", other.display().to_string())],
        ))
        .unwrap();
        assert_eq!(c.forks, Some(5));
        let c = AnsibleConfig::discover_in(&env(
            &project,
            vec![
                ("ANSIBLE_FORKS", "9".into()),
                ("ANSIBLE_INVENTORY", "a,b".into()),
            ],
        ))
        .unwrap();
        assert_eq!(c.forks, Some(9));
        assert!(c.inventory().is_err());
        assert!(
            AnsibleConfig::discover_in(&env(&project, vec![("ANSIBLE_FORKS", "x".into())]))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
