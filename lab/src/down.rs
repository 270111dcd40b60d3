//! `c1m lab down`: stop every VM (QMP quit, then SIGKILL by pid), delete the namespace and the
//! per-VM files. Works from whatever is left: the state file, pid files, or only the QEMU
//! processes whose command line names this lab's state directory.

use super::layout::Paths;
use super::{netns, qemu};
use anyhow::{Context, Result};
use std::fs;

pub fn down(paths: &Paths) -> Result<u8> {
    super::require_tools(&["ip"])?;
    let marker = paths.vms_dir();
    let mut stopped = 0;
    if let Ok(entries) = fs::read_dir(&marker) {
        for entry in entries.flatten() {
            let files = qemu::VmFiles::new(&entry.path());
            if let Ok(pid) = qemu::read_pid(&files.pid) {
                if qemu::is_lab_qemu(pid, &marker) {
                    qemu::stop(pid, &files.qmp, &marker)?;
                    println!(
                        "lab: stopped {} (pid {pid})",
                        entry.file_name().to_string_lossy()
                    );
                    stopped += 1;
                }
            }
        }
    }
    // Pid files can be lost (a crash during `up`); the command line still names the lab.
    for pid in qemu::lab_qemus(&marker) {
        qemu::stop(pid, &paths.root.join("none"), &marker)?;
        println!("lab: stopped stray QEMU pid {pid}");
        stopped += 1;
    }
    let had_netns = netns::exists();
    netns::destroy()?;
    if marker.exists() {
        fs::remove_dir_all(&marker).with_context(|| format!("removing {}", marker.display()))?;
    }
    for f in [paths.state(), paths.known_hosts()] {
        if f.exists() {
            fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
        }
    }
    if stopped == 0 && !had_netns {
        println!("lab: nothing was running");
    } else {
        println!("lab: down");
    }
    Ok(0)
}
