//! One connecting event loop: its own fd table, epoll instance and share of the connections.
//! The loop is compiled once per protocol (`Loop<P>`); the bytes on the wire are the protocol's.

use crate::counters::{add, Counters};
use crate::protocol::{AnyProtocol, Event, Failure, Protocol, Visit};
use crate::targets::{Source, Targets};
use c1m_proto::errors;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::sys::{self, Epoll};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a connection is doing. Kept with its number, a timestamp and the protocol's state: 9 bytes
/// plus the protocol's (10 for echo) a connection, indexed by fd.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
enum Phase {
    #[default]
    Free,
    Connecting,
    /// The opening request sent (the greeting, an HTTP request, a CONNECT…), its answer not
    /// complete.
    Echo,
    /// The opening request sent in the SYN (Fast Open), the handshake not seen complete yet:
    /// EPOLLOUT (the SYN-ACK arrived) takes the connect latency, as for an ordinary connect, and
    /// the connection goes on as `Echo`.
    SynSent,
    /// Verified, holding.
    Idle,
    /// A periodic message sent, its answer not complete.
    Message,
}

#[repr(C, packed)]
struct Slot<S> {
    n: u32,
    t_us: u32,
    phase: Phase,
    /// The protocol's state (echo: how much of the echo came back).
    state: S,
}

// Derived impls cannot take a packed struct's fields by reference: copy the whole slot instead.
impl<S: Copy> Clone for Slot<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Copy> Copy for Slot<S> {}
impl<S: Default> Default for Slot<S> {
    fn default() -> Self {
        Slot {
            n: 0,
            t_us: 0,
            phase: Phase::Free,
            state: S::default(),
        }
    }
}

/// What a worker is asked to do.
pub struct Plan {
    pub index: usize,
    pub threads: usize,
    pub share: u64,
    pub window: u64,
    /// Connections per second for this worker.
    pub rate: Option<f64>,
    pub index_base: u64,
    pub connect_timeout: Option<Duration>,
    pub message_interval: Option<Duration>,
    pub unshare: bool,
    pub fd_limit: usize,
    /// What every connection speaks.
    pub protocol: AnyProtocol,
    /// Staged filling: wait for this gate, keep to one source address, open the next stage.
    pub stages: Option<Arc<Stages>>,
    /// Send the opening request in the SYN (TCP Fast Open).
    pub fastopen: bool,
}

/// The gate of staged filling: worker i may start once `opened > i`. `width` workers fill at
/// once (one per core), and each opens the stage `width` further on when it has launched its share.
pub struct Stages {
    opened: Mutex<usize>,
    cv: Condvar,
    width: usize,
}

impl Stages {
    pub fn new(width: usize) -> Stages {
        Stages {
            opened: Mutex::new(width.max(1)),
            cv: Condvar::new(),
            width: width.max(1),
        }
    }

    fn wait_for(&self, worker: usize) {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        while *opened <= worker {
            opened = self.cv.wait(opened).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self, worker: usize) {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if *opened <= worker {
            *opened = worker + 1;
            self.cv.notify_all();
        }
    }
}

/// Shared with the main thread.
pub struct Shared {
    pub counters: Arc<Vec<Counters>>,
    pub targets: Arc<Targets>,
    /// Released once every worker is set up, so all start connecting at the same moment.
    pub start: Arc<Barrier>,
    /// Set by the main thread: stop opening connections (too many errors, or stopping).
    pub abort: Arc<AtomicBool>,
    pub epoch: Instant,
}

/// A worker set up on its thread, its protocol chosen: [`Worker::run`] runs its loop.
pub struct Worker(Box<dyn FnOnce() -> io::Result<()> + Send>);

impl Worker {
    /// Runs until the process exits.
    pub fn run(self) -> io::Result<()> {
        (self.0)()
    }
}

struct Loop<P: Protocol> {
    protocol: P,
    plan: Plan,
    shared: Shared,
    epoll: Epoll,
    slots: Vec<Slot<P::State>>,
    /// What the protocol asks to send; reused.
    out: Vec<u8>,
    /// Where reads land; reused.
    buf: Vec<u8>,
    in_flight: u64,
    verified: u64,
    attempts: u64,
    /// Connects and echoes in the order they started, to find the ones that time out.
    pending: VecDeque<(RawFd, u32)>,
    connect_hist: Histogram<u64>,
    rtt_hist: Histogram<u64>,
    /// Connect with the opening request in the SYN; cleared if the host turns out not to allow it
    /// (and never set for a protocol that sends nothing).
    fastopen: bool,
}

/// Sets up a worker (unshare, epoll) for the plan's protocol; returns it ready to run.
pub fn setup(plan: Plan, shared: Shared) -> io::Result<Worker> {
    if plan.unshare {
        unshare_fd_table()?;
    }
    struct Setup(Plan, Shared);
    impl Visit for Setup {
        type Output = io::Result<Worker>;
        fn visit<P: Protocol + Send + 'static>(self, protocol: P) -> io::Result<Worker> {
            let l = Loop::new(protocol, self.0, self.1)?;
            Ok(Worker(Box::new(move || l.run())))
        }
    }
    plan.protocol.clone().visit(Setup(plan, shared))
}

