//! One connecting event loop: its own fd table, epoll instance and share of the connections.

use crate::counters::{add, Counters};
use crate::targets::{Source, Targets};
use c1m_proto::errors;
use c1m_proto::greeting;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::sys::{self, Epoll};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a connection is doing. Kept with its greeting number and a timestamp: 10 bytes a
/// connection, indexed by fd.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
enum Phase {
    #[default]
    Free,
    Connecting,
    /// Greeting sent, echo not complete.
    Echo,
    /// Greeting sent in the SYN (Fast Open), echo not complete: the echo is also the first
    /// sign that the handshake completed, so the connect latency is taken there.
    SynEcho,
    /// Verified, holding.
    Idle,
    /// A periodic message sent, echo not complete.
    Message,
}

#[derive(Clone, Copy, Default)]
#[repr(C, packed)]
struct Slot {
    n: u32,
    t_us: u32,
    phase: Phase,
    got: u8,
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
    /// Staged filling: wait for this gate, keep to one source address, open the next stage.
    pub stages: Option<Arc<Stages>>,
    /// Send the greeting in the SYN (TCP Fast Open).
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

pub struct Worker {
    plan: Plan,
    shared: Shared,
    epoll: Epoll,
    slots: Vec<Slot>,
    in_flight: u64,
    verified: u64,
    attempts: u64,
    /// Connects and echoes in the order they started, to find the ones that time out.
    pending: VecDeque<(RawFd, u32)>,
    connect_hist: Histogram<u64>,
    rtt_hist: Histogram<u64>,
    /// Connect with the greeting in the SYN; cleared if the host turns out not to allow it.
    fastopen: bool,
}

/// Sets up a worker (unshare, epoll); returns it ready to run.
pub fn setup(plan: Plan, shared: Shared) -> io::Result<Worker> {
    if plan.unshare {
        unshare_fd_table()?;
    }
    Ok(Worker {
        epoll: Epoll::new(1024)?,
        slots: vec![Slot::default(); plan.fd_limit + 1],
        fastopen: plan.fastopen,
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

impl Worker {
    fn c(&self) -> &Counters {
        &self.shared.counters[self.plan.index]
    }

    fn now_us(&self) -> u32 {
        // Wraps after 71 minutes; only differences of recent stamps are taken.
        self.shared.epoch.elapsed().as_micros() as u32
    }

    /// Runs until the process exits.
    pub fn run(mut self) -> io::Result<()> {
        self.shared.start.wait();
        if let Some(stages) = &self.plan.stages {
            stages.wait_for(self.plan.index);
        }
        let started = Instant::now();
        let mut last_housekeeping = Instant::now();
        let mut next_message = self.plan.message_interval.map(|d| Instant::now() + d);
        let mut ready: Vec<(u32, u64)> = Vec::with_capacity(1024);
        loop {
            let allowed = self.allowed_by_rate(started);
            let wanting = self.verified + self.in_flight < self.plan.share;
            let launched = self.launch(allowed);
            let timeout =
                if wanting && self.in_flight < self.plan.window && launched == 0 && !self.aborted()
                {
                    1 // waiting for rate tokens
                } else if self.in_flight > 0 {
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
            if let (Some(at), Some(every)) = (next_message, self.plan.message_interval) {
                if Instant::now() >= at && self.verified >= self.plan.share {
                    self.send_messages();
                    next_message = Some(at + every);
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
                got: 0,
            };
            self.pending.push_back((fd, n));
            self.in_flight += 1;
            if let Err(e) = self.start_connect(fd, src, dst) {
                self.fail(fd, e);
                continue;
            }
            // Registered once the greeting is out, so that a connection costs one epoll event
            // (its echo) rather than two: EPOLLOUT is asked for only while the greeting waits.
            if self.slots[fd as usize].phase == Phase::Free {
                continue;
            }
            let waiting = self.slots[fd as usize].phase == Phase::Connecting;
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

    /// Binds, connects and sends the greeting if the connection allows it yet. With Fast Open
    /// the greeting rides in the SYN; otherwise it is written straight after connect(), which
    /// on loopback usually completes the handshake inside the call (EAGAIN: EPOLLOUT will say).
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
        if self.fastopen {
            let g = greeting::greeting(u64::from(self.slots[fd as usize].n));
            match sys::connect_fastopen(fd, dst, &g)? {
                sys::FastOpen::InSyn => {
                    self.slots[fd as usize].phase = Phase::SynEcho;
                    return Ok(());
                }
                sys::FastOpen::Connecting => return Ok(()),
                // Client Fast Open is off on this host: connect the ordinary way from now on.
                sys::FastOpen::Unsupported => self.fastopen = false,
            }
        }
        sys::piggyback_handshake_ack(fd)?;
        sys::connect(fd, dst)?;
        self.send_greeting(fd);
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

    fn release(&mut self, fd: RawFd) {
        let slot = &mut self.slots[fd as usize];
        match slot.phase {
            Phase::Connecting | Phase::Echo | Phase::SynEcho => self.in_flight -= 1,
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
                if self.send_greeting(fd) && events & sys::IN != 0 {
                    self.read_echo(fd);
                }
            }
            Phase::Echo | Phase::SynEcho | Phase::Message => self.read_echo(fd),
            Phase::Idle => self.read_idle(fd),
        }
    }

    /// Sends the greeting of a connecting socket; true once it is sent. Records the connect
    /// latency: a write succeeds only on an established connection.
    fn send_greeting(&mut self, fd: RawFd) -> bool {
        let slot = self.slots[fd as usize];
        let g = greeting::greeting(u64::from(slot.n));
        match sys::write(fd, &g) {
            Ok(w) if w == g.len() => {
                let now = self.now_us();
                let _ = self
                    .connect_hist
                    .record(u64::from(now.wrapping_sub(slot.t_us)).max(1));
                let s = &mut self.slots[fd as usize];
                s.phase = Phase::Echo;
                s.t_us = now;
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

    /// Reads echo bytes and checks them against the greeting.
    fn read_echo(&mut self, fd: RawFd) {
        let mut buf = [0u8; 64];
        loop {
            let slot = self.slots[fd as usize];
            match sys::read(fd, &mut buf) {
                Ok(0) => return self.fail(fd, libc::ECONNRESET),
                Ok(n) => {
                    let got = slot.got as usize;
                    let want = greeting::greeting(u64::from(slot.n));
                    if got + n > greeting::LEN || buf[..n] != want[got..got + n] {
                        add(&self.c().echo_mismatch, 1);
                        return self.release(fd);
                    }
                    if got + n < greeting::LEN {
                        self.slots[fd as usize].got = (got + n) as u8;
                        continue;
                    }
                    self.echo_complete(fd, slot);
                    return;
                }
                Err(libc::EAGAIN) => return,
                Err(libc::EINTR) => continue,
                Err(e) => return self.fail(fd, e),
            }
        }
    }

    fn echo_complete(&mut self, fd: RawFd, slot: Slot) {
        let now = self.now_us();
        let rtt = u64::from(now.wrapping_sub(slot.t_us)).max(1);
        let s = &mut self.slots[fd as usize];
        s.got = 0;
        s.phase = Phase::Idle;
        if slot.phase == Phase::SynEcho {
            let _ = self.connect_hist.record(rtt);
        }
        if matches!(slot.phase, Phase::Echo | Phase::SynEcho) {
            self.in_flight -= 1;
            self.verified += 1;
            add(&self.c().verified, 1);
            if self.verified == self.plan.share {
                let at = self.shared.epoch.elapsed().as_micros() as u64;
                self.c().done_at_us.store(at.max(1), Ordering::Relaxed);
            }
        } else {
            let _ = self.rtt_hist.record(rtt);
        }
    }

    /// A held connection became readable: the server closed it, reset it, or sent junk.
    fn read_idle(&mut self, fd: RawFd) {
        let mut buf = [0u8; 256];
        loop {
            match sys::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    add(&self.c().unexpected_data, 1);
                    continue;
                }
                Err(libc::EAGAIN) => return,
                Err(libc::EINTR) => continue,
                Err(_) => break,
            }
        }
        self.release(fd);
    }

    /// Times out connects and echoes older than the connect timeout.
    fn expire(&mut self) {
        let Some(limit) = self.plan.connect_timeout else {
            return;
        };
        let limit = limit.as_micros() as u32;
        let now = self.now_us();
        while let Some(&(fd, n)) = self.pending.front() {
            let s = self.slots[fd as usize];
            let live =
                s.n == n && matches!(s.phase, Phase::Connecting | Phase::Echo | Phase::SynEcho);
            if !live {
                self.pending.pop_front();
            } else if now.wrapping_sub(s.t_us) > limit {
                self.pending.pop_front();
                self.fail(fd, libc::ETIMEDOUT);
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

    /// Sends the greeting again on every held connection and starts its round-trip clock.
    fn send_messages(&mut self) {
        let now = self.now_us();
        let mut sent = 0;
        for fd in 0..self.slots.len() {
            let s = self.slots[fd];
            if s.phase != Phase::Idle {
                continue;
            }
            let g = greeting::greeting(u64::from(s.n));
            match sys::write(fd as RawFd, &g) {
                Ok(w) if w == g.len() => {
                    let s = &mut self.slots[fd];
                    s.phase = Phase::Message;
                    s.t_us = now;
                    sent += 1;
                }
                Ok(_) => self.fail(fd as RawFd, libc::ENOBUFS),
                Err(e) => self.fail(fd as RawFd, e),
            }
        }
        add(&self.c().messages, sent);
    }
}
