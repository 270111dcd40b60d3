//! HAProxy's own ceiling: in TCP mode every client connection it holds has a second descriptor,
//! its connection to the backend, so its open-file limit holds half as many clients as
//! descriptors; and its global `maxconn` (or `-n`) stops it accepting sooner when set lower
//! (haproxy sizes its RLIMIT_NOFILE from maxconn when it may, and maxconn from RLIMIT_NOFILE when
//! it is not set: either way about half the descriptors). This module reads maxconn from the
//! running haproxy's command line and configuration; it does not measure the process tree
//! (`server_tree`) nor judge the run (`server`).

use c1m_transport::Transport;
use serde::Serialize;

/// Descriptors haproxy holds per client connection it proxies: the client's and the backend's.
pub const FDS_PER_CONNECTION: u64 = 2;

/// haproxy's global maxconn, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaproxyConf {
    /// `None`: not set (haproxy derives it from its open-file limit).
    pub maxconn: Option<u64>,
    /// `-n` on the command line, or the `-f` files.
    pub source: String,
}

/// Section keywords of haproxy's configuration: a line starting with one opens a section.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "log-forward",
    "crt-store",
    "traces",
];

/// The global section's `maxconn` of a configuration text (the last one set); `None` when the
/// global section does not set it.
pub fn global_maxconn(conf: &str) -> Option<u64> {
    let mut in_global = false;
    let mut found = None;
    for line in conf.lines() {
        let code = line.split('#').next().unwrap_or("");
        let mut words = code.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if SECTIONS.contains(&first) {
            in_global = first == "global";
            continue;
        }
        if in_global && first == "maxconn" {
            if let Some(n) = words.next().and_then(|n| n.parse::<u64>().ok()) {
                found = Some(n);
            }
        }
    }
    found
}

/// `-f FILE` (each of them) and `-n MAXCONN` from a command line (NUL-separated).
fn args(cmdline: &[u8]) -> (Vec<String>, Option<u64>) {
    let text = String::from_utf8_lossy(cmdline);
    let words: Vec<&str> = text.split('\0').filter(|w| !w.is_empty()).collect();
    let mut files = Vec::new();
    let mut n = None;
    for w in words.windows(2) {
        match w[0] {
            "-f" => files.push(w[1].to_string()),
            "-n" => n = w[1].parse().ok(),
            _ => {}
        }
    }
    (files, n)
}

/// Reads the maxconn of the haproxy whose first process is `master`: `-n` when the command line
/// gives it (it overrides the configuration), else the last global maxconn of its `-f` files
/// (Debian's /etc/haproxy/haproxy.cfg when it names none). A `-f` directory is not read.
pub fn read(t: &mut dyn Transport, master: u32) -> Result<HaproxyConf, String> {
    let cmdline = t
        .read_file(&format!("/proc/{master}/cmdline"))
        .map_err(|e| format!("reading haproxy's command line: {e}"))?
        .ok_or_else(|| format!("no process {master}"))?;
    let (mut files, n) = args(&cmdline);
    if let Some(n) = n {
        return Ok(HaproxyConf {
            maxconn: Some(n),
            source: "-n on its command line".into(),
        });
    }
    if files.is_empty() {
        files.push("/etc/haproxy/haproxy.cfg".into());
    }
    let mut maxconn = None;
    for path in &files {
        let text = t
            .read_file(path)
            .map_err(|e| format!("reading {path}: {e}"))?
            .ok_or_else(|| format!("{path} does not exist"))?;
        // Later files override earlier ones, as haproxy reads them in order.
        if let Some(m) = global_maxconn(&String::from_utf8_lossy(&text)) {
            maxconn = Some(m);
        }
    }
    Ok(HaproxyConf {
        maxconn,
        source: files.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_global_maxconn_counts() {
        let conf = "global\n  maxconn 6000 # the process\n  # maxconn 1\n\ndefaults\n  mode tcp\n  maxconn 10\n\
                    frontend f\n  bind :7000\n  maxconn 20\n";
        assert_eq!(global_maxconn(conf), Some(6000));
        assert_eq!(global_maxconn("defaults\n maxconn 10\n"), None);
        assert_eq!(
            global_maxconn("global\n maxconn 10\nfrontend f\nglobal\n maxconn 30\n"),
            Some(30)
        );
    }

    #[test]
    fn the_command_line_names_files_and_maxconn() {
        let (f, n) =
            args(b"/usr/sbin/haproxy\0-Ws\0-f\0/etc/haproxy/haproxy.cfg\0-p\0/run/h.pid\0");
        assert_eq!((f, n), (vec!["/etc/haproxy/haproxy.cfg".to_string()], None));
        let (f, n) = args(b"haproxy\0-db\0-n\x00500\0-f\0a.cfg\0-f\0b.cfg\0");
        assert_eq!((f.len(), n), (2, Some(500)));
    }
}
