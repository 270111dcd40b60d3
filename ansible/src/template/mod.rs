//! Jinja2 templating as Ansible does it, on minijinja: `{{ }}` in values, `when:` as bare
//! expressions, undefined variables are errors, and the Ansible filters playbooks lean on
//! (`int` and `bool` with Ansible's lenient meanings, `default`, `join`, `max`, ...).

use minijinja::{Environment, UndefinedBehavior, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;

mod filters;

/// Variables visible to a template, by name.
pub type Vars = BTreeMap<String, Json>;

pub struct Templar {
    env: Environment<'static>,
    /// For files (the `template` module): Ansible's `trim_blocks: true` default.
    files: Environment<'static>,
}

impl Default for Templar {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `name` can be a variable: letters, digits and `_`, not starting with a digit.
pub fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` contains anything Jinja would act on.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// The expression inside `s` when `s` is exactly one `{{ expr }}`, so its value keeps its type
/// (a list stays a list) as Ansible's templating does. Text around it (even a newline) makes
/// the result a string, as in Ansible.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    Some(inner.trim())
}

/// Ansible's `bool` filter: `yes`/`on`/`1`/`true` are true, anything else false.
fn ansible_bool(v: Value) -> bool {
    if let Some(s) = v.as_str() {
        return matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "yes" | "on" | "1" | "true" | "y" | "t"
        );
    }
    if let Ok(i) = i64::try_from(v.clone()) {
        return i == 1;
    }
    v.is_true()
}

/// Ansible's `int` filter: unparsable values become the default (0) instead of an error.
fn ansible_int(v: Value, default: Option<i64>) -> Value {
    let default = default.unwrap_or(0);
    if let Some(s) = v.as_str() {
        let s = s.trim();
        if let Ok(i) = s.parse::<i128>() {
            return Value::from(i);
        }
        return s
            .parse::<f64>()
            .map(|f| Value::from(f as i128))
            .unwrap_or(Value::from(default));
    }
    if let Ok(i) = i128::try_from(v.clone()) {
        return Value::from(i);
    }
    if let Ok(f) = f64::try_from(v.clone()) {
        return Value::from(f as i128);
    }
    if v.kind() == minijinja::value::ValueKind::Bool {
        return Value::from(i64::from(v.is_true()));
    }
    Value::from(default)
}

/// An environment with Ansible's filters and tests.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // Playbooks are Jinja2 on Python: `'a,b'.split(',')`, `d.items()`, `s.startswith(...)`.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("bool", ansible_bool);
    env.add_filter("int", ansible_int);
    env.add_filter("to_json", |v: Value| {
        serde_json::to_string(&v).unwrap_or_default()
    });
    env.add_filter("quote", |v: Value| {
        c1m_transport::shell_quote(&v.to_string())
    });
    filters::add(&mut env);
    env
}

impl Templar {
    pub fn new() -> Self {
        let mut files = environment();
        files.set_trim_blocks(true);
        Templar {
            env: environment(),
            files,
        }
    }

    /// Renders a template file's text as the `template` module does (`trim_blocks`, with
    /// `lstrip_blocks` when asked); `name` names it in errors.
    pub fn render_file(
        &self,
        name: &str,
        text: &str,
        vars: &Value,
        lstrip_blocks: bool,
    ) -> Result<String, String> {
        let render = |env: &Environment| {
            env.render_named_str(name, text, vars)
                .map_err(|e| format!("template {name}: {}", describe_with_line(&e)))
        };
        if lstrip_blocks {
            let mut env = self.files.clone();
            env.set_lstrip_blocks(true);
            render(&env)
        } else {
            render(&self.files)
        }
    }

    /// Checks `s` for Jinja syntax errors without rendering it.
    pub fn check_template(&self, s: &str) -> Result<(), String> {
        if !is_template(s) {
            return Ok(());
        }
        self.env
            .template_from_str(s)
            .map(|_| ())
            .map_err(|e| describe(&e))
    }

    /// Checks a bare expression (a `when:`) for syntax errors.
    pub fn check_expression(&self, expr: &str) -> Result<(), String> {
        self.env
            .compile_expression(strip_braces(expr))
            .map(|_| ())
            .map_err(|e| describe(&e))
    }

    /// Renders every string inside `v` against `vars`.
    pub fn render(&self, v: &Json, vars: &Value) -> Result<Json, String> {
        match v {
            Json::String(s) => self.render_str_value(s, vars),
            Json::Array(items) => items
                .iter()
                .map(|i| self.render(i, vars))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
            Json::Object(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), self.render(v, vars)?)))
                .collect::<Result<serde_json::Map<_, _>, String>>()
                .map(Json::Object),
            other => Ok(other.clone()),
        }
    }

    fn render_str_value(&self, s: &str, vars: &Value) -> Result<Json, String> {
        if !is_template(s) {
            return Ok(Json::String(s.to_string()));
        }
        if let Some(expr) = single_expression(s) {
            let value = self
                .env
                .compile_expression(expr)
                .and_then(|e| e.eval(vars))
                .map_err(|e| format!("template {s:?}: {}", describe(&e)))?;
            if value.is_undefined() {
                return Err(format!("template {s:?}: undefined variable in `{expr}`"));
            }
            return serde_json::to_value(&value).map_err(|e| format!("template {s:?}: {e}"));
        }
        self.env
            .render_str(s, vars)
            .map(Json::String)
            .map_err(|e| format!("template {s:?}: {}", describe(&e)))
    }

    /// Evaluates a `when:` condition.
    pub fn eval_condition(&self, expr: &str, vars: &Value) -> Result<bool, String> {
        let value = self
            .env
            .compile_expression(strip_braces(expr))
            .and_then(|e| e.eval(vars))
            .map_err(|e| format!("condition {expr:?}: {}", describe(&e)))?;
        if value.is_undefined() {
            return Err(format!("condition {expr:?}: undefined variable"));
        }
        Ok(value.is_true())
    }

    /// Resolves variables whose values are themselves templates (Ansible evaluates them lazily,
    /// so one may refer to another defined anywhere), by rendering until nothing changes.
    pub fn resolve_vars(&self, vars: &mut Vars) -> Result<Vec<String>, String> {
        let pending: Vec<String> = vars
            .iter()
            .filter(|(_, v)| contains_template(v))
            .map(|(k, _)| k.clone())
            .collect();
        let mut pending = pending;
        for _round in 0..=pending.len() {
            if pending.is_empty() {
                return Ok(Vec::new());
            }
            let ctx = Value::from_serialize(&*vars);
            let mut still = Vec::new();
            let waiting: Vec<String> = pending.clone();
            for name in pending {
                let raw = vars.get(&name).cloned().unwrap_or(Json::Null);
                // Render only once every variable it uses is itself resolved.
                let deps = self.referenced(&raw);
                if deps.iter().any(|d| d != &name && waiting.contains(d)) {
                    still.push(name);
                    continue;
                }
                match self.render(&raw, &ctx) {
                    Ok(v) if !contains_template(&v) => {
                        vars.insert(name, v);
                    }
                    _ => still.push(name),
                }
            }
            pending = still;
        }
        // What is left cannot resolve yet (it may use a variable a later task registers, which
        // Ansible allows because it evaluates lazily): drop it, so a use of it fails as
        // undefined, and report why to the caller.
        let mut problems = Vec::new();
        for name in pending {
            let ctx = Value::from_serialize(&*vars);
            let raw = vars.get(&name).cloned().unwrap_or(Json::Null);
            let why = match self.render(&raw, &ctx) {
                Err(e) => e,
                Ok(_) => "refers to itself".into(),
            };
            problems.push(format!("variable {name}: {why}"));
        }
        for p in &problems {
            if let Some(name) = p
                .strip_prefix("variable ")
                .and_then(|r| r.split(':').next())
            {
                vars.remove(name);
            }
        }
        Ok(problems)
    }
}

impl Templar {
    /// Top-level variable names the templates inside `v` use.
    fn referenced(&self, v: &Json) -> Vec<String> {
        match v {
            Json::String(s) if is_template(s) => self
                .env
                .template_from_str(s)
                .map(|t| t.undeclared_variables(false).into_iter().collect())
                .unwrap_or_default(),
            Json::Array(items) => items.iter().flat_map(|i| self.referenced(i)).collect(),
            Json::Object(map) => map.values().flat_map(|i| self.referenced(i)).collect(),
            _ => Vec::new(),
        }
    }
}

fn contains_template(v: &Json) -> bool {
    match v {
        Json::String(s) => is_template(s),
        Json::Array(items) => items.iter().any(contains_template),
        Json::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

/// `when: "{{ x }}"` is accepted by Ansible (with a warning); treat it as `x`.
fn strip_braces(expr: &str) -> &str {
    single_expression(expr.trim()).unwrap_or(expr.trim())
}

/// An error with the template line it is on, when known.
fn describe_with_line(e: &minijinja::Error) -> String {
    match e.line() {
        Some(l) => format!("line {l}: {}", describe(e)),
        None => describe(e),
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Json) -> Value {
        Value::from_serialize(&v)
    }

    #[test]
    fn single_expression_keeps_type_and_strings_render() {
        let t = Templar::new();
        let c = ctx(json!({"n": "1000", "xs": [1, 2]}));
        assert_eq!(
            t.render(&json!("{{ n | int * 2 }}"), &c).unwrap(),
            json!(2000)
        );
        assert_eq!(t.render(&json!("{{ xs }}"), &c).unwrap(), json!([1, 2]));
        assert_eq!(
            t.render(&json!("a {{ n }} b"), &c).unwrap(),
            json!("a 1000 b")
        );
        assert!(t.render(&json!("{{ missing }}"), &c).is_err());
        assert_eq!(
            t.render(&json!("{{ missing | default(7) }}"), &c).unwrap(),
            json!(7)
        );
        assert!(t
            .eval_condition("'yes' | bool and (n | int) > 10", &c)
            .unwrap());
        assert!(!t.eval_condition("'no' | bool", &c).unwrap());
        assert_eq!(t.render(&json!("{{ 'x' | int }}"), &c).unwrap(), json!(0));
        assert_eq!(
            t.render(&json!("{{ 'a b'.split() | join(',') }}"), &c)
                .unwrap(),
            json!("a,b")
        );
    }

    #[test]
    fn vars_referring_to_vars_resolve() {
        let t = Templar::new();
        let mut v: Vars = serde_json::from_value(json!({
            "a": "{{ b | int + 1 }}", "b": "{{ c }}", "c": 41
        }))
        .unwrap();
        t.resolve_vars(&mut v).unwrap();
        assert_eq!(v["a"], json!(42));
        let mut bad: Vars = serde_json::from_value(json!({"a": "{{ nope }}", "b": 1})).unwrap();
        let problems = t.resolve_vars(&mut bad).unwrap();
        assert!(problems[0].contains("variable a"), "{problems:?}");
        assert!(!bad.contains_key("a"));
    }
}
