//! Ansible's own Jinja2 filters and tests that tuning playbooks and templates use, on top of
//! minijinja's builtins: `ternary`, `combine`, `dict2items`, `items2dict`, `regex_replace`,
//! `regex_search`, `basename`, `dirname`, `to_nice_json`, `from_json`, `mandatory`, `d`,
//! `flatten`, `b64encode`, `b64decode`; tests `match`, `search`, `regex`.

use base64::Engine;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn regex(pattern: &str, ignorecase: bool, multiline: bool) -> Result<regex::Regex, Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| invalid(format!("bad regular expression {pattern:?}: {e}")))
}

/// Python's `\\1` / `\\g<name>` in a replacement, as the regex crate writes it (`${1}`).
fn replacement(r: &str) -> String {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

fn json_of(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn flags(kwargs: &Kwargs) -> Result<(bool, bool), Error> {
    let i: Option<bool> = kwargs.get("ignorecase")?;
    let m: Option<bool> = kwargs.get("multiline")?;
    Ok((i.unwrap_or(false), m.unwrap_or(false)))
}

pub fn add(env: &mut Environment<'static>) {
    env.add_filter(
        "ternary",
        |v: Value, yes: Value, no: Value, none: Option<Value>| {
            if v.is_none() || v.is_undefined() {
                if let Some(n) = none {
                    return n;
                }
            }
            if v.is_true() {
                yes
            } else {
                no
            }
        },
    );
    env.add_filter(
        "combine",
        |base: Value,
         rest: minijinja::value::Rest<Value>,
         kwargs: Kwargs|
         -> Result<Value, Error> {
            let recursive: Option<bool> = kwargs.get("recursive")?;
            kwargs.assert_all_used()?;
            fn merge(a: &mut serde_json::Value, b: serde_json::Value, deep: bool) {
                match (a, b) {
                    (serde_json::Value::Object(am), serde_json::Value::Object(bm)) => {
                        for (k, v) in bm {
                            match am.get_mut(&k) {
                                Some(old) if deep && old.is_object() && v.is_object() => {
                                    merge(old, v, deep)
                                }
                                _ => {
                                    am.insert(k, v);
                                }
                            }
                        }
                    }
                    (a, b) => *a = b,
                }
            }
            let mut out = json_of(&base);
            if !out.is_object() {
                return Err(invalid("combine: expects mappings"));
            }
            for other in rest.iter() {
                let o = json_of(other);
                if !o.is_object() {
                    return Err(invalid("combine: expects mappings"));
                }
                merge(&mut out, o, recursive.unwrap_or(false));
            }
            Ok(Value::from_serialize(&out))
        },
    );
    env.add_filter("dict2items", |v: Value| -> Result<Value, Error> {
        match json_of(&v) {
            serde_json::Value::Object(m) => Ok(Value::from_serialize(
                m.into_iter()
                    .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                    .collect::<Vec<_>>(),
            )),
            _ => Err(invalid("dict2items expects a mapping")),
        }
    });
    env.add_filter("items2dict", |v: Value| -> Result<Value, Error> {
        let mut out = serde_json::Map::new();
        match json_of(&v) {
            serde_json::Value::Array(items) => {
                for i in items {
                    let k = i
                        .get("key")
                        .and_then(|k| k.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| invalid("items2dict: every item needs a string `key`"))?;
                    out.insert(
                        k,
                        i.get("value").cloned().unwrap_or(serde_json::Value::Null),
                    );
                }
                Ok(Value::from_serialize(&out))
            }
            _ => Err(invalid("items2dict expects a list")),
        }
    });
    env.add_filter(
        "regex_replace",
        |s: String,
         pattern: String,
         repl: Option<String>,
         kwargs: Kwargs|
         -> Result<String, Error> {
            let (i, m) = flags(&kwargs)?;
            Ok(regex(&pattern, i, m)?
                .replace_all(&s, replacement(&repl.unwrap_or_default()))
                .into_owned())
        },
    );
    env.add_filter(
        "regex_search",
        |s: String, pattern: String, kwargs: Kwargs| -> Result<Value, Error> {
            let (i, m) = flags(&kwargs)?;
            Ok(regex(&pattern, i, m)?
                .find(&s)
                .map_or(Value::from(()), |f| Value::from(f.as_str())))
        },
    );
    env.add_filter("basename", |s: String| {
        std::path::Path::new(&s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    env.add_filter("dirname", |s: String| {
        std::path::Path::new(&s)
            .parent()
            .map(|n| n.display().to_string())
            .unwrap_or_default()
    });
    env.add_filter(
        "to_nice_json",
        |v: Value, kwargs: Kwargs| -> Result<String, Error> {
            let indent: Option<usize> = kwargs.get("indent")?;
            let json = json_of(&v);
            let pad = " ".repeat(indent.unwrap_or(4));
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(pad.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&json, &mut ser).map_err(|e| invalid(e.to_string()))?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        },
    );
    env.add_filter("from_json", |s: String| -> Result<Value, Error> {
        serde_json::from_str::<serde_json::Value>(&s)
            .map(|v| Value::from_serialize(&v))
            .map_err(|e| invalid(format!("from_json: {e}")))
    });
    env.add_filter(
        "mandatory",
        |v: Value, msg: Option<String>| -> Result<Value, Error> {
            if v.is_undefined() {
                Err(Error::new(
                    ErrorKind::UndefinedError,
                    msg.unwrap_or_else(|| "mandatory variable not defined".into()),
                ))
            } else {
                Ok(v)
            }
        },
    );
    env.add_filter(
        "d",
        |v: Value, default: Option<Value>, boolean: Option<bool>| {
            if v.is_undefined() || (boolean.unwrap_or(false) && !v.is_true()) {
                default.unwrap_or_else(|| Value::from(""))
            } else {
                v
            }
        },
    );
    env.add_filter("flatten", |v: Value, levels: Option<usize>| -> Value {
        fn flat(v: serde_json::Value, depth: Option<usize>, out: &mut Vec<serde_json::Value>) {
            match v {
                serde_json::Value::Array(items) if depth != Some(0) => {
                    for i in items {
                        flat(i, depth.map(|d| d - 1), out);
                    }
                }
                other => out.push(other),
            }
        }
        let mut out = Vec::new();
        match json_of(&v) {
            serde_json::Value::Array(items) => {
                for i in items {
                    flat(
                        i,
                        levels
                            .map(|l| l.saturating_sub(1))
                            .filter(|_| levels.is_some()),
                        &mut out,
                    );
                }
            }
            other => out.push(other),
        }
        Value::from_serialize(&out)
    });
    env.add_filter("b64encode", |s: String| {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    });
    env.add_filter("b64decode", |s: String| -> Result<String, Error> {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| invalid(format!("b64decode: {e}")))
    });
    env.add_filter("type_debug", |v: Value| match v.kind() {
        ValueKind::String => "str",
        ValueKind::Number => "int",
        ValueKind::Bool => "bool",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        ValueKind::None | ValueKind::Undefined => "NoneType",
        _ => "object",
    });
    env.add_test(
        "match",
        |s: String, pattern: String, kwargs: Kwargs| -> Result<bool, Error> {
            let (i, m) = flags(&kwargs)?;
            Ok(regex(&format!("^(?:{pattern})"), i, m)?.is_match(&s))
        },
    );
    env.add_test(
        "search",
        |s: String, pattern: String, kwargs: Kwargs| -> Result<bool, Error> {
            let (i, m) = flags(&kwargs)?;
            Ok(regex(&pattern, i, m)?.is_match(&s))
        },
    );
    env.add_test(
        "regex",
        |s: String, pattern: String, kwargs: Kwargs| -> Result<bool, Error> {
            let (i, m) = flags(&kwargs)?;
            Ok(regex(&pattern, i, m)?.is_match(&s))
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::template::Templar;
    use serde_json::json;

    #[test]
    fn ansible_filters_and_tests() {
        let t = Templar::new();
        let c = minijinja::Value::from_serialize(
            json!({"a": {"x": 1}, "b": {"y": 2}, "s": "net.core.somaxconn"}),
        );
        let r = |e: &str| t.render(&json!(e), &c).unwrap();
        assert_eq!(r("{{ a | combine(b) }}"), json!({"x": 1, "y": 2}));
        assert_eq!(r("{{ a | dict2items }}"), json!([{"key": "x", "value": 1}]));
        assert_eq!(
            r("{{ s | regex_replace('^net\\\\.(\\\\w+)\\\\..*$', '\\\\1') }}"),
            json!("core")
        );
        assert_eq!(
            r("{{ (s is match('net')) | ternary('y', 'n') }}"),
            json!("y")
        );
        assert_eq!(r("{{ '/etc/x.conf' | basename }}"), json!("x.conf"));
        assert_eq!(r("{{ [[1, [2]], 3] | flatten }}"), json!([1, 2, 3]));
        assert_eq!(r("{{ nope | d('z') }}"), json!("z"));
        assert!(t.render(&json!("{{ nope | mandatory }}"), &c).is_err());
    }
}
