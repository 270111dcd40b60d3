//! Apache httpd's own ceiling, far below its open-file limits: with the prefork MPM each child
//! process serves one connection at a time, with the worker MPM each thread does, and the most
//! of either is `MaxRequestWorkers` (bounded by `ServerLimit`, and by `ServerLimit ×
//! ThreadsPerChild` for worker). Connections past it still complete the TCP handshake in the
//! kernel (they wait in the listen queue) but are never answered. This module reads those
//! directives from the running apache's configuration; it does not measure the process tree
//! (`server_tree`) nor judge the run (`server`).
//!
//! The configuration is read the way httpd reads it, as far as these directives go: the file of
//! the master's `-f` (relative to `-d`, the ServerRoot, else the build's default), its
//! `Include`/`IncludeOptional` files (wildcards in the file name), `<IfModule>` by the modules
//! `LoadModule` loaded before it, `<IfDefine>` by the master's `-D` flags and `Define`. Defaults
//! are httpd 2.4's (`server/mpm/prefork/prefork.c`, `server/mpm/worker/worker.c`).

use c1m_transport::{shell_quote, Transport};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// prefork's `DEFAULT_SERVER_LIMIT`, also its default MaxRequestWorkers.
pub const PREFORK_DEFAULT: u64 = 256;
/// worker's and event's `DEFAULT_SERVER_LIMIT` and `DEFAULT_THREADS_PER_CHILD`.
pub const THREADED_SERVER_LIMIT: u64 = 16;
pub const THREADED_THREADS_PER_CHILD: u64 = 25;

/// What bounds the connections apache serves at once, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApacheConf {
    /// `prefork`, `worker` or `event`: the MPM the configuration loads.
    pub mpm: String,
    /// Connections served at once: prefork's child processes, worker's threads.
    pub max_workers: u64,
    /// The directive that sets it, as the fix names it: `MaxRequestWorkers 50`,
    /// `ServerLimit 50`, or `MaxRequestWorkers (default 256)`.
    pub directive: String,
    /// The main configuration file.
    pub source: String,
}

impl ApacheConf {
    /// Whether the MPM serves one connection per process or thread (prefork, worker): event
    /// keeps idle keep-alive connections off its workers, so no such bound applies.
    pub fn per_connection(&self) -> bool {
        matches!(self.mpm.as_str(), "prefork" | "worker")
    }

    /// What serves a connection: `child process` or `worker thread`.
    pub fn unit(&self) -> &'static str {
        if self.mpm == "prefork" {
            "child process"
        } else {
            "worker thread"
        }
    }
}

/// Where configuration files come from: the server host, or a map in the tests.
pub trait Files {
    /// A file's text; `None` when it does not exist.
    fn read(&mut self, path: &str) -> Result<Option<String>, String>;
    /// The names in a directory.
    fn list(&mut self, dir: &str) -> Result<Vec<String>, String>;
}

struct Remote<'a>(&'a mut dyn Transport);

impl Files for Remote<'_> {
    fn read(&mut self, path: &str) -> Result<Option<String>, String> {
        self.0
            .read_file(path)
            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(|e| format!("reading {path}: {e}"))
    }
    fn list(&mut self, dir: &str) -> Result<Vec<String>, String> {
        // The directory is quoted; the pattern is matched here, never by the shell, so a
        // configuration's wildcard cannot run anything.
        let out = self
            .0
            .exec(&format!("ls -1a -- {}", shell_quote(dir)), None)
            .map_err(|e| format!("listing {dir}: {e}"))?;
        if !out.success() {
            return Err(format!("listing {dir} failed"));
        }
        Ok(out.stdout_str().lines().map(str::to_string).collect())
    }
}

/// The flags of the master's command line that say which configuration it runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub file: Option<String>,
    pub root: Option<String>,
    pub defines: Vec<String>,
}

