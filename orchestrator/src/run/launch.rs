//! The command lines that start `c1m-server` and `c1m-client` on a host: what the run asks of
//! each binary, rendered once here for every host, local or remote.

use super::local_env::LocalEnv;
use super::msg::Role;
use super::prepare::RunHost;
use super::RunOptions;
use crate::check::loopback;
use c1m_proto::protocol::ProtocolArgs;
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

/// The shell command that starts a server command on `h`: in a session (and so a process
/// group) of its own, which teardown stops as a whole; inside the run's namespace on this
/// machine. The shell first prints its pid ([`super::track::COMMAND_PID`]), then becomes the
/// command (`exec`), so that pid is the group's and the root of the server's process tree.
pub fn server_command(h: &RunHost, cmd: &str, env: &LocalEnv) -> String {
    let inner = format!(
        "setsid -w sh -c {} {}",
        shell_quote(&format!(
            "echo {} $$; exec sh -c \"$0\"",
            super::track::COMMAND_PID
        )),
        shell_quote(cmd)
    );
    if h.is_local() {
        format!("exec {}", env.wrap(&inner))
    } else {
        format!("exec {inner}")
    }
}

/// The protocol flags of `c1m-client`: those that differ from its defaults.
fn protocol_args(p: &ProtocolArgs) -> Vec<String> {
    let d = ProtocolArgs::default();
    let mut a = Vec::new();
    if p.protocol != d.protocol {
        a.push(format!("--protocol={}", p.protocol.name()));
    }
    if p.http_method != d.http_method {
        a.push(format!("--http-method={}", p.http_method));
    }
    if p.path != d.path {
        a.push(format!("--path={}", p.path));
    }
    if let Some(h) = &p.host_header {
        a.push(format!("--host-header={h}"));
    }
    for h in &p.headers {
        a.push(format!("--header={h}"));
    }
    if p.expect != d.expect {
        a.push(format!("--expect={}", p.expect.name()));
    }
    if p.mqtt_keepalive != d.mqtt_keepalive {
        a.push(format!("--mqtt-keepalive={}", p.mqtt_keepalive));
    }
    if p.mqtt_client_id_prefix != d.mqtt_client_id_prefix {
        a.push(format!(
            "--mqtt-client-id-prefix={}",
            p.mqtt_client_id_prefix
        ));
    }
    if let Some(u) = &p.mqtt_username {
        a.push(format!("--mqtt-username={u}"));
    }
    if let Some(pw) = &p.mqtt_password {
        a.push(format!("--mqtt-password={pw}"));
    }
    if p.mqtt_subscribe {
        a.push("--mqtt-subscribe".into());
    }
    if p.mqtt_topic_prefix != d.mqtt_topic_prefix {
        a.push(format!("--mqtt-topic-prefix={}", p.mqtt_topic_prefix));
    }
    if p.max_response != d.max_response {
        a.push(format!("--max-response={}", p.max_response));
    }
    a
}

/// The server's arguments. It listens on the target address when that is loopback (nothing
/// else should reach a test on this machine), else on every address.
pub fn server_args(opts: &RunOptions, target: Ipv4Addr, steer: bool) -> Vec<String> {
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
    if steer {
        a.push(format!("--steer-source-base={}", loopback::FIRST_SOURCE));
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
    if let Some(m) = opts.max_errors {
        a.push(format!("--max-errors={m}"));
    }
    a.extend(protocol_args(&opts.protocol));
    a
}
