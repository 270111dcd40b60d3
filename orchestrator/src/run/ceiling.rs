//! `c1m run --connections max`: the largest run this machine holds, and that run.
//!
//! A short calibration run measures what one connection costs here (kernel memory of both ends
//! and the binaries' own memory, from its `run.json`). The ceiling is the memory the kernel can
//! still hand out once the calibration run is gone — the preflight's own judgement
//! ([`usable_memory`]: MemAvailable, i.e. MemFree plus the page cache and reclaimable slab the
//! kernel drops under pressure, less a margin), or less when `--max-memory` says so — divided
//! by that cost, never by less than the preflight's per-socket figure, so the run it starts
//! passes the preflight. `fs.file-max` is the one setting a run on this machine may change for
//! itself: it is raised for the run's duration when the ceiling needs it and put back
//! afterwards. Everything else the ceiling needs is checked by the ordinary preflight, which
//! names `c1m provision`. Only a run whose every host is this machine has a ceiling here: over
//! an inventory, `c1m check` gives each host's limits.

use super::{RunEnd, RunOptions};
use crate::check::capacity::{usable_memory, KERNEL_BYTES_PER_SOCKET};
use crate::check::facts::HostFacts;
use anyhow::{bail, Context, Result};
use c1m_ansible::inventory::Connection;
use c1m_proto::duration::Span;
use c1m_proto::fmt;
use c1m_proto::procfs::{parse_meminfo, read_with};
use std::io::ErrorKind;
use std::time::Duration;

/// Connections of the calibration run: enough that fixed costs (threads, tables, the
/// namespace's hash) are a small part of the figure, few enough to take seconds. Less when the
/// memory allowed holds less (see [`calibration_size`]).
pub const CALIBRATION: u64 = 100_000;

/// The smallest calibration run worth measuring: below it the binaries' fixed memory swamps
/// the cost of a connection.
pub const MIN_CALIBRATION: u64 = 1_000;

/// What `--connections` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    Count(u64),
    /// As many as this machine holds (a calibration run first).
    Max,
}

impl std::str::FromStr for Connections {
    type Err = String;
    fn from_str(s: &str) -> Result<Connections, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Connections::Max);
        }
        s.replace(['_', ','], "")
            .parse()
            .map(Connections::Count)
            .map_err(|_| format!("{s:?} is neither a number of connections nor `max`"))
    }
}

/// A size in bytes as a user writes it: `512MiB`, `2G`, `1.5GiB`, `300000000` (K, M, G, T are
/// binary multiples, with or without `iB`/`B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let v: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size (e.g. 512MiB, 2G)"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(format!("{s:?}: unknown unit (bytes, or K, M, G, T)")),
        };
        let bytes = v * (1u64 << shift) as f64;
        if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(format!("{s:?} is not a size (e.g. 512MiB, 2G)"));
        }
        Ok(Size(bytes as u64))
    }
}

/// The bytes the preflight counts a connection at (two sockets, both ends on this machine).
fn preflight_bytes_per_conn() -> f64 {
    2.0 * KERNEL_BYTES_PER_SOCKET as f64
}

/// The memory a run may have: what the kernel can give ([`usable_memory`]), or `limit` if less;
/// with what was kept back.
fn allowed(facts: &HostFacts, limit: Option<u64>) -> (u64, u64) {
    let (usable, margin) = usable_memory(facts);
    (limit.map_or(usable, |l| usable.min(l)), margin)
}

/// `n` rounded down to three significant digits (2,634,117 → 2,630,000; 16,389 → 16,300).
fn round_down(n: u64) -> u64 {
    let mut unit = 1;
    while n / unit >= 1_000 {
        unit *= 10;
    }
    n / unit * unit
}

/// Connections of the calibration run for `allowed` bytes: [`CALIBRATION`], or half of what the
/// memory holds at the preflight's cost if that is less; `None` when that is under
/// [`MIN_CALIBRATION`].
pub fn calibration_size(allowed: u64) -> Option<u64> {
    let half = (allowed as f64 / preflight_bytes_per_conn() / 2.0) as u64;
    let n = round_down(half.min(CALIBRATION));
    (n >= MIN_CALIBRATION).then_some(n)
}

/// The ceiling worked out from a calibration run and the memory there is.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    /// Bytes one connection is counted at, both ends: what the calibration run measured
    /// (kernel plus the binaries' own), at least the preflight's two sockets.
    pub bytes_per_conn: f64,
    /// What the run may have (the kernel's [`usable_memory`], or `--max-memory` if less) and
    /// what was kept back from the kernel's.
    pub usable: u64,
    pub margin: u64,
    pub connections: u64,
}

