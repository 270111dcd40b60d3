//! Opening the transport an inventory host asks for — `ansible_connection: local` runs here,
//! anything else goes over SSH, directly or through `ProxyJump` hosts — and which hosts a
//! command reaches ([`HostOptions`]: what `-i`, `--limit`, `--forks`, `--known-hosts` and
//! `--accept-new-host-keys` say, with ansible.cfg's defaults).
//!
//! | module | responsibility |
//! | --- | --- |
//! | `route` | a host's SSH session and jump hosts from its vars, ansible.cfg and ssh_config |
//! | `ssh_args` | `ansible_ssh_common_args` / `ansible_ssh_extra_args` |

mod route;
mod ssh_args;

use crate::config::AnsibleConfig;
use crate::inventory::{Connection, Host, Inventory};
use c1m_transport::local::LocalTransport;
use c1m_transport::ssh::config_file::SshConfigFiles;
use c1m_transport::{ssh, Become, Transport, TransportError};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Where settings outside the inventory come from: ansible.cfg and the OpenSSH client
/// configuration, with the home directory and user they are read for.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub cfg: AnsibleConfig,
    pub ssh: SshConfigFiles,
    /// `$HOME`: `~/.ssh/config`, `~/.ssh/known_hosts`, default keys.
    pub home: Option<PathBuf>,
    /// Who runs c1m: the login when nothing names one.
    pub local_user: String,
}

impl Sources {
    /// This process's: ansible.cfg as Ansible finds it, and `~/.ssh/config` then
    /// `/etc/ssh/ssh_config` — or the one file `C1M_SSH_CONFIG` names (`none`: no file).
    pub fn discover() -> anyhow::Result<Sources> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let ssh = match std::env::var("C1M_SSH_CONFIG")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) if v == "none" => SshConfigFiles::default(),
            Some(v) => SshConfigFiles::load_file(std::path::Path::new(&v), home.as_deref())?,
            None => SshConfigFiles::load_default(home.as_deref())?,
        };
        Ok(Sources {
            cfg: AnsibleConfig::discover()?,
            ssh,
            home,
            local_user: local_user(),
        })
    }

    /// No ansible.cfg and no ssh_config: the inventory alone.
    pub fn inventory_only() -> Sources {
        Sources {
            home: std::env::var_os("HOME").map(PathBuf::from),
            local_user: local_user(),
            ..Sources::default()
        }
    }
}

fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// Which [`Sources`] a [`ConnectSettings`] uses.
#[derive(Debug, Clone, Default)]
pub enum SourcesRef {
    /// This process's, read once on first use ([`Sources::discover`]).
    #[default]
    Discover,
    Given(Arc<Sources>),
}

impl SourcesRef {
    pub fn get(&self) -> Result<Arc<Sources>, String> {
        static DISCOVERED: OnceLock<Result<Arc<Sources>, String>> = OnceLock::new();
        match self {
            SourcesRef::Given(s) => Ok(s.clone()),
            SourcesRef::Discover => DISCOVERED
                .get_or_init(|| {
                    Sources::discover()
                        .map(Arc::new)
                        .map_err(|e| format!("{e:#}"))
                })
                .clone(),
        }
    }
}

/// How to open hosts' connections, from the command line.
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    /// `--known-hosts`, which wins over the inventory's `c1m_known_hosts` and ssh_config.
    pub known_hosts: Option<PathBuf>,
    /// `--accept-new-host-keys`.
    pub accept_new: bool,
    /// Escalate whatever the inventory says (a play asks for `become`).
    pub any_become: bool,
    pub become_user: Option<String>,
    /// ansible.cfg and ssh_config.
    pub sources: SourcesRef,
}

impl ConnectSettings {
    /// The SSH session `host` needs and the jump hosts to reach it through (outermost first).
    pub fn ssh_route(&self, host: &Host) -> Result<(ssh::SshConfig, Vec<ssh::SshConfig>), String> {
        let sources = self.sources.get()?;
        let (cfg, jumps) = route::resolve(
            host,
            &route::Overrides {
                known_hosts: self.known_hosts.clone(),
                accept_new: self.accept_new,
            },
            &sources,
            self.become_for(host),
        )?;
        Ok((without_needless_become(cfg), jumps))
    }

