//! SIGINT/SIGTERM as a flag the main loops poll: the binaries print a final summary line and
//! exit 0 instead of dying mid-line.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the stop flag and ignores SIGPIPE.
pub fn install() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Asks the main loop to stop as if a signal had come.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// For a binary driven through a pipe by a remote controller: stdin's end (the SSH channel
/// closed, deliberately or because the controller or its connection died) asks for a stop, and
/// the process leads a group of its own so one signal reaches its worker processes too. Under
/// `sudo` the binary would otherwise share sudo's group; a session leader (sshd's `sh -c` then
/// `exec`) already leads one, and setpgid's EPERM then changes nothing.
pub fn controlled_by_stdin() {
    // SAFETY: setpgid(0, 0) only changes this process's own group.
    unsafe { libc::setpgid(0, 0) };
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            use std::io::Read;
            let mut buf = [0u8; 512];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            request_stop();
        });
    if spawned.is_err() {
        // Without the watcher the controller's signals still stop the process.
        eprintln!("warning: cannot watch stdin; stop by signal only");
    }
}