/// Bytes a read asks for: a response head and some body at once; the echo needs 32.
const READ_SIZE: usize = 4096;

impl<P: Protocol> Loop<P> {
    fn new(protocol: P, plan: Plan, shared: Shared) -> io::Result<Loop<P>> {
        Ok(Loop {
            protocol,
            epoll: Epoll::new(1024)?,
            slots: vec![Slot::default(); plan.fd_limit + 1],
            out: Vec::with_capacity(1024),
            buf: vec![0; READ_SIZE],
            fastopen: plan.fastopen && !P::SILENT,
            plan,
            shared,
            in_flight: 0,
            verified: 0,
            attempts: 0,
            pending: VecDeque::new(),
            connect_hist: crate::hist::new(),
            rtt_hist: crate::hist::new(),
        })
    }

    fn c(&self) -> &Counters {
        &self.shared.counters[self.plan.index]
    }

    fn now_us(&self) -> u32 {
        // Wraps after 71 minutes; only differences of recent stamps are taken.
        self.shared.epoch.elapsed().as_micros() as u32
    }

    /// Runs until the process exits.
    fn run(mut self) -> io::Result<()> {
        self.shared.start.wait();
        if let Some(stages) = &self.plan.stages {
            stages.wait_for(self.plan.index);
        }
        let started = Instant::now();
        let mut last_housekeeping = Instant::now();
        let mut pacer = self.plan.message_interval.map(crate::pacer::Pacer::new);
        let keepalive = self.protocol.keepalive_every();
        let mut next_keepalive = keepalive.map(|d| Instant::now() + d);
        let mut ready: Vec<(u32, u64)> = Vec::with_capacity(1024);
        loop {
            let allowed = self.allowed_by_rate(started);
            let wanting = self.verified + self.in_flight < self.plan.share;
            let launched = self.launch(allowed);
            let timeout =
                if wanting && self.in_flight < self.plan.window && launched == 0 && !self.aborted()
                {
                    1 // waiting for rate tokens
                } else if self.in_flight > 0 || pacer.is_some() {
                    // Messages go out in small steps, each connection at its own phase.
                    10
                } else {
                    100
                };
            ready.clear();
            ready.extend(self.epoll.wait(timeout)?);
            for &(events, token) in &ready {
                self.on_ready(token as RawFd, events);
            }
            if last_housekeeping.elapsed() >= Duration::from_millis(100) {
                last_housekeeping = Instant::now();
                self.expire();
                self.publish();
            }
            if let Some(p) = &mut pacer {
                if self.verified >= self.plan.share {
                    let (first, n) = p.due(Instant::now(), self.slots.len());
                    self.send_messages(first, n);
                }
            }
            if let (Some(at), Some(every)) = (next_keepalive, keepalive) {
                if Instant::now() >= at {
                    self.keep_alive();
                    next_keepalive = Some(at + every);
                }
            }
        }
    }

