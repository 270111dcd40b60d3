//! YAML loaded into a tree that remembers where every node came from.
//!
//! serde_yaml only reports positions for syntax errors; inventories and playbooks also need them
//! for semantic errors on valid YAML (unknown keyword, wrong type), so we build the tree ourselves
//! from yaml-rust2's marked parser events. Scalars are typed as Ansible's PyYAML loader (YAML
//! 1.1) types them: `yes`/`no`/`on`/`off` are booleans.

use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where something is in a source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// An error that points at a place in an input file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}", line = pos.line, col = pos.col)]
pub struct SourceError {
    pub file: String,
    pub pos: Pos,
    pub msg: String,
}

impl SourceError {
    pub fn new(file: &str, pos: Pos, msg: impl Into<String>) -> Self {
        SourceError {
            file: file.to_string(),
            pos,
            msg: msg.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    /// What kind of node this is, in the words an error message uses.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar as text, as Ansible would stringify it (`true`, `42`).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
            _ => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(pairs) => J::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Reads nodes of one file, producing errors that name the file.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub file: &'a str,
    /// The file's text, to point inside a scalar (`key=value` arguments).
    pub text: &'a str,
}

impl Ctx<'_> {
    /// Where byte `offset` of string `node`'s value is, when the scalar sits on one line (a
    /// quoted scalar starts one column later); else the node itself.
    pub fn pos_within(&self, node: &Node, offset: usize) -> Pos {
        let Some(s) = node.as_str() else {
            return node.pos;
        };
        if s.contains('\n') || offset > s.len() || !s.is_char_boundary(offset) {
            return node.pos;
        }
        let line = self
            .text
            .lines()
            .nth(node.pos.line.saturating_sub(1))
            .unwrap_or("");
        let first = line.chars().nth(node.pos.col.saturating_sub(1));
        let quote = usize::from(matches!(first, Some('"' | '\'')));
        Pos {
            line: node.pos.line,
            col: node.pos.col + quote + s[..offset].chars().count(),
        }
    }

    pub fn err(&self, node: &Node, msg: impl Into<String>) -> SourceError {
        SourceError::new(self.file, node.pos, msg)
    }

    /// The node as a mapping whose keys are strings.
    pub fn map<'n>(
        &self,
        node: &'n Node,
        what: &str,
    ) -> Result<Vec<(&'n str, &'n Node)>, SourceError> {
        match &node.value {
            Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| match &k.value {
                    Value::Str(s) => Ok((s.as_str(), v)),
                    _ => Err(self.err(
                        k,
                        format!("{what}: expected a string key, found {}", k.kind()),
                    )),
                })
                .collect(),
            _ => Err(self.err(
                node,
                format!("{what}: expected a mapping, found {}", node.kind()),
            )),
        }
    }

    pub fn seq<'n>(&self, node: &'n Node, what: &str) -> Result<&'n [Node], SourceError> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.err(
                node,
                format!("{what}: expected a list, found {}", node.kind()),
            )),
        }
    }

    pub fn string(&self, node: &Node, what: &str) -> Result<String, SourceError> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(_) | Value::Float(_) => Ok(node.scalar_text().unwrap_or_default()),
            _ => Err(self.err(
                node,
                format!("{what}: expected a string, found {}", node.kind()),
            )),
        }
    }

    pub fn bool(&self, node: &Node, what: &str) -> Result<bool, SourceError> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) => parse_bool(s).ok_or_else(|| {
                self.err(
                    node,
                    format!("{what}: expected a boolean (true/false), found {s:?}"),
                )
            }),
            _ => Err(self.err(
                node,
                format!(
                    "{what}: expected a boolean (true/false), found {}",
                    node.kind()
                ),
            )),
        }
    }
}

/// The key node of `key` in mapping `map` (where an error about that entry points), else the
/// mapping itself.
pub fn key_node<'n>(map: &'n Node, key: &str) -> &'n Node {
    match &map.value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map_or(map, |(k, _)| k),
        _ => map,
    }
}

/// Ansible's boolean spellings (`module_utils.parsing.convert_bool`).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
        "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
        _ => None,
    }
}

/// Deepest nesting of lists and mappings a file may have. Real playbooks stay below 20 levels;
/// the bound keeps every recursive walk of the tree (here and in the engine) far from the stack's
/// end, whatever a hostile file holds.
pub const MAX_DEPTH: usize = 128;

/// How much aliases may add to a document, in bytes of tree (a node's size plus its text).
/// YAML's aliases repeat a subtree by reference; this tree copies it, so nine nested aliases of
/// ten (the "billion laughs") would ask for gigabytes. Real files repeat a few mappings.
pub const MAX_ALIAS_EXPANSION: u64 = 32 << 20;

