//! `c1m lab`.

/// Arguments of `c1m lab`.
#[derive(clap::Args, Debug)]
pub struct LabArgs {}

/// Runs `c1m lab`; returns the process exit code.
pub fn cmd(_args: LabArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`c1m lab` is not built yet")
}
