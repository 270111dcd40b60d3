//! `ansible.builtin.lineinfile`: one line in a file — replaced where `regexp` (or
//! `search_string`, or the line itself) matches, else inserted after/before a match of
//! `insertafter`/`insertbefore` (or `BOF`/`EOF`), or removed with `state: absent` — following
//! Ansible's module, with `backrefs`, `firstmatch`, `create`, `backup`, `mode`/`owner`/`group`,
//! check mode and diffs.

use super::util::{fix_attributes, read_staged, stage_if_changed, stat_attrs, Existing};
use super::{arg, arg_alias, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use regex::Regex;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.lineinfile",
    short: "lineinfile",
    args: &[
        arg_alias("path", Kind::Str, &["dest", "destfile", "name"]),
        arg_alias("regexp", Kind::Str, &["regex"]),
        arg("search_string", Kind::Str),
        arg("state", Kind::Choice(&["present", "absent"])),
        arg_alias("line", Kind::Str, &["value"]),
        arg("backrefs", Kind::Bool),
        arg("insertafter", Kind::Str),
        arg("insertbefore", Kind::Str),
        arg("create", Kind::Bool),
        arg("backup", Kind::Bool),
        arg("firstmatch", Kind::Bool),
        arg("mode", Kind::Mode),
        arg("owner", Kind::Str),
        arg("group", Kind::Str),
        arg("unsafe_writes", Kind::Bool),
    ],
    required: &["path"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

pub(super) fn compile(what: &str, pattern: &str) -> Result<Regex, TaskError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| TaskError::Failed(format!("{what}: bad regular expression {pattern:?}: {e}")))
}