    fn become_for(&self, host: &Host) -> Become {
        let mut become_: Become = host.become_();
        become_.enabled |= self.any_become;
        if become_.user.is_none() {
            become_.user = self.become_user.clone();
        }
        become_
    }

    pub fn connect(&self, host: &Host) -> Result<Box<dyn Transport>, TransportError> {
        let t: Box<dyn Transport> = match host.connection() {
            Connection::Local => Box::new(LocalTransport::new(&host.name, &self.become_for(host))),
            Connection::Ssh => {
                let (cfg, jumps) = self.ssh_route(host).map_err(TransportError::Io)?;
                ssh::connect_via(&cfg, &jumps)?
            }
        };
        Ok(c1m_transport::trace::wrap(t))
    }
}

/// Logged in as root and asked to become root: sudo would only add a round trip and a failure
/// mode (hosts without sudo).
fn without_needless_become(mut cfg: ssh::SshConfig) -> ssh::SshConfig {
    let target_root = cfg.become_.user.as_deref().is_none_or(|u| u == "root");
    if cfg.user == "root" && target_root {
        cfg.become_.enabled = false;
    }
    cfg
}

/// Which hosts a command reaches and how: what `-i`, `--limit`, `--forks`, `--known-hosts` and
/// `--accept-new-host-keys` say, for every command that reaches hosts.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The inventory; `None` means this machine alone (the built-in `inventory/local.yml`).
    pub inventory: Option<PathBuf>,
    /// Only these hosts or groups (Ansible's host patterns).
    pub limit: Option<String>,
    /// Hosts worked on at once; `None` means all.
    pub forks: Option<usize>,
    pub connect: ConnectSettings,
}

impl HostOptions {
    /// The whole inventory (the built-in local one when none is given) and the name messages
    /// use for it.
    pub fn load(&self) -> anyhow::Result<(Inventory, String)> {
        Ok(match &self.inventory {
            Some(p) => (crate::inventory::load(p)?, p.display().to_string()),
            None => (
                crate::inventory::embedded_local(),
                "inventory/local.yml (embedded)".to_string(),
            ),
        })
    }

    /// The hosts `--limit` selects (all without it), in inventory order.
    pub fn selected(&self, inv: &Inventory) -> anyhow::Result<Vec<String>> {
        let names: Vec<String> = match &self.limit {
            Some(pattern) => crate::inventory::select(inv, pattern)
                .map_err(anyhow::Error::msg)?
                .into_iter()
                .map(String::from)
                .collect(),
            None => inv.hosts.iter().map(|h| h.name.clone()).collect(),
        };
        if names.is_empty() {
            anyhow::bail!(
                "no hosts to work on (inventory {} with --limit {:?})",
                inv.source,
                self.limit.as_deref().unwrap_or("")
            );
        }
        Ok(names)
    }

    /// The inventory with the hosts outside `--limit` dropped from it and from every group:
    /// what a run or a check works on.
    pub fn load_limited(&self) -> anyhow::Result<(Inventory, String)> {
        let (mut inv, source) = self.load()?;
        if self.limit.is_some() {
            let keep = self.selected(&inv)?;
            inv.hosts.retain(|h| keep.contains(&h.name));
            for g in inv.groups.values_mut() {
                g.hosts.retain(|h| keep.contains(h));
            }
        }
        Ok((inv, source))
    }

    /// Checks that every SSH host of `names` has a route (its settings and ssh_config make
    /// sense), so a bad configuration stops a command before any host is touched.
    pub fn check_routes(&self, inv: &Inventory, names: &[String]) -> anyhow::Result<()> {
        for h in inv.hosts.iter().filter(|h| names.contains(&h.name)) {
            if h.connection() == Connection::Ssh {
                self.connect.ssh_route(h).map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }

    /// How many hosts at once.
    pub fn forks(&self) -> usize {
        self.forks.unwrap_or(usize::MAX).max(1)
    }
}
