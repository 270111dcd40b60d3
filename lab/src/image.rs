//! The lab's guest image: Debian bookworm from Debian's packages alone (debootstrap minbase plus
//! the kernel, OpenSSH, systemd, python3), built once and cached under a directory named by a
//! hash of its recipe, so a changed recipe builds a new image and an unchanged one is reused.
//!
//! The image holds nothing per VM: no host keys, no machine-id, no hostname, no login key. Those
//! come from each VM's seed disk (see [`super::seed`]) or are created at first boot.

use super::exec::run;
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SUITE: &str = "bookworm";
/// Debian packages beyond minbase. python3 lets ansible-playbook manage the guests too.
const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "openssh-server",
    "systemd",
    "systemd-sysv",
    "udev",
    "iproute2",
    "kmod",
    "procps",
    "python3",
    "sudo",
];
/// Size of the root filesystem (sparse; the qcow2 holds only what is used).
const ROOT_SIZE: &str = "4G";

/// Files written into the root filesystem after debootstrap: (path, mode, content).
const FILES: &[(&str, u32, &str)] = &[
    ("etc/fstab", 0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"),
    // Direct kernel boot finds the root disk itself; only these modules are needed before it,
    // which shrinks the initramfs from ~36 MB to ~6.5 MB and speeds up TCG boots.
    ("etc/initramfs-tools/conf.d/c1m", 0o644, "MODULES=list\n"),
    (
        "etc/initramfs-tools/modules",
        0o644,
        "virtio_pci\nvirtio_blk\nvirtio_net\next4\n",
    ),
    // ed25519 only: RSA key generation is slow under TCG, and only this key is seeded.
    (
        "etc/ssh/sshd_config.d/c1m.conf",
        0o644,
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n",
    ),
    (
        "usr/local/sbin/c1m-seed",
        0o755,
        r#"#!/bin/sh
# The seed disk (/dev/vdb) is a tar archive the host wrote for this VM: its ed25519 host key and
# root's authorized_keys. The host made the key, so its known_hosts is true from the first boot.
set -e
if [ -b /dev/vdb ] && tar -tf /dev/vdb >/dev/null 2>&1; then
  tar -xpf /dev/vdb --no-overwrite-dir -C /
fi
# No seed disk (e.g. a Vagrant box made from this image): create the host key here, once.
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
"#,
    ),
    (
        "etc/systemd/system/c1m-seed.service",
        0o644,
        "[Unit]\nDescription=c1m lab: host key and login key from the seed disk\nAfter=local-fs.target\nBefore=ssh.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/sbin/c1m-seed\n\n[Install]\nWantedBy=multi-user.target\n",
    ),
];
/// Units enabled in the image. The network generator turns the kernel's `ip=` into networkd
/// configuration, so one image serves every address.
const UNITS: &[&str] = &[
    "systemd-networkd.service",
    "systemd-network-generator.service",
    "c1m-seed.service",
];

/// A built image: the qcow2 base and the kernel and initramfs for direct kernel boot.
#[derive(Debug, Clone)]
pub struct Image {
    pub base: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The recipe as text; its hash names the cache directory. Bump the first line on any change
/// this text would not show.
pub fn recipe(mirror: &str) -> String {
    let mut r = format!(
        "c1m lab image v1\nsuite {SUITE}\nmirror {mirror}\nvariant minbase\nroot {ROOT_SIZE}\n"
    );
    r.push_str(&format!("packages {}\n", PACKAGES.join(",")));
    for (path, mode, content) in FILES {
        r.push_str(&format!("file {path} {mode:o}\n{content}\n"));
    }
    r.push_str(&format!("units {}\n", UNITS.join(",")));
    r
}

/// 64-bit FNV-1a: a stable cache key (not a security boundary; the cache is root's own).
pub fn recipe_hash(recipe: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in recipe.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn cache_entry(cache_dir: &Path, recipe: &str) -> (PathBuf, Image) {
    let dir = cache_dir.join(format!("bookworm-{}", recipe_hash(recipe)));
    let image = Image {
        base: dir.join("base.qcow2"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    (dir, image)
}

impl Image {
    fn complete(&self) -> bool {
        self.base.is_file() && self.kernel.is_file() && self.initrd.is_file()
    }
}

/// Whether the image for this recipe is already in the cache.
pub fn cached(cache_dir: &Path, mirror: &str) -> bool {
    cache_entry(cache_dir, &recipe(mirror)).1.complete()
}

/// Returns the cached image for this recipe, building it first if needed.
pub fn ensure(cache_dir: &Path, mirror: &str) -> Result<Image> {
    let recipe = recipe(mirror);
    let (dir, image) = cache_entry(cache_dir, &recipe);
    if image.complete() {
        println!("lab: image {} (cached)", dir.display());
        return Ok(image);
    }
    let started = Instant::now();
    println!(
        "lab: building image {} (debootstrap {SUITE} from {mirror}; a minute or two)",
        dir.display()
    );
    let tmp = cache_dir.join(format!(".build-{}", std::process::id()));
    let built = build(&tmp, &recipe, mirror);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // The rootfs is only the builder's scratch; the cache keeps the qcow2 and the boot files.
    fs::remove_dir_all(tmp.join("rootfs")).context("removing the build's rootfs")?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    fs::rename(&tmp, &dir).with_context(|| format!("moving the image to {}", dir.display()))?;
    println!(
        "lab: image built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

fn build(tmp: &Path, recipe: &str, mirror: &str) -> Result<()> {
    let rootfs = tmp.join("rootfs");
    fs::create_dir_all(&rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&rootfs)
        .arg(mirror))
    .context("debootstrap (needs the Debian mirror; set --mirror to use another)")?;
    configure(&rootfs)?;
    copy_boot_files(&rootfs, tmp)?;
    let raw = tmp.join("root.raw");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "c1m-root", "-d"])
        .arg(&rootfs)
        .arg(&raw)
        .arg(ROOT_SIZE))?;
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(tmp.join("base.qcow2")))?;
    fs::remove_file(&raw)?;
    fs::write(tmp.join("recipe.txt"), recipe)?;
    Ok(())
}

fn configure(rootfs: &Path) -> Result<()> {
    for (path, mode, content) in FILES {
        let p = rootfs.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
    }
    // debootstrap copies the builder's identity; every VM must make its own at first boot
    // (an empty machine-id means "uninitialized" to systemd).
    fs::write(rootfs.join("etc/hostname"), "")?;
    fs::write(rootfs.join("etc/machine-id"), "")?;
    let _ = fs::remove_file(rootfs.join("var/lib/dbus/machine-id"));
    // openssh-server's postinst made host keys on the builder; shared keys would make every VM
    // the same host to ssh.
    for entry in fs::read_dir(rootfs.join("etc/ssh"))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(entry.path())?;
        }
    }
    let root_ssh = rootfs.join("root/.ssh");
    fs::create_dir_all(&root_ssh)?;
    fs::set_permissions(&root_ssh, fs::Permissions::from_mode(0o700))?;
    run(Command::new("chroot")
        .arg(rootfs)
        .args(["systemctl", "enable"])
        .args(UNITS))?;
    run(Command::new("chroot")
        .arg(rootfs)
        .args(["update-initramfs", "-u", "-k", "all"]))?;
    // Guests have no route out: apt's caches would only take space.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for entry in fs::read_dir(rootfs.join(dir))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

fn copy_boot_files(rootfs: &Path, out: &Path) -> Result<()> {
    let boot = rootfs.join("boot");
    let mut kernel = None;
    let mut initrd = None;
    for entry in fs::read_dir(&boot)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("vmlinuz-") {
            kernel = Some(path);
        } else if name.starts_with("initrd.img-") {
            initrd = Some(path);
        }
    }
    let (Some(kernel), Some(initrd)) = (kernel, initrd) else {
        bail!("no kernel and initramfs in {}", boot.display());
    };
    fs::copy(&kernel, out.join("vmlinuz"))?;
    fs::copy(&initrd, out.join("initrd.img"))?;
    Ok(())
}
