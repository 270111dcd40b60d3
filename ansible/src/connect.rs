//! Opening the transport an inventory host asks for: `ansible_connection: local` runs here,
//! anything else goes over SSH with the host's `ansible_*` settings.

use crate::inventory::{Connection, Host, Inventory};
use c1m_transport::local::LocalTransport;
use c1m_transport::{ssh, Become, Transport, TransportError};
use std::path::PathBuf;

/// How to open hosts' connections, from the command line.
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    /// `--known-hosts`, which wins over the inventory's `c1m_known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// `--accept-new-host-keys`.
    pub accept_new: bool,
    /// Escalate whatever the inventory says (a play asks for `become`).
    pub any_become: bool,
    pub become_user: Option<String>,
}

impl ConnectSettings {
    pub fn connect(&self, host: &Host) -> Result<Box<dyn Transport>, TransportError> {
        let mut become_: Become = host.become_();
        become_.enabled |= self.any_become;
        if become_.user.is_none() {
            become_.user = self.become_user.clone();
        }
        let t: Box<dyn Transport> = match host.connection() {
            Connection::Local => Box::new(LocalTransport::new(&host.name, &become_)),
            Connection::Ssh => {
                let known_hosts = self
                    .known_hosts
                    .clone()
                    .unwrap_or_else(|| host.known_hosts());
                let cfg = host.ssh_config(&known_hosts, self.accept_new, become_);
                ssh::connect(&without_needless_become(cfg))?
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

    /// How many hosts at once.
    pub fn forks(&self) -> usize {
        self.forks.unwrap_or(usize::MAX).max(1)
    }
}
