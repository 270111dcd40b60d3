//! The head of an HTTP/1.x response — status line and header fields — parsed byte by byte from
//! partial reads within a byte budget, keeping only what `http` and `websocket` act on: the
//! status, `Content-Length`, and whether `Transfer-Encoding` says chunked, `Connection` says
//! upgrade, `Upgrade` says websocket and `Sec-WebSocket-Accept` is the expected value. Twelve
//! bytes; nothing is buffered.

/// Header fields looked at (lower case); any other is skipped.
const FIELDS: [&[u8]; 5] = [
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"upgrade",
    b"sec-websocket-accept",
];
const CONTENT_LENGTH: u8 = 0;
const TRANSFER_ENCODING: u8 = 1;
const CONNECTION: u8 = 2;
const UPGRADE: u8 = 3;
const ACCEPT: u8 = 4;
/// In `field` while reading a name: every candidate still possible.
const ALL_FIELDS: u8 = (1 << FIELDS.len()) - 1;

/// Facts found, bits of [`Head::flags`].
pub const HAS_LENGTH: u8 = 1;
pub const CHUNKED: u8 = 2;
pub const CONNECTION_UPGRADE: u8 = 8;
pub const UPGRADE_WEBSOCKET: u8 = 16;
pub const ACCEPT_SEEN: u8 = 32;
pub const ACCEPT_WRONG: u8 = 64;

/// Where in the head the parser is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum At {
    /// `HTTP/1.`, `pos` bytes matched.
    #[default]
    Version,
    Minor,
    Space,
    /// The three digits, `pos` read.
    Code,
    /// The reason phrase, up to the end of the line.
    Reason,
    /// A field name (`pos` bytes, `field` the candidates left), or the empty line.
    Name,
    /// The value of field `field`.
    Value,
    /// The value of a field not looked at.
    Skip,
    /// The CR of the empty line was read.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not an HTTP/1.x response head.
    Malformed,
    /// More head than the budget allows.
    TooLarge,
}

/// A response head being parsed; [`Head::feed`] says when it is complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    at: At,
    /// Offset in the current item; in a value, the token-match offset or the count of Accept
    /// bytes compared.
    pos: u8,
    field: u8,
    pub flags: u8,
    pub status: u16,
    used: u16,
    /// `Content-Length`, saturated at `u32::MAX`.
    pub length: u32,
}

