//! How to reach one SSH host, settled as Ansible and OpenSSH settle it: the host's `ansible_*`
//! vars, then ansible.cfg's defaults (`remote_user`, `remote_port`, `private_key_file`,
//! `host_key_checking`, `timeout`), passed like Ansible passes them (`-o` options before
//! `ansible_ssh_common_args`/`ansible_ssh_extra_args`), then the OpenSSH configuration files,
//! where the first value found wins. `ProxyJump` hops are settled the same way, each from its
//! own `Host` entries, the first hop's own `ProxyJump` first.

use super::ssh_args::{self, SshArgs};
use super::Sources;
use crate::inventory::Host;
use c1m_transport::ssh::config_file::{ProxyJump, Resolved, SshConfigFiles, Strict};
use c1m_transport::ssh::SshConfig;
use c1m_transport::Become;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest chain of jump hosts (longer is almost surely a loop in the configuration).
const MAX_HOPS: usize = 8;

/// What the command line adds.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--known-hosts`.
    pub known_hosts: Option<PathBuf>,
    /// `--accept-new-host-keys`.
    pub accept_new: bool,
}

/// The session to open for `host` and the jump hosts to open it through (outermost first).
pub fn resolve(
    host: &Host,
    over: &Overrides,
    sources: &Sources,
    become_: Become,
) -> Result<(SshConfig, Vec<SshConfig>), String> {
    let target = host
        .var_str("ansible_host")
        .or_else(|| host.var_str("ansible_ssh_host"))
        .unwrap_or_else(|| host.name.clone());
    let cfg = &sources.cfg;
    // In the order Ansible's ssh plugin puts them before the user's args: first one wins.
    let mut cmdline: Vec<(String, String)> = Vec::new();
    let host_key_checking = match host.vars.get("ansible_host_key_checking") {
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(serde_json::Value::String(s)) => crate::yaml::parse_bool(s),
        _ => cfg.host_key_checking,
    };
    if host_key_checking == Some(false) {
        cmdline.push(("StrictHostKeyChecking".into(), "no".into()));
    }
    if let Some(p) = host
        .var_str("ansible_port")
        .or_else(|| host.var_str("ansible_ssh_port"))
        .or_else(|| cfg.remote_port.map(|p| p.to_string()))
    {
        cmdline.push(("Port".into(), p));
    }
    let explicit_key = host
        .var_str("ansible_ssh_private_key_file")
        .or_else(|| host.var_str("ansible_private_key_file"))
        .map(PathBuf::from)
        .or_else(|| cfg.private_key_file.clone());
    if let Some(k) = &explicit_key {
        cmdline.push(("IdentityFile".into(), k.display().to_string()));
    }
    if let Some(u) = host
        .var_str("ansible_user")
        .or_else(|| host.var_str("ansible_ssh_user"))
        .or_else(|| cfg.remote_user.clone())
    {
        cmdline.push(("User".into(), u));
    }
    if let Some(t) = cfg.timeout {
        cmdline.push(("ConnectTimeout".into(), t.to_string()));
    }
    let mut args = SshArgs::default();
    for var in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
        if let Some(text) = host.var_str(var) {
            ssh_args::parse(&text, &mut args).map_err(|e| format!("{}: {var}: {e}", host.name))?;
        }
    }
    cmdline.extend(args.options);
    let loaded;
    let files = match &args.config_file {
        Some(f) => {
            loaded =
                SshConfigFiles::load_file(&expand(Path::new(f), sources), sources.home.as_deref())
                    .map_err(|e| format!("{}: ssh config from -F: {e}", host.name))?;
            &loaded
        }
        None => &sources.ssh,
    };
    let r = files
        .resolve(&target, &cmdline, &sources.local_user, &home(sources))
        .map_err(|e| format!("{}: {e}", host.name))?;
    let mut main = session(
        &host.name,
        &target,
        &r,
        sources,
        over,
        explicit_key.is_some(),
    );
    if let Some(kh) = host.var_str("c1m_known_hosts") {
        if over.known_hosts.is_none() {
            main.known_hosts = expand(Path::new(&kh), sources);
        }
    }
    main.become_ = become_;
    let jumps = jumps(&host.name, &r, files, sources, over, 0)?;
    Ok((main, jumps))
}

