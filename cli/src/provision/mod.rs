//! `c1m provision`.

/// Arguments of `c1m provision`.
#[derive(clap::Args, Debug)]
pub struct ProvisionArgs {}

/// Runs `c1m provision`; returns the process exit code.
pub fn cmd(_args: ProvisionArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`c1m provision` is not built yet")
}
