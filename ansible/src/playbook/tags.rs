//! `--tags` and `--skip-tags`: which tasks run, with Ansible's special tags — `always` runs
//! unless skipped by name, `never` runs only when asked for by name, `all` is every task but
//! `never` ones, `tagged` and `untagged` select by whether a task has tags at all. Tags add up
//! from the play, blocks, roles and imports down to each task.

use std::collections::BTreeSet;

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// `--tags` (default `all`).
    pub only: BTreeSet<String>,
    /// `--skip-tags`.
    pub skip: BTreeSet<String>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            only: ["all".to_string()].into(),
            skip: BTreeSet::new(),
        }
    }
}

impl Selection {
    /// From `--tags` and `--skip-tags` values, each a comma-separated list (and repeatable).
    pub fn new(only: &[String], skip: &[String]) -> Selection {
        let split = |v: &[String]| -> BTreeSet<String> {
            v.iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let only = split(only);
        Selection {
            only: if only.is_empty() {
                ["all".to_string()].into()
            } else {
                only
            },
            skip: split(skip),
        }
    }

    /// Whether a task with `tags` (its own and inherited) runs: Ansible's `evaluate_tags`.
    pub fn runs<S: AsRef<str>>(&self, tags: &[S]) -> bool {
        let tags: BTreeSet<&str> = if tags.is_empty() {
            ["untagged"].into()
        } else {
            tags.iter().map(AsRef::as_ref).collect()
        };
        let untagged = tags.len() == 1 && tags.contains("untagged");
        let only = |t: &str| self.only.contains(t);
        let skip = |t: &str| self.skip.contains(t);
        let never = tags.contains("never");
        let mut run = tags.contains("always")
            || (only("all") && !never)
            || tags.iter().any(|t| only(t))
            || (only("tagged") && !untagged && !never);
        if run && !self.skip.is_empty() {
            if skip("all") {
                if !tags.contains("always") || skip("always") {
                    run = false;
                }
            } else if tags.iter().any(|t| skip(t)) || (skip("tagged") && !untagged) {
                run = false;
            }
        }
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(only: &str, skip: &str) -> Selection {
        let v = |s: &str| {
            if s.is_empty() {
                vec![]
            } else {
                vec![s.to_string()]
            }
        };
        Selection::new(&v(only), &v(skip))
    }

    #[test]
    fn special_tags_behave_as_in_ansible() {
        let all = Selection::default();
        assert!(all.runs::<&str>(&[]));
        assert!(all.runs(&["x"]));
        assert!(!all.runs(&["never"]));
        assert!(!all.runs(&["never", "debug"]));
        let debug = sel("debug", "");
        assert!(debug.runs(&["never", "debug"]));
        assert!(debug.runs(&["always"]));
        assert!(!debug.runs(&["x"]));
        assert!(!debug.runs::<&str>(&[]));
        assert!(sel("tagged", "").runs(&["x"]));
        assert!(!sel("tagged", "").runs::<&str>(&[]));
        assert!(sel("untagged", "").runs::<&str>(&[]));
        assert!(!sel("", "x").runs(&["x", "y"]));
        assert!(sel("", "x").runs(&["always"]));
        assert!(!sel("", "always").runs(&["always"]));
        assert!(sel("", "all").runs(&["always"]));
        assert!(!sel("", "all").runs(&["x"]));
        assert!(sel("a,b", "").runs(&["b"]));
    }
}
