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

/// The server's consecutive ports, as both binaries take them.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    /// First server port (the server listens on it and the ports after it).
    #[arg(long = "port", value_name = "PORT", default_value_t = 20000)]
    pub first: u16,
    /// Number of consecutive server ports, so one client IP is not capped at ~64k by the
    /// 4-tuple.
    #[arg(long = "ports", value_name = "N", default_value_t = 20)]
    pub count: u16,
}

impl Ports {
    /// The last port, which may lie past 65535 in a range that [`Ports::check`] refuses.
    pub fn last(&self) -> u32 {
        u32::from(self.first) + u32::from(self.count) - 1
    }

    /// `--port P --ports N` must name ports inside 1..=65535.
    pub fn check(&self) -> Result<(), String> {
        let Ports { first, count } = *self;
        if count == 0 || first == 0 || self.last() > 65_535 {
            return Err(format!(
                "--port {first} --ports {count} does not fit in 1..65535"
            ));
        }
        Ok(())
    }

    /// Every port, first to last; stops at 65535.
    pub fn iter(&self) -> impl Iterator<Item = u16> {
        (0..self.count).map_while({
            let first = self.first;
            move |i| first.checked_add(i)
        })
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
    fn port_ranges_fit_in_1_to_65535() {
        let r = |first, count| Ports { first, count };
        assert!(r(20000, 20).check().is_ok() && r(65535, 1).check().is_ok());
        let e = r(65535, 2).check().unwrap_err();
        assert_eq!(e, "--port 65535 --ports 2 does not fit in 1..65535");
        assert!(r(0, 1).check().is_err() && r(1, 0).check().is_err());
        assert_eq!(
            r(20000, 3).iter().collect::<Vec<_>>(),
            [20000, 20001, 20002]
        );
        assert_eq!((r(20000, 3).last(), r(65535, 2).iter().count()), (20002, 1));
    }

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
        let clients: Vec<u64> = (0..3).map(|i| share(1_000_000, 3, i)).collect();
        assert_eq!(clients, [333_334, 333_333, 333_333]);
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
        assert_eq!(share(10, 0, 0), 0);
        assert_eq!(share(10, 3, 3), 0);
    }
}
