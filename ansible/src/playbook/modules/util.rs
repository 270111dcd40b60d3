//! File and command helpers shared by modules; every path and value is shell-quoted.

use super::{Diff, TaskError};
use c1m_transport::{shell_quote, ExecOutput, Transport};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub is_dir: bool,
    pub is_file: bool,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

/// `stat` of `path` on the host; `None` when it does not exist.
pub fn stat(t: &mut dyn Transport, path: &str) -> Result<Option<Stat>, TaskError> {
    let q = shell_quote(path);
    let out = t.exec(
        &format!(
            "if [ -e {q} ] || [ -L {q} ]; then stat -c '%F|%a|%U|%G' -- {q}; else echo absent; fi"
        ),
        None,
    )?;
    if !out.success() {
        return Err(TaskError::Failed(format!(
            "stat {path}: {}",
            out.stderr_str().trim()
        )));
    }
    let text = out.stdout_str();
    let line = text.trim();
    if line == "absent" {
        return Ok(None);
    }
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() != 4 {
        return Err(TaskError::Failed(format!(
            "stat {path}: unexpected output {line:?}"
        )));
    }
    Ok(Some(Stat {
        is_dir: parts[0] == "directory",
        is_file: parts[0].starts_with("regular"),
        mode: u32::from_str_radix(parts[1], 8).unwrap_or(0),
        owner: parts[2].to_string(),
        group: parts[3].to_string(),
    }))
}

/// [`stat`] without an exec where the transport can tell (see [`Transport::lstat`]); owner and
/// group are left empty unless `need_owner`, as only [`fix_attributes`] reads them and only for
/// what a task asks.
pub fn stat_attrs(
    t: &mut dyn Transport,
    path: &str,
    need_owner: bool,
) -> Result<Option<Stat>, TaskError> {
    if !need_owner {
        if let Some(meta) = t.lstat(path) {
            return Ok(meta?.map(|m| Stat {
                is_dir: m.is_dir,
                is_file: m.is_file,
                mode: m.mode,
                owner: String::new(),
                group: String::new(),
            }));
        }
    }
    stat(t, path)
}

/// `[ -e path ]` (symlinks followed) or, with `dir`, `[ -d path ]`: answered without an exec
/// when the transport sees a plain file or directory (or nothing at all) there.
pub fn exists(t: &mut dyn Transport, path: &str, dir: bool) -> Result<bool, TaskError> {
    match t.lstat(path) {
        Some(Ok(None)) => return Ok(false),
        Some(Ok(Some(m))) if m.is_dir => return Ok(true),
        Some(Ok(Some(m))) if m.is_file => return Ok(!dir),
        // Symlinks and the rest: the shell follows them as before.
        _ => {}
    }
    let test = if dir { "-d" } else { "-e" };
    Ok(t.exec(&format!("[ {test} {} ]", shell_quote(path)), None)?
        .success())
}

/// Runs `cmd`; a non-zero exit is a task failure naming `what`.
pub fn run_ok(t: &mut dyn Transport, cmd: &str, what: &str) -> Result<ExecOutput, TaskError> {
    let out = t.exec(cmd, None)?;
    if out.success() {
        Ok(out)
    } else {
        Err(TaskError::Failed(format!(
            "{what} failed (rc={}): {}",
            out.status,
            out.stderr_str().trim()
        )))
    }
}

/// A configuration file as read before changing it: its text and its permission bits (owner
/// and group only where a module asks for them, with [`stat`]: they cost an exec).
#[derive(Debug, Clone)]
pub struct Existing {
    pub text: String,
    pub mode: u32,
}