impl Ceiling {
    /// The ceiling for `measured` bytes a connection on a machine with `facts`' memory, within
    /// `limit` bytes if given, rounded down to three significant digits; `None` when nothing
    /// fits or the figure is nonsense.
    pub fn compute(measured: f64, facts: &HostFacts, limit: Option<u64>) -> Option<Ceiling> {
        if !(measured.is_finite() && measured > 0.0) {
            return None;
        }
        let bytes_per_conn = measured.max(preflight_bytes_per_conn());
        let (usable, margin) = allowed(facts, limit);
        let connections = round_down((usable as f64 / bytes_per_conn) as u64);
        (connections > 0).then_some(Ceiling {
            bytes_per_conn,
            usable,
            margin,
            connections,
        })
    }
}

/// `fs.file-max` while a run needs more; put back when dropped.
pub struct FileMax {
    before: u64,
}

/// What [`FileMax::raise_to`] found.
pub enum Raise {
    /// Already high enough: nothing changed.
    Enough,
    /// Raised; put back when the guard drops.
    Raised(FileMax),
    /// This process may not write it (not root, or a read-only /proc/sys).
    NotAllowed { have: u64 },
}

const FILE_MAX: &str = "/proc/sys/fs/file-max";

fn read_file_max() -> Result<u64> {
    std::fs::read_to_string(FILE_MAX)
        .with_context(|| format!("reading {FILE_MAX}"))?
        .trim()
        .parse()
        .with_context(|| format!("{FILE_MAX} is not a number"))
}

impl FileMax {
    /// Raises `fs.file-max` to `need` if it is lower.
    pub fn raise_to(need: u64) -> Result<Raise> {
        let before = read_file_max()?;
        if before >= need {
            return Ok(Raise::Enough);
        }
        match std::fs::write(FILE_MAX, need.to_string()) {
            Ok(()) => Ok(Raise::Raised(FileMax { before })),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                Ok(Raise::NotAllowed { have: before })
            }
            Err(e) => Err(e).with_context(|| format!("raising fs.file-max to {need}")),
        }
    }

    /// The value it is put back to.
    pub fn before(&self) -> u64 {
        self.before
    }
}

impl Drop for FileMax {
    fn drop(&mut self) {
        match std::fs::write(FILE_MAX, self.before.to_string()) {
            Ok(()) => println!("fs.file-max put back to {}", fmt::int(self.before)),
            Err(e) => eprintln!(
                "c1m run: could not put fs.file-max back to {}: {e}",
                self.before
            ),
        }
    }
}

/// File handles a local run of `n` connections needs: two sockets each (both ends here), the
/// same 2% and fixed allowance the preflight asks for.
fn files_needed(n: u64) -> u64 {
    let sockets = 2 * n;
    sockets + sockets / 50 + 8_192
}

