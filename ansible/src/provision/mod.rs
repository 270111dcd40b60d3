//! `c1m provision`: parses the inventory and every playbook first (any error stops before a host
//! is touched), then runs each play on its hosts in parallel — one connection per host reused
//! for the whole run, tasks in order per host — and prints Ansible-like results and a recap.
//! `--list-hosts`/`--list-tasks`/`--list-tags` print what would run instead.

mod extra_vars;
mod output;

use crate::connect::{ConnectSettings, HostOptions};
use crate::inventory::{self, Inventory, VarsDirs};
use crate::playbook::exec::{
    self, HostContext, HostReport, HostState, RunOptions, Stats, Status, Step, TaskResult,
};
use crate::playbook::list::{self, Listing};
use crate::playbook::tags::Selection;
use crate::playbook::{Loader, Play, Playbook};
use anyhow::{bail, Context};
use c1m_transport::Transport;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The playbooks shipped with c1m, compiled in for use outside a checkout.
const TUNE_YML: &str = include_str!("../../../playbooks/tune.yml");
const RESET_YML: &str = include_str!("../../../playbooks/reset.yml");

/// What `c1m provision` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ProvisionOptions {
    pub hosts: HostOptions,
    /// Playbooks to run in order; empty means playbooks/tune.yml.
    pub playbooks: Vec<PathBuf>,
    /// Change nothing; report what would change.
    pub check: bool,
    /// Show before/after of every file and value that changes.
    pub diff: bool,
    /// Undo tune.yml: run playbooks/reset.yml.
    pub revert: bool,
    /// `-e` values (`KEY=VALUE…`, YAML/JSON, `@FILE`), highest precedence.
    pub extra_vars: Vec<String>,
    /// `--tags` and `--skip-tags` (each comma-separated, repeatable).
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    /// `--list-hosts`, `--list-tasks`, `--list-tags`: print, run nothing.
    pub listing: Listing,
}

/// How a provisioning ended, in the recap's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionOutcome {
    /// Every task on every host was ok, changed or skipped.
    Ok,
    /// A task failed on some host.
    TaskFailed,
    /// No task failed, but a host could not be reached.
    Unreachable,
}

/// Loads a playbook from disk; the default ones fall back to the built-in copies.
fn load_playbook(loader: &Loader, path: &Path) -> anyhow::Result<Playbook> {
    if !path.exists() {
        let builtin = match path.to_str() {
            Some("playbooks/tune.yml") => Some(TUNE_YML),
            Some("playbooks/reset.yml") => Some(RESET_YML),
            _ => None,
        };
        if let Some(text) = builtin {
            let name = format!("{} (built in)", path.display());
            return Ok(loader.parse(&name, text, Path::new("playbooks"))?);
        }
    }
    loader.load(path)
}