    fn aborted(&self) -> bool {
        self.shared.abort.load(Ordering::Relaxed)
    }

    /// How many more connects the rate allows right now.
    fn allowed_by_rate(&self, started: Instant) -> u64 {
        match self.plan.rate {
            None => u64::MAX,
            Some(r) => {
                let due = (started.elapsed().as_secs_f64() * r) as u64 + 1;
                due.saturating_sub(self.attempts)
            }
        }
    }

    /// Opens connections until the window is full, the share is covered or `allowed` is used.
    fn launch(&mut self, allowed: u64) -> u64 {
        let mut launched = 0;
        while launched < allowed
            && self.in_flight < self.plan.window
            && self.verified + self.in_flight < self.plan.share
            && !self.aborted()
        {
            let k = self.attempts;
            self.attempts += 1;
            launched += 1;
            add(&self.c().attempted, 1);
            let (src, dst) = if self.plan.stages.is_some() {
                self.shared.targets.pinned_pair(self.plan.index, k)
            } else {
                let pair = self.plan.index + (k as usize) * self.plan.threads;
                self.shared.targets.pair(pair)
            };
            let fd = match sys::tcp_socket() {
                Ok(fd) => fd,
                Err(e) => {
                    self.count_error(e.raw_os_error().unwrap_or(0));
                    // Out of fds or buffers: let the loop breathe rather than spin.
                    break;
                }
            };
            if fd as usize >= self.slots.len() {
                sys::close(fd);
                self.count_error(libc::EMFILE);
                continue;
            }
            let n = (self.plan.index_base + self.plan.index as u64 + k * self.plan.threads as u64)
                as u32;
            self.slots[fd as usize] = Slot {
                n,
                t_us: self.now_us(),
                phase: Phase::Connecting,
                state: P::State::default(),
            };
            self.pending.push_back((fd, n));
            self.in_flight += 1;
            if let Err(e) = self.start_connect(fd, src, dst) {
                self.fail(fd, e);
                continue;
            }
            // Registered once the opening request is out, so that a connection costs one epoll
            // event (its answer) rather than two: EPOLLOUT is asked for only while it waits.
            let phase = self.slots[fd as usize].phase;
            if phase == Phase::Free {
                continue;
            }
            let waiting = matches!(phase, Phase::Connecting | Phase::SynSent);
            let mask = sys::IN | sys::RDHUP | sys::ET | if waiting { sys::OUT } else { 0 };
            if let Err(e) = self.epoll.add(fd, mask, fd as u64) {
                self.fail(fd, e.raw_os_error().unwrap_or(0));
            }
        }
        if self.verified + self.in_flight >= self.plan.share {
            if let Some(stages) = &self.plan.stages {
                stages.open(self.plan.index + stages.width);
            }
        }
        launched
    }

