//! `http`: HTTP/1.1 keep-alive. One request (method, target, Host and extra headers from the
//! flags) on open and on every message; the response parsed as it arrives — status line, headers,
//! then a `Content-Length` or chunked body counted down, never stored — and verified by a 2xx.
//! Any other status fails the connection as `http_<code>` (`http_404`); the connection is held.

use super::head::{self, Head, HeadError};
use super::{Event, Protocol};
use c1m_proto::protocol::ProtocolArgs;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Most bytes of a response head (status line and fields), and of a chunked body's trailer.
pub const MAX_HEAD: u16 = 16 * 1024;
/// Longest chunk-size line (size, extensions).
const MAX_CHUNK_LINE: u16 = 1024;

/// The HTTP client of one run: the request every connection sends.
#[derive(Debug, Clone)]
pub struct Http {
    request: Arc<[u8]>,
    /// A HEAD request: responses carry no body whatever their Content-Length says.
    no_body: bool,
    max_body: u32,
}

/// Where the connection's current response is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum State {
    /// No request outstanding.
    #[default]
    Idle,
    Head(Head),
    /// `left` bytes of a Content-Length body to skip.
    Body {
        left: u32,
    },
    /// A chunk-size line: `size` so far, `digits` read, `line` bytes; `total` body bytes so far.
    ChunkSize {
        total: u32,
        size: u32,
        line: u16,
        digits: u8,
    },
    ChunkData {
        total: u32,
        left: u32,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd {
        total: u32,
    },
    /// Trailer fields after the last chunk: `line` bytes of the current one, `used` in all.
    Trailer {
        line: u16,
        used: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// A final status other than 2xx.
    Status(u16),
    /// Not an HTTP/1.x response.
    Malformed,
    /// A head or trailer over 16 KiB.
    HeadTooLarge,
    /// A body over --max-response.
    BodyTooLarge,
    /// A 2xx without Content-Length or chunked framing: the body would end only at close.
    NoLength,
    /// A chunked body that breaks the chunk syntax.
    BadChunk,
    /// Bytes while no request was outstanding.
    Unexpected,
}

impl Failure {
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Status(code) => format!("http_{code}").into(),
            Failure::Malformed => "http_malformed".into(),
            Failure::HeadTooLarge => "http_head_too_large".into(),
            Failure::BodyTooLarge => "http_body_too_large".into(),
            Failure::NoLength => "http_no_length".into(),
            Failure::BadChunk => "http_bad_chunk".into(),
            Failure::Unexpected => "http_unexpected_data".into(),
        }
    }
}

impl From<Failure> for super::Failure {
    fn from(f: Failure) -> Self {
        super::Failure::Http(f)
    }
}

impl From<HeadError> for Failure {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::Malformed => Failure::Malformed,
            HeadError::TooLarge => Failure::HeadTooLarge,
        }
    }
}

/// The request line and fields every connection sends (one request, held open).
pub fn request(method: &str, args: &ProtocolArgs, target: Ipv4Addr, extra: &[String]) -> String {
    let mut r = format!("{method} {} HTTP/1.1\r\n", args.path);
    let has_host = args.headers.iter().any(|h| {
        h.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("host"))
    });
    if !has_host {
        let host = args
            .host_header
            .clone()
            .unwrap_or_else(|| target.to_string());
        r.push_str(&format!("Host: {host}\r\n"));
    }
    for h in extra.iter().chain(&args.headers) {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r
}

impl Http {
    pub fn new(args: &ProtocolArgs, target: Ipv4Addr) -> Http {
        let mut r = request(&args.http_method, args, target, &[]);
        r.push_str("\r\n");
        Http {
            request: r.into_bytes().into(),
            no_body: args.http_method.eq_ignore_ascii_case("HEAD"),
            max_body: args.max_response,
        }
    }

