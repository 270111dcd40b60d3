//! `c1m`: the command a user types. The command line is defined in [`args`]; this file turns it
//! into the library crates' options, calls them, and maps what they report onto the one
//! exit-code table in [`exit`].

mod args;
mod exit;

use args::{
    AccelArg, CheckArgs, Cli, Command, HostArgs, LabAction, LabArgs, ProvisionArgs, ReportArgs,
    RunArgs,
};
use c1m_ansible::connect::{ConnectSettings, HostOptions, Sources, SourcesRef};
use c1m_ansible::playbook::list::Listing;
use c1m_ansible::provision::{ProvisionOptions, ProvisionOutcome};
use c1m_orchestrator::check::{CheckOptions, CheckOutcome};
use c1m_orchestrator::run::ceiling::{self, Connections};
use c1m_orchestrator::run::{RunEnd, RunOptions};
use clap::Parser;
use exit::Exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Provision(a) => provision(a),
        Command::Run(a) => run(*a),
        Command::Check(a) => check(a),
        Command::Report(a) => report(a),
        Command::Lab(a) => lab(a),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("c1m: error: {err:#}");
            Exit::BadInput.into()
        }
    }
}

/// The host flags, with ansible.cfg's defaults (`inventory`, `forks`) for what they leave
/// open; a bad ansible.cfg or ssh_config is bad input before anything runs.
fn hosts(a: HostArgs) -> anyhow::Result<HostOptions> {
    let sources = SourcesRef::Given(std::sync::Arc::new(Sources::discover()?));
    let cfg = &sources.get().map_err(anyhow::Error::msg)?.cfg;
    Ok(HostOptions {
        inventory: match a.inventory {
            Some(i) => Some(i),
            None => cfg.inventory()?,
        },
        limit: a.limit,
        forks: a.forks.or(cfg.forks),
        connect: ConnectSettings {
            known_hosts: a.known_hosts,
            accept_new: a.accept_new_host_keys,
            sources,
            ..Default::default()
        },
    })
}

fn provision(a: ProvisionArgs) -> anyhow::Result<Exit> {
    let outcome = c1m_ansible::provision::run(&ProvisionOptions {
        hosts: hosts(a.hosts)?,
        playbooks: a.playbooks,
        check: a.check,
        diff: a.diff,
        revert: a.revert,
        extra_vars: a.extra_vars,
        tags: a.tags,
        skip_tags: a.skip_tags,
        listing: Listing {
            hosts: a.list_hosts,
            tasks: a.list_tasks,
            tags: a.list_tags,
        },
    })?;
    Ok(match outcome {
        ProvisionOutcome::Ok => Exit::Ok,
        ProvisionOutcome::TaskFailed => Exit::Failed,
        ProvisionOutcome::Unreachable => Exit::Unreachable,
    })
}

fn run(a: RunArgs) -> anyhow::Result<Exit> {
    if a.max_memory.is_some() && a.demand.connections != Connections::Max {
        anyhow::bail!(
            "--max-memory caps the ceiling of `--connections max`; a run of a given number \
             takes what that number needs"
        );
    }
    a.protocol
        .check_message_interval(a.message_interval.is_some())
        .map_err(|e| anyhow::anyhow!(e))?;
    let opts = RunOptions {
        hosts: hosts(a.hosts)?,
        connections: match a.demand.connections {
            Connections::Count(n) => n,
            Connections::Max => ceiling::CALIBRATION,
        },
        first_port: a.demand.ports.first_port,
        port_count: a.demand.ports.port_count,
        rate: a.rate,
        hold: a.hold,
        message_interval: a.message_interval,
        window: a.window,
        source_ips: a.demand.source_ips,
        procs: a.procs,
        runs_dir: a.runs_dir,
        no_progress: a.no_progress,
        no_steering: a.no_steering,
        no_netns: a.no_netns,
        no_fastopen: a.no_fastopen,
        force: a.force,
        server: a.demand.server.choice(),
        protocol: a.protocol,
        max_errors: a.max_errors,
        models: a.demand.server_model.map(|l| l.0).unwrap_or_default(),
    };
    let end = match a.demand.connections {
        Connections::Count(_) => c1m_orchestrator::run::run(opts)?,
        Connections::Max if opts.models.len() > 1 => anyhow::bail!(
            "--connections max finds one server's ceiling; give --server-model one model"
        ),
        Connections::Max if opts.server.target.is_some() || opts.server.cmd.is_some() => {
            anyhow::bail!(
                "--connections max measures c1m-server's ceiling; a server given by --target or \
                 --server-cmd needs a number of connections"
            )
        }
        Connections::Max => ceiling::run_max(opts, a.max_memory.map(|s| s.0))?,
    };
    Ok(match end {
        RunEnd::Passed => Exit::Ok,
        RunEnd::Failed => Exit::Failed,
        RunEnd::Refused => Exit::Refused,
        RunEnd::Unreachable => Exit::Unreachable,
        RunEnd::Interrupted => Exit::Interrupted,
    })
}