/// Runs the calibration run, works out the ceiling, and runs it; `max_memory` caps the memory
/// the ceiling may take (a shared machine).
pub fn run_max(opts: RunOptions, max_memory: Option<u64>) -> Result<RunEnd> {
    only_this_machine(&opts)?;
    let before = memory_now();
    let (usable, _) = allowed(&before, max_memory);
    let Some(calibrate) = calibration_size(usable) else {
        eprintln!(
            "c1m run: no ceiling to find: {} of memory holds fewer than {} connections at {:.0} B \
             each (MemAvailable {}{})",
            fmt::bytes(usable as f64),
            fmt::int(2 * MIN_CALIBRATION),
            preflight_bytes_per_conn(),
            fmt::bytes(before.mem_available as f64),
            max_memory.map_or(String::new(), |m| format!(
                ", --max-memory {}",
                fmt::bytes(m as f64)
            )),
        );
        return Ok(RunEnd::Refused);
    };
    println!(
        "--connections max: a calibration run of {} connections first, to measure what one costs here",
        fmt::int(calibrate)
    );
    let end = super::run(RunOptions {
        connections: calibrate,
        hold: Span(Some(Duration::ZERO)),
        message_interval: None,
        rate: None,
        ..opts.clone()
    })?;
    if end != RunEnd::Passed {
        eprintln!("c1m run: the calibration run did not pass, so there is no ceiling to run");
        return Ok(end);
    }
    let summary = latest_summary(&opts)?;
    let user = (summary.server_rss_bytes + summary.client_rss_bytes) as f64
        / summary.established_peak.max(1) as f64;
    let mut bytes = summary.kernel_bytes_per_conn + user;
    if !(bytes.is_finite() && bytes > 0.0) {
        // Kernel memory is read machine-wide: on a busy machine what others freed during a
        // short calibration can outweigh what the run took. The preflight's figure stands in.
        println!(
            "the calibration run measured {bytes:.0} B per connection, which other activity on \
             this machine outweighed; counting the preflight's {:.0} B",
            preflight_bytes_per_conn()
        );
        bytes = preflight_bytes_per_conn();
    }
    let facts = memory_now();
    let Some(c) = Ceiling::compute(bytes, &facts, max_memory) else {
        eprintln!(
            "c1m run: no ceiling: the calibration run measured {bytes:.0} B per connection and \
             {} of memory is left to give",
            fmt::bytes(allowed(&facts, max_memory).0 as f64)
        );
        return Ok(RunEnd::Refused);
    };
    let within = match max_memory {
        Some(m) if m <= c.usable => format!("--max-memory {}", fmt::bytes(m as f64)),
        _ => format!(
            "MemAvailable {} − margin {}",
            fmt::bytes((c.usable + c.margin) as f64),
            fmt::bytes(c.margin as f64)
        ),
    };
    println!(
        "ceiling: {} connections = ({within}) / {:.0} B per connection (measured: kernel {:.0} B \
         and the binaries {:.0} B, both ends)",
        fmt::int(c.connections),
        c.bytes_per_conn,
        summary.kernel_bytes_per_conn,
        user,
    );
    let need = files_needed(c.connections);
    let _file_max = match FileMax::raise_to(need)? {
        Raise::Enough => None,
        Raise::Raised(g) => {
            println!(
                "fs.file-max raised from {} to {} for this run",
                fmt::int(g.before()),
                fmt::int(need)
            );
            Some(g)
        }
        Raise::NotAllowed { have } => {
            eprintln!(
                "c1m run: the ceiling of {} connections needs fs.file-max ≥ {} (it is {}) and \
                 this process may not raise it: run `c1m provision`, or as root",
                fmt::int(c.connections),
                fmt::int(need),
                fmt::int(have)
            );
            return Ok(RunEnd::Refused);
        }
    };
    super::run(RunOptions {
        connections: c.connections,
        ..opts
    })
}

/// This machine's memory now, as the preflight reads it.
fn memory_now() -> HostFacts {
    let mem = read_with("/proc/meminfo", parse_meminfo);
    let get = |k: &str| mem.get(k).copied().unwrap_or(0);
    HostFacts {
        mem_total: get("MemTotal"),
        mem_free: get("MemFree"),
        mem_available: get("MemAvailable"),
        ..HostFacts::default()
    }
}

/// The ceiling is this machine's: every run host must be it.
fn only_this_machine(opts: &RunOptions) -> Result<()> {
    let (inv, source) = opts.hosts.load_limited()?;
    let remote: Vec<&str> = crate::check::plan::run_hosts(&inv)
        .into_iter()
        .filter(|h| h.connection() != Connection::Local)
        .map(|h| h.name.as_str())
        .collect();
    if !remote.is_empty() {
        bail!(
            "--connections max works out this machine's ceiling, but {source} runs on {}: give a \
             number (`c1m check` shows what each host allows)",
            remote.join(", ")
        );
    }
    Ok(())
}

