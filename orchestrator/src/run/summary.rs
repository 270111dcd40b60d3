//! The end of a run: `run.json` — one summary assembly for every run, with a figure set per
//! host — the limit the run hit, and the summary printed for a person.

use super::msg::{Ended, Role};
use super::sampler::kernel_total;
use super::state::{Ending, HostState, Peak, Reached, ServerUnderTest};
use super::{RunEnd, RunOptions};
use crate::check::server::{self, UnderTest};
use crate::check::server_tree::TreeSample;
use c1m_proto::ceiling::{self, Ceiling};
use c1m_proto::errors::ANSWER_TIMEOUT;
use c1m_proto::fmt;
use c1m_proto::stats::{ClientStats, LayoutLine, ServerStats, StatsLine};
use c1m_rundir::{HostSummary, LimitHit, Outcome, RunSettings, RunSummary, ServerFigures};
use std::collections::BTreeMap;

/// What the run's end is made from.
pub struct Finished<'a> {
    pub opts: &'a RunOptions,
    /// How run.json names the inventory (`local` for the built-in one).
    pub inventory: &'a str,
    pub hosts: &'a [HostState],
    pub peak: &'a Peak,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub ending: Ending,
    pub reached: Option<Reached>,
    pub sut: &'a ServerUnderTest,
    /// The address the clients connected to.
    pub target: std::net::Ipv4Addr,
}

/// The exit the run's summary calls for.
pub fn verdict(s: &RunSummary) -> RunEnd {
    match s.outcome {
        Outcome::Interrupted => RunEnd::Interrupted,
        Outcome::Reached if !s.partial && !s.errors.contains_key("echo_mismatch") => RunEnd::Passed,
        _ => RunEnd::Failed,
    }
}

/// All clients' figures as one (their summaries, or their last ticks), merged as a binary
/// merges its worker processes': counters summed, histograms merged exactly, the target reached
/// when the last client reached its share.
fn merged_clients(hosts: &[HostState]) -> ClientStats {
    ClientStats::merge(
        hosts
            .iter()
            .filter(|h| h.run.is_client())
            .map(|h| h.track.client_summary.as_ref().unwrap_or(&h.track.client)),
    )
}

/// Every error by name, the servers' prefixed with `server_`. Under a protocol that sends
/// nothing (`idle`) a connection closed without a greeting is the expected end, not an error:
/// c1m-server's `incomplete` is left out.
fn errors_of(
    client: &ClientStats,
    server: &c1m_proto::stats::ServerStats,
    silent: bool,
) -> BTreeMap<String, u64> {
    let mut errors = client.errors.clone();
    for (k, v) in &server.errors {
        if silent && k == "incomplete" {
            continue;
        }
        *errors.entry(format!("server_{k}")).or_default() += v;
    }
    errors
}

