//! The OpenSSH client configuration (`~/.ssh/config`, `/etc/ssh/ssh_config`), read as `ssh`
//! reads it: `Host` blocks with patterns (`*`, `?`, `!negation`), `Match` with `all`, `host`,
//! `originalhost`, `user` and `localuser`, `Include` (globs, relative to `~/.ssh` or `/etc/ssh`),
//! `Keyword value` or `Keyword=value`, and for each keyword the first value that applies wins
//! (`IdentityFile` adds up). Options given on a command line (`-o`, as in
//! `ansible_ssh_common_args`) come before every file.
//!
//! Keywords that decide where and how c1m connects are resolved: `HostName`, `User`, `Port`,
//! `IdentityFile`, `IdentitiesOnly`, `UserKnownHostsFile`, `StrictHostKeyChecking`,
//! `ProxyJump`, `ConnectTimeout` — and `ProxyCommand`, which c1m cannot run and refuses where it
//! applies. Every other keyword OpenSSH knows is read and left alone; an unknown one is an error,
//! as in `ssh`. `Match` criteria c1m cannot evaluate (`exec`, `canonical`, `final`,
//! `localnetwork`, `tagged`) are errors naming their place.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// An error in a configuration file, at `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.msg)
    }
}

impl std::error::Error for ConfigError {}

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl Origin {
    fn err(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
            msg: msg.into(),
        }
    }
}

/// A condition on the lines that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// `Host` patterns.
    Host(Vec<String>),
    /// `Match` criteria, all of which must hold.
    Match(Vec<Criterion>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Criterion {
    negated: bool,
    kind: CriterionKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CriterionKind {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
}

/// One `Keyword value` line and the conditions it is under (its `Host`/`Match` block and the
/// block an `Include` sat in).
#[derive(Debug, Clone)]
struct Entry {
    keyword: String,
    args: Vec<String>,
    conditions: Vec<Condition>,
    at: Origin,
}

/// The entries of the configuration files, in the order `ssh` reads them.
#[derive(Debug, Clone, Default)]
pub struct SshConfigFiles {
    entries: Vec<Entry>,
}

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strict {
    /// `yes`, `ask` (c1m cannot ask): unknown keys are refused.
    Yes,
    /// `accept-new`, and `no`/`off`, which c1m reads as accept-new: a changed key is refused
    /// whatever the configuration says.
    AcceptNew,
}

/// One hop of `ProxyJump`: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// `ProxyJump`: hops, outermost first, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyJump {
    None,
    Hops(Vec<Jump>),
}

/// What the configuration says for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: Option<bool>,
    /// `UserKnownHostsFile` (`none` is an empty list).
    pub known_hosts_files: Option<Vec<PathBuf>>,
    pub strict: Option<Strict>,
    pub proxy_jump: Option<ProxyJump>,
    /// `ProxyCommand` (not `none`) and where it was set.
    pub proxy_command: Option<(String, Origin)>,
    pub connect_timeout: Option<u64>,
}

/// How deep `Include` may nest (OpenSSH's own limit).
const MAX_INCLUDE_DEPTH: usize = 16;

impl SshConfigFiles {
    /// `~/.ssh/config` (from `home`) then `/etc/ssh/ssh_config`, those that exist.
    pub fn load_default(home: Option<&Path>) -> Result<SshConfigFiles, ConfigError> {
        let mut files = SshConfigFiles::default();
        if let Some(home) = home {
            let user = home.join(".ssh/config");
            if user.is_file() {
                files.read_file(&user, &home.join(".ssh"), home, &[], 0)?;
            }
        }
        let system = Path::new("/etc/ssh/ssh_config");
        if system.is_file() {
            files.read_file(
                system,
                Path::new("/etc/ssh"),
                home.unwrap_or(Path::new("/")),
                &[],
                0,
            )?;
        }
        Ok(files)
    }

    /// One file instead of the default ones (`ssh -F FILE`).
    pub fn load_file(path: &Path, home: Option<&Path>) -> Result<SshConfigFiles, ConfigError> {
        let mut files = SshConfigFiles::default();
        let base = home.map_or_else(|| PathBuf::from("/"), |h| h.join(".ssh"));
        files.read_file(path, &base, home.unwrap_or(Path::new("/")), &[], 0)?;
        Ok(files)
    }

