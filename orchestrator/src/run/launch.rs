//! The command lines that start `c1m-server` and `c1m-client` on a host: what the run asks of
//! each binary, filled into its launch spec ([`ServerSpec`], [`ClientSpec`]) once here for every
//! host, local or remote, and rendered by the spec (from the clap definition the binary parses),
//! so what the orchestrator says and what the binary reads cannot drift.

use super::local_env::LocalEnv;
use super::prepare::RunHost;
use super::RunOptions;
use crate::check::loopback;
use c1m_proto::launch::{ClientSpec, Ports, ServerSpec, Spec, CONTROLLED_STATS_MS};
use c1m_proto::layout::WorkerArgs;
use c1m_proto::stats::LayoutLine;
use c1m_transport::shell_quote;
use std::net::Ipv4Addr;

/// The shell command that starts the binary `spec` is for on `h`. `exec`: the binary takes the
/// shell's place, so the process group sshd (or the binary itself) makes is the binary's.
pub fn command<S: Spec>(h: &RunHost, spec: &S, env: &LocalEnv) -> String {
    let bin = shell_quote(&format!("{}/{}", h.bin_dir, S::command().get_name()));
    let args: Vec<String> = spec.to_argv().iter().map(|a| shell_quote(a)).collect();
    exec_on(h, &format!("{bin} {}", args.join(" ")), env)
}

/// `exec LINE` on `h`: inside the run's namespace when `h` is this machine.
fn exec_on(h: &RunHost, line: &str, env: &LocalEnv) -> String {
    if h.is_local() {
        format!("exec {}", env.wrap(line))
    } else {
        format!("exec {line}")
    }
}

/// How a run places either binary's workers: `--procs` as asked, stats every
/// [`CONTROLLED_STATS_MS`], stopped by the end of stdin (the controller's channel).
fn controlled(opts: &RunOptions) -> WorkerArgs {
    WorkerArgs {
        procs: opts.procs,
        interval_ms: CONTROLLED_STATS_MS,
        stop_on_eof: true,
        ..ServerSpec::default().workers
    }
}

/// The shell command that starts a server command on `h`: in a session (and so a process
/// group) of its own, which teardown stops as a whole; inside the run's namespace on this
/// machine. The shell first prints its pid ([`super::track::COMMAND_PID`]), then runs the
/// command (`exec sh -c`), so that pid is the group's and the root of the server's process tree.
pub fn server_command(h: &RunHost, cmd: &str, env: &LocalEnv) -> String {
    let inner = format!(
        "setsid -w sh -c {} {}",
        shell_quote(&format!(
            "echo {} $$; exec sh -c \"$0\"",
            super::track::COMMAND_PID
        )),
        shell_quote(cmd)
    );
    exec_on(h, &inner, env)
}

fn ports(opts: &RunOptions) -> Ports {
    Ports {
        first: opts.first_port,
        count: opts.port_count,
    }
}

/// The server's spec. It listens on the target address when that is loopback (nothing else
/// should reach a test on this machine), else on every address.
pub fn server_spec(opts: &RunOptions, target: Ipv4Addr, env: &LocalEnv) -> ServerSpec {
    ServerSpec {
        bind: if target.is_loopback() {
            target
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        ports: ports(opts),
        connections: opts.connections,
        steer_source_base: env.steer.then_some(loopback::FIRST_SOURCE),
        fastopen: env.fastopen,
        model: opts.model(),
        workers: controlled(opts),
        // The model's knobs (stack size, pool) keep the binary's defaults.
        ..ServerSpec::default()
    }
}

/// A client's spec: its share, JSON lines, held until the controller ends it. With steering,
/// the client gets one source address per server worker and fills its fd tables one per core at
/// a time (`--staged`), table i from address i.
pub fn client_spec(
    opts: &RunOptions,
    h: &RunHost,
    target: Ipv4Addr,
    steered: Option<&LayoutLine>,
    env: &LocalEnv,
) -> ClientSpec {
    let defaults = ClientSpec::default();
    let source_ips = match steered {
        Some(server) => vec![loopback::address_range(
            loopback::FIRST_SOURCE,
            server.threads_per_proc as u32,
        )],
        None => h.source_ips.clone(),
    };
    ClientSpec {
        target,
        ports: ports(opts),
        source_ips,
        connections: h.share,
        window: opts.window.or(h.window).unwrap_or(defaults.window),
        // Each client's part of the total rate, in proportion to its share.
        rate: opts.rate.map(|r| {
            let part =
                (u128::from(r) * u128::from(h.share)).div_ceil(u128::from(opts.connections.max(1)));
            u64::try_from(part).unwrap_or(u64::MAX).max(1)
        }),
        hold: c1m_proto::duration::Span(None),
        message_interval: opts.message_interval,
        staged: steered.is_some(),
        fastopen: env.fastopen,
        json: true,
        index_base: h.index_base,
        max_errors: opts.max_errors,
        workers: WorkerArgs {
            threads: steered.map(|server| server.threads_per_proc),
            ..controlled(opts)
        },
        protocol: opts.protocol.clone(),
        ..defaults
    }
}
