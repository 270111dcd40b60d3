//! The whole command line of `c1m`, in one place: every subcommand's flags and the flag group
//! shared by the subcommands that reach hosts. Each flag has one meaning across subcommands;
//! the library crates take the plain option structs these convert into (see `main.rs`).

use c1m_orchestrator::run::ceiling::{Connections, Size};
use c1m_proto::model::ServerModel;
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use crate::exit::EXIT_CODES;

#[derive(Parser)]
#[command(
    name = "c1m",
    version,
    about = "The million-connection TCP test (C1M) as one reproducible command",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Tune hosts for the test: run Ansible-style playbooks natively over SSH.
    #[command(after_help = EXIT_CODES)]
    Provision(ProvisionArgs),
    /// Run the test: preflight, start server and clients, hold, tear down, write a run directory.
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// Print the capacity plan and every limit that would stop a run, with its fix.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Summarise run directories: tables, charts, exports.
    #[command(after_help = EXIT_CODES)]
    Report(ReportArgs),
    /// Build and drive the four-VM QEMU lab.
    #[command(after_help = EXIT_CODES)]
    Lab(LabArgs),
}

/// Which hosts a subcommand reaches and how: the same flags for `provision`, `run` and `check`.
#[derive(Args, Debug, Clone, Default)]
pub struct HostArgs {
    /// Inventory: an Ansible YAML or INI file, a directory of them, or `host1,host2,`; with
    /// group_vars/ and host_vars/ beside it. Default: ansible.cfg's `inventory`, else this
    /// machine alone (the built-in inventory/local.yml).
    #[arg(short, long, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Only these hosts or groups (`,` or `:` separated, `*` wildcards, `!` excludes).
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Hosts connected to at once. Default: ansible.cfg's `forks`, else all.
    #[arg(short, long, value_name = "N")]
    pub forks: Option<usize>,
    /// known_hosts file for SSH hosts. Default: the host's `c1m_known_hosts` var, else
    /// ~/.ssh/known_hosts.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Add unknown SSH host keys to known_hosts (a changed key is still refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

/// Arguments of `c1m provision`.
#[derive(Args, Debug, Clone)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Playbooks to run in order. Default: playbooks/tune.yml.
    pub playbooks: Vec<PathBuf>,
    /// Change nothing; report what would change.
    #[arg(short = 'C', long)]
    pub check: bool,
    /// Show before/after of every file and value that changes.
    #[arg(short = 'D', long)]
    pub diff: bool,
    /// Undo tune.yml: run playbooks/reset.yml (restores the snapshot kept on each host).
    #[arg(long)]
    pub revert: bool,
    /// Extra variables (highest precedence): `KEY=VALUE …`, a YAML/JSON mapping, or `@FILE`,
    /// e.g. `-e c1m_connections=200000`. Repeatable; later ones win.
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Only tasks tagged with these (comma-separated, repeatable); `always` tasks run too.
    #[arg(short = 't', long, value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Not tasks tagged with these (comma-separated, repeatable).
    #[arg(long, value_name = "TAGS")]
    pub skip_tags: Vec<String>,
    /// Print each play's hosts and run nothing.
    #[arg(long)]
    pub list_hosts: bool,
    /// Print the tasks that would run (with their tags) and run nothing.
    #[arg(long)]
    pub list_tasks: bool,
    /// Print the tags of the tasks that would run and run nothing.
    #[arg(long)]
    pub list_tags: bool,
}

/// The server's ports: the first one and how many follow it.
#[derive(Args, Debug, Clone, Copy)]
pub struct PortArgs {
    /// The server's first port.
    #[arg(long, alias = "port", value_name = "PORT", default_value_t = 20000)]
    pub first_port: u16,
    /// How many consecutive server ports, from --first-port (more ports: more 4-tuples per
    /// source IP).
    #[arg(long, alias = "ports", value_name = "N", default_value_t = 20)]
    pub port_count: u16,
}

/// What a run asks of the hosts: the same flags for `run` and `check`, judged by the same code.
#[derive(Args, Debug, Clone)]
pub struct DemandArgs {
    /// Connections to establish and hold, over all clients. `c1m run --connections max`: as many
    /// as this machine holds (a short calibration run measures the cost of one first).
    #[arg(short = 'n', long, default_value = "1000000", value_name = "N|max")]
    pub connections: Connections,
    #[command(flatten)]
    pub ports: PortArgs,
    /// Source IPs for a client on this machine (`A` or `A-B`, comma-separated). Default: enough
    /// addresses from 127.0.0.2 up for the 4-tuples the run needs. Inventory hosts use their
    /// `c1m_source_ips` var.
    #[arg(long, value_delimiter = ',', value_name = "IPS")]
    pub source_ips: Vec<String>,
    /// Server models (`c1m-server --model`), comma-separated, or `all`: `run` runs the test
    /// once per model, each from a clean start, and writes their comparison; `check` names
    /// each one's own ceilings. Default: epoll-threads. Only for c1m-server: not with `--target`
    /// or `--server-cmd`.
    #[arg(long, value_name = "MODELS", value_parser = ModelList::parse,
          conflicts_with_all = ["target", "server_cmd", "server_pid", "server_pidfile"])]
    pub server_model: Option<ModelList>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Which server a run drives when it is not c1m-server: the server host's `c1m_server_*` vars,