    /// Parses `text` as if it were file `name` (tests and command-line options).
    pub fn parse(name: &str, text: &str, home: &Path) -> Result<SshConfigFiles, ConfigError> {
        let mut files = SshConfigFiles::default();
        files.read_text(name, text, &home.join(".ssh"), home, &[], 0)?;
        Ok(files)
    }

    fn read_file(
        &mut self,
        path: &Path,
        include_base: &Path,
        home: &Path,
        outer: &[Condition],
        depth: usize,
    ) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 1,
            col: 1,
            msg: format!("cannot read: {e}"),
        })?;
        self.read_text(
            &path.display().to_string(),
            &text,
            include_base,
            home,
            outer,
            depth,
        )
    }

    fn read_text(
        &mut self,
        file: &str,
        text: &str,
        include_base: &Path,
        home: &Path,
        outer: &[Condition],
        depth: usize,
    ) -> Result<(), ConfigError> {
        let mut block: Option<Condition> = None;
        for (n, raw) in text.lines().enumerate() {
            let Some((keyword, args, cols)) = split_line(raw) else {
                continue;
            };
            let at = |i: usize| Origin {
                file: file.to_string(),
                line: n + 1,
                col: cols.get(i).copied().unwrap_or(1),
            };
            let lower = keyword.to_ascii_lowercase();
            match lower.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(at(0).err("Host without a pattern"));
                    }
                    block = Some(Condition::Host(args));
                }
                "match" => block = Some(Condition::Match(parse_match(&args, &at)?)),
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(at(0).err("Include nested too deeply"));
                    }
                    let mut conditions = outer.to_vec();
                    conditions.extend(block.clone());
                    for (i, pattern) in args.iter().enumerate() {
                        let expanded = expand_home(pattern, home);
                        let pattern = if Path::new(&expanded).is_absolute() {
                            expanded
                        } else {
                            include_base.join(expanded).display().to_string()
                        };
                        let mut matched = glob_paths(&pattern).map_err(|e| at(i + 1).err(e))?;
                        matched.sort();
                        for p in matched {
                            self.read_file(&p, include_base, home, &conditions, depth + 1)?;
                        }
                    }
                }
                _ => {
                    if !KNOWN.contains(&lower.as_str()) {
                        return Err(at(0).err(format!("bad configuration option `{keyword}`")));
                    }
                    if args.is_empty() {
                        return Err(at(0).err(format!("{keyword}: missing argument")));
                    }
                    let mut conditions = outer.to_vec();
                    conditions.extend(block.clone());
                    let entry = Entry {
                        keyword: lower,
                        args,
                        conditions,
                        at: at(1),
                    };
                    check_value(&entry)?;
                    self.entries.push(entry);
                }
            }
        }
        Ok(())
    }

    /// What the files, after `cmdline` options (`Keyword=value`), say for `host` (the name
    /// given to ssh). `local_user` is who runs c1m.
    pub fn resolve(
        &self,
        host: &str,
        cmdline: &[(String, String)],
        local_user: &str,
        home: &Path,
    ) -> Result<Resolved, ConfigError> {
        let mut first: BTreeMap<String, &Entry> = BTreeMap::new();
        let mut identities: Vec<&Entry> = Vec::new();
        let cmd_entries: Vec<Entry> = cmdline
            .iter()
            .map(|(k, v)| Entry {
                keyword: k.to_ascii_lowercase(),
                args: split_words(v),
                conditions: Vec::new(),
                at: Origin {
                    file: "(command line)".into(),
                    line: 1,
                    col: 1,
                },
            })
            .collect();
        for e in &cmd_entries {
            if !KNOWN.contains(&e.keyword.as_str()) {
                return Err(e
                    .at
                    .err(format!("bad configuration option `{}`", e.keyword)));
            }
            check_value(e)?;
        }
        for e in cmd_entries.iter().chain(self.entries.iter()) {
            let user = first
                .get("user")
                .and_then(|u| u.args.first())
                .map_or(local_user, String::as_str);
            if !e
                .conditions
                .iter()
                .all(|c| holds(c, host, user, local_user))
            {
                continue;
            }
            if e.keyword == "identityfile" {
                identities.push(e);
            } else {
                first.entry(e.keyword.clone()).or_insert(e);
            }
        }
        let arg = |k: &str| {
            first
                .get(k)
                .and_then(|e| e.args.first())
                .map(String::as_str)
        };
        let mut r = Resolved {
            hostname: arg("hostname").map(|h| h.replace("%h", host).replace("%%", "%")),
            user: arg("user").map(str::to_string),
            port: arg("port").and_then(|p| p.parse().ok()),
            ..Resolved::default()
        };
        r.identities_only = arg("identitiesonly").map(|v| v.eq_ignore_ascii_case("yes"));
        r.connect_timeout = arg("connecttimeout").and_then(|v| v.parse().ok());
        r.strict = arg("stricthostkeychecking").map(|v| match v.to_ascii_lowercase().as_str() {
            "accept-new" | "no" | "off" => Strict::AcceptNew,
            _ => Strict::Yes,
        });
        let hostname = r.hostname.clone().unwrap_or_else(|| host.to_string());
        let remote_user = r.user.clone().unwrap_or_else(|| local_user.to_string());
        let port = r.port.unwrap_or(22);
        let tokens =
            |s: &str| expand_tokens(s, &hostname, host, &remote_user, local_user, port, home);
        for e in identities {
            for a in &e.args {
                if !a.eq_ignore_ascii_case("none") {
                    r.identity_files.push(PathBuf::from(tokens(a)));
                }
            }
        }
        if let Some(e) = first.get("userknownhostsfile") {
            r.known_hosts_files = Some(
                if e.args.len() == 1 && e.args[0].eq_ignore_ascii_case("none") {
                    Vec::new()
                } else {
                    e.args.iter().map(|a| PathBuf::from(tokens(a))).collect()
                },
            );
        }
        if let Some(e) = first.get("proxyjump") {
            r.proxy_jump = Some(parse_jump(&e.args.join(" ")).map_err(|m| e.at.err(m))?);
        }
        if let Some(e) = first.get("proxycommand") {
            let cmd = e.args.join(" ");
            if !cmd.eq_ignore_ascii_case("none") {
                r.proxy_command = Some((cmd, e.at.clone()));
            }
        }
        Ok(r)
    }
}