/// `-f FILE`, `-d ROOT` and `-D NAME` from a command line (NUL-separated, as /proc has it);
/// each also in its attached form (`-DFOREGROUND`).
pub fn flags(cmdline: &[u8]) -> Flags {
    let text = String::from_utf8_lossy(cmdline);
    let words: Vec<&str> = text.split(['\0', ' ']).filter(|w| !w.is_empty()).collect();
    let mut f = Flags::default();
    let mut i = 1;
    while i < words.len() {
        let w = words[i];
        let (flag, attached) = match w.strip_prefix('-') {
            Some(rest) if !rest.is_empty() => rest.split_at(1),
            _ => {
                i += 1;
                continue;
            }
        };
        if !matches!(flag, "f" | "d" | "D") {
            i += 1;
            continue;
        }
        let value = if attached.is_empty() {
            i += 1;
            words.get(i).map(|s| s.to_string())
        } else {
            Some(attached.to_string())
        };
        if let Some(v) = value {
            match flag {
                "f" => f.file = Some(v),
                "d" => f.root = Some(v),
                _ => f.defines.push(v),
            }
        }
        i += 1;
    }
    f
}

/// Modules built into Debian's and Red Hat's httpd (never loaded by `LoadModule`), by
/// identifier and by source file, as `<IfModule>` may name them.
const BUILT_IN: &[&str] = &[
    "core_module",
    "core.c",
    "so_module",
    "mod_so.c",
    "http_module",
    "http_core.c",
    "log_config_module",
    "mod_log_config.c",
    "logio_module",
    "mod_logio.c",
    "version_module",
    "mod_version.c",
    "unixd_module",
    "mod_unixd.c",
    "watchdog_module",
    "mod_watchdog.c",
];

/// Deepest `Include` nesting followed (httpd's own limit is 128; a loop ends here sooner).
const MAX_DEPTH: u32 = 16;

#[derive(Default)]
struct Scan {
    root: String,
    modules: BTreeSet<String>,
    defines: BTreeSet<String>,
    mpm: Option<String>,
    /// MPM directives by lower-case name: the last value set wins, as in httpd.
    values: BTreeMap<String, u64>,
}

