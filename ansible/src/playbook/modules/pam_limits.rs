//! `community.general.pam_limits`: one `domain type item value` line in a limits.conf file,
//! written as community.general writes it (tab-separated), replacing the first matching line.

use super::util::{read_staged, stage_if_changed};
use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};

const ITEMS: &[&str] = &[
    "core",
    "data",
    "fsize",
    "memlock",
    "nofile",
    "rss",
    "stack",
    "cpu",
    "nproc",
    "as",
    "maxlogins",
    "maxsyslogins",
    "priority",
    "locks",
    "sigpending",
    "msgqueue",
    "nice",
    "rtprio",
    "chroot",
];

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "community.general.pam_limits",
    short: "pam_limits",
    args: &[
        arg("domain", Kind::Str),
        arg("limit_type", Kind::Choice(&["hard", "soft", "-"])),
        arg("limit_item", Kind::Choice(ITEMS)),
        arg("value", Kind::Any),
        arg("dest", Kind::Str),
        arg("comment", Kind::Str),
        arg("use_max", Kind::Bool),
        arg("use_min", Kind::Bool),
        arg("create", Kind::Bool),
    ],
    required: &["domain", "limit_type", "limit_item", "value"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

fn numeric(v: &str) -> Option<i64> {
    match v {
        "unlimited" | "infinity" | "-1" => Some(i64::MAX),
        _ => v.parse().ok(),
    }
}

/// The new file text and whether anything differs.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    text: &str,
    domain: &str,
    ltype: &str,
    item: &str,
    value: &str,
    comment: &str,
    use_max: bool,
    use_min: bool,
) -> (String, bool) {
    let new_line = |v: &str| {
        let c = if comment.is_empty() {
            String::new()
        } else {
            format!("\t#{comment}")
        };
        format!("{domain}\t{ltype}\t{item}\t{v}{c}\n")
    };
    let mut out = String::new();
    let mut found = false;
    let mut changed = false;
    for line in text.lines() {
        let body = line.split('#').next().unwrap_or("").trim();
        let fields: Vec<&str> = body.split_whitespace().collect();
        if found || fields.len() != 4 || (fields[0], fields[1], fields[2]) != (domain, ltype, item)
        {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        found = true;
        let actual = fields[3];
        let mut wanted = value.to_string();
        if let (Some(a), Some(w)) = (numeric(actual), numeric(value)) {
            if (use_max && a > w) || (use_min && a < w) {
                wanted = actual.to_string();
            }
        }
        if actual == wanted {
            out.push_str(line);
            out.push('\n');
        } else {
            changed = true;
            out.push_str(&new_line(&wanted));
        }
    }
    if !found {
        changed = true;
        out.push_str(&new_line(value));
    }
    (out, changed)
}

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let domain = args.req_str("domain")?;
    let ltype = args.check_choice("limit_type", &["hard", "soft", "-"], "")?;
    let item = args.check_choice("limit_item", ITEMS, "")?;
    let value = args.req_str("value")?;
    if numeric(&value).is_none() && !(value.starts_with(['-', '+']) && item == "priority") {
        return Err(TaskError::Failed(format!(
            "pam_limits: value must be a number, -1, unlimited or infinity; got {value:?}"
        )));
    }
    let dest = args.str_or("dest", "/etc/security/limits.conf")?;
    let comment = args.str_or("comment", "")?;
    let use_max = args.bool("use_max", false)?;
    let use_min = args.bool("use_min", false)?;
    let create = args.bool("create", true)?;

    // Staged: a loop over several limits writes the file once, when the task ends.
    let before = read_staged(ctx.t, ctx.staged, &dest)?;
    if before.is_none() && !create {
        return Err(TaskError::Failed(format!(
            "pam_limits: {dest} does not exist and create is false"
        )));
    }
    let (after, changed) = apply(
        before.as_ref().map_or("", |b| b.text.as_str()),
        &domain,
        &ltype,
        &item,
        &value,
        &comment,
        use_max,
        use_min,
    );
    let mut out = Outcome::ok(format!("{domain} {ltype} {item} {value} in {dest}"));
    if changed || before.is_none() {
        if let Some(d) =
            stage_if_changed(ctx.staged, &dest, before.as_ref(), &after, None, ctx.check)
        {
            out.diffs.push(d);
        }
        out.changed = true;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::apply;

    #[test]
    fn replaces_first_match_keeps_rest() {
        let (t, c) = apply(
            "# x\n*\tsoft\tnofile\t1024\nroot hard nofile 5\n",
            "*",
            "soft",
            "nofile",
            "4096",
            "",
            false,
            false,
        );
        assert!(c);
        assert_eq!(t, "# x\n*\tsoft\tnofile\t4096\nroot hard nofile 5\n");
        let (t2, c2) = apply(&t, "*", "soft", "nofile", "4096", "", false, false);
        assert!(!c2);
        assert_eq!(t2, t);
        let (_, c3) = apply(&t, "*", "soft", "nofile", "100", "", true, false);
        assert!(!c3, "use_max keeps the larger value");
    }
}
