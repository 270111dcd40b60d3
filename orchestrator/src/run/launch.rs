//! The command lines that start `c1m-server` and `c1m-client` on a host: what the run asks of
//! each binary, rendered once here for every host, local or remote.

use super::local_env::LocalEnv;
use super::msg::Role;
use super::prepare::RunHost;
use super::RunOptions;
use crate::check::loopback;
use c1m_proto::stats::LayoutLine;
use c1m_transport::shell_quote;
use std::net::Ipv4Addr;

/// How often the binaries report during a run: four lines per one-second sample, so every
/// sample is fresh.
pub const STATS_MS: u64 = 250;

/// The shell command that starts `role`'s binary on `h` with `args`. `exec`: the binary takes
/// the shell's place, so the process group sshd (or the binary itself) makes is the binary's.
pub fn command(h: &RunHost, role: Role, args: &[String], env: &LocalEnv) -> String {
    let bin = shell_quote(&format!("{}/{}", h.bin_dir, role.binary()));
    let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let cmd = format!("{bin} {}", args.join(" "));
    if h.is_local() {
        format!("exec {}", env.wrap(&cmd))
    } else {
        format!("exec {cmd}")
    }
}

/// The server's arguments. It listens on the target address when that is loopback (nothing
/// else should reach a test on this machine), else on every address.
pub fn server_args(opts: &RunOptions, target: Ipv4Addr, env: &LocalEnv) -> Vec<String> {
    let bind = if target.is_loopback() {
        target
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let mut a = vec![
        format!("--bind={bind}"),
        format!("--port={}", opts.first_port),
        format!("--ports={}", opts.port_count),
        format!("--connections={}", opts.connections),
        format!("--interval-ms={STATS_MS}"),
        "--stop-on-eof".into(),
    ];
    if let Some(p) = opts.procs {
        a.push(format!("--procs={p}"));
    }
    if env.steer {
        a.push(format!("--steer-source-base={}", loopback::FIRST_SOURCE));
    }
    if env.fastopen {
        a.push("--fastopen".into());
    }
    a
}

/// A client's arguments. With steering, the client gets one source address per server worker
/// and fills its fd tables one per core at a time (`--staged`), table i from address i.
pub fn client_args(
    opts: &RunOptions,
    h: &RunHost,
    target: Ipv4Addr,
    steered: Option<&LayoutLine>,
    env: &LocalEnv,
) -> Vec<String> {
    let sources = match steered {
        Some(server) => vec![loopback::address_range(
            loopback::FIRST_SOURCE,
            server.threads_per_proc as u32,
        )],
        None => h.source_ips.clone(),
    };
    let mut a = vec![
        "--json".to_string(),
        format!("--target={target}"),
        format!("--port={}", opts.first_port),
        format!("--ports={}", opts.port_count),
        format!("--connections={}", h.share),
        format!("--source-ips={}", sources.join(",")),
        format!("--index-base={}", h.index_base),
        "--hold=forever".into(),
        format!("--interval-ms={STATS_MS}"),
        "--stop-on-eof".into(),
    ];
    if let Some(server) = steered {
        a.push("--staged".into());
        a.push(format!("--threads={}", server.threads_per_proc));
    }
    if let Some(w) = opts.window.or(h.window) {
        a.push(format!("--window={w}"));
    }
    if let Some(r) = opts.rate {
        // Each client's part of the total rate, in proportion to its share.
        let part = (r as u128 * h.share as u128).div_ceil(opts.connections.max(1) as u128);
        a.push(format!("--rate={}", part.max(1)));
    }
    if let Some(c1m_proto::duration::Span(Some(m))) = opts.message_interval {
        a.push(format!("--message-interval={}ms", m.as_millis().max(1)));
    }
    if let Some(p) = opts.procs {
        a.push(format!("--procs={p}"));
    }
    if env.fastopen {
        a.push("--fastopen".into());
    }
    a
}