impl Scan {
    fn path(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.to_string()
        } else {
            format!("{}/{p}", self.root.trim_end_matches('/'))
        }
    }

    fn condition(&self, section: &str, arg: &str) -> bool {
        let (negate, name) = match arg.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, arg),
        };
        let holds = match section {
            "ifmodule" => self.modules.contains(name) || BUILT_IN.contains(&name),
            "ifdefine" => self.defines.contains(name),
            // <IfVersion>, <IfFile>, <IfDirective>…: assumed to hold; nothing else is a condition.
            _ => return true,
        };
        holds != negate
    }

    fn file(
        &mut self,
        fs: &mut dyn Files,
        path: &str,
        optional: bool,
        depth: u32,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("includes nested deeper than {MAX_DEPTH} at {path}"));
        }
        let text = match fs.read(path) {
            Ok(Some(t)) => t,
            Ok(None) if optional => return Ok(()),
            Ok(None) => return Err(format!("{path} does not exist")),
            Err(_) if optional => return Ok(()),
            Err(e) => return Err(e),
        };
        // A section's conditions, innermost last: the file's lines count while all hold.
        let mut sections: Vec<bool> = Vec::new();
        let mut logical = String::new();
        for raw in text.lines() {
            // A trailing backslash continues the directive on the next line.
            if let Some(part) = raw.strip_suffix('\\') {
                logical.push_str(part);
                logical.push(' ');
                continue;
            }
            logical.push_str(raw);
            let line = std::mem::take(&mut logical);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("</") {
                sections.pop();
                continue;
            }
            if let Some(open) = line.strip_prefix('<') {
                let open = open.trim_end_matches('>');
                let mut w = open.split_whitespace();
                let name = w.next().unwrap_or("").to_ascii_lowercase();
                let arg = w.next().unwrap_or("").trim_matches('"');
                sections.push(self.condition(&name, arg));
                continue;
            }
            if sections.iter().any(|c| !c) {
                continue;
            }
            let words: Vec<&str> = line
                .split_whitespace()
                .map(|w| w.trim_matches('"'))
                .collect();
            let Some((directive, args)) = words.split_first() else {
                continue;
            };
            let directive = directive.to_ascii_lowercase();
            let arg = args.first().copied().unwrap_or("");
            match directive.as_str() {
                "serverroot" => self.root = arg.to_string(),
                "define" => {
                    self.defines.insert(arg.to_string());
                }
                "loadmodule" => self.load(arg, args.get(1).copied().unwrap_or("")),
                "include" | "includeoptional" => {
                    let optional = optional || directive == "includeoptional";
                    for p in self.expand(fs, arg, optional)? {
                        self.file(fs, &p, optional, depth + 1)?;
                    }
                }
                "maxrequestworkers" | "maxclients" | "serverlimit" | "threadsperchild" => {
                    if let Ok(n) = arg.parse::<u64>() {
                        let key = if directive == "maxclients" {
                            "maxrequestworkers".to_string()
                        } else {
                            directive
                        };
                        self.values.insert(key, n);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A loaded module is known by its identifier and its source file (`mpm_prefork_module`,
    /// `mod_mpm_prefork.c`, `prefork.c`); an MPM module says which MPM runs.
    fn load(&mut self, id: &str, path: &str) {
        self.modules.insert(id.to_string());
        let stem = path.rsplit('/').next().unwrap_or(path);
        let stem = stem.strip_suffix(".so").unwrap_or(stem);
        self.modules.insert(format!("{stem}.c"));
        if let Some(mpm) = id
            .strip_prefix("mpm_")
            .and_then(|m| m.strip_suffix("_module"))
        {
            self.modules.insert(format!("{mpm}.c"));
            self.mpm = Some(mpm.to_string());
        }
    }

    /// The files an `Include` names: itself, or those of its directory its file-name pattern
    /// matches, sorted as httpd sorts them.
    fn expand(
        &self,
        fs: &mut dyn Files,
        pattern: &str,
        optional: bool,
    ) -> Result<Vec<String>, String> {
        let path = self.path(pattern);
        let (dir, name) = path.rsplit_once('/').unwrap_or((".", &path));
        if !name.contains(['*', '?', '[']) {
            return Ok(vec![path.clone()]);
        }
        let names = match fs.list(if dir.is_empty() { "/" } else { dir }) {
            Ok(n) => n,
            Err(_) if optional => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let mut found: Vec<String> = names
            .into_iter()
            .filter(|n| n != "." && n != "..")
            .filter(|n| glob(name, n))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        found.sort();
        Ok(found)
    }
}

/// `*` and `?` matching as httpd's includes use it: a leading dot is matched only by a dot.
pub fn glob(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|k| go(rest, &n[k..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// The ServerRoot and main file a build uses when the command line names neither: Debian's
/// `apache2`, Red Hat's `httpd`.
fn defaults(program: &str) -> (&'static str, &'static str) {
    if program == "httpd" {
        ("/etc/httpd", "conf/httpd.conf")
    } else {
        ("/etc/apache2", "apache2.conf")
    }
}

/// Reads the configuration `flags` name and says what bounds the connections served at once.
pub fn read_with(fs: &mut dyn Files, program: &str, flags: &Flags) -> Result<ApacheConf, String> {
    let (root, file) = defaults(program);
    let mut scan = Scan {
        root: flags.root.clone().unwrap_or_else(|| root.into()),
        defines: flags.defines.iter().cloned().collect(),
        ..Default::default()
    };
    let main = scan.path(flags.file.as_deref().unwrap_or(file));
    scan.file(fs, &main, false, 0)?;
    let mpm = scan
        .mpm
        .clone()
        .ok_or_else(|| format!("{main} loads no MPM (LoadModule mpm_…_module)"))?;
    let v = |k: &str| scan.values.get(k).copied();
    let (max_workers, directive) = match mpm.as_str() {
        "prefork" => {
            let limit = v("serverlimit").unwrap_or(PREFORK_DEFAULT);
            match v("maxrequestworkers") {
                // httpd lowers MaxRequestWorkers to ServerLimit.
                Some(n) if n > limit => (limit, named("ServerLimit", v("serverlimit"), limit)),
                Some(n) => (n, format!("MaxRequestWorkers {n}")),
                None => (
                    limit.min(PREFORK_DEFAULT),
                    named("MaxRequestWorkers", None, limit.min(PREFORK_DEFAULT)),
                ),
            }
        }
        _ => {
            let threads = v("threadsperchild")
                .unwrap_or(THREADED_THREADS_PER_CHILD)
                .max(1);
            let limit = v("serverlimit").unwrap_or(THREADED_SERVER_LIMIT) * threads;
            match v("maxrequestworkers") {
                Some(n) if n > limit => (limit, format!("ServerLimit × ThreadsPerChild {limit}")),
                // httpd rounds MaxRequestWorkers down to whole processes.
                Some(n) => (
                    (n / threads).max(1) * threads,
                    format!("MaxRequestWorkers {n}"),
                ),
                None => (limit, named("MaxRequestWorkers", None, limit)),
            }
        }
    };
    Ok(ApacheConf {
        mpm,
        max_workers,
        directive,
        source: main,
    })
}

/// `ServerLimit 50`, or `ServerLimit (default 256)` when the configuration does not set it.
fn named(directive: &str, set: Option<u64>, value: u64) -> String {
    match set {
        Some(n) => format!("{directive} {n}"),
        None => format!("{directive} (default {value})"),
    }
}

/// Reads what bounds the apache whose master is `master` (its program `apache2` or `httpd`).
pub fn read(t: &mut dyn Transport, master: u32, program: &str) -> Result<ApacheConf, String> {
    let cmdline = t
        .read_file(&format!("/proc/{master}/cmdline"))
        .map_err(|e| format!("reading {program}'s command line: {e}"))?
        .ok_or_else(|| format!("no process {master}"))?;
    read_with(&mut Remote(t), program, &flags(&cmdline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<String, String>);

    impl Files for Map {
        fn read(&mut self, path: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(path).cloned())
        }
        fn list(&mut self, dir: &str) -> Result<Vec<String>, String> {
            let prefix = format!("{dir}/");
            Ok(self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|k| !k.contains('/'))
                .map(str::to_string)
                .collect())
        }
    }

    fn files(list: &[(&str, &str)]) -> Map {
        Map(list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    #[test]
    fn the_command_line_names_the_file_root_and_defines() {
        let f =
            flags(b"/usr/sbin/apache2\0-DFOREGROUND\0-f\0/tmp/a/apache2.conf\0-d\0/srv\0-D\0X\0");
        assert_eq!(
            f,
            Flags {
                file: Some("/tmp/a/apache2.conf".into()),
                root: Some("/srv".into()),
                defines: vec!["FOREGROUND".into(), "X".into()],
            }
        );
        assert_eq!(flags(b"/usr/sbin/apache2\0-k\0start\0"), Flags::default());
    }

    #[test]
    fn debians_default_layout_through_its_includes() {
        // /etc/apache2 as Debian ships it, prefork enabled: the limit sits in mods-enabled,
        // under <IfModule mpm_prefork_module>; event's own file is not enabled.
        let mut fs = files(&[
            (
                "/etc/apache2/apache2.conf",
                "# comment MaxRequestWorkers 9\nIncludeOptional mods-enabled/*.load\n\
                 IncludeOptional mods-enabled/*.conf\nInclude ports.conf\n\
                 IncludeOptional conf-enabled/*.conf\n",
            ),
            (
                "/etc/apache2/mods-enabled/mpm_prefork.load",
                "LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so\n",
            ),
            (
                "/etc/apache2/mods-enabled/mpm_prefork.conf",
                "<IfModule mpm_prefork_module>\n\tStartServers 5\n\tMaxRequestWorkers\t  150\n\
                 \tMaxConnectionsPerChild   0\n</IfModule>\n",
            ),
            (
                "/etc/apache2/mods-enabled/.hidden.conf",
                "MaxRequestWorkers 1\n",
            ),
            (
                "/etc/apache2/mods-available/mpm_event.conf",
                "<IfModule mpm_event_module>\nMaxRequestWorkers 999\n</IfModule>\n",
            ),
            (
                "/etc/apache2/mods-enabled/other.conf",
                "<IfModule mpm_event_module>\n MaxRequestWorkers 999\n</IfModule>\n\
                 <IfModule !mpm_event_module>\n<IfDefine !NOPE>\nServerLimit 200\n</IfDefine>\n</IfModule>\n",
            ),
            ("/etc/apache2/ports.conf", "Listen 80\n"),
        ]);
        let c = read_with(&mut fs, "apache2", &Flags::default()).unwrap();
        assert_eq!(
            (c.mpm.as_str(), c.max_workers, c.directive.as_str()),
            ("prefork", 150, "MaxRequestWorkers 150")
        );
        assert_eq!(c.source, "/etc/apache2/apache2.conf");
        assert!(c.per_connection());
    }

    #[test]
    fn server_limit_caps_max_request_workers_and_defaults_apply() {
        let load = "LoadModule mpm_prefork_module modules/mod_mpm_prefork.so\n";
        let conf = |extra: &str| {
            files(&[(
                "/etc/httpd/conf/httpd.conf",
                format!("{load}{extra}").as_str(),
            )])
        };
        let read = |mut m: Map| read_with(&mut m, "httpd", &Flags::default()).unwrap();
        let c = read(conf("MaxRequestWorkers 500\nServerLimit 300\n"));
        assert_eq!(
            (c.max_workers, c.directive.as_str()),
            (300, "ServerLimit 300")
        );
        let c = read(conf("MaxRequestWorkers 500\n"));
        assert_eq!(
            (c.max_workers, c.directive.as_str()),
            (256, "ServerLimit (default 256)")
        );
        let c = read(conf(""));
        assert_eq!(
            (c.max_workers, c.directive.as_str()),
            (256, "MaxRequestWorkers (default 256)")
        );
        // The old name still counts.
        assert_eq!(read(conf("MaxClients 40\n")).max_workers, 40);
        // A relative -f is under the ServerRoot -d names; -D decides <IfDefine>.
        let mut fs = files(&[(
            "/srv/h/my.conf",
            "LoadModule mpm_worker_module m/mod_mpm_worker.so\n<IfDefine BIG>\nMaxRequestWorkers 130\n</IfDefine>\nThreadsPerChild 25\n",
        )]);
        let f = Flags {
            file: Some("my.conf".into()),
            root: Some("/srv/h".into()),
            defines: vec!["BIG".into()],
        };
        let c = read_with(&mut fs, "apache2", &f).unwrap();
        // Whole processes of 25 threads.
        assert_eq!(
            (c.mpm.as_str(), c.max_workers, c.unit()),
            ("worker", 125, "worker thread")
        );
    }

    #[test]
    fn what_cannot_be_read_is_an_error() {
        let mut none = files(&[]);
        assert!(read_with(&mut none, "apache2", &Flags::default())
            .unwrap_err()
            .contains("/etc/apache2/apache2.conf does not exist"));
        let mut no_mpm = files(&[("/etc/apache2/apache2.conf", "Include missing.conf\n")]);
        assert!(read_with(&mut no_mpm, "apache2", &Flags::default()).is_err());
        let mut looped = files(&[("/etc/apache2/apache2.conf", "Include apache2.conf\n")]);
        assert!(read_with(&mut looped, "apache2", &Flags::default())
            .unwrap_err()
            .contains("nested deeper"));
        let mut event = files(&[(
            "/etc/apache2/apache2.conf",
            "LoadModule mpm_event_module x/mod_mpm_event.so\n",
        )]);
        let c = read_with(&mut event, "apache2", &Flags::default()).unwrap();
        assert!(!c.per_connection());
    }

    #[test]
    fn globs_match_as_httpd_includes_do() {
        assert!(glob("*.conf", "mpm_prefork.conf"));
        assert!(!glob("*.conf", "mpm_prefork.load"));
        assert!(!glob("*.conf", ".x.conf"));
        assert!(glob("mpm_?????.conf", "mpm_event.conf"));
    }
}
