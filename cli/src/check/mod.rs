//! `c1m check`.

/// Arguments of `c1m check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {}

/// Runs `c1m check`; returns the process exit code.
pub fn cmd(_args: CheckArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`c1m check` is not built yet")
}