/// Splits a line into keyword and arguments (with the column of each), as OpenSSH does:
/// `Keyword value`, `Keyword=value`, double quotes group, `#` after whitespace starts a comment.
fn split_line(raw: &str) -> Option<(String, Vec<String>, Vec<usize>)> {
    let line = raw.trim_end_matches('\r');
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mut words = Vec::new();
    let mut cols = Vec::new();
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let (_, c) = chars[i];
        if c.is_whitespace() || (c == '=' && !first && words.len() == 1 && cols.len() == 1) {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let col = line[..chars[i].0].chars().count() + 1;
        let mut word = String::new();
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i].1 != '"' {
                word.push(chars[i].1);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && !chars[i].1.is_whitespace() {
                if first && chars[i].1 == '=' {
                    break;
                }
                word.push(chars[i].1);
                i += 1;
            }
        }
        first = false;
        words.push(word);
        cols.push(col);
    }
    if words.is_empty() {
        return None;
    }
    let keyword = words.remove(0);
    Some((keyword, words, cols))
}

/// Arguments of a `-o Keyword=value` value.
fn split_words(v: &str) -> Vec<String> {
    split_line(&format!("x {v}"))
        .map(|(_, w, _)| w)
        .unwrap_or_default()
}

fn parse_match(
    args: &[String],
    at: &dyn Fn(usize) -> Origin,
) -> Result<Vec<Criterion>, ConfigError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let word = args[i].to_ascii_lowercase();
        let (negated, name) = match word.strip_prefix('!') {
            Some(n) => (true, n.to_string()),
            None => (false, word.clone()),
        };
        let mut value = || {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| at(i).err(format!("Match {name}: missing argument")))
        };
        let kind = match name.as_str() {
            "all" => CriterionKind::All,
            "host" => CriterionKind::Host(value()?),
            "originalhost" => CriterionKind::OriginalHost(value()?),
            "user" => CriterionKind::User(value()?),
            "localuser" => CriterionKind::LocalUser(value()?),
            "exec" | "canonical" | "final" | "localnetwork" | "tagged" => {
                return Err(at(i + 1).err(format!(
                    "Match {name}: c1m cannot evaluate this criterion; use Host blocks or give the settings in the inventory"
                )))
            }
            other => return Err(at(i + 1).err(format!("Match: unknown criterion `{other}`"))),
        };
        out.push(Criterion { negated, kind });
        i += 1;
    }
    if out.is_empty() {
        return Err(at(0).err("Match without criteria"));
    }
    Ok(out)
}