/// run.json.
pub fn summarize(f: &Finished) -> RunSummary {
    let n = f.opts.connections;
    let mut client = merged_clients(f.hosts);
    // Each client's own clock is exact; the controller's (line by line) is the fallback.
    if client.time_to_target_s.is_none() {
        client.time_to_target_s = f.reached.map(|r| r.since_clients);
    }
    let server_host = f.hosts.iter().find(|h| h.run.is_server());
    let server = server_host
        .map(|h| {
            h.track
                .server_summary
                .clone()
                .unwrap_or_else(|| h.track.server.clone())
        })
        .unwrap_or_default();
    let silent = f.opts.protocol.protocol.sends_nothing();
    let errors = errors_of(&client, &server, silent);
    let mut outcome = f.ending.outcome;
    // Verified is not held: a server that closes held connections to make room for new ones
    // (nginx reusing idle keep-alive connections) lets every client verify its share while it
    // never holds the target at once.
    let closed_by_server = client.dropped > 0 && f.peak.established < n;
    // An idle connection is counted at its handshake, which the kernel completes before the
    // server accepts: a server that does not take them (a blocking model waiting for a
    // greeting) leaves them in its accept queue. c1m-server's own count says what it held.
    let c1m_server = f.sut.under_test == UnderTest::C1mServer;
    let unheld = silent
        && c1m_server
        && server_host.is_some_and(|h| h.server_reports)
        && f.peak.server_open < n;
    // Another server is read from outside: connections it had not taken at the peak (past a
    // few in flight) were the kernel's, not the server's.
    let waiting = f.peak.server_queued.unwrap_or_default();
    let queued = waiting.total();
    let unaccepted = silent
        && !c1m_server
        && queued > (n / 1000).max(16)
        && f.peak.established.saturating_sub(queued) < n;
    if outcome == Outcome::Reached
        && (client.verified < n || closed_by_server || unheld || unaccepted)
    {
        outcome = Outcome::NotReached;
    }
    let not_taken_why = unaccepted.then(|| {
        let deferred = match waiting.deferred {
            0 => String::new(),
            d => format!(
                " ({} of them half-open: its listener defers accepting until data comes — TCP_DEFER_ACCEPT, Apache's AcceptFilter — and an idle client sends none)",
                fmt::int(d)
            ),
        };
        format!(
            "every connection was established, but {} of them were still waiting for the server to accept them at the peak{deferred}: the kernel completes a handshake before the server accepts it, and the server had taken only {}",
            fmt::int(queued),
            fmt::int(f.peak.established.saturating_sub(queued))
        )
    });
    let idle_ceiling = server_host
        .filter(|_| unheld)
        .and_then(|h| model_ceiling(f.opts, h))
        .filter(|c| c.limit == "--protocol idle");
    let reason = f.ending.reason.clone().or_else(|| {
        unheld.then(|| {
            let why = idle_ceiling
                .as_ref()
                .map(|c| format!(" ({}, as the preflight named it)", c.why))
                .unwrap_or_default();
            format!(
                "every connection was established, but the server held at most {} of them open{why}: the kernel completes a handshake before the server accepts it, and the rest waited in its accept queue",
                fmt::int(f.peak.server_open)
            )
        })
    }).or_else(|| not_taken_why.clone()).or_else(|| {
        closed_by_server.then(|| {
            format!(
                "every connection was {}, but the server closed {} held connections: it held at most {} at once",
                f.opts.protocol.protocol.counted_as(),
                fmt::int(client.dropped),
                fmt::int(f.peak.established)
            )
        })
    }).or_else(|| {
        f.hosts
            .iter()
            .find_map(|h| Some(format!("{}: {}", h.run.host.name, h.failure.as_ref()?)))
    });
    // A model's own ceiling is c1m-server's; another server's was read from /proc.
    let ceiling = server_host
        .filter(|_| f.sut.under_test == UnderTest::C1mServer)
        .and_then(|h| model_ceiling(f.opts, h));
    let figures = server_figures(f, &server, ceiling.as_ref());
    // Connections the server never took: its own ceilings (worker counts) do not explain them.
    let not_taken = not_taken_why.as_ref().map(|why| LimitHit {
        kind: "server_not_accepting".into(),
        sentence: format!(
            "{} did not take the connections the clients held: {why}.",
            if f.sut.name.is_empty() { "The server" } else { f.sut.name.as_str() },
        ),
        evidence: format!(
            "{} in its accept queues and {} half-open at the peak (ss, in the server's network namespace); {} established",
            fmt::int(waiting.queued),
            fmt::int(waiting.deferred),
            fmt::int(f.peak.established)
        ),
    });
    let limit = not_taken
        .or_else(|| server_ceiling_hit(f, figures.as_ref(), outcome, &errors))
        .unwrap_or_else(|| {
            limit_hit(
                f.opts,
                &client,
                &errors,
                outcome,
                reason.as_deref(),
                f.hosts,
                ceiling.as_ref(),
                figures.as_ref(),
                // Held at once: no more than the server said it had open, when it reports.
                f.peak.established.min(f.peak.server_open),
            )
        });
    // Partial means data is missing: a summary never came, or a host was lost. A binary that
    // gave up and said so in its summary (a client whose share could not be held exits 1)
    // lost nothing; its host still carries the failure.
    let partial = f.hosts.iter().any(|h| {
        let lost = [Role::Client, Role::Server].into_iter().any(|r| {
            matches!(
                h.running(r).and_then(|x| x.ended.as_ref()),
                Some(Ended::Lost(_))
            )
        });
        lost || (h.run.is_client() && h.track.client_summary.is_none())
            || (h.run.is_server() && h.server_reports && h.track.server_summary.is_none())
    });
    let server_peak = f.peak.server_open.max(1);
    RunSummary {
        schema: c1m_rundir::SCHEMA,
        c1m_version: env!("CARGO_PKG_VERSION").into(),
        started_at: f.started_at.to_rfc3339(),
        finished_at: Some(chrono::Utc::now().to_rfc3339()),
        inventory: f.inventory.into(),
        outcome,
        reason,
        partial,
        target: n,
        established_peak: f.peak.established,
        server_open_peak: f.peak.server_open,
        time_to_target_s: client.time_to_target_s,
        run_to_target_s: f.reached.map(|r| r.since_invoked),
        connect_rate_peak: f.peak.rate,
        connect_rate_mean: client
            .time_to_target_s
            .map(|t| client.verified as f64 / t.max(1e-9))
            .unwrap_or(0.0),
        connect_latency_us: client.connect_latency_us.clone(),
        rtt_us: client.rtt_us.clone(),
        messages_sent: client.messages_sent,
        messages_answered: client.messages_answered,
        errors,
        server_rss_bytes: f.peak.server_rss,
        client_rss_bytes: client.rss_bytes,
        user_bytes_per_conn: f.peak.server_rss as f64 / server_peak as f64,
        kernel_bytes_per_conn: kernel_total(&f.peak.server_kernel) as f64 / server_peak as f64,
        kernel_memory: f.peak.server_kernel.clone(),
        hosts: f
            .hosts
            .iter()
            .map(|h| host_summary(h, f.peak, silent))
            .collect(),
        limit: Some(limit),
        settings: run_settings(
            f.opts,
            f.hosts
                .iter()
                .filter(|h| h.run.is_client())
                .flat_map(|h| h.run.source_ips.iter().cloned())
                .collect(),
        ),
        server: figures,
    }
}

