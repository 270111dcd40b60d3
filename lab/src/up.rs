//! `c1m lab up`: image, keys, network, four VMs, SSH, inventory — in that order, each step
//! recorded so `down` can undo a half-finished `up`.

use super::layout::{self, Paths, VmSpec};
use super::state::{LabState, RunningVm};
use super::{image, inventory, netns, probe, qemu, seed, state};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What `c1m lab up` is asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Target connections of the runs this lab is for; sizes guest memory.
    pub connections: u64,
    /// Server memory in MiB (overrides the size derived from `connections`).
    pub server_memory: Option<u64>,
    /// Memory of each client in MiB (overrides the size derived from `connections`).
    pub client_memory: Option<u64>,
    /// vCPUs per VM.
    pub cpus: u32,
    pub accel: AccelChoice,
    /// Where to write the inventory.
    pub inventory: PathBuf,
    /// Debian mirror debootstrap fetches from (only used when the image is built).
    pub mirror: String,
    /// Seconds to wait for every VM to answer SSH.
    pub timeout: u64,
}

/// Acceleration asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when it boots the guest kernel, else TCG.
    Auto,
    Kvm,
    Tcg,
}

pub fn up(args: &UpOptions, paths: &Paths, cache_dir: &Path) -> Result<u8> {
    super::require_tools(&[
        "ip",
        "qemu-system-x86_64",
        "qemu-img",
        "ssh-keygen",
        "ssh",
        "tar",
    ])?;
    let vms = layout::vms(
        args.connections,
        args.server_memory,
        args.client_memory,
        args.cpus,
    );
    if let Some(running) = state::load(&paths.state())? {
        let specs: Vec<&VmSpec> = running.vms.iter().map(|v| &v.spec).collect();
        let same = specs.iter().copied().eq(vms.iter());
        let healthy = netns::exists()
            && running
                .vms
                .iter()
                .all(|v| qemu::is_lab_qemu(v.pid, &paths.vms_dir()));
        if same && healthy {
            println!("lab: already up ({:?})", running.accel);
            write_inventory(&args.inventory, &vms, paths)?;
            wait_for_ssh(&vms, paths, Duration::from_secs(args.timeout))?;
            return Ok(0);
        }
        println!(
            "lab: a previous lab is {}; taking it down first",
            if same { "broken" } else { "sized differently" }
        );
    }
    // Whatever a crash left behind (no state file, but processes or a namespace) goes too.
    super::down::down(paths)?;

    if !image::cached(cache_dir, &args.mirror) {
        super::require_tools(&["debootstrap", "mkfs.ext4", "chroot"])?;
    }
    let img = image::ensure(cache_dir, &args.mirror)?;
    fs::create_dir_all(paths.vms_dir())
        .with_context(|| format!("creating {}", paths.vms_dir().display()))?;
    let (accel, why) = match args.accel {
        AccelChoice::Auto => qemu::choose_accel(&img, &paths.root),
        AccelChoice::Kvm => (qemu::Accel::Kvm, "asked for with --accel kvm".into()),
        AccelChoice::Tcg => (qemu::Accel::Tcg, "asked for with --accel tcg".into()),
    };
    println!("lab: acceleration {accel:?} ({why})");

    let login_pub = seed::ensure_login_key(&paths.key())?;
    let mut host_keys = Vec::new();
    for vm in &vms {
        let dir = paths.vm_dir(&vm.name);
        fs::create_dir_all(&dir)?;
        host_keys.push((vm, seed::write_seed(vm, &dir, &login_pub)?));
    }
    fs::write(paths.known_hosts(), seed::known_hosts(&host_keys))?;

    netns::create(&vms)?;
    let mut st = LabState {
        accel,
        image: img.base.display().to_string(),
        vms: Vec::new(),
    };
    let booted = Instant::now();
    for vm in &vms {
        let files = qemu::VmFiles::new(&paths.vm_dir(&vm.name));
        let pid = qemu::start(vm, &img, &files, accel)?;
        println!(
            "lab: started {} {} ({} MiB, {} vCPU) pid {pid}",
            vm.name, vm.addr, vm.mem_mib, vm.cpus
        );
        st.vms.push(RunningVm {
            spec: vm.clone(),
            pid,
        });
        state::save(&paths.state(), &st)?;
    }
    write_inventory(&args.inventory, &vms, paths)?;
    wait_for_ssh(&vms, paths, Duration::from_secs(args.timeout))?;
    println!(
        "lab: up in {:.1} s from boot to SSH on every VM ({accel:?})",
        booted.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn write_inventory(path: &Path, vms: &[VmSpec], paths: &Paths) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(
        path,
        inventory::render(vms, &paths.key(), &paths.known_hosts()),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    println!("lab: inventory {}", path.display());
    Ok(())
}

/// Waits until every VM accepts a login with the lab key and its pinned host key.
fn wait_for_ssh(vms: &[VmSpec], paths: &Paths, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut pending: Vec<&VmSpec> = vms.iter().collect();
    while !pending.is_empty() {
        pending.retain(|vm| {
            let ready = probe::banner(vm) && probe::login(vm, &paths.key(), &paths.known_hosts());
            if ready {
                println!(
                    "lab: {} answers SSH after {:.1} s",
                    vm.name,
                    start.elapsed().as_secs_f64()
                );
            }
            !ready
        });
        if pending.is_empty() {
            break;
        }
        if start.elapsed() > timeout {
            let names: Vec<String> = pending
                .iter()
                .map(|v| {
                    format!(
                        "{} (console: {})",
                        v.name,
                        qemu::VmFiles::new(&paths.vm_dir(&v.name)).console.display()
                    )
                })
                .collect();
            bail!(
                "no SSH login after {} s on {}; `c1m lab down` cleans up",
                timeout.as_secs(),
                names.join(", ")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}