/// Runs `c1m provision`: parses everything, runs the plays, prints the recap.
pub fn run(args: &ProvisionOptions) -> anyhow::Result<ProvisionOutcome> {
    let sources = args
        .hosts
        .connect
        .sources
        .get()
        .map_err(anyhow::Error::msg)?;
    let (inv, _) = args.hosts.load()?;
    let mut paths = args.playbooks.clone();
    if args.revert {
        if !paths.is_empty() {
            bail!("--revert runs playbooks/reset.yml; give no playbooks with it");
        }
        paths.push(PathBuf::from("playbooks/reset.yml"));
    } else if paths.is_empty() {
        paths.push(PathBuf::from("playbooks/tune.yml"));
    }
    // Everything is parsed before anything runs anywhere.
    let loader = Loader::new(sources.cfg.roles_path.clone());
    let books = paths
        .iter()
        .map(|p| load_playbook(&loader, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = RunOptions {
        check: args.check,
        diff: args.diff,
        extra_vars: extra_vars::parse(&args.extra_vars)?,
        tags: Selection::new(&args.tags, &args.skip_tags),
        become_default: sources.cfg.become_,
        become_user_default: sources.cfg.become_user.clone(),
        roles_path: sources.cfg.roles_path.clone(),
    };
    let limited = args.hosts.selected(&inv)?;
    if args.listing.any() {
        for book in &books {
            let hosts_of = |play: &Play| -> Vec<String> {
                inventory::select(&inv, &play.hosts)
                    .map(|hs| {
                        hs.into_iter()
                            .filter(|h| limited.iter().any(|l| l == h))
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            print!(
                "{}",
                list::render(book, args.listing, &opts.tags, &hosts_of)
            );
        }
        return Ok(ProvisionOutcome::Ok);
    }
    args.hosts.check_routes(&inv, &limited)?;
    let dirs = books
        .iter()
        .map(|b| inv.vars_dirs_at(&b.dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runner = Runner {
        inventory_file: args.hosts.inventory.clone(),
        inv: Arc::new(inv),
        opts: Arc::new(opts),
        forks: args.hosts.forks(),
        conn: Arc::new(ConnectSettings {
            known_hosts: args.hosts.connect.known_hosts.clone(),
            accept_new: args.hosts.connect.accept_new,
            sources: args.hosts.connect.sources.clone(),
            ..Default::default()
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let stats = rt.block_on(runner.run_all(&books, &dirs, &limited));
    let recap: Vec<(String, Stats)> = runner
        .inv
        .hosts
        .iter()
        .filter_map(|h| stats.get(&h.name).map(|s| (h.name.clone(), *s)))
        .collect();
    print!("{}", output::recap(&recap));
    let failed = recap.iter().any(|(_, s)| s.failed > 0);
    let unreachable = recap.iter().any(|(_, s)| s.unreachable > 0);
    Ok(if failed {
        ProvisionOutcome::TaskFailed
    } else if unreachable {
        ProvisionOutcome::Unreachable
    } else {
        ProvisionOutcome::Ok
    })
}

struct Runner {
    inventory_file: Option<PathBuf>,
    inv: Arc<Inventory>,
    opts: Arc<RunOptions>,
    forks: usize,
    conn: Arc<ConnectSettings>,
}

/// A host's connection and what it keeps between plays; no connection before the first
/// connect.
type Conn = (Option<Box<dyn Transport>>, HostState);

impl Runner {
    async fn run_all(
        &self,
        books: &[Playbook],
        dirs: &[VarsDirs],
        limited: &[String],
    ) -> BTreeMap<String, Stats> {
        let mut stats: BTreeMap<String, Stats> = BTreeMap::new();
        let mut conns: BTreeMap<String, Conn> = BTreeMap::new();
        let mut stopped: Vec<String> = Vec::new();
        for (book, book_dirs) in books.iter().zip(dirs) {
            for play in &book.plays {
                print!(
                    "{}",
                    output::play_banner(if play.name.is_empty() {
                        &play.hosts
                    } else {
                        &play.name
                    })
                );
                let selected = match inventory::select(&self.inv, &play.hosts) {
                    Ok(s) => s,
                    Err(e) => {
                        println!("[WARNING]: {e}; skipping play");
                        continue;
                    }
                };
                let hosts: Vec<String> = selected
                    .into_iter()
                    .filter(|h| limited.iter().any(|l| l == h) && !stopped.iter().any(|s| s == h))
                    .map(String::from)
                    .collect();
                if hosts.is_empty() {
                    println!("skipping: no hosts matched");
                    continue;
                }
                let reports = self
                    .run_play(book, book_dirs, play, &hosts, &mut conns)
                    .await;
                print!("{}", output::play_text(&reports));
                for r in reports {
                    stats.entry(r.host.clone()).or_default().add(&r.stats);
                    if r.stopped {
                        stopped.push(r.host.clone());
                    }
                }
            }
        }
        stats
    }

    async fn run_play(
        &self,
        book: &Playbook,
        book_dirs: &VarsDirs,
        play: &Play,
        hosts: &[String],
        conns: &mut BTreeMap<String, Conn>,
    ) -> Vec<HostReport> {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.forks.min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let play = Arc::new(play.clone());
        let groups = self.inv.groups_var();
        let mut handles = Vec::new();
        for name in hosts {
            let Some(host) = self.inv.host(name).cloned() else {
                continue;
            };
            let (conn, mut state) = conns.remove(name).unwrap_or_default();
            let host_vars = self.inv.vars_for(&host, book_dirs);
            let inventory_file = self.inventory_file.clone();
            let bar = multi.add(
                ProgressBar::new_spinner()
                    .with_style(style.clone())
                    .with_prefix(name.clone()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message("waiting for a fork");
            let permits = permits.clone();
            let play = play.clone();
            let opts = self.opts.clone();
            let groups = groups.clone();
            let play_hosts = hosts.to_vec();
            let dir = book.dir.clone();
            let settings = self.conn.clone();
            let handle = tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let bar2 = bar.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let mut conn = conn;
                    if conn.is_none() {
                        bar2.set_message("connecting");
                        match settings.connect(&host) {
                            Ok(t) => conn = Some(t),
                            Err(e) => {
                                return (
                                    (None, state),
                                    unreachable_report(&host.name, e.to_string()),
                                )
                            }
                        }
                    }
                    let Some(mut t) = conn else {
                        return (
                            (None, state),
                            unreachable_report(&host.name, "no connection".into()),
                        );
                    };
                    let hc = HostContext {
                        host: &host,
                        vars: host_vars,
                        groups,
                        play_hosts,
                        playbook_dir: &dir,
                        inventory_file,
                    };
                    let progress = |task: &str| bar2.set_message(task.to_string());
                    let connect = || settings.connect(&host);
                    let report =
                        exec::run_play(&play, &hc, &mut t, &connect, &mut state, &opts, &progress);
                    ((Some(t), state), report)
                })
                .await;
                bar.finish_and_clear();
                joined
            });
            handles.push((name.clone(), handle));
        }
        let mut reports = Vec::new();
        for (name, h) in handles {
            match h.await {
                Ok(Ok((conn, report))) => {
                    conns.insert(name.clone(), conn);
                    reports.push(report);
                }
                Ok(Err(e)) | Err(e) => {
                    reports.push(unreachable_report(&name, format!("internal error: {e}")))
                }
            }
        }
        let _ = multi.clear();
        reports
    }
}

fn unreachable_report(host: &str, msg: String) -> HostReport {
    let mut r = HostReport {
        host: host.to_string(),
        stopped: true,
        ..HostReport::default()
    };
    r.stats.unreachable = 1;
    r.steps.push((
        Step {
            title: "Gathering Facts".into(),
            handler: false,
            key: vec![0],
        },
        vec![TaskResult::new(Status::Unreachable, None, Some(msg))],
    ));
    r
}
