//! What the client says and when it is done, the same whether its connections live in this
//! process or in worker processes: progress (JSON lines for the orchestrator, or the seed's
//! human lines), the summary, and the verdict on errors and on the hold.

use c1m_proto::errors;
use c1m_proto::launch::ClientSpec;
use c1m_proto::protocol::ProtocolKind;
use c1m_proto::stats::{emit, ClientStats};
use c1m_proto::supervise::{Verdict, Watch};
use std::collections::BTreeMap;
use std::time::Instant;

/// Where the hold is.
enum Hold {
    /// Connections still being made.
    Filling,
    Until(Instant),
    Forever,
}

/// Judges and prints the client's figures.
pub struct Watcher<'a> {
    spec: &'a ClientSpec,
    hold: Hold,
    last_verified: u64,
    last_at: Instant,
}

impl<'a> Watcher<'a> {
    pub fn new(spec: &'a ClientSpec) -> Watcher<'a> {
        Watcher {
            spec,
            hold: Hold::Filling,
            last_verified: 0,
            last_at: Instant::now(),
        }
    }

    /// Prints the summary; `failure` says why the run stopped short.
    pub fn summary(&self, s: &ClientStats, failure: Option<&str>) {
        if self.spec.json {
            emit(s);
            return;
        }
        match s.time_to_target_s {
            Some(t) => println!(
                "reached {} verified connections in {:.2} s ({:.0} connections/s)",
                s.verified,
                t,
                s.verified as f64 / t.max(1e-9)
            ),
            None => println!(
                "target not reached: {} of {} verified",
                s.verified, s.target
            ),
        }
        if let Some(p) = &s.connect_latency_us {
            println!(
                "connect latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}",
                p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        if let Some(p) = &s.rtt_us {
            println!(
                "round trip µs: p50 {} p90 {} p99 {} p99.9 {} max {} ({} messages)",
                p.p50, p.p90, p.p99, p.p999, p.max, p.count
            );
        }
        if !s.errors.is_empty() {
            println!("errors: {}", describe_errors(&s.errors));
        }
        if let Some(r) = failure {
            println!("stopped: {r}");
        }
    }

    /// Whether the summary is a pass: every connection verified, every echo right, no failure.
    pub fn passed(&self, s: &ClientStats, failure: Option<&str>) -> bool {
        s.verified >= self.spec.connections
            && !s.errors.contains_key("echo_mismatch")
            && failure.is_none()
    }
}

impl Watch<ClientStats> for Watcher<'_> {
    /// Too many errors fail the run; once every connection is verified the hold begins, and
    /// its end is the end of the run.
    fn judge(&mut self, s: &ClientStats) -> Verdict {
        let errors = s.errors_total();
        if errors > self.spec.max_errors() {
            return Verdict::Fail(abort_reason(self.spec, &s.errors, errors));
        }
        if matches!(self.hold, Hold::Filling) && s.verified >= self.spec.connections {
            self.hold = match self.spec.hold.0 {
                Some(h) => Hold::Until(Instant::now() + h),
                None => Hold::Forever,
            };
        }
        match self.hold {
            Hold::Until(end) if Instant::now() >= end => Verdict::Done,
            _ => Verdict::Go,
        }
    }

    fn tick(&mut self, s: &ClientStats) {
        if self.spec.json {
            emit(s);
        } else {
            let dt = self.last_at.elapsed().as_secs_f64().max(1e-3);
            let rate = (s.verified.saturating_sub(self.last_verified)) as f64 / dt;
            println!(
                "connections: {}, time_used: {} ms, rate: {:.0}/s, connecting: {}, errors: {}",
                s.verified,
                (s.uptime_s * 1000.0) as u64,
                rate,
                s.connecting,
                s.errors_total()
            );
        }
        self.last_verified = s.verified;
        self.last_at = Instant::now();
    }
}

fn describe_errors(errs: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<_> = errs.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why connecting was given up, with the most likely fix for the dominant errno.
fn abort_reason(spec: &ClientSpec, errs: &BTreeMap<String, u64>, total: u64) -> String {
    let top = errs
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, _)| k.as_str());
    let hint = match top {
        Some("ECONNREFUSED") => format!(
            "nothing accepts connections on {}:{}-{}: is {} running there?",
            spec.target,
            spec.ports.first,
            spec.ports.last(),
            match spec.protocol.protocol {
                ProtocolKind::Echo => "c1m-server",
                _ => "the server",
            }
        ),
        Some("EADDRNOTAVAIL") => "the source ports of (source IP × server port) are used up: \
             add --source-ips or --ports, or widen net.ipv4.ip_local_port_range"
            .into(),
        Some("EMFILE") => "the per-table fd limit was hit: lower the connections per table \
             (more --procs) or raise the hard nofile limit"
            .into(),
        Some("ENFILE") => "the system-wide file limit was hit: raise fs.file-max".into(),
        Some("ENOBUFS") | Some("ENOMEM") => {
            "the kernel is out of socket memory: raise net.ipv4.tcp_mem or add RAM".into()
        }
        Some("ETIMEDOUT") => "connects time out: the server's accept queues or the network \
             cannot keep up; lower --rate or --window"
            .into(),
        Some(errors::ANSWER_TIMEOUT) => "connections were established but never answered: \
             the server stopped serving new connections (its own ceiling: worker processes, \
             maxconn) or its accept queue is full"
            .into(),
        _ => "see the errors above".into(),
    };
    format!(
        "{total} errors exceeded --max-errors {} ({}); {hint}",
        spec.max_errors(),
        describe_errors(errs)
    )
}
