//! `--list-hosts`, `--list-tasks` and `--list-tags`, printed as `ansible-playbook` prints them:
//! per play its pattern and hosts, the tasks `--tags`/`--skip-tags` select with their tags,
//! or the union of those tags.

use super::tags::Selection;
use super::{IncludeWhat, Item, Play, Playbook};
use std::collections::BTreeSet;
use std::fmt::Write;

/// What to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listing {
    pub hosts: bool,
    pub tasks: bool,
    pub tags: bool,
}

impl Listing {
    pub fn any(&self) -> bool {
        self.hosts || self.tasks || self.tags
    }
}

fn bracketed(tags: &BTreeSet<String>) -> String {
    format!("[{}]", tags.iter().cloned().collect::<Vec<_>>().join(", "))
}

/// The listing of one playbook; `hosts_of` gives a play's hosts (after `--limit`).
pub fn render(
    book: &Playbook,
    what: Listing,
    selection: &Selection,
    hosts_of: &dyn Fn(&Play) -> Vec<String>,
) -> String {
    let mut out = format!("\nplaybook: {}\n", book.path);
    for (n, play) in book.plays.iter().enumerate() {
        let play_tags: BTreeSet<String> = play.tags.iter().cloned().collect();
        let name = if play.name.is_empty() {
            &play.hosts
        } else {
            &play.name
        };
        let _ = writeln!(
            out,
            "\n  play #{} ({}): {name}\tTAGS: {}",
            n + 1,
            play.hosts,
            bracketed(&play_tags)
        );
        if what.hosts {
            let hosts = hosts_of(play);
            let pattern: Vec<String> = play
                .hosts
                .split([',', ':'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| format!("'{s}'"))
                .collect();
            let _ = writeln!(out, "    pattern: [{}]", pattern.join(", "));
            let _ = writeln!(out, "    hosts ({}):", hosts.len());
            for h in hosts {
                let _ = writeln!(out, "      {h}");
            }
        }
        let mut tasks = Vec::new();
        for section in [&play.pre_tasks, &play.tasks, &play.post_tasks] {
            collect(section, &play_tags, selection, &mut tasks);
        }
        if what.tasks {
            let _ = writeln!(out, "    tasks:");
            for (title, tags) in &tasks {
                let _ = writeln!(out, "      {title}\tTAGS: {}", bracketed(tags));
            }
        }
        if what.tags {
            let all: BTreeSet<String> = tasks.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
            let _ = writeln!(out, "      TASK TAGS: {}", bracketed(&all));
        }
    }
    out
}

/// The selected tasks of `items` (blocks entered, dynamic includes as themselves) with their
/// tags, `inherited` being those of everything around them.
fn collect(
    items: &[Item],
    inherited: &BTreeSet<String>,
    selection: &Selection,
    out: &mut Vec<(String, BTreeSet<String>)>,
) {
    for item in items {
        let (title, own) = match item {
            Item::Block(b) => {
                let mut tags = inherited.clone();
                tags.extend(b.scope.tags.iter().cloned());
                // As ansible-playbook lists them: a block's own tasks, not rescue or always.
                collect(&b.block, &tags, selection, out);
                continue;
            }
            Item::Task(t) => (t.title(), &t.scope.tags),
            Item::Include(inc) => {
                let title = match (&inc.name, &inc.what) {
                    (Some(n), _) => n.clone(),
                    (None, IncludeWhat::Tasks { .. }) => "include_tasks".to_string(),
                    (None, IncludeWhat::Role { name, .. }) => format!("include_role : {name}"),
                };
                (title, &inc.tags)
            }
            Item::Meta(_) => continue,
        };
        let mut tags = inherited.clone();
        tags.extend(own.iter().cloned());
        let list: Vec<&String> = tags.iter().collect();
        if selection.runs(&list) {
            out.push((title, tags));
        }
    }
}