/// The model's own ceiling on the server host that stops it short of the target, as the
/// preflight named it.
fn model_ceiling(opts: &RunOptions, server: &HostState) -> Option<Ceiling> {
    let limits = server
        .run
        .facts
        .host_limits(opts.procs, opts.protocol.protocol.sends_nothing());
    ceiling::binding(opts.model(), opts.port_count, &limits, opts.connections)
}

/// The server under test as measured: its tree before the clients and at the peak, per
/// connection held. Memory per connection is the growth from before the clients started to
/// the peak; CPU is what the tree used from then until the target (or the end of connecting).
/// c1m-server is named by its model; its own ticks give its processes, threads and RSS when its
/// tree was not read, and its model's ceiling (as the preflight named it) is the one predicted.
fn server_figures(
    f: &Finished,
    last: &ServerStats,
    model_ceiling: Option<&Ceiling>,
) -> Option<ServerFigures> {
    let sut = f.sut;
    let host = f.hosts.iter().find(|h| h.run.is_server())?;
    let conns = f.peak.established;
    let per_conn = |after: u64, before: u64| {
        (conns > 0).then(|| after.saturating_sub(before) as f64 / conns as f64)
    };
    let c1m_server = sut.under_test == UnderTest::C1mServer;
    let mut fig = ServerFigures {
        kind: sut.under_test.kind(),
        name: if c1m_server {
            f.opts.model().name().into()
        } else {
            sut.name.clone()
        },
        command: sut.under_test.command().map(str::to_string),
        protocol: f.opts.protocol.protocol.name().into(),
        host: host.run.host.name.clone(),
        address: f.target.to_string(),
        ports: server::ports_text(f.opts.first_port, f.opts.port_count),
        pid: sut.root,
        ..Default::default()
    };
    if c1m_server {
        // The last tick while serving: the summary line comes after the connections closed.
        let live = &host.track.server;
        let procs = live.procs.max(last.procs) as u64;
        let threads = live.threads.max(last.threads);
        fig.processes = (procs > 0).then_some(procs);
        fig.threads = (threads > 0).then_some(threads);
        fig.rss_bytes = Some(f.peak.server_rss);
        fig.predicted_ceiling = model_ceiling.map(|c| c.holds);
    }
    let Some((before, measured)) = &sut.before else {
        return Some(fig);
    };
    fig.limits = measured.limits.clone();
    fig.predicted_ceiling = fig.predicted_ceiling.or(measured.ceiling);
    fig.ceiling_rule = match &measured.rule {
        server::CeilingRule::NginxReuse(r) if r.binds(measured.ceiling) => Some(r.sentence()),
        server::CeilingRule::ApacheWorkers(a) => Some(a.sentence()),
        server::CeilingRule::ApacheUnread { error } => Some(format!(
            "one connection per worker process; how many workers is unknown: {error}"
        )),
        server::CeilingRule::Haproxy(h) => Some(h.sentence()),
        _ => None,
    };
    let empty = TreeSample::default();
    let peak = f.peak.server_tree.as_ref().unwrap_or(&empty);
    if peak.processes.is_empty() {
        return Some(fig);
    }
    let at_target = f.peak.server_tree_at_target.as_ref().unwrap_or(peak);
    fig.processes = Some(peak.processes.len() as u64);
    fig.threads = Some(peak.threads());
    fig.rss_bytes = Some(peak.rss_bytes());
    fig.pss_bytes = Some(peak.pss_bytes());
    fig.rss_bytes_before = Some(before.rss_bytes());
    fig.pss_bytes_before = Some(before.pss_bytes());
    fig.rss_bytes_per_conn = per_conn(peak.rss_bytes(), before.rss_bytes());
    fig.pss_bytes_per_conn = per_conn(peak.pss_bytes(), before.pss_bytes());
    let cpu = (at_target.cpu_seconds() - before.cpu_seconds()).max(0.0);
    fig.cpu_seconds = Some(cpu);
    fig.cpu_seconds_per_1k_conns = (conns > 0).then(|| cpu * 1000.0 / conns as f64);
    Some(fig)
}