    /// Binds, connects and sends the opening request if the connection allows it yet. With Fast
    /// Open the request rides in the SYN; otherwise, on loopback, it is written straight after
    /// connect(), which there usually completes the handshake inside the call (EAGAIN: EPOLLOUT
    /// will say), and elsewhere once EPOLLOUT says the handshake is done.
    fn start_connect(
        &mut self,
        fd: RawFd,
        src: Source,
        dst: std::net::SocketAddrV4,
    ) -> Result<(), i32> {
        match src {
            Source::Any => {}
            Source::Addr(ip) => sys::bind_source(fd, ip)?,
            Source::Bound(addr) => sys::bind_shared(fd, addr)?,
        }
        if P::SILENT {
            // Nothing will follow the handshake: its last ACK goes out at once (none is held
            // back for data to ride on), so the server has the connection without a delayed-ACK
            // wait. Verified as soon as the handshake is seen complete: on loopback usually
            // inside connect(), else when EPOLLOUT says.
            sys::connect(fd, dst)?;
            if sys::handshake_done(fd) {
                self.established_silently(fd);
            }
            return Ok(());
        }
        // Both ways the handshake's last ACK can wait for something to ride on: the first
        // data (ordinary connect), or the ACK of the echo (Fast Open, whose data went with the
        // SYN): one packet fewer per connection either way.
        sys::piggyback_handshake_ack(fd)?;
        if self.fastopen {
            let slot = self.slots[fd as usize];
            let mut state = slot.state;
            self.out.clear();
            self.protocol.open(slot.n, &mut state, &mut self.out);
            match sys::connect_fastopen(fd, dst, &self.out)? {
                sys::FastOpen::InSyn => {
                    let s = &mut self.slots[fd as usize];
                    s.phase = Phase::SynSent;
                    s.state = state;
                    // Connect latency is the handshake on both paths, never the wait for the
                    // answer (which holds the server's accept queue). On loopback the SYN-ACK is
                    // processed before sendto returns, as for connect() then write(); elsewhere
                    // EPOLLOUT says when it came.
                    if sys::handshake_done(fd) {
                        self.handshake_complete(fd);
                    }
                    return Ok(());
                }
                sys::FastOpen::Connecting => return Ok(()),
                // Client Fast Open is off on this host: connect the ordinary way from now on.
                sys::FastOpen::Unsupported => self.fastopen = false,
            }
        }
        sys::connect(fd, dst)?;
        // On loopback the handshake usually completes inside connect(), so the request goes at
        // once. Over a network it cannot have (the SYN-ACK is a round trip away): a send would
        // only meet EAGAIN, one wasted system call a connection (counted on the lab's client
        // VMs: 2 sends a connection), so EPOLLOUT says when instead.
        if dst.ip().is_loopback() {
            self.send_greeting(fd);
        }
        Ok(())
    }

    fn count_error(&self, errno: i32) {
        add(&self.c().errors[errors::slot(errno)], 1);
    }

    /// A connect or echo that failed: count, close, free its window place.
    fn fail(&mut self, fd: RawFd, errno: i32) {
        self.count_error(errno);
        self.release(fd);
    }

    /// A connection that broke its protocol: count by kind, close.
    fn fail_protocol(&mut self, fd: RawFd, f: Failure) {
        if let Ok(mut m) = self.c().failures.lock() {
            *m.entry(f).or_default() += 1;
        }
        self.release(fd);
    }

    /// Writes what the protocol put in `out`; false (and the connection failed) when it does
    /// not go out whole: the few bytes of a request never fill a healthy socket's buffer.
    fn flush(&mut self, fd: RawFd) -> bool {
        match sys::write(fd, &self.out) {
            Ok(w) if w == self.out.len() => true,
            Ok(_) | Err(libc::EAGAIN) => {
                self.fail(fd, libc::ENOBUFS);
                false
            }
            Err(e) => {
                self.fail(fd, e);
                false
            }
        }
    }

    fn release(&mut self, fd: RawFd) {
        let slot = &mut self.slots[fd as usize];
        match slot.phase {
            Phase::Connecting | Phase::Echo | Phase::SynSent => self.in_flight -= 1,
            Phase::Idle | Phase::Message => add(&self.shared.counters[self.plan.index].dropped, 1),
            Phase::Free => {}
        }
        slot.phase = Phase::Free;
        sys::close(fd);
    }

    fn on_ready(&mut self, fd: RawFd, events: u32) {
        let Some(slot) = self.slots.get(fd as usize).copied() else {
            return;
        };
        match slot.phase {
            Phase::Free => {}
            Phase::Connecting => {
                if events & (sys::ERR | sys::HUP) != 0 {
                    let e = sys::socket_error(fd);
                    self.fail(fd, if e == 0 { libc::ECONNRESET } else { e });
                    return;
                }
                if events & sys::OUT == 0 {
                    return;
                }
                if P::SILENT {
                    // Writable: connect() is done; SO_ERROR says whether it succeeded.
                    match sys::socket_error(fd) {
                        0 => self.established_silently(fd),
                        e => return self.fail(fd, e),
                    }
                    // A server that sent at once, or closed at once: read it as held.
                    if events & (sys::IN | sys::RDHUP) != 0 {
                        self.read_replies(fd, events);
                    }
                    return;
                }
                if self.send_greeting(fd) && events & sys::IN != 0 {
                    self.read_replies(fd, events);
                }
            }
            // The greeting rode in the SYN: writable means the SYN-ACK came.
            Phase::SynSent => {
                let broken = events & (sys::ERR | sys::HUP) != 0;
                if events & sys::OUT != 0 && !broken {
                    self.handshake_complete(fd);
                }
                // A read gets the answer, or the error (a refused SYN) by its errno.
                if events & sys::IN != 0 || broken {
                    self.read_replies(fd, events);
                }
            }
            Phase::Echo | Phase::Message | Phase::Idle => self.read_replies(fd, events),
        }
    }

