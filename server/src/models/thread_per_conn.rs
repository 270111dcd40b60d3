//! `thread-per-conn` (the course's thread per request / multi-thread synchronous model, as
//! Apache's worker MPM runs): an acceptor per fd table takes connections with a blocking accept
//! and starts a thread for each (`--stack-kib`), which reads and echoes until the peer closes.
//! Each acceptor unshares its fd table before it starts, and the threads it starts share that
//! table, so the fd cap is not the ceiling: threads are (`kernel.pid_max`,
//! `kernel.threads-max`, `vm.max_map_count` — a stack and its guard are two mappings — and the
//! memory of a stack and a kernel stack per connection). A thread that cannot be started is
//! counted by errno (`accept_EAGAIN`) and its connection closed.

use super::{accept_failed, counter_blocks, open_listeners, BlockingAccept, Ctx};
use crate::conn::{self, After};
use crate::counters::{add, Counters};
use anyhow::Context;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::sys;
use c1m_proto::threads::Workers;
use std::os::fd::RawFd;
use std::sync::Arc;

/// Bytes a connection thread reads at once, on its own stack.
const READ: usize = 2048;

/// The smallest stack a connection thread may have: glibc's PTHREAD_STACK_MIN plus the read
/// buffer.
pub const MIN_STACK_KIB: usize = 16 + READ / 1024;

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    let tables = ctx.plan.threads_per_proc;
    let counters = counter_blocks(tables);
    let stack = ctx.spec.stack_kib.max(MIN_STACK_KIB) * 1024;
    let workers = Workers::new("c1m-server");
    for index in 0..tables {
        let addrs = ctx.addrs();
        let fastopen = ctx.spec.fastopen;
        let unshare = ctx.plan.unshare;
        let setup = move || {
            if unshare {
                unshare_fd_table()?;
            }
            Ok(BlockingAccept::new(&open_listeners(
                &addrs, None, fastopen,
            )?))
        };
        let counters = counters.clone();
        let run = move |mut acceptor: BlockingAccept| -> std::io::Result<()> {
            let c = &counters[index];
            loop {
                let fd = match acceptor.accept() {
                    Ok(fd) => fd,
                    Err(e) => {
                        accept_failed(c, e);
                        continue;
                    }
                };
                add(&c.accepted, 1);
                let job = Box::new(Job {
                    fd,
                    counters: counters.clone(),
                    index,
                });
                if let Err(errno) = spawn_detached(stack, job) {
                    // pid_max, threads-max, max_map_count or memory: the ceiling, counted.
                    c.accept_error(errno);
                    add(&c.refused, 1);
                    add(&c.closed, 1);
                    sys::close(fd);
                }
            }
        };
        workers
            .spawn(index, setup, run)
            .context("spawning an acceptor thread")?;
        workers.wait_ready(1).context("acceptor setup")?;
    }
    Ok(counters)
}

/// What a connection's thread is given.
struct Job {
    fd: RawFd,
    counters: Arc<Vec<Counters>>,
    index: usize,
}

/// Starts a detached thread with a `stack`-byte stack that serves `job`'s connection; the errno
/// when the kernel or glibc refuse one. A bare pthread, not `std::thread`: std gives each of its
/// threads a signal stack of its own (two more mappings, so `vm.max_map_count` would stop the
/// model at half the threads) and aborts the process when it cannot map one.
fn spawn_detached(stack: usize, job: Box<Job>) -> Result<(), i32> {
    extern "C" fn serve(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the Box leaked below, taken back exactly once, here.
        let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
        // Nothing may unwind out of an extern "C" function.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut buf = [0u8; READ];
            conn::serve_blocking(&job.counters[job.index], job.fd, &mut buf, After::Serve);
        }));
        std::ptr::null_mut()
    }
    // SAFETY: the attribute object is initialised, used for one pthread_create and destroyed;
    // the job pointer is handed to the thread, or taken back when no thread was created.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let r = libc::pthread_attr_init(&mut attr);
        if r != 0 {
            return Err(r);
        }
        libc::pthread_attr_setstacksize(&mut attr, stack);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let arg = Box::into_raw(job).cast::<libc::c_void>();
        let mut tid: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut tid, &attr, serve, arg);
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            drop(Box::from_raw(arg.cast::<Job>()));
            return Err(r);
        }
    }
    Ok(())
}