/// Reads a configuration file the module may replace: it must be a regular file (or absent).
/// Reading a fifo would hang and replacing a device by rename would destroy it.
pub fn read_regular(t: &mut dyn Transport, path: &str) -> Result<Option<Existing>, TaskError> {
    let meta = match t.lstat(path) {
        Some(r) => r?.map(|m| (m.is_file, m.mode)),
        None => stat(t, path)?.map(|s| (s.is_file, s.mode)),
    };
    match meta {
        None => Ok(None),
        Some((true, mode)) => Ok(Some(Existing {
            text: read_text(t, path)?.unwrap_or_default(),
            mode,
        })),
        Some(_) => Err(TaskError::Failed(format!(
            "{path} is not a regular file; not touching it"
        ))),
    }
}

pub fn read_text(t: &mut dyn Transport, path: &str) -> Result<Option<String>, TaskError> {
    Ok(t.read_file(path)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Brings mode/owner/group of an existing `path` to what is asked; returns whether anything
/// differs (and was changed unless `check`), with a diff of the attributes.
pub fn fix_attributes(
    t: &mut dyn Transport,
    path: &str,
    current: &Stat,
    mode: Option<u32>,
    owner: Option<&str>,
    group: Option<&str>,
    check: bool,
) -> Result<Option<Diff>, TaskError> {
    let mut before = Vec::new();
    let mut after = Vec::new();
    let q = shell_quote(path);
    if let Some(m) = mode {
        if current.mode != m {
            before.push(format!("mode: {:04o}", current.mode));
            after.push(format!("mode: {m:04o}"));
            if !check {
                run_ok(t, &format!("chmod {m:o} -- {q}"), "chmod")?;
            }
        }
    }
    if let Some(o) = owner {
        if current.owner != o {
            before.push(format!("owner: {}", current.owner));
            after.push(format!("owner: {o}"));
            if !check {
                run_ok(t, &format!("chown {} -- {q}", shell_quote(o)), "chown")?;
            }
        }
    }
    if let Some(g) = group {
        if current.group != g {
            before.push(format!("group: {}", current.group));
            after.push(format!("group: {g}"));
            if !check {
                run_ok(t, &format!("chgrp {} -- {q}", shell_quote(g)), "chgrp")?;
            }
        }
    }
    if before.is_empty() {
        return Ok(None);
    }
    Ok(Some(Diff {
        label: format!("{path} (attributes)"),
        before: before.join("\n") + "\n",
        after: after.join("\n") + "\n",
    }))
}

/// Configuration files changed by one task, kept here and written once when the task ends
/// instead of once per loop item: on a slow host each replacement of an existing file costs an
/// exec (SFTP cannot rename over a file). A later loop item reads what an earlier one staged.
/// Under --check nothing is staged, so each item sees the file on the host, as before.
#[derive(Debug, Default)]
pub struct Staged {
    files: std::collections::BTreeMap<String, StagedFile>,
}

#[derive(Debug)]
struct StagedFile {
    /// As read from the host (`None`: absent).
    original: Option<Existing>,
    /// What the task made of it so far (mode included: what the write will set).
    current: Option<Existing>,
}

impl Staged {
    /// Writes every staged file that differs from what the host has (only `path` if given).
    /// On failure: the file and why.
    pub fn flush(
        &mut self,
        t: &mut dyn Transport,
        only: Option<&str>,
    ) -> Result<(), (String, TaskError)> {
        for (path, f) in self.files.iter_mut() {
            if only.is_some_and(|o| o != path) {
                continue;
            }
            let Some(cur) = &f.current else { continue };
            let same = f
                .original
                .as_ref()
                .is_some_and(|o| o.text == cur.text && o.mode == cur.mode);
            if same {
                continue;
            }
            write_now(t, path, f.original.is_some(), &cur.text, cur.mode)
                .map_err(|e| (path.clone(), e))?;
            f.original = f.current.clone();
        }
        Ok(())
    }
}

/// [`read_regular`] through the task's staging area: what an earlier loop item staged, else the
/// host's file (remembered, so the next item does not read it again).
pub fn read_staged(
    t: &mut dyn Transport,
    staged: &mut Staged,
    path: &str,
) -> Result<Option<Existing>, TaskError> {
    if let Some(f) = staged.files.get(path) {
        return Ok(f.current.clone());
    }
    let existing = read_regular(t, path)?;
    staged.files.insert(
        path.to_string(),
        StagedFile {
            original: existing.clone(),
            current: existing.clone(),
        },
    );
    Ok(existing)
}

/// [`write_if_changed`] into the staging area: `before` must come from [`read_staged`]. The
/// diff is the same; the write happens at [`Staged::flush`].
pub fn stage_if_changed(
    staged: &mut Staged,
    path: &str,
    before: Option<&Existing>,
    content: &str,
    mode: Option<u32>,
    check: bool,
) -> Option<Diff> {
    if before.is_some_and(|b| b.text == content) {
        return None;
    }
    if !check {
        // Like Ansible, a replaced file keeps its permissions; a new one gets 0644.
        let mode = mode.unwrap_or(before.map_or(0o644, |b| b.mode));
        let next = Some(Existing {
            text: content.to_string(),
            mode,
        });
        staged
            .files
            .entry(path.to_string())
            .and_modify(|f| f.current = next.clone())
            .or_insert_with(|| StagedFile {
                original: before.cloned(),
                current: next,
            });
    }
    Some(Diff {
        label: path.to_string(),
        before: before.map(|b| b.text.clone()).unwrap_or_default(),
        after: content.to_string(),
    })
}

/// Writes `content` to `path` if it differs; returns the diff when it did (or would).
pub fn ensure_content(
    t: &mut dyn Transport,
    path: &str,
    content: &str,
    mode: Option<u32>,
    check: bool,
) -> Result<Option<Diff>, TaskError> {
    let before = read_regular(t, path)?;
    write_if_changed(t, path, before.as_ref(), content, mode, check)
}

/// Like [`ensure_content`] for a file the caller has already read with [`read_regular`], so
/// nothing is read twice (each read is a round trip over SSH).
pub fn write_if_changed(
    t: &mut dyn Transport,
    path: &str,
    before: Option<&Existing>,
    content: &str,
    mode: Option<u32>,
    check: bool,
) -> Result<Option<Diff>, TaskError> {
    if before.is_some_and(|b| b.text == content) {
        return Ok(None);
    }
    if !check {
        // Like Ansible, a replaced file keeps its permissions; a new one gets 0644.
        let mode = mode.unwrap_or(before.map_or(0o644, |b| b.mode));
        write_now(t, path, before.is_some(), content, mode)?;
    }
    Ok(Some(Diff {
        label: path.to_string(),
        before: before.map(|b| b.text.clone()).unwrap_or_default(),
        after: content.to_string(),
    }))
}

/// Replaces (or creates) `path`; a missing directory for a new file is a task failure that says
/// so, not a broken connection. (Under --check an earlier, simulated task may create it: a
/// change, as in Ansible.)
fn write_now(
    t: &mut dyn Transport,
    path: &str,
    existed: bool,
    content: &str,
    mode: u32,
) -> Result<(), TaskError> {
    if let Err(e) = t.write_file(path, content.as_bytes(), mode) {
        let parent = std::path::Path::new(path)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !existed
            && !parent.is_empty()
            && !t
                .exec(&format!("[ -d {} ]", shell_quote(&parent)), None)?
                .success()
        {
            return Err(TaskError::Failed(format!(
                "destination directory {parent} does not exist"
            )));
        }
        return Err(e.into());
    }
    Ok(())
}

/// `backup: true`: a copy of `path` beside it, named as Ansible names it
/// (`PATH.PID.YYYY-MM-DD@HH:MM:SS~`), made only when the file is about to change.
pub fn backup(t: &mut dyn Transport, path: &str, changing: bool) -> Result<(), TaskError> {
    if !changing {
        return Ok(());
    }
    let q = shell_quote(path);
    run_ok(
        t,
        &format!("cp -p -- {q} {q}.$$.$(date +%Y-%m-%d@%H:%M:%S)~"),
        &format!("backing up {path}"),
    )?;
    Ok(())
}
