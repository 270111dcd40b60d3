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
    /// Which guest image: the default, or the one with the exemplar servers installed.
    pub variant: image::Variant,
    /// Seconds a VM may go without boot progress (new console output, its SSH banner, a
    /// login) before `up` gives up on it. There is no budget for the whole boot: a machine three
    /// times slower boots three times longer, and keeps making progress all the while.
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
    let wanted_image = image::location(cache_dir, &args.mirror, args.variant);
    if let Some(running) = state::load(&paths.state())? {
        let specs: Vec<&VmSpec> = running.vms.iter().map(|v| &v.spec).collect();
        let same_size = specs.iter().copied().eq(vms.iter());
        // A lab booted from another image (the other variant) is not the lab asked for.
        let same_image = running.image == wanted_image.base.display().to_string();
        let same = same_size && same_image;
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
            if !same_size {
                "sized differently"
            } else if !same_image {
                "booted from another image"
            } else {
                "broken"
            }
        );
    }
    // Whatever a crash left behind (no state file, but processes or a namespace) goes too.
    super::down::down(paths)?;

    if !image::cached(cache_dir, &args.mirror, args.variant) {
        super::require_tools(&["debootstrap", "mkfs.ext4", "chroot"])?;
    }
    let img = image::ensure(cache_dir, &args.mirror, args.variant)?;
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

/// How far a VM's boot has come; reaching the next stage is progress, as is console output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Booting,
    /// sshd sends its banner.
    Banner,
    /// A login with the lab key and the pinned host key works.
    Ready,
}

/// One VM being waited for.
struct Boot<'a> {
    vm: &'a VmSpec,
    console: PathBuf,
    console_len: u64,
    stage: Stage,
    last_progress: Instant,
}

impl Boot<'_> {
    /// Looks at the VM again; whether it made progress since the last look.
    fn look(&mut self, paths: &Paths) -> bool {
        let len = fs::metadata(&self.console).map(|m| m.len()).unwrap_or(0);
        let mut moved = len > self.console_len;
        self.console_len = self.console_len.max(len);
        let stage = if !probe::banner(self.vm) {
            Stage::Booting
        } else if probe::login(self.vm, &paths.key(), &paths.known_hosts()) {
            Stage::Ready
        } else {
            Stage::Banner
        };
        if stage > self.stage {
            self.stage = stage;
            moved = true;
        }
        if moved {
            self.last_progress = Instant::now();
        }
        moved
    }
}

/// Waits until every VM accepts a login with the lab key and its pinned host key, judging each
/// by its progress: a VM fails only after `quiet` without new console output or a new stage,
/// however long its whole boot takes on a slow (emulated, busy) machine.
fn wait_for_ssh(vms: &[VmSpec], paths: &Paths, quiet: Duration) -> Result<()> {
    let start = Instant::now();
    let mut pending: Vec<Boot> = vms
        .iter()
        .map(|vm| Boot {
            vm,
            console: qemu::VmFiles::new(&paths.vm_dir(&vm.name)).console,
            console_len: 0,
            stage: Stage::Booting,
            last_progress: start,
        })
        .collect();
    while !pending.is_empty() {
        for b in &mut pending {
            b.look(paths);
            if b.stage == Stage::Ready {
                println!(
                    "lab: {} answers SSH after {:.1} s",
                    b.vm.name,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        pending.retain(|b| b.stage != Stage::Ready);
        let stuck: Vec<String> = pending
            .iter()
            .filter(|b| b.last_progress.elapsed() > quiet)
            .map(|b| {
                format!(
                    "{} ({}, console: {})",
                    b.vm.name,
                    match b.stage {
                        Stage::Booting => "no SSH banner yet",
                        Stage::Banner => "sshd answers but the login fails",
                        Stage::Ready => "ready",
                    },
                    b.console.display()
                )
            })
            .collect();
        if !stuck.is_empty() {
            bail!(
                "no boot progress for {} s (no new console output, no further SSH stage) on {}, \
                 {:.0} s after the start; `c1m lab down` cleans up",
                quiet.as_secs(),
                stuck.join(", "),
                start.elapsed().as_secs_f64()
            );
        }
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Ok(())
}
