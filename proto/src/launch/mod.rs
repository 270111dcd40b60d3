//! Launch specs: the typed command line of each binary ([`ServerSpec`], [`ClientSpec`]). The
//! binary parses its argv into its spec with clap; whoever starts it (the orchestrator, the
//! binary's own supervisor for its worker processes) fills a spec and renders it with
//! [`Spec::to_argv`], which walks the same clap definition, so the two cannot drift. Also the
//! split of a count over parts and the stats interval of a controlled run, stated once.

mod argv;
mod client;
mod server;

pub use client::ClientSpec;
pub use server::ServerSpec;

/// Stats interval (ms) of a run the orchestrator controls: time to target is read to a quarter
/// second, and four lines a second per host are cheap over SSH.
pub const CONTROLLED_STATS_MS: u64 = 250;

/// A binary's command line as a value.
pub trait Spec: clap::Parser + serde::Serialize {
    /// The arguments (without the program name) that parse back into this spec: every flag
    /// the spec has, in the order clap declares them, as `--flag=value` or `--flag`.
    fn to_argv(&self) -> Vec<String> {
        argv::render(self)
    }

    /// Parses arguments (without the program name), as the binary does its own.
    fn from_argv<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let name = Self::command().get_name().to_string();
        Self::try_parse_from(std::iter::once(name.into()).chain(args.into_iter().map(Into::into)))
    }
}

/// Part `index` of `total` split over `parts` as evenly as whole numbers allow: the first
/// `total % parts` parts get one more, so the parts add up to `total`. No parts, no share.
pub fn share(total: u64, parts: usize, index: usize) -> u64 {
    if index >= parts {
        return 0;
    }
    let (k, i) = (parts as u64, index as u64);
    total / k + u64::from(i < total % k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_one_at_most() {
        for (total, parts) in [
            (0, 3),
            (10, 3),
            (1_000_000, 53),
            (7, 7),
            (5, 8),
            (u64::MAX, 3),
        ] {
            let v: Vec<u64> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(
                v.iter().map(|&x| u128::from(x)).sum::<u128>(),
                u128::from(total)
            );
            let (lo, hi) = (v.iter().min().unwrap(), v.iter().max().unwrap());
            assert!(hi - lo <= 1, "{total} over {parts}: {v:?}");
            assert!(
                v.windows(2).all(|w| w[0] >= w[1]),
                "larger shares first: {v:?}"
            );
        }
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
        assert_eq!(share(10, 0, 0), 0);
        assert_eq!(share(10, 3, 3), 0);
    }
}