    /// What follows a complete head, or the failure it announces.
    fn after_head(&self, h: &Head) -> Result<Option<State>, Failure> {
        match h.status {
            // Interim responses (100 Continue, 103 Early Hints): the final one follows.
            100 | 102..=199 => return Ok(Some(State::Head(Head::default()))),
            200..=299 => {}
            code => return Err(Failure::Status(code)),
        }
        if self.no_body || h.status == 204 {
            return Ok(None);
        }
        if h.flags & head::CHUNKED != 0 {
            return Ok(Some(State::ChunkSize {
                total: 0,
                size: 0,
                line: 0,
                digits: 0,
            }));
        }
        if h.flags & head::HAS_LENGTH == 0 {
            return Err(Failure::NoLength);
        }
        if h.length > self.max_body {
            return Err(Failure::BodyTooLarge);
        }
        Ok((h.length > 0).then_some(State::Body { left: h.length }))
    }

    /// Consumes what it can of `bytes` from state `st`; returns how many bytes were used and
    /// whether the response ended.
    fn step(&self, st: &mut State, bytes: &[u8]) -> Result<(usize, bool), Failure> {
        match st {
            State::Idle => Err(Failure::Unexpected),
            State::Head(h) => match h.feed(bytes, None, MAX_HEAD)? {
                None => Ok((bytes.len(), false)),
                Some(k) => match self.after_head(h)? {
                    Some(next) => {
                        *st = next;
                        Ok((k, false))
                    }
                    None => Ok((k, true)),
                },
            },
            State::Body { left } => {
                let k = bytes.len().min(*left as usize);
                *left -= k as u32;
                Ok((k, *left == 0))
            }
            State::ChunkData { total, left } => {
                let k = bytes.len().min(*left as usize);
                *left -= k as u32;
                if *left == 0 {
                    *st = State::ChunkEnd { total: *total };
                }
                Ok((k, false))
            }
            State::ChunkSize {
                total,
                size,
                line,
                digits,
            } => {
                let b = bytes[0];
                *line += 1;
                if *line > MAX_CHUNK_LINE {
                    return Err(Failure::BadChunk);
                }
                match (b, *digits) {
                    (b'\n', 0) => return Err(Failure::BadChunk),
                    (b'\n', _) if *size == 0 => *st = State::Trailer { line: 0, used: 0 },
                    (b'\n', _) => {
                        *st = State::ChunkData {
                            total: *total + *size,
                            left: *size,
                        }
                    }
                    // Extensions (`;name=value`), white space and the CR: skipped.
                    (_, 1) if !b.is_ascii_hexdigit() => *digits = 2,
                    (_, 0 | 1) if b.is_ascii_hexdigit() => {
                        *digits = 1;
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        let s = u64::from(*size) * 16 + u64::from(d);
                        if u64::from(*total) + s > u64::from(self.max_body) {
                            return Err(Failure::BodyTooLarge);
                        }
                        *size = s as u32;
                    }
                    (_, 2) if b != b'\r' && (b < 0x20 && b != b'\t' || b == 0x7f) => {
                        return Err(Failure::BadChunk)
                    }
                    (_, 2) => {}
                    _ => return Err(Failure::BadChunk),
                }
                Ok((1, false))
            }
            State::ChunkEnd { total } => match bytes[0] {
                b'\r' => Ok((1, false)),
                b'\n' => {
                    *st = State::ChunkSize {
                        total: *total,
                        size: 0,
                        line: 0,
                        digits: 0,
                    };
                    Ok((1, false))
                }
                _ => Err(Failure::BadChunk),
            },
            State::Trailer { line, used } => {
                *used += 1;
                if *used > MAX_HEAD {
                    return Err(Failure::HeadTooLarge);
                }
                match bytes[0] {
                    b'\n' if *line == 0 => return Ok((1, true)),
                    b'\n' => *line = 0,
                    b'\r' => {}
                    _ => *line += 1,
                }
                Ok((1, false))
            }
        }
    }
}

impl Protocol for Http {
    type State = State;

    fn open(&self, _n: u32, st: &mut State, out: &mut Vec<u8>) {
        *st = State::Head(Head::default());
        out.extend_from_slice(&self.request);
    }

    fn input(
        &self,
        _n: u32,
        st: &mut State,
        mut bytes: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        let mut done = false;
        while !bytes.is_empty() {
            let (used, end) = self.step(st, bytes)?;
            bytes = &bytes[used..];
            if end {
                *st = State::Idle;
                done = true;
            }
        }
        Ok(if done {
            Event::Complete
        } else {
            Event::Pending
        })
    }