fn holds(c: &Condition, host: &str, user: &str, local_user: &str) -> bool {
    match c {
        Condition::Host(patterns) => {
            let mut any = false;
            for p in patterns {
                if let Some(neg) = p.strip_prefix('!') {
                    if wildcard(neg, host) {
                        return false;
                    }
                } else if wildcard(p, host) {
                    any = true;
                }
            }
            any
        }
        Condition::Match(criteria) => criteria.iter().all(|cr| {
            let m = match &cr.kind {
                CriterionKind::All => true,
                CriterionKind::Host(list) | CriterionKind::OriginalHost(list) => {
                    pattern_list(list, host)
                }
                CriterionKind::User(list) => pattern_list(list, user),
                CriterionKind::LocalUser(list) => pattern_list(list, local_user),
            };
            m != cr.negated
        }),
    }
}

/// A comma-separated pattern list with `!` negations (`Match host a*,!ab`).
fn pattern_list(list: &str, s: &str) -> bool {
    let mut any = false;
    for p in list.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if wildcard(neg, s) {
                return false;
            }
        } else if wildcard(p, s) {
            any = true;
        }
    }
    any
}

/// OpenSSH's `match_pattern`: `*` any run, `?` one character, case-insensitive for hosts.
pub fn wildcard(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let s: Vec<char> = s.to_ascii_lowercase().chars().collect();
    matches(&p, &s)
}

fn matches(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// `ProxyJump` text: `none`, or `[user@]host[:port]` hops separated by commas (also
/// `ssh://[user@]host[:port]`).
pub fn parse_jump(text: &str) -> Result<ProxyJump, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(ProxyJump::None);
    }
    let mut hops = Vec::new();
    for hop in text.split(',').map(str::trim) {
        let spec = hop.strip_prefix("ssh://").unwrap_or(hop);
        if spec.is_empty() {
            return Err(format!("ProxyJump {text:?}: an empty hop"));
        }
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            _ => (None, spec),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            // [v6addr]:port
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("ProxyJump {hop:?}: unclosed `[`"))?;
            let port = after.strip_prefix(':').map(|p| p.parse::<u16>());
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p.parse::<u16>())),
                _ => (rest.to_string(), None),
            }
        };
        let port = match port {
            None => None,
            Some(Ok(p)) if p > 0 => Some(p),
            Some(_) => return Err(format!("ProxyJump {hop:?}: bad port")),
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace()) {
            return Err(format!("ProxyJump {hop:?}: bad host"));
        }
        hops.push(Jump { user, host, port });
    }
    Ok(ProxyJump::Hops(hops))
}

/// Values c1m uses are checked where they are written.
fn check_value(e: &Entry) -> Result<(), ConfigError> {
    let a = &e.args[0];
    let ok = match e.keyword.as_str() {
        "port" => a.parse::<u16>().is_ok_and(|p| p > 0),
        "identitiesonly" => matches!(a.to_ascii_lowercase().as_str(), "yes" | "no"),
        "stricthostkeychecking" => matches!(
            a.to_ascii_lowercase().as_str(),
            "yes" | "no" | "ask" | "accept-new" | "off"
        ),
        "connecttimeout" => a.parse::<u64>().is_ok_and(|t| t > 0),
        "proxyjump" => {
            return parse_jump(&e.args.join(" "))
                .map(|_| ())
                .map_err(|m| e.at.err(m));
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(e.at.err(format!("{}: bad value {a:?}", e.keyword)))
    }
}

fn expand_home(p: &str, home: &Path) -> String {
    match p.strip_prefix("~/") {
        Some(rest) => home.join(rest).display().to_string(),
        None if p == "~" => home.display().to_string(),
        None => p.to_string(),
    }
}

/// OpenSSH's `%` tokens in paths (`%d` home, `%h` host name, `%n` the name given, `%r` remote
/// user, `%u` local user, `%p` port, `%%`) and a leading `~`.
fn expand_tokens(
    s: &str,
    hostname: &str,
    original: &str,
    remote_user: &str,
    local_user: &str,
    port: u16,
    home: &Path,
) -> String {
    let s = expand_home(s, home);
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&home.display().to_string()),
            Some('h') => out.push_str(hostname),
            Some('n') => out.push_str(original),
            Some('r') => out.push_str(remote_user),
            Some('u') => out.push_str(local_user),
            Some('p') => out.push_str(&port.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Paths matching a glob with `*` and `?` in its last component (what `Include` files use).
fn glob_paths(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = Path::new(pattern);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err(format!(
            "Include {pattern}: c1m matches wildcards in the file name only"
        ));
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| wildcard_exact(&name, &n.to_string_lossy()))
        })
        .collect())
}