/// A run that stopped short near the ceiling the server's own limits predicted stopped there:
/// the limit named is the server's, with the fix.
fn server_ceiling_hit(
    f: &Finished,
    fig: Option<&ServerFigures>,
    outcome: Outcome,
    errors: &BTreeMap<String, u64>,
) -> Option<LimitHit> {
    let fig = fig?;
    let held = f.peak.established;
    let ceiling = fig.predicted_ceiling.unwrap_or(u64::MAX);
    // Within 5% (or 64 connections) of the ceiling: what the server keeps for itself varies,
    // and a client gives up with connects still in flight.
    let near = held + (ceiling / 20).max(64) >= ceiling;
    if outcome == Outcome::Reached || fig.kind == c1m_rundir::ServerKind::C1mServer {
        return None;
    }
    let rule = f.sut.before.as_ref().map(|(_, m)| &m.rule);
    let errs = || {
        let e: Vec<String> = errors
            .iter()
            .filter(|(_, v)| **v > 0)
            .take(4)
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        if e.is_empty() {
            format!(
                "{} of {} connections",
                fmt::int(held),
                fmt::int(f.opts.connections)
            )
        } else {
            format!(
                "{} of {} connections; then {}",
                fmt::int(held),
                fmt::int(f.opts.connections),
                e.join(", ")
            )
        }
    };
    // apache's MaxRequestWorkers as the preflight read it: connections past it were accepted by
    // the kernel and never answered, so the clients' timeouts are the server's ceiling.
    if let Some(server::CeilingRule::ApacheWorkers(a)) = rule.filter(|_| near) {
        return Some(LimitHit {
            kind: "server_processes".into(),
            sentence: format!(
                "{} stopped at its own {}, as the preflight predicted: it serves one connection per {} ({} MPM), and of the {} connections established at the peak those past it completed the TCP handshake in the kernel but were never answered (predicted ceiling {} before the run, from {}).",
                fig.name,
                a.conf.directive,
                a.conf.unit(),
                a.conf.mpm,
                fmt::int(held),
                fmt::int(ceiling),
                a.conf.source
            ),
            evidence: errs(),
        });
    }
    // A server that gives each connection a process of its own (Apache's prefork) stops when
    // it may start no more: as many processes as connections held says so.
    let processes = fig.processes.unwrap_or(0);
    if held >= 10 && processes >= held {
        return Some(LimitHit {
            kind: "server_processes".into(),
            sentence: format!(
                "{} serves one connection per process: it stopped at {} processes holding {} connections (its process limit, e.g. Apache's MaxRequestWorkers/ServerLimit).",
                fig.name,
                fmt::int(processes),
                fmt::int(held)
            ),
            evidence: format!(
                "{} of {} connections; errors: {}",
                fmt::int(held),
                fmt::int(f.opts.connections),
                errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    if !near {
        return None;
    }
    if let (Some(server::CeilingRule::Haproxy(h)), Some(sentence)) = (rule, &fig.ceiling_rule) {
        return Some(LimitHit {
            kind: if h.maxconn_binds() {
                "server_maxconn"
            } else {
                "server_fd_cap"
            }
            .into(),
            sentence: format!(
                "{} stopped at its own ceiling: it held {} connections, and {} (predicted ceiling {} before the run).",
                fig.name,
                fmt::int(held),
                sentence,
                fmt::int(ceiling)
            ),
            evidence: errs(),
        });
    }
    if let (Some(server::CeilingRule::NginxReuse(_)), Some(rule)) = (rule, &fig.ceiling_rule) {
        return Some(LimitHit {
            kind: "server_keepalive_reuse".into(),
            sentence: format!(
                "{} stopped where its own connection reuse predicted: it held {} connections, and {} (predicted ceiling {} before the run).",
                fig.name,
                fmt::int(held),
                rule,
                fmt::int(ceiling)
            ),
            evidence: format!(
                "{} of {} connections; {} held connections closed by the server",
                fmt::int(held),
                fmt::int(f.opts.connections),
                fmt::int(merged_clients(f.hosts).dropped)
            ),
        });
    }
    let soft: Vec<String> = fig
        .limits
        .iter()
        .map(|l| c1m_proto::fmt::int(l.nofile_soft))
        .collect();
    Some(LimitHit {
        kind: "server_fd_cap".into(),
        sentence: format!(
            "{} stopped at its own open-file limit: it held {} connections, and its RLIMIT_NOFILE (soft {} per process, /proc/{}/limits) predicted a ceiling of {} before the run.",
            fig.name,
            fmt::int(held),
            soft.join(", "),
            fig.pid.unwrap_or(0),
            fmt::int(ceiling)
        ),
        evidence: errs(),
    })
}

fn layout(l: &Option<LayoutLine>) -> Option<String> {
    l.as_ref()
        .map(|l| format!("{}×{}", l.procs, l.threads_per_proc))
}

/// One host's figures.
fn host_summary(h: &HostState, peak: &Peak, silent: bool) -> HostSummary {
    let c = h.track.client_summary.as_ref().unwrap_or(&h.track.client);
    let s = h.track.server_summary.as_ref().unwrap_or(&h.track.server);
    let layouts: Vec<String> = [
        layout(&h.track.server_layout).map(|l| format!("server {l}")),
        layout(&h.track.client_layout).map(|l| format!("client {l}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let failure = match (&h.failure, h.teardown.is_empty()) {
        (f, true) => f.clone(),
        (Some(f), false) => Some(format!("{f}; teardown: {}", h.teardown.join("; "))),
        (None, false) => Some(format!("teardown: {}", h.teardown.join("; "))),
    };
    HostSummary {
        name: h.run.host.name.clone(),
        role: h.run.role.as_str().into(),
        address: h.run.address.clone(),
        share: h.run.share,
        established_peak: if h.run.is_client() {
            h.track.established_peak
        } else {
            h.track.server_open_peak
        },
        errors: errors_of(c, s, silent),
        rss_bytes: c.rss_bytes.max(h.track.client.rss_bytes)
            + if h.run.is_server() {
                peak.server_rss
            } else {
                0
            },
        layout: layouts.join(", "),
        tuning: h.run.facts.tuning(),
        failure,
    }
}

/// What the run was asked to do, as run.json records it.
pub fn run_settings(opts: &RunOptions, source_ips: Vec<String>) -> RunSettings {
    RunSettings {
        connections: opts.connections,
        ports: opts.port_count,
        rate: opts.rate,
        hold_s: opts
            .hold
            .0
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::INFINITY),
        message_interval_s: opts
            .message_interval
            .and_then(|s| s.0)
            .map(|d| d.as_secs_f64()),
        source_ips,
        window: opts.window,
    }
}

/// The host that was busiest while connecting, and how busy (0..1).
fn busiest(hosts: &[HostState]) -> (&HostState, f64) {
    let mean = |b: &[f64]| {
        if b.is_empty() {
            0.0
        } else {
            b.iter().sum::<f64>() / b.len() as f64
        }
    };
    hosts
        .iter()
        .map(|h| (h, mean(&h.track.cpu_busy)))
        .fold(None, |best: Option<(&HostState, f64)>, x| match best {
            Some(b) if b.1 >= x.1 => Some(b),
            _ => Some(x),
        })
        .unwrap_or((&hosts[0], 0.0))
}

/// The first limit the run hit, in one sentence, with its evidence. `server` is the server under
/// test as measured (its own ceiling, when the preflight predicted one); `established` is the
/// peak of connections held at once.
#[allow(clippy::too_many_arguments)]
pub fn limit_hit(
    opts: &RunOptions,
    client: &ClientStats,
    errors: &BTreeMap<String, u64>,
    outcome: Outcome,
    reason: Option<&str>,
    hosts: &[HostState],
    ceiling: Option<&Ceiling>,
    server: Option<&ServerFigures>,
    established: u64,
) -> LimitHit {
    let hit = |kind: &str, sentence: String, evidence: String| LimitHit {
        kind: kind.into(),
        sentence,
        evidence,
    };
    // A model stopped at (about) the ceiling its preflight named: that ceiling is the limit,
    // whatever errors the connections past it met. The thread and pid counts are estimates,
    // hence the tenth of slack. Held, not verified: connections the server closed when it could
    // not start their thread were verified first by some clients and count only once held.
    let held = match established {
        0 => client.verified,
        e => client.verified.min(e),
    };
    if let Some(c) = ceiling
        .filter(|c| outcome != Outcome::Reached && held <= c.holds.saturating_add(c.holds / 10))
    {
        let model = opts.model();
        let errors = errors
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(name, count)| format!("; {name} ×{count}"))
            .unwrap_or_default();
        return hit(
            "model",
            format!(
                "{model} stops near {} here: {} ({}), as the preflight named it.",
                fmt::int(c.holds),
                c.limit,
                c.why
            ),
            format!(
                "{} of {} held at the peak; {} found {}{errors}; fix: {}",
                fmt::int(held),
                fmt::int(client.target.max(opts.connections)),
                c.limit,
                c.found,
                c.fix
            ),
        );
    }
    // Stopped by a signal: errors counted while everything was being closed (connections cut
    // mid-greeting) are teardown's, not a limit, so the interruption is named and the errors
    // are only evidence.
    if outcome == Outcome::Interrupted {
        let most = errors
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(name, count)| format!("; most frequent error: {name} ×{count}"))
            .unwrap_or_default();
        let target = client.target.max(opts.connections);
        let why = reason.unwrap_or("interrupted");
        return hit(
            "interrupted",
            if held >= target {
                format!("The target was reached; then the run was stopped while holding: {why}.")
            } else {
                format!("The run was stopped before the target: {why}.")
            },
            format!(
                "{} of {} held at the peak{most}",
                fmt::int(held),
                fmt::int(target)
            ),
        );
    }
    if outcome != Outcome::Reached {
        if let Some((name, count)) = errors.iter().max_by_key(|(_, v)| **v) {
            let (kind, sentence) = error_limit(name, server.map(|s| (s, established)));
            let evidence = if name == ANSWER_TIMEOUT {
                format!("{name} ×{count}: connections established, their answer never came")
            } else {
                format!("{name} ×{count} in the client's connect errors")
            };
            return hit(kind, sentence, evidence);
        }
        return hit(
            "time",
            format!(
                "The run ended before the target: {}.",
                reason.unwrap_or("stopped")
            ),
            format!("{} of {} verified", client.verified, client.target),
        );
    }
    if let Some(r) = opts.rate {
        return hit(
            "rate",
            format!("The target was reached; the connect rate was held at --rate {r}/s."),
            format!("--rate {r}"),
        );
    }
    let (host, busy) = busiest(hosts);
    let evidence = format!("CPU busy {:.0}% on average while connecting", busy * 100.0);
    if busy >= 0.85 {
        let cpu_where = if host.run.is_server() && host.run.is_client() {
            format!("both ends share {}'s cores", host.run.host.name)
        } else {
            format!("{} was the busiest host", host.run.host.name)
        };
        return hit(
            "cpu",
            format!("The target was reached; the connect rate was bound by CPU ({cpu_where})."),
            evidence,
        );
    }
    hit(
        "none",
        "The target was reached; no limit was hit.".into(),
        evidence,
    )
}

/// The limit an error name points at, and the sentence that says so.
fn error_limit(name: &str, server: Option<(&ServerFigures, u64)>) -> (&'static str, String) {
    if name == ANSWER_TIMEOUT {
        return ("server_no_answer", no_answer(server));
    }
    let bare = name.rsplit('_').next().unwrap_or(name);
    // A connect that times out means SYNs were dropped: conntrack's table is the usual culprit
    // on a tuned host, so the run names it (the report stays neutral).
    let kind = if bare == "ETIMEDOUT" {
        Some("conntrack")
    } else {
        c1m_rundir::limit_kind(name)
    };
    let sentence = match (kind, bare) {
        (Some("fd_cap"), "ENFILE") => {
            "The system-wide file limit (fs.file-max) stopped new sockets.".to_string()
        }
        (Some("fd_cap"), _) => "The per-table fd limit (RLIMIT_NOFILE) stopped new sockets.".into(),
        (Some("ports_x_ips"), _) => {
            "The 4-tuple space (source IPs × server ports × local ports) ran out.".into()
        }
        (Some("memory"), _) => "The kernel ran out of socket memory (tcp_mem or RAM).".into(),
        (None, "ECONNREFUSED") => "Connections were refused (ECONNREFUSED): nothing listens at the target address and ports — is the server running, and on those ports?".into(),
        (Some("conntrack"), _) => {
            "Connects timed out: SYNs were dropped (conntrack table, accept queues or memory)."
                .into()
        }
        _ => format!("Connects failed with {name}."),
    };
    (kind.unwrap_or("errors"), sentence)
}

/// Connections the kernel established whose answer never came: the server stopped serving new
/// connections. Its own ceiling, when the preflight predicted one and the server held about that
/// many (within 5% or 64), is named as the reason.
fn no_answer(server: Option<(&ServerFigures, u64)>) -> String {
    let name = server.map_or("the server", |(s, _)| s.name.as_str());
    let predicted = server.and_then(|(s, held)| Some((s.predicted_ceiling?, s, held)));
    let own = match predicted {
        Some((c, s, held)) if held + (c / 20).max(64) >= c => format!(
            "at its own ceiling of {} connections predicted before the run{}",
            fmt::int(c),
            s.ceiling_rule
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"))
        ),
        Some((c, _, held)) => format!(
            "at {} connections, short of its own ceiling of {} predicted before the run (a full accept queue, or a limit of its own the preflight does not know)",
            fmt::int(held),
            fmt::int(c)
        ),
        None => "(its own ceiling — worker processes, maxconn — or a full accept queue)".into(),
    };
    format!(
        "Connections were established but never answered: {name} stopped serving new connections {own}; the handshakes completed, so no SYN was dropped (not conntrack)."
    )
}

/// The summary for a person, then a line per host when there are several.
pub fn print(s: &RunSummary, hosts: &[HostState]) {
    println!();
    if let Some(sv) = &s.server {
        println!("server model: {}", sv.name);
    }
    // Every connection verified is not the target held (a server that closed held ones).
    match s
        .time_to_target_s
        .filter(|_| s.outcome != Outcome::NotReached)
    {
        Some(t) => println!(
            "reached {} connections in {:.2} s: mean {} conn/s, peak {} conn/s",
            fmt::int(s.target),
            t,
            fmt::int(s.connect_rate_mean as u64),
            fmt::int(s.connect_rate_peak as u64)
        ),
        _ => println!(
            "NOT reached: {} of {} connections ({})",
            fmt::int(s.established_peak),
            fmt::int(s.target),
            s.reason.as_deref().unwrap_or(s.outcome.as_str())
        ),
    }
    if let Some(p) = &s.connect_latency_us {
        println!(
            "connect latency: p50 {} µs, p99 {} µs, max {} µs",
            fmt::int(p.p50),
            fmt::int(p.p99),
            fmt::int(p.max)
        );
    }
    if s.messages_sent > 0 {
        let rtt = s
            .rtt_us
            .as_ref()
            .map(|p| format!(": p50 {} µs, p99 {} µs", fmt::int(p.p50), fmt::int(p.p99)))
            .unwrap_or_default();
        println!(
            "round trips: {} of {} messages answered{rtt}",
            fmt::int(s.messages_answered),
            fmt::int(s.messages_sent)
        );
    }
    println!(
        "memory per connection: user {:.1} B (server RSS {}), kernel {:.0} B ({})",
        s.user_bytes_per_conn,
        fmt::bytes(s.server_rss_bytes as f64),
        s.kernel_bytes_per_conn,
        if s.kernel_memory.both_ends {
            "both ends"
        } else {
            "server host"
        }
    );
    if let Some(t) = s.run_to_target_s {
        println!("from the start of c1m run to the target: {t:.2} s (connect, preflight, deploy and start-up included)");
    }
    if !s.errors.is_empty() {
        let e: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        println!("errors: {}", e.join(", "));
    }
    if let Some(l) = &s.limit {
        println!("limit: {} ({})", l.sentence, l.evidence);
    }
    if hosts.len() > 1 {
        print_hosts(s, hosts);
    }
}

fn print_hosts(s: &RunSummary, hosts: &[HostState]) {
    println!("hosts:");
    for (h, st) in s.hosts.iter().zip(hosts) {
        let what = if st.run.is_client() {
            format!("{}/{} verified", fmt::int(st.verified()), fmt::int(h.share))
        } else {
            format!("{} open at peak", fmt::int(h.established_peak))
        };
        println!(
            "  {:<12} {:<13} {:<16} {what}{}",
            h.name,
            h.role,
            h.address,
            h.failure
                .as_deref()
                .map(|f| format!(" — {f}"))
                .unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apache(ceiling: Option<u64>) -> ServerFigures {
        ServerFigures {
            name: "apache2".into(),
            predicted_ceiling: ceiling,
            ceiling_rule: ceiling.map(|_| "apache2 (prefork MPM) serves one connection per child process: at most 50 at once by MaxRequestWorkers 50 (from /x.conf)".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_connect_timeout_is_conntrack_an_answer_timeout_is_the_server() {
        let (kind, sentence) = error_limit("ETIMEDOUT", None);
        assert_eq!(kind, "conntrack");
        assert!(sentence.contains("SYNs were dropped"), "{sentence}");
        let fig = apache(Some(50));
        let (kind, sentence) = error_limit(ANSWER_TIMEOUT, Some((&fig, 50)));
        assert_eq!(kind, "server_no_answer");
        assert!(
            sentence.contains("apache2 stopped serving new connections at its own ceiling of 50")
                && sentence.contains("MaxRequestWorkers 50")
                && !sentence.contains("SYNs were dropped"),
            "{sentence}"
        );
        // Far below its ceiling: the ceiling is not blamed.
        let fig = apache(Some(5000));
        let (_, sentence) = error_limit(ANSWER_TIMEOUT, Some((&fig, 40)));
        assert!(
            sentence.contains("short of its own ceiling of 5,000"),
            "{sentence}"
        );
        let fig = apache(None);
        let (_, sentence) = error_limit(ANSWER_TIMEOUT, Some((&fig, 40)));
        assert!(
            sentence.contains("apache2 stopped serving") && sentence.contains("accept queue"),
            "{sentence}"
        );
    }
}
