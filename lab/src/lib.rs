//! `c1m lab`: four local QEMU VMs (one server, three clients) on a bridge inside a network
//! namespace of their own, and the Ansible inventory that reaches them.
//!
//! | module | responsibility |
//! | --- | --- |
//! | [`image`] | the Debian guest image, built by debootstrap and cached by recipe hash |
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

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Arguments of `c1m lab`.
#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: Action,
    /// Where built guest images are cached (keyed by a hash of their recipe).
    #[arg(long, global = true, default_value = "/var/cache/c1m/lab")]
    pub cache_dir: PathBuf,
    /// Where the running lab keeps its key, known_hosts, overlays, pid files and consoles.
    #[arg(long, global = true, default_value = "/var/lib/c1m/lab")]
    pub state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Build the image if needed, boot the four VMs, wait for SSH, write the inventory.
    Up(up::UpArgs),
    /// Stop every VM and delete the lab network and overlays (also after a crash).
    Down,
    /// Show each VM: address, memory, process, whether SSH answers.
    Status,
    /// Log in to one VM (srv, cli1, cli2, cli3) with the lab key and pinned host key.
    Ssh {
        /// VM name.
        name: String,
        /// Command to run instead of a login shell.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Build (or find in the cache) the guest image and print where it is.
    Image {
        /// Debian mirror debootstrap fetches from.
        #[arg(long, default_value = up::DEFAULT_MIRROR)]
        mirror: String,
    },
}

/// Runs `c1m lab`; returns the process exit code.
pub fn cmd(args: LabArgs) -> anyhow::Result<u8> {
    let paths = layout::Paths::new(&args.state_dir);
    match args.action {
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
        Action::Image { mirror } => {
            let img = image::ensure(&args.cache_dir, &mirror)?;
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
