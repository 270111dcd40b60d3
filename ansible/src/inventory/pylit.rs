//! Values in INI inventories, typed as Ansible types them: with Python's `ast.literal_eval`,
//! falling back to the text itself. So `2222` is an integer, `True` a boolean, `'a b'` the
//! string `a b`, `[1, 2]` a list, and `yes`, `0644` or `10.0.0.1` stay strings.

use serde_json::{Map, Number, Value as Json};

/// The value of `text` as `ast.literal_eval` reads it, else the text (trimmed) as a string.
pub fn value(text: &str) -> Json {
    let text = text.trim();
    let mut p = Lit {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    match p.expr() {
        Some(v) if p.at_end() => v,
        _ => Json::String(text.to_string()),
    }
}

struct Lit<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

/// Nesting a literal may have (lists in dicts in lists…); deeper text stays a string.
const MAX_DEPTH: usize = 64;

impl Lit<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips blanks and a trailing `# comment` (Python source allows both).
    fn blank(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.i += 1,
                b'#' => self.i = self.s.len(),
                _ => break,
            }
        }
    }

    fn at_end(&mut self) -> bool {
        self.blank();
        self.i == self.s.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.blank();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Json> {
        self.blank();
        match self.peek()? {
            b'[' => self.seq(b'[', b']'),
            b'(' => self.seq(b'(', b')'),
            b'{' => self.dict(),
            b'\'' | b'"' => self.string(),
            b'r' | b'R' | b'u' | b'U' if matches!(self.s.get(self.i + 1), Some(b'\'' | b'"')) => {
                let raw = matches!(self.peek(), Some(b'r' | b'R'));
                self.i += 1;
                if raw {
                    self.raw_string()
                } else {
                    self.string()
                }
            }
            b'-' | b'+' | b'0'..=b'9' | b'.' => self.number(),
            _ => self.word(),
        }
    }

    fn word(&mut self) -> Option<Json> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        match &self.s[start..self.i] {
            b"True" => Some(Json::Bool(true)),
            b"False" => Some(Json::Bool(false)),
            b"None" => Some(Json::Null),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        let negative = match self.peek() {
            Some(b'-') => {
                self.i += 1;
                true
            }
            Some(b'+') => {
                self.i += 1;
                false
            }
            _ => false,
        };
        let body_start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
            || (matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.s.get(self.i - 1), Some(b'e' | b'E'))
                && !self.s[body_start..self.i].starts_with(b"0x"))
        {
            self.i += 1;
        }
        let body = std::str::from_utf8(&self.s[body_start..self.i]).ok()?;
        if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
            return None;
        }
        let digits = body.replace('_', "");
        let sign = |n: i64| if negative { -n } else { n };
        let lower = digits.to_ascii_lowercase();
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                return i64::from_str_radix(rest, radix)
                    .ok()
                    .map(|n| Json::from(sign(n)));
            }
        }
        if digits.bytes().all(|c| c.is_ascii_digit()) {
            // Python 3 refuses leading zeros (`0644` is a syntax error): that stays a string.
            if digits.len() > 1 && digits.starts_with('0') && digits.bytes().any(|c| c != b'0') {
                return None;
            }
            return digits.parse::<i64>().ok().map(|n| Json::from(sign(n)));
        }
        let looks_float = digits
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
            && digits.bytes().any(|c| c.is_ascii_digit());
        if !looks_float {
            self.i = start;
            return None;
        }
        let f: f64 = digits.parse().ok()?;
        Number::from_f64(if negative { -f } else { f }).map(Json::Number)
    }

    fn raw_string(&mut self) -> Option<Json> {
        let quote = self.peek()?;
        self.i += 1;
        let start = self.i;
        while self.peek()? != quote {
            if self.peek()? == b'\\' {
                self.i += 1;
            }
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .to_string();
        self.i += 1;
        Some(Json::String(s))
    }

    fn string(&mut self) -> Option<Json> {
        let quote = self.peek()?;
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                _ if c == quote => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0' => out.push(0),
                        b'\\' | b'\'' | b'"' => out.push(e),
                        b'x' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 2)?).ok()?;
                            let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                            self.i += 2;
                            let mut buf = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                            self.i += 4;
                            let mut buf = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        // Python keeps unknown escapes as written.
                        other => {
                            out.push(b'\\');
                            out.push(other);
                        }
                    }
                }
                b'\n' => return None,
                _ => out.push(c),
            }
        }
        String::from_utf8(out).ok().map(Json::String)
    }

    fn nested(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn seq(&mut self, open: u8, close: u8) -> Option<Json> {
        self.nested()?;
        self.eat(open);
        let mut items = Vec::new();
        if !self.eat(close) {
            loop {
                items.push(self.expr()?);
                if self.eat(close) {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
                if self.eat(close) {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(Json::Array(items))
    }

    fn dict(&mut self) -> Option<Json> {
        self.nested()?;
        self.eat(b'{');
        let mut map = Map::new();
        if !self.eat(b'}') {
            loop {
                let key = match self.expr()? {
                    Json::String(s) => s,
                    Json::Null => "None".into(),
                    Json::Bool(b) => if b { "True" } else { "False" }.into(),
                    Json::Number(n) => n.to_string(),
                    _ => return None,
                };
                if !self.eat(b':') {
                    return None;
                }
                map.insert(key, self.expr()?);
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
                if self.eat(b'}') {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(Json::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_as_literal_eval_types_them() {
        assert_eq!(value("2222"), json!(2222));
        assert_eq!(value("-3"), json!(-3));
        assert_eq!(value("1_000"), json!(1000));
        assert_eq!(value("0x10"), json!(16));
        assert_eq!(value("1.5"), json!(1.5));
        assert_eq!(value("True"), json!(true));
        assert_eq!(value("None"), json!(null));
        assert_eq!(value("'a b'"), json!("a b"));
        assert_eq!(value("\"x\\ty\""), json!("x\ty"));
        assert_eq!(value("[1, 'a', [True]]"), json!([1, "a", [true]]));
        assert_eq!(value("(1, 2,)"), json!([1, 2]));
        assert_eq!(value("{'a': 1, 2: 'b'}"), json!({"a": 1, "2": "b"}));
        assert_eq!(value("1 # a comment"), json!(1));
    }

    #[test]
    fn anything_else_stays_text() {
        for s in [
            "yes", "0644", "10.0.0.1", "1-2", "a b", "true", "/path/x", "'open", "[1, 2", "1e",
            "0x", "", "{'a' 1}",
        ] {
            assert_eq!(value(s), json!(s), "{s}");
        }
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert_eq!(value(&deep), json!(deep));
    }
}