/// The run.json of the run just written.
fn latest_summary(opts: &RunOptions) -> Result<c1m_rundir::RunSummary> {
    let path = opts.runs_dir.join("latest").join("run.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a run summary", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_a_number_or_max() {
        assert_eq!("max".parse(), Ok(Connections::Max));
        assert_eq!("MAX".parse(), Ok(Connections::Max));
        assert_eq!("2_500_000".parse(), Ok(Connections::Count(2_500_000)));
        assert_eq!("1,000".parse(), Ok(Connections::Count(1_000)));
        assert!("lots".parse::<Connections>().is_err());
        assert!("-1".parse::<Connections>().is_err());
    }

    #[test]
    fn sizes_are_bytes_or_binary_multiples() {
        assert_eq!("300000000".parse(), Ok(Size(300_000_000)));
        assert_eq!("512MiB".parse(), Ok(Size(512 << 20)));
        assert_eq!("2G".parse(), Ok(Size(2 << 30)));
        assert_eq!("1.5 GiB".parse(), Ok(Size(3 << 29)));
        assert_eq!("64k".parse(), Ok(Size(64 << 10)));
        for bad in ["", "lots", "12 parsecs", "-1G", "0", "1e400", "1.2.3M"] {
            assert!(bad.parse::<Size>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_down_keeps_three_digits() {
        assert_eq!(round_down(2_634_117), 2_630_000);
        assert_eq!(round_down(16_389), 16_300);
        assert_eq!(round_down(999), 999);
        assert_eq!(round_down(0), 0);
    }

    fn memory(available: u64, total: u64) -> HostFacts {
        HostFacts {
            mem_total: total,
            mem_free: available / 2,
            mem_available: available,
            ..HostFacts::default()
        }
    }

    #[test]
    fn the_ceiling_keeps_a_margin_and_rounds_down() {
        let gib = 1u64 << 30;
        // A quiet 24 GiB box: 22 GiB available, 8.4 KB a connection.
        let box24 = memory(22 * gib, 24 * gib);
        let c = Ceiling::compute(8_400.0, &box24, None).unwrap();
        assert_eq!(c.margin, 24 * gib / 16);
        assert_eq!(c.connections, round_down(c.connections));
        let used = c.connections as f64 * 8_400.0 + c.margin as f64;
        assert!(used <= (22 * gib) as f64, "{c:?}");
        assert!(c.connections >= 2_500_000, "{c:?}");
        // A small box keeps 1/8 of itself, up to 512 MiB: 256 MiB of 2 GiB, 72 MiB of a
        // 576 MiB guest (the lab's clients).
        let small = Ceiling::compute(8_400.0, &memory(2 * gib, 2 * gib), None).unwrap();
        assert_eq!(small.margin, 256 << 20);
        let guest = Ceiling::compute(8_400.0, &memory(450 << 20, 576 << 20), None).unwrap();
        assert_eq!(guest.margin, 72 << 20);
        let eight = Ceiling::compute(8_400.0, &memory(7 * gib, 8 * gib), None).unwrap();
        assert_eq!(eight.margin, 512 << 20);
        // Nothing to give, or a nonsense cost: no ceiling.
        assert_eq!(
            Ceiling::compute(8_400.0, &memory(256 << 20, 24 * gib), None),
            None
        );
        assert_eq!(Ceiling::compute(0.0, &box24, None), None);
        assert_eq!(Ceiling::compute(f64::NAN, &box24, None), None);
    }

    #[test]
    fn max_memory_caps_the_ceiling_but_never_raises_it() {
        let gib = 1u64 << 30;
        let box24 = memory(22 * gib, 24 * gib);
        let capped = Ceiling::compute(10_000.0, &box24, Some(100 << 20)).unwrap();
        assert_eq!(capped.usable, 100 << 20);
        assert_eq!(capped.connections, 10_400); // 104,857,600 / 10,000 B, three digits
        let roomy = Ceiling::compute(10_000.0, &box24, Some(100 * gib)).unwrap();
        assert_eq!(roomy, Ceiling::compute(10_000.0, &box24, None).unwrap());
    }

    #[test]
    fn the_calibration_run_fits_in_half_the_memory_allowed() {
        assert_eq!(calibration_size(20 << 30), Some(CALIBRATION));
        // 128 MiB at 8,300 B a connection holds 16,170; the calibration takes half.
        assert_eq!(calibration_size(128 << 20), Some(8_080));
        assert_eq!(calibration_size(10 << 20), None);
    }

    #[test]
    fn the_ceiling_run_passes_the_preflight() {
        use crate::check::capacity::{check_host, HostDemand};
        let gib = 1u64 << 30;
        // A calibration run that measured less than the preflight counts is held to the
        // preflight's figure: the run it starts is not refused for memory.
        for measured in [5_000.0, 8_300.0, 9_000.0] {
            let facts = memory(21 * gib, 24 * gib);
            let c = Ceiling::compute(measured, &facts, None).unwrap();
            let d = HostDemand {
                sockets: 2 * c.connections,
                server_sockets: c.connections,
                client_share: c.connections,
                ..HostDemand::default()
            };
            let mem = check_host(&d, &facts)
                .into_iter()
                .find(|f| f.setting.starts_with("kernel memory"))
                .unwrap();
            assert!(!mem.blocks, "{measured}: {mem}");
        }
    }

    /// Raising fs.file-max by one (harmless to anything else running) and dropping the guard
    /// puts the old value back; asking for no more than it is changes nothing.
    #[test]
    fn file_max_is_raised_for_the_guard_and_put_back() {
        let before = read_file_max().unwrap();
        assert!(matches!(FileMax::raise_to(before).unwrap(), Raise::Enough));
        match FileMax::raise_to(before + 1).unwrap() {
            Raise::Enough => panic!("{before} + 1 is already enough?"),
            Raise::NotAllowed { have } => {
                assert_eq!(have, before);
                if std::env::var_os("C1M_REQUIRE_LAB").is_some() {
                    panic!("fs.file-max is not writable here");
                }
                eprintln!("SKIPPED: fs.file-max is not writable here (not root)");
            }
            Raise::Raised(guard) => {
                assert_eq!(read_file_max().unwrap(), before + 1);
                assert_eq!(guard.before(), before);
                drop(guard);
                assert_eq!(read_file_max().unwrap(), before);
            }
        }
    }
}