fn check(a: CheckArgs) -> anyhow::Result<Exit> {
    let Connections::Count(connections) = a.demand.connections else {
        anyhow::bail!(
            "--connections max is for `c1m run`, which measures the cost of a connection with a \
             calibration run first; c1m check needs a number"
        );
    };
    let outcome = c1m_orchestrator::check::run(&CheckOptions {
        hosts: hosts(a.hosts)?,
        connections,
        first_port: a.demand.ports.first_port,
        port_count: a.demand.ports.port_count,
        source_ips: a.demand.source_ips,
        server: a.demand.server.choice(),
        models: a
            .demand
            .server_model
            .map(|l| l.0)
            .unwrap_or_else(|| vec![c1m_proto::launch::ServerSpec::default().model]),
        json: a.json,
    })?;
    Ok(match outcome {
        CheckOutcome::Fits => Exit::Ok,
        CheckOutcome::DoesNotFit => Exit::Refused,
        CheckOutcome::Unreachable => Exit::Unreachable,
    })
}

fn report(a: ReportArgs) -> anyhow::Result<Exit> {
    c1m_report::run(&c1m_report::ReportOptions {
        runs: a.runs,
        format: c1m_report::Format::from_name(&a.format).unwrap_or_default(),
        compare: a.compare,
        output: a.output,
        no_charts: a.no_charts,
    })?;
    Ok(Exit::Ok)
}

/// `--with-servers`: the guest image with the exemplar servers.
fn image_variant(with_servers: bool) -> c1m_lab::image::Variant {
    if with_servers {
        c1m_lab::image::Variant::Servers
    } else {
        c1m_lab::image::Variant::Base
    }
}

fn lab(a: LabArgs) -> anyhow::Result<Exit> {
    let action = match a.action {
        LabAction::Up(up) => c1m_lab::Action::Up(c1m_lab::UpOptions {
            connections: up.connections,
            server_memory: up.server_memory,
            client_memory: up.client_memory,
            cpus: up.cpus,
            accel: match up.accel {
                AccelArg::Auto => c1m_lab::AccelChoice::Auto,
                AccelArg::Kvm => c1m_lab::AccelChoice::Kvm,
                AccelArg::Tcg => c1m_lab::AccelChoice::Tcg,
            },
            inventory: up.inventory,
            mirror: up.mirror,
            variant: image_variant(up.with_servers),
            timeout: up.timeout,
        }),
        LabAction::Down => c1m_lab::Action::Down,
        LabAction::Status => c1m_lab::Action::Status,
        LabAction::Ssh { name, command } => c1m_lab::Action::Ssh { name, command },
        LabAction::Image {
            mirror,
            with_servers,
        } => c1m_lab::Action::Image {
            mirror,
            variant: image_variant(with_servers),
        },
    };
    let options = c1m_lab::LabOptions {
        cache_dir: a.cache_dir,
        state_dir: a.state_dir,
    };
    Ok(match c1m_lab::run(&options, action)? {
        0 => Exit::Ok,
        // `lab ssh` passes on the exit code of the command it ran.
        code => Exit::Passed(code),
    })
}
