//! `ansible.builtin.blockinfile`: a block of lines between marker lines, inserted, replaced or
//! removed as Ansible's module does it (`marker`, `marker_begin`, `marker_end`,
//! `insertafter`/`insertbefore`, `create`, `backup`, `mode`/`owner`/`group`), with check mode
//! and diffs.

use super::lineinfile::{compile, finish};
use super::util::read_staged;
use super::{arg, arg_alias, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.blockinfile",
    short: "blockinfile",
    args: &[
        arg_alias("path", Kind::Str, &["dest", "destfile", "name"]),
        arg("state", Kind::Choice(&["present", "absent"])),
        arg("marker", Kind::Str),
        arg_alias("block", Kind::Str, &["content"]),
        arg("insertafter", Kind::Str),
        arg("insertbefore", Kind::Str),
        arg("create", Kind::Bool),
        arg("backup", Kind::Bool),
        arg("marker_begin", Kind::Str),
        arg("marker_end", Kind::Str),
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

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let path = args.req_str("path")?;
    let present = args.check_choice("state", &["present", "absent"], "present")? == "present";
    let marker = args.str_or("marker", "# {mark} ANSIBLE MANAGED BLOCK")?;
    let begin = marker.replace("{mark}", &args.str_or("marker_begin", "BEGIN")?);
    let end = marker.replace("{mark}", &args.str_or("marker_end", "END")?);
    let block = args.str_or("block", "")?;
    let after = args.str("insertafter")?;
    let before = args.str("insertbefore")?;
    if after.is_some() && before.is_some() {
        return Err(TaskError::Failed(
            "blockinfile: insertafter and insertbefore are mutually exclusive".into(),
        ));
    }
    let existing = read_staged(ctx.t, ctx.staged, &path)?;
    if existing.is_none() {
        if !present {
            return Ok(Outcome::ok(format!("{path} does not exist")));
        }
        if !args.bool("create", false)? {
            return Err(TaskError::Failed(format!(
                "Path {path} does not exist ! (create: true makes it)"
            )));
        }
    }
    let text = existing
        .as_ref()
        .map(|e| e.text.clone())
        .unwrap_or_default();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let block_lines: Vec<String> = if present && !block.is_empty() {
        std::iter::once(format!("{begin}\n"))
            .chain(block.lines().map(|l| format!("{l}\n")))
            .chain(std::iter::once(format!("{end}\n")))
            .collect()
    } else {
        Vec::new()
    };
    let bare = |l: &String| l.trim_end_matches(['\r', '\n']).to_string();
    let n0 = lines.iter().rposition(|l| bare(l) == begin);
    let n1 = lines.iter().rposition(|l| bare(l) == end);
    let at = match (n0, n1) {
        (Some(a), Some(b)) if a < b => {
            lines.drain(a..=b);
            a
        }
        (Some(a), Some(b)) => {
            lines.drain(b..=a);
            b
        }
        _ => {
            let anchor = match (&after, &before) {
                (Some(a), _) if a != "EOF" => Some((compile("insertafter", a)?, true)),
                (_, Some(b)) if b != "BOF" => Some((compile("insertbefore", b)?, false)),
                _ => None,
            };
            match anchor {
                Some((re, is_after)) => match lines.iter().rposition(|l| re.is_match(&bare(l))) {
                    Some(i) if is_after => i + 1,
                    Some(i) => i,
                    None => lines.len(),
                },
                None if before.as_deref() == Some("BOF") => 0,
                None => lines.len(),
            }
        }
    };
    if at > 0 {
        if let Some(prev) = lines.get_mut(at - 1) {
            if !prev.ends_with('\n') {
                prev.push('\n');
            }
        }
    }
    let inserting = !block_lines.is_empty();
    for (k, l) in block_lines.into_iter().enumerate() {
        lines.insert(at + k, l);
    }
    let content = lines.concat();
    let msg = match (&existing, inserting) {
        (Some(e), _) if e.text == content => String::new(),
        (None, _) => "File created".into(),
        (_, false) => "Block removed".into(),
        (_, true) => "Block inserted".into(),
    };
    finish(args, ctx, &path, existing.as_ref(), &content, msg)
}