/// Parses the first document of `text`; an empty file is `Null`.
pub fn load(file: &str, text: &str) -> Result<Node, SourceError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // Event by event rather than `Parser::load`, which recurses once per nesting level: the
    // builder refuses depth past MAX_DEPTH before the stack can run out.
    loop {
        let (ev, mark) = match parser.next_token() {
            Ok(x) => x,
            Err(e) => {
                return Err(SourceError::new(
                    file,
                    pos_of(e.marker()),
                    format!("YAML syntax error: {}", e.info()),
                ))
            }
        };
        let end = ev == Event::StreamEnd;
        builder.on_event(ev, mark);
        if end || builder.error.is_some() || (builder.done && builder.stack.is_empty()) {
            break;
        }
    }
    if let Some((pos, msg)) = builder.error {
        return Err(SourceError::new(file, pos, msg));
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        pos: Pos { line: 1, col: 1 },
    }))
}

fn pos_of(m: &Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, usize)>,
    root: Option<Node>,
    /// Anchored nodes by id, with their weight (see [`weight`]).
    anchors: HashMap<usize, (Node, u64)>,
    /// What aliases have added so far (see [`MAX_ALIAS_EXPANSION`]).
    expanded: u64,
    error: Option<(Pos, String)>,
    done: bool,
}

/// A tree's size in bytes, roughly: each node and the text of each scalar.
fn weight(node: &Node) -> u64 {
    let own = std::mem::size_of::<Node>() as u64;
    match &node.value {
        Value::Str(s) => own + s.len() as u64,
        Value::Seq(items) => own + items.iter().map(weight).sum::<u64>(),
        Value::Map(pairs) => {
            own + pairs
                .iter()
                .map(|(k, v)| weight(k) + weight(v))
                .sum::<u64>()
        }
        _ => own,
    }
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
                self.done = true;
            }
            Some((parent, _)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(pairs) => {
                    // A pending key is stored with a Null placeholder value until its value comes.
                    match pairs.last_mut() {
                        Some((_, v)) if v.pos.line == 0 => *v = node,
                        _ => {
                            if let Some(dup) = pairs.iter().find(|(k, _)| k.value == node.value) {
                                if self.error.is_none() {
                                    self.error = Some((
                                        node.pos,
                                        format!(
                                            "duplicate key {} (first at line {})",
                                            node.scalar_text()
                                                .unwrap_or_else(|| node.kind().into()),
                                            dup.0.pos.line
                                        ),
                                    ));
                                }
                            }
                            let placeholder = Node {
                                value: Value::Null,
                                pos: Pos::default(),
                            };
                            pairs.push((node, placeholder));
                        }
                    }
                }
                _ => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done && self.stack.is_empty() {
            return; // only the first document counts
        }
        let pos = pos_of(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let value = if style == TScalarStyle::Plain && tag.is_none() {
                    plain_scalar(&text)
                } else {
                    Value::Str(text)
                };
                let node = Node { value, pos };
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), weight(&node)));
                }
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error = Some((
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels of lists and mappings"),
                    ));
                    return;
                }
                let value = if matches!(ev, Event::SequenceStart(..)) {
                    Value::Seq(Vec::new())
                } else {
                    Value::Map(Vec::new())
                };
                self.stack.push((Node { value, pos }, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, anchor)) = self.stack.pop() {
                    merge_keys(&mut node);
                    // yaml-rust2 marks a block mapping where its first `:` is; the first key is
                    // where a reader looks.
                    if let Value::Map(pairs) = &node.value {
                        if let Some((k, _)) = pairs.first() {
                            if (k.pos.line, k.pos.col) < (node.pos.line, node.pos.col) {
                                node.pos = k.pos;
                            }
                        }
                    }
                    if anchor > 0 {
                        let w = weight(&node);
                        self.anchors.insert(anchor, (node.clone(), w));
                    }
                    self.push_value(node);
                }
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some((n, w)) => {
                        self.expanded = self.expanded.saturating_add(*w);
                        if self.expanded > MAX_ALIAS_EXPANSION {
                            self.error = Some((
                                pos,
                                format!(
                                    "aliases expand this document past {} MiB (a \"billion \
                                     laughs\" file?); c1m copies what an alias names, so it stops here",
                                    MAX_ALIAS_EXPANSION >> 20
                                ),
                            ));
                            return;
                        }
                        Node {
                            value: n.value.clone(),
                            pos,
                        }
                    }
                    None => Node {
                        value: Value::Null,
                        pos,
                    },
                };
                self.push_value(node);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.1 merge keys (`<<: *base`), which PyYAML and so Ansible honour: the merged mapping's
