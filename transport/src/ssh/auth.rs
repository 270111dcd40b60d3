//! Public-key authentication: the configured key file, or else the agent and the default keys,
//! like `ssh` does. A failure lists everything tried so a person sees which key to fix.

use super::super::TransportError;
use super::SshConfig;
use ssh2::Session;
use std::path::{Path, PathBuf};

pub(super) fn authenticate(session: &Session, cfg: &SshConfig) -> Result<(), TransportError> {
    let mut tried: Vec<String> = Vec::new();
    let user = cfg.user.as_str();
    if let Some(key) = &cfg.key_file {
        try_key_file(session, user, &super::expand_tilde(key), &mut tried);
    } else {
        try_agent(session, user, &mut tried);
        for key in default_keys() {
            if session.authenticated() {
                break;
            }
            if key.exists() {
                try_key_file(session, user, &key, &mut tried);
            }
        }
    }
    if session.authenticated() {
        return Ok(());
    }
    if tried.is_empty() {
        tried.push(
            "nothing: no key file given, no agent (SSH_AUTH_SOCK), no ~/.ssh/id_ed25519 or id_rsa"
                .into(),
        );
    }
    Err(TransportError::Auth(format!(
        "{} ({}@{}:{}): no credential was accepted; tried {}",
        cfg.name,
        user,
        cfg.address,
        cfg.port,
        tried.join("; ")
    )))
}

fn try_key_file(session: &Session, user: &str, key: &Path, tried: &mut Vec<String>) {
    if !key.exists() {
        tried.push(format!("key file {} (it does not exist)", key.display()));
        return;
    }
    if super::key_file::is_encrypted(key) {
        tried.push(format!(
            "key file {} (it is protected by a passphrase, which c1m never asks for: load it \
             into ssh-agent with ssh-add and leave the key file unset)",
            key.display()
        ));
        return;
    }
    // No public key path: libssh2 derives it from the private key, so a lone private key (as
    // `ansible_ssh_private_key_file` names) is enough.
    match session.userauth_pubkey_file(user, None, key, None) {
        Ok(()) => {}
        Err(e) => tried.push(format!("key file {} ({})", key.display(), e.message())),
    }
}

fn try_agent(session: &Session, user: &str, tried: &mut Vec<String>) {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return;
    }
    let mut agent = match session.agent() {
        Ok(a) => a,
        Err(e) => return tried.push(format!("agent ({})", e.message())),
    };
    if let Err(e) = agent.connect().and_then(|()| agent.list_identities()) {
        return tried.push(format!("agent ({})", e.message()));
    }
    let identities = match agent.identities() {
        Ok(ids) => ids,
        Err(e) => return tried.push(format!("agent ({})", e.message())),
    };
    if identities.is_empty() {
        tried.push("agent (it holds no keys)".into());
    }
    for id in identities {
        match agent.userauth(user, &id) {
            Ok(()) => break,
            Err(e) => tried.push(format!("agent key {:?} ({})", id.comment(), e.message())),
        }
    }
    let _ = agent.disconnect();
}

fn default_keys() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let dir = PathBuf::from(home).join(".ssh");
    vec![dir.join("id_ed25519"), dir.join("id_rsa")]
}
