//! `io-uring` (beyond the course: completion-based): a ring per thread, each thread with its own
//! fd table and SO_REUSEPORT listeners as in `epoll-threads`. One multishot accept per
//! listener delivers every new connection; one multishot recv per connection delivers its data
//! into buffers the kernel picks from a ring of provided buffers (a buffer ring registered per
//! thread), so no connection owns a buffer while it waits. The echo is a plain `send(2)` from
//! the completion handler: a few bytes into an empty send buffer complete inline, and a send
//! request would only hold the buffer across a second completion. Per connection: the greeting
//! byte and a generation byte that tells a live connection's completions from those of an
//! earlier one with the same fd number.
//!
//! Needs Linux 6.0 (multishot recv; multishot accept and buffer rings came in 5.19): an older
//! kernel, or io_uring switched off (`kernel.io_uring_disabled`), is a clear error at start.
//!
//! Built on the `io-uring` crate (tokio-rs): the kernel's own interface with the ring mappings
//! and opcodes typed, kept up with each kernel release, and no runtime of its own.

use super::{counter_blocks, open_listeners, Ctx};
use crate::conn::{self, Close};
use crate::counters::{add, Counters};
use crate::slots::Slots;
use anyhow::Context;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::model::{kernel_version, IO_URING_MIN_KERNEL};
use c1m_proto::sys;
use c1m_proto::threads::Workers;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// Submission queue entries per ring (the completion queue is four times that).
const ENTRIES: u32 = 1024;
/// Provided buffers per thread (a power of two) and their size: a greeting is 32 bytes, and a
/// larger message arrives in several buffers.
const BUFS: u16 = 1024;
const BUF_LEN: usize = 256;
const BGID: u16 = 0;

/// What a completion belongs to (the top byte of its user data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Accept = 1,
    Recv = 2,
    Cancel = 3,
    /// The pause after an accept failure, before the accept is armed again.
    Pause = 4,
}

fn token(kind: Kind, gen: u8, idx: u32) -> u64 {
    (kind as u64) << 56 | u64::from(gen) << 32 | u64::from(idx)
}

fn untoken(ud: u64) -> (Option<Kind>, u8, u32) {
    let kind = match (ud >> 56) as u8 {
        1 => Some(Kind::Accept),
        2 => Some(Kind::Recv),
        3 => Some(Kind::Cancel),
        4 => Some(Kind::Pause),
        _ => None,
    };
    (kind, (ud >> 32) as u8, ud as u32)
}

/// A connection's state: greeting bytes and the generation of its fd number.
#[derive(Default, Clone, Copy)]
struct Slot {
    got: u8,
    gen: u8,
}

/// Refuses a kernel that cannot run the model, before any ring is set up.
fn check_kernel() -> anyhow::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if disabled != 0 {
        anyhow::bail!(
            "--model io-uring: io_uring is switched off here (kernel.io_uring_disabled = \
             {disabled}); set it to 0 or choose another model"
        );
    }
    match kernel_version(&release) {
        Some(v) if v < IO_URING_MIN_KERNEL => anyhow::bail!(
            "--model io-uring needs Linux {}.{} or later (multishot recv with provided \
             buffers); this kernel is {}; choose another model (epoll-threads)",
            IO_URING_MIN_KERNEL.0,
            IO_URING_MIN_KERNEL.1,
            release.trim()
        ),
        _ => Ok(()),
    }
}

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    check_kernel()?;
    let threads = ctx.plan.threads_per_proc;
    let counters = counter_blocks(threads);
    let workers = Workers::new("c1m-server");
    for index in 0..threads {
        let addrs = ctx.addrs();
        let fastopen = ctx.spec.fastopen;
        let unshare = ctx.plan.unshare;
        let fd_limit = ctx.fd_limit;
        let steer = ctx
            .spec
            .steer_source_base
            .filter(|_| index == 0)
            .map(|base| (base, threads as u32));
        let counters = counters.clone();
        let setup = move || {
            if unshare {
                unshare_fd_table()?;
            }
            let listeners = open_listeners(&addrs, steer, fastopen)?;
            Worker::new(listeners, fd_limit, counters, index)
        };
        workers
            .spawn(index, setup, Worker::run)
            .context("starting an io_uring worker thread")?;
        workers.wait_ready(1).context("io_uring worker setup")?;
    }
    Ok(counters)
}