/// pairs are added unless the mapping has its own.
fn merge_keys(node: &mut Node) {
    let Value::Map(pairs) = &mut node.value else {
        return;
    };
    if !pairs.iter().any(|(k, _)| k.as_str() == Some("<<")) {
        return;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = std::mem::take(pairs)
        .into_iter()
        .partition(|(k, _)| k.as_str() == Some("<<"));
    for (_, source) in merges {
        let maps: Vec<Node> = match source.value {
            Value::Seq(items) => items,
            other => vec![Node {
                value: other,
                pos: source.pos,
            }],
        };
        for m in maps {
            if let Value::Map(extra) = m.value {
                for (k, v) in extra {
                    if !own.iter().any(|(ok, _)| ok.value == k.value) {
                        own.push((k, v));
                    }
                }
            }
        }
    }
    *pairs = own;
}

/// Types an unquoted scalar as YAML 1.1 (PyYAML) does for the cases playbooks meet.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    let digits = text.replace('_', "");
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit());
    if looks_numeric {
        // YAML 1.1: a leading 0 means octal (`mode: 0644` is 420).
        let unsigned = digits.trim_start_matches(['-', '+']);
        if unsigned.len() > 1
            && unsigned.starts_with('0')
            && unsigned.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            if let Ok(i) = i64::from_str_radix(unsigned, 8) {
                return Value::Int(if digits.starts_with('-') { -i } else { i });
            }
        }
        if let Ok(i) = digits.parse::<i64>() {
            return Value::Int(i);
        }
        if let Some(hex) = digits.strip_prefix("0x") {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Value::Int(i);
            }
        }
        if digits.contains('.') || digits.contains(['e', 'E']) {
            if let Ok(f) = digits.parse::<f64>() {
                return Value::Float(f);
            }
        }
    }
    Value::Str(text.to_string())
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let octal = load("f.yml", "m: 0644\nq: '0644'\nd: 1_000\n").unwrap();
        let Value::Map(pairs) = &octal.value else {
            panic!()
        };
        assert_eq!(pairs[0].1.value, Value::Int(0o644));
        assert_eq!(pairs[1].1.value, Value::Str("0644".into()));
        assert_eq!(pairs[2].1.value, Value::Int(1000));
        let n = load("f.yml", "a: 1\nb:\n  - yes\n  - \"x\"\n").unwrap();
        let ctx = Ctx {
            file: "f.yml",
            text: "",
        };
        let m = ctx.map(&n, "top").unwrap();
        assert_eq!(m[0].0, "a");
        assert_eq!(m[0].1.value, Value::Int(1));
        assert_eq!(m[0].1.pos, Pos { line: 1, col: 4 });
        let items = ctx.seq(m[1].1, "b").unwrap();
        assert_eq!(items[0].value, Value::Bool(true));
        assert_eq!(items[1].value, Value::Str("x".into()));
        assert_eq!(items[1].pos, Pos { line: 4, col: 5 });
    }

    #[test]
    fn syntax_and_duplicate_errors_have_positions() {
        let e = load("f.yml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.file, "f.yml");
        assert!(e.pos.line >= 1, "{e}");
        let e = load("f.yml", "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 }, "{e}");
        assert!(e.msg.contains("duplicate key a"), "{e}");
    }

    #[test]
    fn billion_laughs_stops_with_a_position_in_bounded_time() {
        let mut text = String::from("a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
            .windows(2)
            .map(|w| (w[0], w[1]))
        {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let e = load("laughs.yml", &text).unwrap_err();
        assert!(e.msg.contains("billion laughs"), "{e}");
        assert!(e.pos.line >= 2, "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // A few ordinary aliases are fine.
        let ok = load("ok.yml", "base: &b {x: 1}\none: *b\ntwo: {<<: *b, y: 2}\n").unwrap();
        assert_eq!(ok.to_json()["two"]["x"], serde_json::json!(1));
    }

    #[test]
    fn deep_nesting_is_refused_with_a_position() {
        let deep = "[".repeat(100_000);
        let e = load("deep.yml", &deep).unwrap_err();
        // The scanner itself bounds flow nesting; block nesting is bounded here.
        assert!(
            e.msg.contains("nesting deeper than") || e.msg.contains("recursion limit"),
            "{e}"
        );
        assert_eq!(e.pos.line, 1);
        let block: String = (0..300)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let e = load("deep.yml", &block).unwrap_err();
        assert!(e.msg.contains("nesting deeper than"), "{e}");
        let fine: String = "[".repeat(50) + &"]".repeat(50);
        assert!(load("ok.yml", &fine).is_ok());
    }
}
