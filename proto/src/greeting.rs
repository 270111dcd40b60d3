//! The greeting of the seed's experiment: `Hello Server: client --> N`, NUL-padded to 32 bytes.
//! The server echoes it unchanged; the client checks the echo byte for byte.

/// Length of every greeting on the wire.
pub const LEN: usize = 32;

/// Every greeting starts with these bytes; the server uses them to tell a client from garbage.
pub const PREFIX: &[u8] = b"Hello Server: client --> ";

/// The decimal digits of `n`, written into the end of `buf`.
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The greeting for connection number `n`.
pub fn greeting(n: u64) -> [u8; LEN] {
    let mut buf = [0u8; LEN];
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 20];
    // u64::MAX has 20 digits but only 7 fit; the counter never gets near that, so keep the
    // low-order digits, which stay unique for the first 10^7 connections of a client.
    let d = decimal(n, &mut digits);
    let room = LEN - PREFIX.len();
    let d = &d[d.len().saturating_sub(room)..];
    buf[PREFIX.len()..PREFIX.len() + d.len()].copy_from_slice(d);
    buf
}

/// Whether `bytes`, the first bytes a connection sent (starting at offset `at` of its greeting),
/// can still be a greeting.
pub fn prefix_matches(at: usize, bytes: &[u8]) -> bool {
    if at >= PREFIX.len() {
        return true;
    }
    let end = (at + bytes.len()).min(PREFIX.len());
    bytes[..end - at] == PREFIX[at..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_is_padded_and_numbered() {
        let g = greeting(294563);
        assert_eq!(&g[..], b"Hello Server: client --> 294563\0");
        assert_eq!(g[31], 0);
        assert_eq!(&greeting(0)[..26], b"Hello Server: client --> 0");
    }

    #[test]
    fn prefix_check_works_in_pieces() {
        assert!(prefix_matches(0, b"Hello"));
        assert!(prefix_matches(5, b" Server: client --> 12"));
        assert!(!prefix_matches(0, b"GET / HTTP/1.1\r\n"));
        assert!(!prefix_matches(6, b"Xerver"));
        assert!(prefix_matches(30, b"anything"));
    }
}
