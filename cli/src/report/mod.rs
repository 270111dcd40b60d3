//! `c1m report`.

/// Arguments of `c1m report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {}

/// Runs `c1m report`; returns the process exit code.
pub fn cmd(_args: ReportArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`c1m report` is not built yet")
}