/// Advances a case-insensitive search for `token` in a value by one (lower-cased) byte.
/// The tokens searched for have no prefix that is also their suffix, so restarting is exact.
fn token_step(pos: u8, token: &[u8], b: u8) -> (u8, bool) {
    let p = pos as usize;
    if p == token.len() {
        return (pos, true);
    }
    if b == token[p] {
        (pos + 1, p + 1 == token.len())
    } else {
        (u8::from(b == token[0]), false)
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl Head {
    /// Consumes head bytes; `Ok(Some(k))` when the head ended after `k` bytes of `bytes` (the
    /// rest is body), `Ok(None)` when all were consumed and more are needed. `accept` is the
    /// `Sec-WebSocket-Accept` expected, if one is.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        accept: Option<&[u8]>,
        budget: u16,
    ) -> Result<Option<usize>, HeadError> {
        for (i, &b) in bytes.iter().enumerate() {
            if self.used >= budget {
                return Err(HeadError::TooLarge);
            }
            self.used += 1;
            if self.step(b, accept)? {
                return Ok(Some(i + 1));
            }
        }
        Ok(None)
    }

    /// One byte; true when it ended the head.
    fn step(&mut self, b: u8, accept: Option<&[u8]>) -> Result<bool, HeadError> {
        const VERSION: &[u8] = b"HTTP/1.";
        match self.at {
            At::Version => {
                if b != VERSION[self.pos as usize] {
                    return Err(HeadError::Malformed);
                }
                self.pos += 1;
                if self.pos as usize == VERSION.len() {
                    self.at = At::Minor;
                }
            }
            At::Minor if b.is_ascii_digit() => self.at = At::Space,
            At::Space if b == b' ' => {
                self.at = At::Code;
                self.pos = 0;
            }
            At::Code if b.is_ascii_digit() => {
                self.status = self.status * 10 + u16::from(b - b'0');
                self.pos += 1;
                if self.pos == 3 {
                    self.at = At::Reason;
                }
            }
            // Three digits and no more: a space or the end of the line follows.
            At::Reason if self.pos == 3 && b.is_ascii_digit() => return Err(HeadError::Malformed),
            At::Reason => match b {
                b'\n' => self.next_line(),
                b'\r' | b'\t' => self.pos = 4,
                _ if b < 0x20 || b == 0x7f => return Err(HeadError::Malformed),
                _ => self.pos = 4,
            },
            At::Name => return self.name(b),
            At::Value => self.value(b, accept)?,
            At::Skip => {
                if b == b'\n' {
                    self.next_line();
                }
            }
            At::End => {
                return if b == b'\n' {
                    Ok(true)
                } else {
                    Err(HeadError::Malformed)
                }
            }
            At::Minor | At::Space | At::Code => return Err(HeadError::Malformed),
        }
        Ok(false)
    }

    fn next_line(&mut self) {
        self.at = At::Name;
        self.pos = 0;
        self.field = ALL_FIELDS;
    }

    fn name(&mut self, b: u8) -> Result<bool, HeadError> {
        match b {
            b'\n' if self.pos == 0 => return Ok(true),
            b'\r' if self.pos == 0 => self.at = At::End,
            // A continuation line (obsolete folding) of a value: skipped.
            b' ' | b'\t' if self.pos == 0 => self.at = At::Skip,
            b':' if self.pos > 0 => {
                let hit = (0..FIELDS.len() as u8).find(|&f| {
                    self.field & (1 << f) != 0 && FIELDS[f as usize].len() == self.pos as usize
                });
                match hit {
                    Some(f) => {
                        self.at = At::Value;
                        self.field = f;
                        self.pos = 0;
                        if f == ACCEPT {
                            self.flags |= ACCEPT_SEEN;
                        }
                        if f == CONTENT_LENGTH {
                            self.flags |= HAS_LENGTH;
                            self.length = 0;
                        }
                    }
                    None => self.at = At::Skip,
                }
            }
            _ if b <= b' ' || b == 0x7f || b == b':' => return Err(HeadError::Malformed),
            _ => {
                let c = b.to_ascii_lowercase();
                let p = self.pos as usize;
                for (f, name) in FIELDS.iter().enumerate() {
                    if name.get(p) != Some(&c) {
                        self.field &= !(1 << f);
                    }
                }
                self.pos = self.pos.saturating_add(1);
            }
        }
        Ok(false)
    }

    fn value(&mut self, b: u8, accept: Option<&[u8]>) -> Result<(), HeadError> {
        if b == b'\n' {
            if self.field == ACCEPT && accept.is_some_and(|a| a.len() != self.pos as usize) {
                self.flags |= ACCEPT_WRONG;
            }
            if self.field == CONTENT_LENGTH && self.pos == 0 {
                return Err(HeadError::Malformed);
            }
            self.next_line();
            return Ok(());
        }
        if b == b'\r' {
            return Ok(());
        }
        if b < 0x20 && b != b'\t' || b == 0x7f {
            return Err(HeadError::Malformed);
        }
        let c = b.to_ascii_lowercase();
        match self.field {
            CONTENT_LENGTH => match (self.pos, b) {
                (0 | 1, b'0'..=b'9') => {
                    self.pos = 1;
                    let v = u64::from(self.length) * 10 + u64::from(b - b'0');
                    self.length = v.min(u64::from(u32::MAX)) as u32;
                }
                (0, _) if is_space(b) => {}
                (1 | 2, _) if is_space(b) => self.pos = 2,
                _ => return Err(HeadError::Malformed),
            },
            TRANSFER_ENCODING => {
                let (p, hit) = token_step(self.pos, b"chunked", c);
                self.pos = p;
                if hit {
                    self.flags |= CHUNKED;
                }
            }
            CONNECTION => {
                let (p, hit) = token_step(self.pos, b"upgrade", c);
                self.pos = p;
                if hit {
                    self.flags |= CONNECTION_UPGRADE;
                }
            }
            UPGRADE => {
                let (p, hit) = token_step(self.pos, b"websocket", c);
                self.pos = p;
                if hit {
                    self.flags |= UPGRADE_WEBSOCKET;
                }
            }
            _ => {
                // Sec-WebSocket-Accept: exact, around optional white space.
                let Some(want) = accept else { return Ok(()) };
                let p = self.pos as usize;
                if is_space(b) && (p == 0 || p == want.len()) {
                    return Ok(());
                }
                if want.get(p) != Some(&b) {
                    self.flags |= ACCEPT_WRONG;
                }
                self.pos = self.pos.saturating_add(1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `head` in chunks of `chunk`; the head must end exactly at its last byte.
    fn parse(head: &[u8], chunk: usize, accept: Option<&[u8]>) -> Result<Head, HeadError> {
        let mut h = Head::default();
        let mut fed = 0;
        for piece in head.chunks(chunk) {
            match h.feed(piece, accept, 16384)? {
                Some(k) => {
                    assert_eq!(fed + k, head.len(), "head ended early");
                    return Ok(h);
                }
                None => fed += piece.len(),
            }
        }
        panic!("head did not end: {h:?}");
    }

    fn every_split(head: &[u8], accept: Option<&[u8]>) -> Result<Head, HeadError> {
        let whole = parse(head, head.len(), accept);
        for chunk in 1..8 {
            assert_eq!(parse(head, chunk, accept), whole, "in {chunk}-byte pieces");
        }
        whole
    }

    #[test]
    fn nginx_head_in_any_split() {
        let h = every_split(
            b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n\
              Content-Length: 615\r\nConnection: keep-alive\r\n\r\n",
            None,
        )
        .unwrap();
        assert_eq!((h.status, h.length, h.flags), (200, 615, HAS_LENGTH));
    }

    #[test]
    fn tokens_are_case_insensitive_and_found_in_lists() {
        let h = every_split(
            b"HTTP/1.0 101 Switching\nUPGRADE: WebSocket\ncOnNeCtIoN: keep-alive, Upgrade\n\
              transfer-encoding: gzip, chunked\nConnection:close\n\n",
            None,
        )
        .unwrap();
        assert_eq!(h.status, 101);
        assert_eq!(h.flags, CHUNKED | CONNECTION_UPGRADE | UPGRADE_WEBSOCKET);
    }

    #[test]
    fn accept_is_compared_exactly() {
        let want: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let head = |v: &str| format!("HTTP/1.1 101 x\r\nSec-WebSocket-Accept: {v}\r\n\r\n");
        let ok = every_split(head("s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ").as_bytes(), Some(want));
        assert_eq!(ok.unwrap().flags, ACCEPT_SEEN);
        for wrong in [
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=x",
            "x",
        ] {
            let h = every_split(head(wrong).as_bytes(), Some(want)).unwrap();
            assert_eq!(h.flags, ACCEPT_SEEN | ACCEPT_WRONG, "{wrong}");
        }
    }

    #[test]
    fn garbage_and_oversized_heads_fail() {
        for bad in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\x00\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\x00",
        ] {
            let mut h = Head::default();
            assert_eq!(
                h.feed(bad, None, 16384),
                Err(HeadError::Malformed),
                "{bad:?}"
            );
        }
        let mut h = Head::default();
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(20_000, b'a');
        assert_eq!(h.feed(&big, None, 16384), Err(HeadError::TooLarge));
        let mut h = Head::default();
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n";
        assert_eq!(h.feed(huge, None, 16384).unwrap(), Some(huge.len()));
        assert_eq!(
            h.length,
            u32::MAX,
            "saturated, for the body limit to refuse"
        );
    }

    #[test]
    fn token_search_restarts_on_a_partial_match() {
        let mut p = 0;
        let mut hit = false;
        for &b in b"chchunked" {
            let (np, h) = token_step(p, b"chunked", b);
            p = np;
            hit |= h;
        }
        assert!(hit);
    }
}
