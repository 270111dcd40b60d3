//! `c1m run`.

/// Arguments of `c1m run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {}

/// Runs `c1m run`; returns the process exit code.
pub fn cmd(_args: RunArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`c1m run` is not built yet")
}
