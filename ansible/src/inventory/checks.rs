//! Where an inventory value was written, and the check of connection vars shared by every
//! place a var can be set (inventories and vars files), so a typo is reported at its position.

use crate::yaml::{Pos, SourceError};
use serde_json::Value as Json;

/// Where something was written, for errors found after the file was read.
#[derive(Debug, Clone)]
pub(super) struct At {
    pub file: String,
    pub pos: Pos,
}

impl At {
    pub fn err(&self, msg: impl Into<String>) -> SourceError {
        SourceError::new(&self.file, self.pos, msg)
    }
}

/// Connection vars whose values are checked where they are written, so a typo is reported with
/// its position rather than as an odd failure on the host. Templated values are checked when
/// they are used.
pub fn check_connection_var(at: &At, name: &str, value: &Json) -> Result<(), SourceError> {
    if let Json::String(s) = value {
        if crate::template::is_template(s) {
            return Ok(());
        }
    }
    let shown = || match value {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    match name {
        "ansible_connection" => match value.as_str() {
            Some("ssh" | "local" | "smart" | "paramiko") => Ok(()),
            _ => Err(at.err(format!(
                "ansible_connection: expected `ssh` or `local`, found {}",
                shown()
            ))),
        },
        "ansible_port" | "ansible_ssh_port" => {
            let ok = match value {
                Json::Number(n) => n.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
                Json::String(s) => s.parse::<u16>().is_ok_and(|p| p > 0),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(at.err(format!(
                    "{name}: expected a port number 1-65535, found {}",
                    match value {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    }
                )))
            }
        }
        "ansible_become" => match value {
            Json::Bool(_) => Ok(()),
            Json::String(s) if crate::yaml::parse_bool(s).is_some() => Ok(()),
            Json::Number(n) if n.as_i64().is_some_and(|i| i == 0 || i == 1) => Ok(()),
            _ => Err(at.err(format!(
                "ansible_become: expected a boolean (true/false), found {}",
                shown()
            ))),
        },
        "ansible_host"
        | "ansible_ssh_host"
        | "ansible_user"
        | "ansible_ssh_user"
        | "ansible_ssh_private_key_file"
        | "ansible_private_key_file"
        | "ansible_become_user"
        | "ansible_ssh_common_args"
        | "ansible_ssh_extra_args" => match value {
            Json::String(_) | Json::Number(_) => Ok(()),
            _ => Err(at.err(format!("{name}: expected a string, found {}", shown()))),
        },
        "ansible_password"
        | "ansible_ssh_pass"
        | "ansible_become_password"
        | "ansible_become_pass" => Err(at.err(format!(
            "{name}: c1m never uses passwords (SSH logs in with keys or the agent; become is \
                 `sudo -n`); remove it"
        ))),
        "ansible_become_method" => match value.as_str() {
            Some("sudo") => Ok(()),
            _ => Err(at.err(format!(
                "ansible_become_method: c1m supports only `sudo`, found {}",
                shown()
            ))),
        },
        _ => Ok(()),
    }
}