/// Case-sensitive wildcard match (file names).
fn wildcard_exact(pattern: &str, s: &str) -> bool {
    matches(
        &pattern.chars().collect::<Vec<_>>(),
        &s.chars().collect::<Vec<_>>(),
    )
}

/// Every keyword of OpenSSH 9's ssh_config(5) (lower case), so a typo is an error as in `ssh`
/// while real configurations load whatever else they set.
const KNOWN: &[&str] = &[
    "addkeystoagent",
    "addressfamily",
    "batchmode",
    "bindaddress",
    "bindinterface",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizehostname",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "casignaturealgorithms",
    "certificatefile",
    "channeltimeout",
    "checkhostip",
    "ciphers",
    "clearallforwardings",
    "compression",
    "connectionattempts",
    "connecttimeout",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "dynamicforward",
    "enableescapecommandline",
    "enablesshkeysign",
    "escapechar",
    "exitonforwardfailure",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "globalknownhostsfile",
    "gssapiauthentication",
    "gssapidelegatecredentials",
    "gssapikeyexchange",
    "gssapiclientidentity",
    "gssapiserveridentity",
    "gssapirenewalforcesrekey",
    "gssapitrustdns",
    "gssapikexalgorithms",
    "hashknownhosts",
    "hostbasedacceptedalgorithms",
    "hostbasedkeytypes",
    "hostbasedauthentication",
    "hostkeyalgorithms",
    "hostkeyalias",
    "hostname",
    "identitiesonly",
    "identityagent",
    "identityfile",
    "ignoreunknown",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "kexalgorithms",
    "knownhostscommand",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "macs",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "obscurekeystroketiming",
    "passwordauthentication",
    "permitlocalcommand",
    "permitremoteopen",
    "pkcs11provider",
    "port",
    "preferredauthentications",
    "protocol",
    "proxycommand",
    "proxyjump",
    "proxyusefdpass",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "rekeylimit",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "requiredrsasize",
    "revokedhostkeys",
    "securitykeyprovider",
    "sendenv",
    "serveralivecountmax",
    "serveraliveinterval",
    "sessiontype",
    "setenv",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "stricthostkeychecking",
    "syslogfacility",
    "tag",
    "tcpkeepalive",
    "tunnel",
    "tunneldevice",
    "updatehostkeys",
    "user",
    "userknownhostsfile",
    "verifyhostkeydns",
    "visualhostkey",
    "xauthlocation",
    "useroaming",
    "challengeresponseauthentication",
    "rsaauthentication",
    "rhostsrsaauthentication",
    "usekeychain",
    "usedns",
];

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# user config
Host bastion
    HostName 10.0.0.1
    User jump
    Port 2222
    IdentityFile ~/.ssh/bastion_key

Host cli* !cli9
  ProxyJump bastion
  User=root
  IdentityFile %d/.ssh/id_%h
  StrictHostKeyChecking accept-new

Match host srv*,!srv-old user root
  ProxyJump a@hop1:2200,hop2

Host *
  User fallback
  UserKnownHostsFile ~/.ssh/kh \"~/.ssh/other kh\"
  IdentitiesOnly yes
