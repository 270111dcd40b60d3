//! nginx's own ceiling below its open-file limit: a worker closes idle keep-alive connections
//! once fewer than 1/16 of its `worker_connections` are free ("worker_connections are not
//! enough, reusing connections"). This module reads `worker_connections` from the running
//! nginx's configuration and says how many connections each worker holds before it starts
//! closing them. It does not measure the process tree (`server_tree`) nor judge the run
//! (`server`).
//!
//! The rule, from nginx's `src/core/ngx_connection.c` (since 1.19.2, "Core: reusing connections
//! in advance"): `ngx_get_connection` first calls `ngx_drain_connections`, which returns at once
//! while `free_connection_n > connection_n / 16` and otherwise closes reusable (idle keep-alive)
//! connections. So a worker never has fewer than `worker_connections / 16` (integer division)
//! free connection objects once it has idle ones to close, and every connection object in use
//! that is not a client's — its listening sockets, its channel to the master — comes out of the
//! same `worker_connections`.

use c1m_transport::{shell_quote, Transport};

/// `worker_connections` when the configuration does not set it (nginx's `DEFAULT_CONNECTIONS`
/// in `src/event/ngx_event.c`).
pub const DEFAULT_WORKER_CONNECTIONS: u64 = 512;

/// nginx's `worker_connections`, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NginxConf {
    pub worker_connections: u64,
    /// `nginx -T -c FILE`, or the file itself when the dump failed.
    pub source: String,
}

/// Connections a worker holds before nginx starts closing idle keep-alive ones: all its
/// connection objects less the 1/16 it keeps free, less `own` (the worker's descriptors that
/// are not clients': an upper bound of its listeners and channel, which hold connection
/// objects too).
pub fn held_per_worker(worker_connections: u64, own: u64) -> u64 {
    (worker_connections - worker_connections / 16).saturating_sub(own)
}

/// The `worker_connections` value of a configuration text (the last one set; `#` comments
/// skipped); `None` when it is not set.
pub fn worker_connections(conf: &str) -> Option<u64> {
    let mut found = None;
    for line in conf.lines() {
        let code = line.split('#').next().unwrap_or("");
        let mut words = code
            .split(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}')
            .filter(|w| !w.is_empty());
        while let Some(w) = words.next() {
            if w == "worker_connections" {
                if let Some(n) = words.next().and_then(|n| n.parse::<u64>().ok()) {
                    found = Some(n);
                }
            }
        }
    }
    found
}

/// The flags of a master's command line that say where its configuration and files are:
/// `-c FILE`, `-p PREFIX`, `-e ERROR_LOG`, in that order. nginx rewrites its title into one
/// string ("nginx: master process /usr/sbin/nginx -c /etc/x.conf -g daemon off;"), so the
/// words are split at spaces: a path with a space in it is not found (the default is used).
fn conf_args(cmdline: &[u8]) -> Vec<(&'static str, String)> {
    let text = String::from_utf8_lossy(cmdline).replace('\0', " ");
    let words: Vec<&str> = text.split_whitespace().collect();
    ["-c", "-p", "-e"]
        .into_iter()
        .filter_map(|flag| {
            let w = words.windows(2).find(|w| w[0] == flag)?;
            Some((flag, w[1].to_string()))
        })
        .collect()
}

/// Reads the `worker_connections` of the nginx whose master is `master`: its own binary's
/// configuration dump (`-T`, which follows includes) with the master's `-c`/`-p`, else the
/// `-c` file as it is. Unset: nginx's default.
pub fn read(t: &mut dyn Transport, master: u32) -> Result<NginxConf, String> {
    let cmdline = t
        .read_file(&format!("/proc/{master}/cmdline"))
        .map_err(|e| format!("reading nginx's command line: {e}"))?
        .ok_or_else(|| format!("no process {master}"))?;
    let flags = conf_args(&cmdline);
    let mut args = String::new();
    for (flag, v) in &flags {
        args.push_str(&format!(" {flag} {}", shell_quote(v)));
    }
    // The binary the master runs, even if the one on PATH differs; -T tests the configuration
    // and prints it, binding nothing.
    let cmd = format!("\"$(readlink /proc/{master}/exe)\" -q -T{args} 2>/dev/null");
    if let Ok(out) = t.exec(&cmd, None) {
        if out.success() {
            return Ok(NginxConf {
                worker_connections: worker_connections(&out.stdout_str())
                    .unwrap_or(DEFAULT_WORKER_CONNECTIONS),
                source: format!("nginx -T{args}"),
            });
        }
    }
    let path = flags
        .into_iter()
        .find_map(|(flag, v)| (flag == "-c").then_some(v))
        .ok_or("nginx -T failed and its command line names no -c file")?;
    let text = t
        .read_file(&path)
        .map_err(|e| format!("reading {path}: {e}"))?
        .ok_or_else(|| format!("{path} does not exist"))?;
    Ok(NginxConf {
        worker_connections: worker_connections(&String::from_utf8_lossy(&text))
            .unwrap_or(DEFAULT_WORKER_CONNECTIONS),
        source: path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_connections_is_read_past_comments_and_blocks() {
        let conf = "# configuration file /etc/nginx/nginx.conf:\n\
                    # worker_connections 9;\nevents { worker_connections  1024; multi_accept on; }\n\
                    http { keepalive_timeout 300; }\n";
        assert_eq!(worker_connections(conf), Some(1024));
        assert_eq!(
            worker_connections("events {\n    worker_connections 768;\n}\n"),
            Some(768)
        );
        assert_eq!(worker_connections("events { }"), None);
        assert_eq!(worker_connections("events { worker_connections x; }"), None);
    }

    #[test]
    fn a_worker_keeps_a_sixteenth_free() {
        // 1024 connection objects, 64 kept free, 3 its own: 957 clients.
        assert_eq!(held_per_worker(1024, 3), 957);
        assert_eq!(held_per_worker(512, 0), 480);
        assert_eq!(held_per_worker(10, 20), 0);
    }

    #[test]
    fn the_config_file_comes_from_the_master_title() {
        let title = b"nginx: master process /usr/sbin/nginx -c /tmp/t/nginx.conf -g daemon off;";
        assert_eq!(conf_args(title), [("-c", "/tmp/t/nginx.conf".to_string())]);
        let argv = b"/usr/sbin/nginx\0-p\0/srv/n\0-e\0/srv/n/e.log\0-c\0conf/n.conf\0";
        assert_eq!(
            conf_args(argv),
            [
                ("-c", "conf/n.conf".to_string()),
                ("-p", "/srv/n".into()),
                ("-e", "/srv/n/e.log".into())
            ]
        );
        assert!(conf_args(b"nginx: worker process").is_empty());
    }
}