/// given on the command line (they win over the inventory's).
#[derive(Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Drive the server at HOST:PORT or HOST:FIRST-LAST instead of c1m-server. Alone: a server
    /// that is already running (nothing is started or stopped); with --server-cmd: the one that
    /// command starts.
    #[arg(long, value_name = "HOST:PORTS", conflicts_with_all = ["first_port", "port_count"])]
    pub target: Option<c1m_orchestrator::check::server::Target>,
    /// Start the server under test with this shell command on the server host (in a process
    /// group of its own, in the run's network namespace on a local run), wait for its ports to
    /// listen, measure it, stop its group at teardown. It must stay in the foreground.
    #[arg(long, value_name = "CMD")]
    pub server_cmd: Option<String>,
    /// The server's main process, so it can be measured (an external server, or one the
    /// command forks into the background).
    #[arg(long, value_name = "PID", conflicts_with = "server_pidfile")]
    pub server_pid: Option<u32>,
    /// A file on the server host holding the server's pid (instead of --server-pid).
    #[arg(long, value_name = "FILE")]
    pub server_pidfile: Option<String>,
}

impl ServerArgs {
    pub fn choice(self) -> c1m_orchestrator::check::server::ServerChoice {
        c1m_orchestrator::check::server::ServerChoice {
            target: self.target,
            cmd: self.server_cmd,
            pid: self.server_pid,
            pidfile: self.server_pidfile,
        }
    }
}

/// A `--server-model` value: the models in the order given (one value, so clap does not split
/// it into occurrences itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelList(pub Vec<ServerModel>);

impl ModelList {
    fn parse(s: &str) -> Result<ModelList, String> {
        c1m_proto::model::parse_list(s).map(ModelList)
    }
}

/// Arguments of `c1m run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    #[command(flatten)]
    pub demand: DemandArgs,
    /// New connections per second at most, over all clients (default: as fast as they go).
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<u64>,
    /// How long to hold all connections once the target is reached (`30s`, `2m`, `forever`).
    #[arg(long, default_value = "5s")]
    pub hold: c1m_proto::duration::Span,
    /// While holding, send a message on every connection at this interval and time round trips.
    #[arg(long, value_name = "DURATION")]
    pub message_interval: Option<c1m_proto::duration::Span>,
    /// Connects in flight at most, per client host (default: the host var `c1m_window`, else
    /// 4096).
    #[arg(long, value_name = "N")]
    pub window: Option<u64>,
    /// Server and client worker processes (default: one each, a thread per fd table).
    #[arg(long, value_name = "K")]
    pub procs: Option<usize>,
    /// Where run directories go (each run writes `DIR/<timestamp>/`, and `DIR/latest` points
    /// at it).
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Plain lines instead of progress bars (also when stdout is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Let the kernel hash connections over all server workers instead of pairing client fd
    /// table i with server worker i by source address (steering is used when the run picks the
    /// source IPs on this machine and there is one server process).
    #[arg(long)]
    pub no_steering: bool,
    /// Run on this machine's own network namespace instead of a private one sized for the test.
    #[arg(long)]
    pub no_netns: bool,
    /// Connect the ordinary way (SYN, then the greeting after the handshake) instead of with
    /// the greeting in the SYN (TCP Fast Open, turned on inside a local run's namespace only).
    #[arg(long)]
    pub no_fastopen: bool,
    /// Start even when the preflight says the run cannot fit.
    #[arg(long)]
    pub force: bool,
    /// A client gives up after this many errors (default: 1% of its share, at least 1,000).
    /// A server that stops answering at its ceiling costs a connect timeout per error.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
    #[command(flatten)]
    pub protocol: c1m_proto::protocol::ProtocolArgs,
    /// With `--connections max`: the ceiling takes at most this much memory (`512MiB`, `8G`),
    /// leaving the rest of a shared machine alone.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<Size>,
}

/// Arguments of `c1m check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    #[command(flatten)]
    pub demand: DemandArgs,
    /// The plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `c1m report`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Run directories to report on.
    #[arg(value_name = "RUN_DIR", default_value = "runs/latest")]
    pub runs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "table", value_parser = PossibleValuesParser::new(c1m_report::Format::NAMES))]
    pub format: String,
    /// Put the runs side by side with deltas against the first (needs two or more runs).
    #[arg(long)]
    pub compare: bool,
    /// Write the report to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not write connections.svg / connect-rate.svg into the run directories.
    #[arg(long)]
    pub no_charts: bool,
}