";

    fn files() -> SshConfigFiles {
        SshConfigFiles::parse("cfg", CONFIG, Path::new("/home/u")).unwrap()
    }

    #[test]
    fn host_blocks_first_value_wins_and_tokens() {
        let home = Path::new("/home/u");
        let r = files().resolve("cli1", &[], "me", home).unwrap();
        assert_eq!(r.user.as_deref(), Some("root"));
        assert_eq!(
            r.proxy_jump,
            Some(ProxyJump::Hops(vec![Jump {
                user: None,
                host: "bastion".into(),
                port: None
            }]))
        );
        assert_eq!(r.identity_files, [PathBuf::from("/home/u/.ssh/id_cli1")]);
        assert_eq!(r.strict, Some(Strict::AcceptNew));
        assert_eq!(r.identities_only, Some(true));
        assert_eq!(
            r.known_hosts_files,
            Some(vec![
                PathBuf::from("/home/u/.ssh/kh"),
                PathBuf::from("/home/u/.ssh/other kh")
            ])
        );
        let b = files().resolve("bastion", &[], "me", home).unwrap();
        assert_eq!(
            (b.hostname.as_deref(), b.user.as_deref(), b.port),
            (Some("10.0.0.1"), Some("jump"), Some(2222))
        );
        assert_eq!(b.proxy_jump, None);
        let neg = files().resolve("cli9", &[], "me", home).unwrap();
        assert_eq!(neg.user.as_deref(), Some("fallback"));
        assert_eq!(neg.proxy_jump, None);
        // Command-line options come first.
        let cmd = files()
            .resolve(
                "cli1",
                &[
                    ("ProxyJump".into(), "none".into()),
                    ("User".into(), "x".into()),
                ],
                "me",
                home,
            )
            .unwrap();
        assert_eq!(cmd.proxy_jump, Some(ProxyJump::None));
        assert_eq!(cmd.user.as_deref(), Some("x"));
    }

    #[test]
    fn match_blocks_see_the_user_so_far() {
        let home = Path::new("/home/u");
        let srv = files()
            .resolve("srv1", &[("User".into(), "root".into())], "me", home)
            .unwrap();
        assert_eq!(
            srv.proxy_jump,
            Some(ProxyJump::Hops(vec![
                Jump {
                    user: Some("a".into()),
                    host: "hop1".into(),
                    port: Some(2200)
                },
                Jump {
                    user: None,
                    host: "hop2".into(),
                    port: None
                },
            ]))
        );
        // `User fallback` (Host *) comes after the Match: the user then is the local one.
        let other = files().resolve("srv1", &[], "me", home).unwrap();
        assert_eq!(other.proxy_jump, None);
        let old = files()
            .resolve("srv-old", &[("User".into(), "root".into())], "me", home)
            .unwrap();
        assert_eq!(old.proxy_jump, None);
    }

    #[test]
    fn malformed_configs_name_file_line_col() {
        for (text, at, needle) in [
            (
                "Host a\n  HostNme x\n",
                "c:2:3:",
                "bad configuration option `HostNme`",
            ),
            ("Host a\n  Port eighty\n", "c:2:8:", "port: bad value"),
            ("Match exec \"true\"\n", "c:1:7:", "cannot evaluate"),
            ("Host a\n  ProxyJump b:99999\n", "c:2:13:", "bad port"),
            ("Host\n", "c:1:1:", "without a pattern"),
            (
                "Host a\n  StrictHostKeyChecking maybe\n",
                "c:2:25:",
                "bad value",
            ),
        ] {
            let e = SshConfigFiles::parse("c", text, Path::new("/h"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(at), "{text:?}: want {at}, got {e}");
            assert!(e.contains(needle), "{text:?}: want {needle:?} in {e}");
        }
    }

    #[test]
    fn wildcards_and_jumps() {
        assert!(wildcard("cli*", "CLI1.example"));
        assert!(wildcard("h?st", "host"));
        assert!(!wildcard("h?st", "hoost"));
        assert!(wildcard("*", ""));
        assert_eq!(parse_jump("none").unwrap(), ProxyJump::None);
        assert_eq!(
            parse_jump("ssh://u@[fe80::1]:22").unwrap(),
            ProxyJump::Hops(vec![Jump {
                user: Some("u".into()),
                host: "fe80::1".into(),
                port: Some(22)
            }])
        );
        assert!(parse_jump("a,,b").is_err());
    }
}
