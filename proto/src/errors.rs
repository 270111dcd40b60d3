//! Errors counted by kind. Connect and socket errors keep their errno name so a report can say
//! `EADDRNOTAVAIL ×1,204` and a person knows which limit was hit.

/// The errno names every report lists, in this order; anything else is `other`.
pub const KNOWN: &[(i32, &str)] = &[
    (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (libc::EMFILE, "EMFILE"),
    (libc::ENFILE, "ENFILE"),
    (libc::ENOBUFS, "ENOBUFS"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::EPIPE, "EPIPE"),
    (libc::EADDRINUSE, "EADDRINUSE"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    // A thread or process the server could not start for a connection (pid_max, threads-max).
    (libc::EAGAIN, "EAGAIN"),
];

/// A connection whose handshake completed and whose opening request went out, but whose answer
/// did not come within the connect timeout. Counted apart from `ETIMEDOUT` (a connect whose
/// handshake never completed: SYNs dropped) because it points elsewhere: the kernel accepted the
/// connection for the server, and the server never served it (Apache past MaxRequestWorkers,
/// HAProxy past maxconn, a full accept queue).
pub const ANSWER_TIMEOUT: &str = "answer_timeout";

/// Index into a counter array of `KNOWN.len() + 1` slots; the last is `other`.
pub fn slot(errno: i32) -> usize {
    KNOWN
        .iter()
        .position(|&(e, _)| e == errno)
        .unwrap_or(KNOWN.len())
}

/// The name of counter slot `i`.
pub fn slot_name(i: usize) -> &'static str {
    KNOWN.get(i).map(|&(_, n)| n).unwrap_or("other")
}

/// Number of counter slots.
pub const SLOTS: usize = KNOWN.len() + 1;

/// Name of an errno for messages (`ECONNREFUSED`), or `errno N`.
pub fn name(errno: i32) -> String {
    match KNOWN.iter().find(|&&(e, _)| e == errno) {
        Some(&(_, n)) => n.to_string(),
        None => format!("errno {errno}"),
    }
}
