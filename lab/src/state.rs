//! `lab.json`: what `up` started (VMs, pids, acceleration), so `status`, `ssh` and `down` act on
//! the running lab rather than on today's defaults.

use super::layout::VmSpec;
use super::qemu::Accel;
use anyhow::{Context, Result};
use std::path::Path;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LabState {
    pub accel: Accel,
    pub image: String,
    pub vms: Vec<RunningVm>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunningVm {
    #[serde(flatten)]
    pub spec: VmSpec,
    pub pid: u32,
}

pub fn load(path: &Path) -> Result<Option<LabState>> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            Ok(Some(serde_json::from_str(&s).with_context(|| {
                format!("{}: not a lab state", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn save(path: &Path, state: &LabState) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(state)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