    /// The handshake of a connection whose opening request is out completed: records the
    /// connect latency (from before the connect call to now) and waits for the answer.
    fn handshake_complete(&mut self, fd: RawFd) {
        let now = self.now_us();
        let s = &mut self.slots[fd as usize];
        let _ = self
            .connect_hist
            .record(u64::from(now.wrapping_sub(s.t_us)).max(1));
        s.phase = Phase::Echo;
        s.t_us = now;
    }

    /// A connection of a protocol that sends nothing whose handshake completed: its connect
    /// latency recorded, verified and held at once.
    fn established_silently(&mut self, fd: RawFd) {
        self.handshake_complete(fd);
        let slot = self.slots[fd as usize];
        self.complete(fd, slot);
    }

    /// Sends the protocol's opening request (the greeting, for echo) on a connecting socket;
    /// true once it is sent. Records the connect latency: a write succeeds only on an
    /// established connection.
    fn send_greeting(&mut self, fd: RawFd) -> bool {
        let slot = self.slots[fd as usize];
        let mut state = slot.state;
        self.out.clear();
        self.protocol.open(slot.n, &mut state, &mut self.out);
        match sys::write(fd, &self.out) {
            Ok(w) if w == self.out.len() => {
                self.slots[fd as usize].state = state;
                self.handshake_complete(fd);
                true
            }
            Ok(_) => {
                self.fail(fd, libc::ENOBUFS);
                false
            }
            Err(libc::EAGAIN) => false,
            Err(e) => {
                self.fail(fd, e);
                false
            }
        }
    }