/// Buffers the kernel fills and this thread gives back: a registered ring of buffer entries
/// (page-aligned, so mapped) over one allocation of `BUFS × BUF_LEN` bytes.
struct BufRing {
    entries: *mut types::BufRingEntry,
    map_len: usize,
    /// Entries handed to the kernel so far (wrapping); published with [`BufRing::publish`].
    tail: u16,
    mem: Vec<u8>,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let map_len = usize::from(BUFS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut r = BufRing {
            entries: p.cast(),
            map_len,
            tail: 0,
            mem: vec![0u8; usize::from(BUFS) * BUF_LEN],
        };
        for bid in 0..BUFS {
            r.give_back(bid);
        }
        r.publish();
        // SAFETY: the mapping and the buffers live as long as `r`, which the worker drops after
        // its ring (field order).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(p as u64, BUFS, BGID, 0)
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "io_uring: registering a buffer ring: {e} (needs Linux {}.{})",
                    IO_URING_MIN_KERNEL.0, IO_URING_MIN_KERNEL.1
                ),
            )
        })?;
        Ok(r)
    }

    /// Queues buffer `bid` for the kernel again.
    fn give_back(&mut self, bid: u16) {
        let i = usize::from(self.tail & (BUFS - 1));
        // SAFETY: i < BUFS, inside the mapping; the kernel reads entries only up to the
        // published tail, and this one is past it.
        let e = unsafe { &mut *self.entries.add(i) };
        e.set_addr(self.mem[usize::from(bid) * BUF_LEN..].as_ptr() as u64);
        e.set_len(BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail lives in the first entry of the mapping and is a u16 the kernel reads
        // with acquire semantics; a release store pairs with it.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * BUF_LEN;
        &self.mem[start..start + len.min(BUF_LEN)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`, once.
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

/// One thread's ring, listeners and connections.
struct Worker {
    // Dropped first: the kernel stops using the buffer ring before its memory goes.
    ring: IoUring,
    bufs: BufRing,
    listeners: Vec<RawFd>,
    conns: Slots<Slot>,
    counters: Arc<Vec<Counters>>,
    index: usize,
    /// How long an accept rests after a failure (EMFILE…); boxed so its address is stable
    /// while the kernel holds it.
    pause: Box<types::Timespec>,
}

impl Worker {
    fn new(
        listeners: Vec<RawFd>,
        fd_limit: usize,
        counters: Arc<Vec<Counters>>,
        index: usize,
    ) -> io::Result<Worker> {
        let ring = IoUring::builder()
            .setup_cqsize(ENTRIES * 4)
            .build(ENTRIES)
            .map_err(|e| io::Error::new(e.kind(), format!("io_uring_setup: {e}")))?;
        let bufs = BufRing::new(&ring)?;
        let mut w = Worker {
            ring,
            bufs,
            listeners,
            conns: Slots::new(fd_limit),
            counters,
            index,
            pause: Box::new(types::Timespec::new().nsec(10_000_000)),
        };
        for i in 0..w.listeners.len() {
            w.arm_accept(i as u32)?;
        }
        w.ring.submit()?;
        Ok(w)
    }

    fn c(&self) -> &Counters {
        &self.counters[self.index]
    }

    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: what an entry points at (the pause timespec) outlives the ring; the others
            // carry fds and numbers only.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_accept(&mut self, listener: u32) -> io::Result<()> {
        let fd = self.listeners[listener as usize];
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(token(Kind::Accept, 0, listener));
        self.push(e)
    }

    fn arm_recv(&mut self, fd: RawFd, gen: u8) -> io::Result<()> {
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(token(Kind::Recv, gen, fd as u32));
        self.push(e)
    }

    fn run(mut self) -> io::Result<()> {
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(ENTRIES as usize * 4);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            done.clear();
            done.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &done {
                match untoken(ud) {
                    (Some(Kind::Accept), _, i) => self.on_accept(i, res, flags)?,
                    (Some(Kind::Recv), gen, fd) => self.on_recv(fd as RawFd, gen, res, flags)?,
                    (Some(Kind::Pause), _, i) => self.arm_accept(i)?,
                    (Some(Kind::Cancel), ..) | (None, ..) => {}
                }
            }
            self.bufs.publish();
        }
    }

    fn on_accept(&mut self, listener: u32, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        if res >= 0 {
            let fd = res;
            match self.conns.get_mut(fd) {
                Some(slot) => {
                    slot.got = 0;
                    let gen = slot.gen;
                    add(&self.c().accepted, 1);
                    self.arm_recv(fd, gen)?;
                }
                None => {
                    sys::close(fd);
                    self.c().accept_error(libc::EMFILE);
                }
            }
            if !more {
                self.arm_accept(listener)?;
            }
            return Ok(());
        }
        let errno = -res;
        if errno == libc::EINVAL {
            return Err(io::Error::other(
                "io_uring: multishot accept refused (EINVAL): this kernel lacks it (Linux 5.19+)",
            ));
        }
        self.c().accept_error(errno);
        if !more {
            // EMFILE and the like: rest, then try again; the connection waits in the queue.
            let e = opcode::Timeout::new(&*self.pause).build().user_data(token(
                Kind::Pause,
                0,
                listener,
            ));
            self.push(e)?;
        }
        Ok(())
    }

    fn on_recv(&mut self, fd: RawFd, gen: u8, res: i32, flags: u32) -> io::Result<()> {
        let bid = cqueue::buffer_select(flags);
        let live = self.conns.get(fd).is_some_and(|s| s.gen == gen);
        if !live {
            // A completion of an earlier connection on this fd number: only its buffer matters.
            if let Some(bid) = bid {
                self.bufs.give_back(bid);
            }
            return Ok(());
        }
        let more = cqueue::more(flags);
        let outcome = match (res, bid) {
            (0, _) => Err(Close::PeerClosed),
            (n, Some(bid)) if n > 0 => {
                let c = &self.counters[self.index];
                let slot = self.conns.get_mut(fd);
                let data = self.bufs.data(bid, n as usize);
                let r = match slot {
                    Some(slot) => conn::received(c, &mut slot.got, data)
                        .and_then(|()| conn::echo(c, fd, data)),
                    None => Err(Close::Reset),
                };
                self.bufs.give_back(bid);
                r
            }
            (n, _) if n > 0 => Err(Close::Reset),
            (e, _) if -e == libc::ENOBUFS => Ok(()),
            (e, _) if -e == libc::EINVAL => {
                return Err(io::Error::other(
                    "io_uring: multishot recv with provided buffers refused (EINVAL): this \
                     kernel lacks it (Linux 6.0+)",
                ))
            }
            _ => Err(Close::Reset),
        };
        match outcome {
            Ok(()) if !more => self.arm_recv(fd, gen),
            Ok(()) => Ok(()),
            Err(why) => self.close(fd, gen, why, more),
        }
    }

    /// Closes a live connection; a recv still armed on it (`armed`) is cancelled first, so the
    /// socket is released and its later completions are known as stale by their generation.
    fn close(&mut self, fd: RawFd, gen: u8, why: Close, armed: bool) -> io::Result<()> {
        if armed {
            let e = opcode::AsyncCancel::new(token(Kind::Recv, gen, fd as u32))
                .build()
                .user_data(token(Kind::Cancel, gen, fd as u32));
            self.push(e)?;
        }
        let got = match self.conns.get_mut(fd) {
            Some(slot) => {
                slot.gen = slot.gen.wrapping_add(1);
                slot.got
            }
            None => 0,
        };
        conn::count_close(&self.counters[self.index], why, got);
        sys::close(fd);
        Ok(())
    }
}