/// Arguments of `c1m lab`.
#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
    /// Where built guest images are cached (keyed by a hash of their recipe).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/cache/c1m/lab"
    )]
    pub cache_dir: PathBuf,
    /// Where the running lab keeps its key, known_hosts, overlays, pid files and consoles.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/lib/c1m/lab"
    )]
    pub state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum LabAction {
    /// Build the image if needed, boot the four VMs, wait for SSH, write the inventory.
    Up(LabUpArgs),
    /// Stop every VM and delete the lab network and overlays (also after a crash).
    Down,
    /// Show each VM: address, memory, process, whether SSH answers.
    Status,
    /// Log in to one VM (srv, cli1, cli2, cli3) with the lab key and pinned host key.
    Ssh {
        /// VM name.
        name: String,
        /// Command to run instead of a login shell.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Build (or find in the cache) the guest image and print where it is.
    Image {
        /// Debian mirror debootstrap fetches from.
        #[arg(long, default_value = c1m_lab::DEFAULT_MIRROR)]
        mirror: String,
        /// The image with the course's exemplar servers (nginx, redis-server, memcached,
        /// haproxy, apache2) installed, their services disabled at boot.
        #[arg(long)]
        with_servers: bool,
    },
}

/// Acceleration for the lab's VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    /// KVM when it boots the guest kernel, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Arguments of `c1m lab up`.
#[derive(Args, Debug)]
pub struct LabUpArgs {
    /// Target connections of the runs this lab is for; sizes guest memory
    /// (~5 GiB server and ~2 GiB per client for 1,000,000).
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    pub connections: u64,
    /// Server memory in MiB (overrides the size derived from --connections).
    #[arg(long, value_name = "MIB")]
    pub server_memory: Option<u64>,
    /// Memory of each client in MiB (overrides the size derived from --connections).
    #[arg(long, value_name = "MIB")]
    pub client_memory: Option<u64>,
    /// vCPUs per VM.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Acceleration: auto tries KVM (it must boot the guest kernel) and falls back to TCG.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Where to write the inventory.
    #[arg(short, long, value_name = "FILE", default_value = "inventory/lab.yml")]
    pub inventory: PathBuf,
    /// Debian mirror debootstrap fetches from (only used when the image is built).
    #[arg(long, default_value = c1m_lab::DEFAULT_MIRROR)]
    pub mirror: String,
    /// Boot the image with the course's exemplar servers (nginx, redis-server, memcached,
    /// haproxy, apache2) installed, none started at boot: a run starts the one it drives
    /// (`c1m_server_cmd`). Built once and cached apart from the default image.
    #[arg(long)]
    pub with_servers: bool,
    /// Seconds a VM may go without boot progress (console output, its SSH banner, a login)
    /// before giving up; a slow machine's whole boot may take longer.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn server_models_parse_as_one_list() {
        let run = |argv: &[&str]| match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Run(a)) => Ok(a.demand.server_model),
            Ok(_) => Err("not run".to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            run(&["c1m", "run", "--server-model", "sync,tokio"]).unwrap(),
            Some(ModelList(vec![ServerModel::Sync, ServerModel::Tokio]))
        );
        assert_eq!(
            run(&["c1m", "run", "--server-model", "all"])
                .unwrap()
                .map(|l| l.0.len()),
            Some(9)
        );
        assert_eq!(run(&["c1m", "run"]).unwrap(), None);
        let e = run(&["c1m", "run", "--server-model", "sync,fibers"]).unwrap_err();
        assert!(e.contains("fibers"), "{e}");
    }

    /// No short or long flag means two things across subcommands.
    #[test]
    fn every_flag_has_one_meaning() {
        use std::collections::BTreeMap;
        let mut meaning: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut clashes = Vec::new();
        let mut visit = |cmd: &clap::Command, path: &str| {
            for a in cmd.get_arguments() {
                let id = a.get_id().to_string();
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                let mut names: Vec<String> = a
                    .get_short_and_visible_aliases()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| format!("-{c}"))
                    .collect();
                names.extend(
                    a.get_long_and_visible_aliases()
                        .unwrap_or_default()
                        .iter()
                        .map(|l| format!("--{l}")),
                );
                names.extend(
                    a.get_all_aliases()
                        .unwrap_or_default()
                        .iter()
                        .map(|l| format!("--{l}")),
                );
                for n in names {
                    match meaning.get(&n) {
                        Some((other_id, other_path)) if *other_id != id => clashes.push(format!(
                            "{n}: `{id}` in {path} but `{other_id}` in {other_path}"
                        )),
                        Some(_) => {}
                        None => {
                            meaning.insert(n, (id.clone(), format!("{path} ({help})")));
                        }
                    }
                }
            }
        };
        fn walk(cmd: &clap::Command, path: String, visit: &mut dyn FnMut(&clap::Command, &str)) {
            visit(cmd, &path);
            for sub in cmd.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()), visit);
            }
        }
        walk(&Cli::command(), "c1m".into(), &mut visit);
        assert!(clashes.is_empty(), "flags with two meanings: {clashes:#?}");
    }
}