    /// Reads what the server sent and hands it to the protocol, until the socket is drained.
    /// A read shorter than asked for drained it (new bytes raise a new edge), unless the peer
    /// also closed (`RDHUP`): then read on to see the end.
    fn read_replies(&mut self, fd: RawFd, events: u32) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let slot = self.slots[fd as usize];
            match sys::read(fd, &mut buf) {
                // A held connection the server closed is dropped, not failed.
                Ok(0) if slot.phase == Phase::Idle => break self.release(fd),
                Ok(0) => break self.fail(fd, libc::ECONNRESET),
                Ok(k) => {
                    let mut state = slot.state;
                    self.out.clear();
                    let r = self
                        .protocol
                        .input(slot.n, &mut state, &buf[..k], &mut self.out);
                    self.slots[fd as usize].state = state;
                    let event = match r {
                        Ok(event) => event,
                        Err(f) => break self.fail_protocol(fd, f),
                    };
                    if !self.out.is_empty() && !self.flush(fd) {
                        break;
                    }
                    if event == Event::Complete {
                        self.complete(fd, slot);
                    }
                    if k < buf.len() && events & sys::RDHUP == 0 {
                        break;
                    }
                }
                Err(libc::EAGAIN) => break,
                Err(libc::EINTR) => continue,
                Err(_) if slot.phase == Phase::Idle => break self.release(fd),
                Err(e) => break self.fail(fd, e),
            }
        }
        self.buf = buf;
    }

    /// The outstanding exchange completed: the opening one verifies the connection, a
    /// message's is a round trip.
    fn complete(&mut self, fd: RawFd, slot: Slot<P::State>) {
        let now = self.now_us();
        let rtt = u64::from(now.wrapping_sub(slot.t_us)).max(1);
        self.slots[fd as usize].phase = Phase::Idle;
        match slot.phase {
            Phase::Echo | Phase::SynSent => {
                // An answer before any EPOLLOUT: the handshake was done by then at the latest.
                if slot.phase == Phase::SynSent {
                    let _ = self.connect_hist.record(rtt);
                }
                self.in_flight -= 1;
                self.verified += 1;
                add(&self.c().verified, 1);
                if self.verified == self.plan.share {
                    let at = self.shared.epoch.elapsed().as_micros() as u64;
                    self.c().done_at_us.store(at.max(1), Ordering::Relaxed);
                }
            }
            Phase::Message => {
                let _ = self.rtt_hist.record(rtt);
                add(&self.c().answered, 1);
            }
            _ => {}
        }
    }

    /// Times out connects and echoes older than the connect timeout. A connect whose handshake
    /// never completed is `ETIMEDOUT`; one established whose answer never came is an answer
    /// timeout: the first means SYNs were dropped, the second a server that stopped serving.
    fn expire(&mut self) {
        let Some(limit) = self.plan.connect_timeout else {
            return;
        };
        let limit = limit.as_micros() as u32;
        let now = self.now_us();
        while let Some(&(fd, n)) = self.pending.front() {
            let s = self.slots[fd as usize];
            let live =
                s.n == n && matches!(s.phase, Phase::Connecting | Phase::Echo | Phase::SynSent);
            if !live {
                self.pending.pop_front();
            } else if now.wrapping_sub(s.t_us) > limit {
                self.pending.pop_front();
                if s.phase == Phase::Echo {
                    add(&self.c().answer_timeouts, 1);
                    self.release(fd);
                } else {
                    self.fail(fd, libc::ETIMEDOUT);
                }
            } else {
                break;
            }
        }
        self.c().connecting.store(self.in_flight, Ordering::Relaxed);
    }

    /// Hands this worker's histograms to the main thread.
    fn publish(&mut self) {
        self.c().connecting.store(self.in_flight, Ordering::Relaxed);
        // Merging walks the whole counts array (~30k buckets): skip it when nothing was
        // recorded, as for every worker that has made its share and holds.
        if self.connect_hist.is_empty() && self.rtt_hist.is_empty() {
            return;
        }
        let counters = self.shared.counters.clone();
        let mine = &counters[self.plan.index];
        if let Ok(mut h) = mine.connect_hist.lock() {
            let _ = h.add(&self.connect_hist);
            self.connect_hist.reset();
        }
        if let Ok(mut h) = mine.rtt_hist.lock() {
            let _ = h.add(&self.rtt_hist);
            self.rtt_hist.reset();
        };
    }

    /// Sends the protocol's message on the held connections among `n` slots from `first`
    /// (wrapping) that can take one, and starts each one's round-trip clock as it goes.
    fn send_messages(&mut self, first: usize, n: usize) {
        let mut sent = 0;
        for k in 0..n {
            let fd = (first + k) % self.slots.len();
            let s = self.slots[fd];
            if s.phase != Phase::Idle {
                continue;
            }
            let mut state = s.state;
            self.out.clear();
            if !self.protocol.message(s.n, &mut state, &mut self.out) {
                continue;
            }
            self.slots[fd].state = state;
            let now = self.now_us();
            if self.flush(fd as RawFd) {
                let s = &mut self.slots[fd];
                s.phase = Phase::Message;
                s.t_us = now;
                sent += 1;
            }
        }
        add(&self.c().messages, sent);
    }

    /// Keeps every held connection alive the protocol's way (MQTT: PINGREQ).
    fn keep_alive(&mut self) {
        for fd in 0..self.slots.len() {
            let s = self.slots[fd];
            if !matches!(s.phase, Phase::Idle | Phase::Message) {
                continue;
            }
            let mut state = s.state;
            self.out.clear();
            let r = self.protocol.keepalive(s.n, &mut state, &mut self.out);
            self.slots[fd].state = state;
            match r {
                Err(f) => self.fail_protocol(fd as RawFd, f),
                Ok(()) if !self.out.is_empty() => {
                    self.flush(fd as RawFd);
                }
                Ok(()) => {}
            }
        }
    }
}
