//! `c1m`: the command a user types. Each subcommand lives in its own module of the `c1m`
//! library; this file only parses the command line and turns results into exit codes.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "c1m", version, about = "The million-connection TCP test (C1M) as one reproducible command", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tune hosts for the test: run Ansible-style playbooks natively over SSH.
    Provision(c1m_ansible::provision::ProvisionArgs),
    /// Run the test: preflight, start server and clients, hold, tear down, write a run directory.
    Run(c1m_orchestrator::run::RunArgs),
    /// Print the capacity plan and every limit that would stop a run, with its fix.
    Check(c1m_orchestrator::check::CheckArgs),
    /// Summarise run directories: tables, charts, exports.
    Report(c1m_report::ReportArgs),
    /// Build and drive the four-VM QEMU lab.
    Lab(c1m_lab::LabArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Provision(args) => c1m_ansible::provision::cmd(args),
        Command::Run(args) => c1m_orchestrator::run::cmd(args),
        Command::Check(args) => c1m_orchestrator::check::cmd(args),
        Command::Report(args) => c1m_report::cmd(args),
        Command::Lab(args) => c1m_lab::cmd(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("c1m: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