/// Python's `match.expand` template (`\1`, `\g<1>`, `\g<name>`) into the regex crate's.
fn expand_template(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
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
            '\\' if chars.peek() == Some(&'g') => {
                chars.next();
                if chars.peek() == Some(&'<') {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                    out.push_str(&format!("${{{name}}}"));
                } else {
                    out.push_str("\\g");
                }
            }
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

/// Where to insert when nothing matches.
enum Anchor {
    Bof,
    Eof,
    After(Regex),
    Before(Regex),
}

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let path = args.req_str("path")?;
    let present = args.check_choice("state", &["present", "absent"], "present")? == "present";
    let regexp = args
        .str("regexp")?
        .map(|r| compile("regexp", &r))
        .transpose()?;
    let search = args.str("search_string")?;
    if regexp.is_some() && search.is_some() {
        return Err(TaskError::Failed(
            "lineinfile: regexp and search_string are mutually exclusive".into(),
        ));
    }
    let line = args.str("line")?;
    let backrefs = args.bool("backrefs", false)?;
    let firstmatch = args.bool("firstmatch", false)?;
    if present && line.is_none() {
        return Err(TaskError::Failed(
            "lineinfile: state=present needs `line`".into(),
        ));
    }
    if !present && regexp.is_none() && search.is_none() && line.is_none() {
        return Err(TaskError::Failed(
            "lineinfile: state=absent needs regexp, search_string or line".into(),
        ));
    }
    if backrefs && regexp.is_none() {
        return Err(TaskError::Failed(
            "lineinfile: backrefs needs regexp".into(),
        ));
    }
    let anchor = match (args.str("insertafter")?, args.str("insertbefore")?) {
        (Some(_), Some(_)) => {
            return Err(TaskError::Failed(
                "lineinfile: insertafter and insertbefore are mutually exclusive".into(),
            ))
        }
        (Some(a), None) if a == "EOF" => Anchor::Eof,
        (Some(a), None) if a == "BOF" => Anchor::Bof,
        (Some(a), None) => Anchor::After(compile("insertafter", &a)?),
        (None, Some(b)) if b == "BOF" => Anchor::Bof,
        (None, Some(b)) => Anchor::Before(compile("insertbefore", &b)?),
        (None, None) => Anchor::Eof,
    };
    let existing = read_staged(ctx.t, ctx.staged, &path)?;
    let create = args.bool("create", false)?;
    if existing.is_none() && !(present && create) {
        if !present {
            return Ok(Outcome::ok(format!("{path} does not exist")));
        }
        return Err(TaskError::Failed(format!(
            "Destination {path} does not exist ! (create: true makes it)"
        )));
    }
    let text = existing
        .as_ref()
        .map(|e| e.text.clone())
        .unwrap_or_default();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let matches = |l: &str| -> bool {
        let l = l.trim_end_matches(['\r', '\n']);
        match (&regexp, &search, &line) {
            (Some(r), _, _) => r.is_match(l),
            (None, Some(s), _) => l.contains(s.as_str()),
            (None, None, Some(want)) => l == want,
            _ => false,
        }
    };
    let mut msg;
    if present {
        let line = line.clone().unwrap_or_default();
        let mut found: Option<usize> = None;
        let mut insert_at: Option<usize> = None;
        for (i, l) in lines.iter().enumerate() {
            if matches(l) {
                found = Some(i);
                if firstmatch {
                    break;
                }
            } else {
                let bare = l.trim_end_matches(['\r', '\n']);
                match &anchor {
                    Anchor::After(r) if r.is_match(bare) => {
                        insert_at = Some(i + 1);
                        if firstmatch {
                            break;
                        }
                    }
                    Anchor::Before(r) if r.is_match(bare) => {
                        insert_at = Some(i);
                        if firstmatch {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        msg = String::new();
        if let Some(i) = found {
            let new = match (&regexp, backrefs) {
                (Some(r), true) => {
                    let bare = lines[i].trim_end_matches(['\r', '\n']).to_string();
                    match r.captures(&bare) {
                        Some(c) => {
                            let mut out = String::new();
                            c.expand(&expand_template(&line), &mut out);
                            out
                        }
                        None => line.clone(),
                    }
                }
                _ => line.clone(),
            };
            let new = format!("{new}\n");
            if lines[i] != new {
                lines[i] = new;
                msg = "line replaced".into();
            }
        } else if backrefs {
            // No match: nothing can fill the backreferences, so nothing is written (Ansible).
        } else {
            let at = match (&anchor, insert_at) {
                (Anchor::Bof, _) => 0,
                (Anchor::After(_) | Anchor::Before(_), Some(i)) => i,
                _ => lines.len(),
            };
            if at == lines.len() {
                if let Some(last) = lines.last_mut() {
                    if !last.ends_with('\n') {
                        last.push('\n');
                    }
                }
            }
            lines.insert(at, format!("{line}\n"));
            msg = "line added".into();
        }
    } else {
        let before = lines.len();
        lines.retain(|l| !matches(l));
        let removed = before - lines.len();
        msg = if removed > 0 {
            format!("{removed} line(s) removed")
        } else {
            String::new()
        };
    }
    let content: String = lines.concat();
    finish(args, ctx, &path, existing.as_ref(), &content, msg)
}

/// Writes `content` when it differs (staged, so a loop writes the file once), then the
/// attributes; the outcome the module reports.
pub(super) fn finish(
    args: &Args,
    ctx: &mut ModuleCtx,
    path: &str,
    existing: Option<&Existing>,
    content: &str,
    msg: String,
) -> Result<Outcome, TaskError> {
    let mode = args.mode("mode")?;
    let owner = args.str("owner")?;
    let group = args.str("group")?;
    let mut out = Outcome::ok(if msg.is_empty() {
        path.to_string()
    } else {
        msg
    });
    if args.bool("backup", false)? && !ctx.check {
        if let Some(e) = existing {
            super::util::backup(ctx.t, path, e.text != content)?;
        }
    }
    if let Some(d) = stage_if_changed(ctx.staged, path, existing, content, mode, ctx.check) {
        out.changed = true;
        out.diffs.push(d);
        if !ctx.check {
            // Attributes are fixed on the file as written.
            ctx.staged.flush(ctx.t, Some(path)).map_err(|(_, e)| e)?;
        }
    }
    if owner.is_some() || group.is_some() || mode.is_some() {
        if let Some(cur) = stat_attrs(ctx.t, path, owner.is_some() || group.is_some())? {
            if let Some(d) = fix_attributes(
                ctx.t,
                path,
                &cur,
                mode,
                owner.as_deref(),
                group.as_deref(),
                ctx.check,
            )? {
                out.changed = true;
                out.diffs.push(d);
            }
        }
    }
    Ok(out)
}