/// The hops `r`'s ProxyJump names, each preceded by the hops it needs itself.
fn jumps(
    name: &str,
    r: &Resolved,
    files: &SshConfigFiles,
    sources: &Sources,
    over: &Overrides,
    depth: usize,
) -> Result<Vec<SshConfig>, String> {
    if let (Some((cmd, at)), None) = (&r.proxy_command, &r.proxy_jump) {
        return Err(format!(
            "{name}: ProxyCommand {cmd:?} ({}:{}:{}): c1m cannot run a ProxyCommand; use ProxyJump",
            at.file, at.line, at.col
        ));
    }
    let hops = match &r.proxy_jump {
        None | Some(ProxyJump::None) => return Ok(Vec::new()),
        Some(ProxyJump::Hops(h)) => h,
    };
    if depth + hops.len() > MAX_HOPS {
        return Err(format!(
            "{name}: ProxyJump chain longer than {MAX_HOPS} hops (does a jump host jump through itself?)"
        ));
    }
    let mut chain = Vec::new();
    for (i, hop) in hops.iter().enumerate() {
        let mut cmd: Vec<(String, String)> = Vec::new();
        if let Some(u) = &hop.user {
            cmd.push(("User".into(), u.clone()));
        }
        if let Some(p) = hop.port {
            cmd.push(("Port".into(), p.to_string()));
        }
        if i > 0 {
            // Later hops are reached through the ones before them, whatever their own entries say.
            cmd.push(("ProxyJump".into(), "none".into()));
        }
        let hr = files
            .resolve(&hop.host, &cmd, &sources.local_user, &home(sources))
            .map_err(|e| format!("{name}: jump host {}: {e}", hop.host))?;
        if i == 0 {
            chain.extend(jumps(name, &hr, files, sources, over, depth + hops.len())?);
        }
        let mut s = session(&hop.host, &hop.host, &hr, sources, over, false);
        s.name = format!("jump host {}", hop.host);
        s.become_ = Become::default();
        chain.push(s);
    }
    Ok(chain)
}

/// The session settings `r` gives for the host named `name`, given to ssh as `target`.
fn session(
    name: &str,
    target: &str,
    r: &Resolved,
    sources: &Sources,
    over: &Overrides,
    explicit_key: bool,
) -> SshConfig {
    // ssh skips IdentityFiles that do not exist; one named for this host in the inventory or
    // ansible.cfg is kept so the error says it is missing.
    let key_file = r
        .identity_files
        .iter()
        .map(|k| expand(k, sources))
        .find(|k| k.is_file())
        .or_else(|| {
            explicit_key
                .then(|| r.identity_files.first().map(|k| expand(k, sources)))
                .flatten()
        });
    let known_hosts = over.known_hosts.clone().unwrap_or_else(|| {
        r.known_hosts_files
            .as_ref()
            .and_then(|f| f.first().cloned())
            .map(|k| expand(&k, sources))
            .unwrap_or_else(|| home(sources).join(".ssh/known_hosts"))
    });
    SshConfig {
        name: name.to_string(),
        address: r.hostname.clone().unwrap_or_else(|| target.to_string()),
        port: r.port.unwrap_or(22),
        user: r.user.clone().unwrap_or_else(|| sources.local_user.clone()),
        key_file,
        known_hosts,
        accept_new_host_keys: over.accept_new || r.strict == Some(Strict::AcceptNew),
        become_: Become::default(),
        connect_timeout: Duration::from_secs(r.connect_timeout.unwrap_or(10)),
    }
}

fn home(sources: &Sources) -> PathBuf {
    sources
        .home
        .clone()
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// `~/x` from the home c1m uses.
fn expand(p: &Path, sources: &Sources) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => home(sources).join(rest),
        Err(_) => p.to_path_buf(),
    }
}