    fn message(&self, n: u32, st: &mut State, out: &mut Vec<u8>) -> bool {
        if *st != State::Idle {
            return false;
        }
        self.open(n, st, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::drive::{every_split, feed, more};
    use super::super::Failure as F;
    use super::*;

    fn http(f: impl FnOnce(&mut ProtocolArgs)) -> Http {
        let mut a = ProtocolArgs::default();
        f(&mut a);
        Http::new(&a, Ipv4Addr::LOCALHOST)
    }

    fn kind(p: &Http, response: &[u8]) -> Option<F> {
        every_split(p, 0, response).failure
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn request_is_built_from_the_flags() {
        let p = http(|a| {
            a.http_method = "HEAD".into();
            a.path = "/x?y".into();
            a.headers = vec!["X-A: 1".into()];
        });
        assert_eq!(
            &*p.request,
            b"HEAD /x?y HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n\r\n"
        );
        let p = http(|a| a.headers = vec!["host: h".into()]);
        assert_eq!(&*p.request, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        let p = http(|a| a.host_header = Some("example.test".into()));
        assert_eq!(&*p.request, b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
    }

    #[test]
    fn content_length_body_then_keep_alive_round_trip() {
        let p = http(|_| {});
        let s = every_split(&p, 0, OK);
        assert_eq!((s.completes, s.failure), (1, None));
        let (mut st, _) = feed(&p, 0, OK, 4);
        let mut out = Vec::new();
        assert!(p.message(0, &mut st, &mut out));
        assert!(!p.message(0, &mut st, &mut out), "one request outstanding");
        assert_eq!(out, &*p.request);
        assert_eq!(more(&p, 0, &mut st, OK, 1).completes, 1);
        assert_eq!(st, State::Idle);
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let p = http(|_| {});
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n";
        let s = every_split(&p, 0, r);
        assert_eq!((s.completes, s.failure), (1, None));
        let bare = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(every_split(&p, 0, bare).completes, 1);
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
        ] {
            assert_eq!(kind(&p, bad), Some(F::Http(Failure::BadChunk)), "{bad:?}");
        }
    }

    #[test]
    fn statuses_other_than_2xx_fail_by_code() {
        let p = http(|_| {});
        let nf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!";
        assert_eq!(kind(&p, nf), Some(F::Http(Failure::Status(404))));
        assert_eq!(F::Http(Failure::Status(404)).name(), "http_404");
        let moved = b"HTTP/1.1 301 Moved\r\n\r\n";
        assert_eq!(kind(&p, moved), Some(F::Http(Failure::Status(301))));
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(every_split(&p, 0, interim).completes, 1);
    }

    #[test]
    fn head_responses_have_no_body() {
        let p = http(|a| a.http_method = "HEAD".into());
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 615\r\n\r\n";
        assert_eq!(every_split(&p, 0, r).completes, 1);
    }

    #[test]
    fn garbage_oversized_and_unframed_responses_fail_by_kind() {
        let p = http(|a| a.max_response = 100);
        assert_eq!(
            kind(&p, b"\x16\x03\x01\x02\x00"),
            Some(F::Http(Failure::Malformed))
        );
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(kind(&p, big), Some(F::Http(Failure::BodyTooLarge)));
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n";
        assert_eq!(kind(&p, huge), Some(F::Http(Failure::BodyTooLarge)));
        let chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n60\r\n";
        assert_eq!(
            kind(&p, &[&chunks[..], &[b'x'; 0x60], b"\r\n10\r\n"].concat()),
            Some(F::Http(Failure::BodyTooLarge))
        );
        let endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff";
        assert_eq!(kind(&p, endless), Some(F::Http(Failure::BodyTooLarge)));
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        head.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaa\r\n", 2000).flatten());
        assert_eq!(kind(&p, &head), Some(F::Http(Failure::HeadTooLarge)));
        let unframed = b"HTTP/1.0 200 OK\r\n\r\nbody until close";
        assert_eq!(kind(&p, unframed), Some(F::Http(Failure::NoLength)));
        let two = [OK, OK].concat();
        let p = http(|_| {});
        assert_eq!(kind(&p, &two), Some(F::Http(Failure::Unexpected)));
    }
}
