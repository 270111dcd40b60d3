//! Opening the transport an inventory host asks for: `ansible_connection: local` runs here,
//! anything else goes over SSH with the host's `ansible_*` settings.

use crate::inventory::{Connection, Host};
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
