//! `c1m lab`: four local QEMU VMs (one server, three clients) on a bridge inside a network
//! namespace of their own, and the Ansible inventory that reaches them.
//!
//! | module | responsibility |
//! | --- | --- |
//! | [`image`] | the Debian guest image (default, or with the exemplar servers), built by debootstrap and cached by recipe hash |
//! | [`layout`] | the VMs, their addresses and memory, the lab's file paths |
//! | [`netns`] | namespace, bridge, taps, and the veth the controller reaches the VMs by |
//! | [`seed`] | login key, per-VM host keys and seed disks, known_hosts |
//! | [`qemu`] | acceleration choice, starting and stopping VMs |
//! | [`inventory`] | the Ansible YAML inventory `up` writes |
//! | [`state`] | `lab.json`: what is running |
//! | [`probe`] | whether a VM's SSH answers |

mod exec;
pub mod image;
pub mod inventory;
pub mod layout;
pub mod netns;
pub mod probe;
pub mod qemu;
pub mod seed;
pub mod state;

mod down;
mod status;
mod up;

use std::path::PathBuf;

pub use up::{AccelChoice, UpOptions, DEFAULT_MIRROR};

/// Where `c1m lab` keeps things.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Where built guest images are cached (keyed by a hash of their recipe).
    pub cache_dir: PathBuf,
    /// Where the running lab keeps its key, known_hosts, overlays, pid files and consoles.
    pub state_dir: PathBuf,
}

/// What `c1m lab` is asked to do.
#[derive(Debug)]
pub enum Action {
    /// Build the image if needed, boot the four VMs, wait for SSH, write the inventory.
    Up(UpOptions),
    /// Stop every VM and delete the lab network and overlays.
    Down,
    /// Show each VM.
    Status,
    /// Log in to one VM, or run a command there.
    Ssh { name: String, command: Vec<String> },
    /// Build (or find in the cache) the guest image and print where it is.
    Image {
        mirror: String,
        variant: image::Variant,
    },
}

/// Runs `c1m lab`; returns the exit code of the command `lab ssh` ran, else 0.
pub fn run(args: &LabOptions, action: Action) -> anyhow::Result<u8> {
    let paths = layout::Paths::new(&args.state_dir);
    match action {
        Action::Up(up) => {
            let _lock = lock(&paths)?;
            up::up(&up, &paths, &args.cache_dir)
        }
        Action::Down => {
            let _lock = lock(&paths)?;
            down::down(&paths)
        }
        Action::Status => status::status(&paths),
        Action::Ssh { name, command } => status::ssh(&paths, &name, &command),
        Action::Image { mirror, variant } => {
            if !image::cached(&args.cache_dir, &mirror, variant) {
                require_tools(&["debootstrap", "mkfs.ext4", "chroot"])?;
            }
            let img = image::ensure(&args.cache_dir, &mirror, variant)?;
            println!("base   {}", img.base.display());
            println!("kernel {}", img.kernel.display());
            println!("initrd {}", img.initrd.display());
            Ok(0)
        }
    }
}

/// The lab needs root (namespaces, taps) and these programs.
fn require_tools(tools: &[&str]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("`c1m lab` needs root (it creates a network namespace and tap devices)");
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !exec::have(t)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "`c1m lab` needs {} (Debian: apt-get install --no-install-recommends qemu-system-x86 qemu-utils debootstrap e2fsprogs iproute2 openssh-client)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// One `up` or `down` at a time per state directory; the lock goes with the returned file.
fn lock(paths: &layout::Paths) -> anyhow::Result<std::fs::File> {
    use anyhow::Context;
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(&paths.root)
        .with_context(|| format!("creating {}", paths.root.display()))?;
    let path = paths.root.join("lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another `c1m lab up` or `down` is running on {}",
            paths.root.display()
        );
    }
    Ok(file)
}
