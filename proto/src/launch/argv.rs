//! Rendering a spec to argv from its clap definition: every argument clap knows is looked up by
//! its id among the spec's fields (serialized with serde, flattened groups opened), so a field
//! added to a spec is rendered without anyone listing it.

use clap::{ArgAction, CommandFactory, Parser};
use serde::Serialize;
use serde_json::{Map, Value};

/// `--flag=value` for each value of each argument; `--flag` for a switch that is on.
pub(super) fn render<S: CommandFactory + Serialize>(spec: &S) -> Vec<String> {
    let fields = fields(spec);
    let mut out = Vec::new();
    for arg in S::command().get_arguments() {
        let (Some(long), Some(value)) = (arg.get_long(), fields.get(arg.get_id().as_str())) else {
            continue;
        };
        let flag = format!("--{long}");
        match arg.get_action() {
            ArgAction::SetTrue if value == &Value::Bool(true) => out.push(flag),
            ArgAction::SetFalse if value == &Value::Bool(false) => out.push(flag),
            ArgAction::SetTrue | ArgAction::SetFalse => {}
            ArgAction::Count => {
                let n = value.as_u64().unwrap_or(0);
                out.extend((0..n).map(|_| flag.clone()));
            }
            _ => out.extend(items(value).into_iter().map(|v| format!("{flag}={v}"))),
        }
    }
    out
}

/// The spec's fields by name, the fields of `#[command(flatten)]` groups among them.
pub(super) fn fields<S: Serialize>(spec: &S) -> Map<String, Value> {
    fn open(into: &mut Map<String, Value>, obj: Map<String, Value>) {
        for (k, v) in obj {
            match v {
                Value::Object(inner) => open(into, inner),
                v => {
                    into.insert(k, v);
                }
            }
        }
    }
    let mut out = Map::new();
    // Specs are plain structs of numbers, strings, addresses and lists: they always serialize.
    if let Ok(Value::Object(obj)) = serde_json::to_value(spec) {
        open(&mut out, obj);
    }
    out
}

/// A field's value as the strings clap parses: none for an absent option, one per list item.
fn items(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().flat_map(items).collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

/// The spec clap builds from no arguments: every default, from the one place they are declared.
pub(super) fn defaults<S: Parser>() -> S {
    S::parse_from([S::command().get_name().to_string()])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::launch::Spec;
    use std::collections::BTreeSet;

    /// Every argument has a field of the same name and every field an argument: nothing the
    /// spec holds is left out of argv, nothing argv says is lost in the spec.
    pub fn flags_and_fields_match<S: Spec + Default>() {
        let flags: BTreeSet<String> = S::command()
            .get_arguments()
            .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
            .map(|a| {
                assert!(a.get_long().is_some(), "{} has no long flag", a.get_id());
                a.get_id().to_string()
            })
            .collect();
        let fields: BTreeSet<String> = fields(&S::default()).keys().cloned().collect();
        assert_eq!(flags, fields);
    }

    /// The spec → argv → parse → the same spec.
    pub fn round_trips<S: Spec + PartialEq + std::fmt::Debug>(spec: &S) {
        let argv = spec.to_argv();
        let back = S::from_argv(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert_eq!(&back, spec, "through {argv:?}");
    }
}
