//! The one exit-code table of every `c1m` subcommand, and its text for `--help` and README.

use std::process::ExitCode;

/// How a `c1m` command ended, as its exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The target was reached with every echo verified; every task ok; the plan fits.
    Ok,
    /// The test or a task failed: target not reached, a host lost, a task failed.
    Failed,
    /// Bad input or usage: the command line, an inventory, a playbook, a run directory.
    BadInput,
    /// Refused by the preflight: the run cannot fit (or `c1m check` says it would not).
    Refused,
    /// A host could not be reached.
    Unreachable,
    /// Interrupted by SIGINT, SIGTERM or SIGHUP; what was done is kept.
    Interrupted,
    /// `c1m lab ssh NAME CMD`: the exit code of CMD itself.
    Passed(u8),
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Refused => 3,
            Exit::Unreachable => 4,
            Exit::Interrupted => 130,
            Exit::Passed(code) => code,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// Printed by `c1m --help` and every subcommand's help; README quotes it.
pub const EXIT_CODES: &str = "\
Exit codes (every subcommand):
  0    success: target reached and every echo verified, every task ok, the plan fits
  1    the test or a task failed (target not reached, a host lost, a task failed)
  2    bad input or usage (command line, inventory, playbook, run directory)
  3    refused by the preflight: the run cannot fit (c1m check says why)
  4    a host could not be reached
  130  interrupted (SIGINT, SIGTERM or SIGHUP); teardown ran and the run directory is kept
`c1m lab ssh NAME COMMAND` exits with COMMAND's own code.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_code() {
        for e in [
            Exit::Ok,
            Exit::Failed,
            Exit::BadInput,
            Exit::Refused,
            Exit::Unreachable,
            Exit::Interrupted,
        ] {
            let line = format!("\n  {:<4} ", e.code());
            assert!(EXIT_CODES.contains(&line), "{e:?} missing from the table");
        }
    }
}
