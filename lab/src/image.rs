//! The lab's guest image: Debian bookworm from Debian's packages alone (debootstrap minbase plus
//! the kernel, OpenSSH, systemd, python3), built once and cached under a directory named by a
//! hash of its recipe, so a changed recipe builds a new image and an unchanged one is reused.
//!
//! The image holds nothing per VM: no host keys, no machine-id, no hostname, no login key. Those
//! come from each VM's seed disk (see [`super::seed`]) or are created at first boot.
//!
//! Two variants ([`Variant`]): the default, and one that adds the course's exemplar servers
//! (nginx, redis-server, memcached, haproxy, apache2) for runs against servers c1m did not write.
//! Their services are disabled: nothing extra starts at boot (a boot under TCG stays as fast as
//! the default's), and a run starts the server it drives itself (`c1m_server_cmd`). Each variant
//! is its own recipe, so its own cache entry; the default's recipe text is unchanged by the
//! variant's existence.

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
/// What the servers variant adds: the course's exemplars, from Debian's packages.
pub const SERVER_PACKAGES: &[&str] = &["nginx", "redis-server", "memcached", "haproxy", "apache2"];
/// Also in the servers variant: what measures a run from inside a guest (`perf record`/`perf
/// trace` and `strace -c` on c1m-client, c1m-server or a server under test), so a lab
/// benchmark can say where a guest's time goes.
pub const MEASURE_PACKAGES: &[&str] = &["linux-perf", "strace"];
/// The units those packages enable, disabled again in the image: a run starts the server it
/// drives (`c1m_server_cmd`), and a daemon started at boot would only slow every boot and hold
/// the port the run wants.
pub const SERVER_UNITS: &[&str] = &[
    "nginx.service",
    "redis-server.service",
    "memcached.service",
    "haproxy.service",
    "apache2.service",
    "apache-htcacheclean.service",
];
/// Present in the root filesystem only while the servers' packages are installed: it tells
/// invoke-rc.d that no service may start, so their maintainer scripts start nothing on the
/// builder (the chroot shares the builder's network).
const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

/// Which image to build or boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// Debian with OpenSSH, systemd and python3: what c1m-server and c1m-client need.
    #[default]
    Base,
    /// The default plus [`SERVER_PACKAGES`], their services disabled ([`SERVER_UNITS`]), and
    /// [`MEASURE_PACKAGES`].
    Servers,
}

impl Variant {
    /// Debian packages installed after debootstrap.
    pub fn extra_packages(self) -> Vec<&'static str> {
        match self {
            Variant::Base => Vec::new(),
            Variant::Servers => [SERVER_PACKAGES, MEASURE_PACKAGES].concat(),
        }
    }

    /// Units disabled in the image after everything is installed.
    pub fn disabled_units(self) -> &'static [&'static str] {
        match self {
            Variant::Base => &[],
            Variant::Servers => SERVER_UNITS,
        }
    }

    /// The cache directory's prefix, so a listing says which is which.
    fn dir_prefix(self) -> &'static str {
        match self {
            Variant::Base => "bookworm",
            Variant::Servers => "bookworm-servers",
        }
    }
}

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
/// this text would not show. The default variant's text is the one its cached images were built
/// from; a variant only appends.
pub fn recipe(mirror: &str, variant: Variant) -> String {
    let mut r = format!(
        "c1m lab image v1\nsuite {SUITE}\nmirror {mirror}\nvariant minbase\nroot {ROOT_SIZE}\n"
    );
    r.push_str(&format!("packages {}\n", PACKAGES.join(",")));
    for (path, mode, content) in FILES {
        r.push_str(&format!("file {path} {mode:o}\n{content}\n"));
    }
    r.push_str(&format!("units {}\n", UNITS.join(",")));
    if variant != Variant::Base {
        r.push_str(&format!(
            "variant {variant:?}\napt-get install --no-install-recommends {}\ndisabled units {}\n",
            variant.extra_packages().join(","),
            variant.disabled_units().join(",")
        ));
    }
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

fn cache_entry(cache_dir: &Path, recipe: &str, variant: Variant) -> (PathBuf, Image) {
    let dir = cache_dir.join(format!("{}-{}", variant.dir_prefix(), recipe_hash(recipe)));
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

/// Where the image for this recipe is (or would be) cached.
pub fn location(cache_dir: &Path, mirror: &str, variant: Variant) -> Image {
    cache_entry(cache_dir, &recipe(mirror, variant), variant).1
}

/// Whether the image for this recipe is already in the cache.
pub fn cached(cache_dir: &Path, mirror: &str, variant: Variant) -> bool {
    location(cache_dir, mirror, variant).complete()
}

/// Returns the cached image for this recipe, building it first if needed.
pub fn ensure(cache_dir: &Path, mirror: &str, variant: Variant) -> Result<Image> {
    let recipe = recipe(mirror, variant);
    let (dir, image) = cache_entry(cache_dir, &recipe, variant);
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
    let built = build(&tmp, &recipe, mirror, variant);
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

fn build(tmp: &Path, recipe: &str, mirror: &str, variant: Variant) -> Result<()> {
    let rootfs = tmp.join("rootfs");
    fs::create_dir_all(&rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&rootfs)
        .arg(mirror))
    .context("debootstrap (needs the Debian mirror; set --mirror to use another)")?;
    let before = enabled_units(&rootfs)?;
    install_extra(&rootfs, &variant.extra_packages())?;
    // Every unit the variant's packages enabled must be one it disables again: one this recipe
    // does not know of would start at every boot.
    let unknown: Vec<String> = enabled_units(&rootfs)?
        .into_iter()
        .filter(|u| !before.contains(u) && !variant.disabled_units().contains(&u.as_str()))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "installing {} enabled {}: add them to the variant's disabled units",
            variant.extra_packages().join(", "),
            unknown.join(", ")
        );
    }
    configure(&rootfs, variant)?;
    let still: Vec<String> = enabled_units(&rootfs)?
        .into_iter()
        .filter(|u| variant.disabled_units().contains(&u.as_str()))
        .collect();
    if !still.is_empty() {
        bail!(
            "{} still enabled after `systemctl disable`",
            still.join(", ")
        );
    }
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

/// Installs a variant's packages with apt inside the new root, no service started meanwhile.
fn install_extra(rootfs: &Path, packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let policy = rootfs.join(POLICY_RC_D);
    fs::write(
        &policy,
        "#!/bin/sh\n# c1m lab image build: start no service\nexit 101\n",
    )
    .with_context(|| format!("writing {}", policy.display()))?;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755))?;
    let apt = |args: &[&str]| {
        run(Command::new("chroot")
            .arg(rootfs)
            .arg("apt-get")
            .args(["-q", "-y", "-o", "Dpkg::Options::=--force-confdef"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    let installed = apt(&["update"]).and_then(|_| {
        let mut args = vec!["install", "--no-install-recommends"];
        args.extend_from_slice(packages);
        apt(&args).map(|_| ())
    });
    // The policy goes whatever apt did: a guest must be able to start its services.
    fs::remove_file(&policy).with_context(|| format!("removing {}", policy.display()))?;
    installed.with_context(|| {
        format!(
            "installing {} in the image (needs the Debian mirror)",
            packages.join(", ")
        )
    })
}

fn configure(rootfs: &Path, variant: Variant) -> Result<()> {
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
    let disabled = variant.disabled_units();
    if !disabled.is_empty() {
        run(Command::new("chroot")
            .arg(rootfs)
            .args(["systemctl", "disable"])
            .args(disabled))?;
    }
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

/// The units enabled in a root filesystem: the links in `etc/systemd/system/*.wants` and
/// `*.requires` (what `systemctl enable` makes and `disable` removes), sorted.
pub fn enabled_units(rootfs: &Path) -> Result<Vec<String>> {
    let dir = rootfs.join("etc/systemd/system");
    let mut units = std::collections::BTreeSet::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".wants") || name.ends_with(".requires")) || !entry.path().is_dir() {
            continue;
        }
        for link in fs::read_dir(entry.path())? {
            units.insert(link?.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(units.into_iter().collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIRROR: &str = "http://deb.debian.org/debian";

    #[test]
    fn the_servers_variant_adds_the_exemplars_and_is_cached_apart() {
        let base = recipe(MIRROR, Variant::Base);
        let servers = recipe(MIRROR, Variant::Servers);
        assert!(Variant::Base.extra_packages().is_empty());
        // The exemplars, and the tools that measure a run inside a guest.
        for p in [
            "nginx",
            "redis-server",
            "memcached",
            "haproxy",
            "apache2",
            "linux-perf",
            "strace",
        ] {
            assert!(Variant::Servers.extra_packages().contains(&p), "{p}");
            assert!(servers.contains(p) && !base.contains(p), "{p}");
        }
        // The default's text is a prefix of the variant's: it did not change for the variant,
        // so images already cached for it stay valid.
        assert!(servers.starts_with(&base) && servers.len() > base.len());
        assert_ne!(recipe_hash(&base), recipe_hash(&servers));
        let cache = Path::new("/cache");
        let (b, s) = (
            location(cache, MIRROR, Variant::Base),
            location(cache, MIRROR, Variant::Servers),
        );
        assert_ne!(b.base.parent(), s.base.parent());
        assert!(s.base.starts_with("/cache"), "{s:?}");
        // Another mirror is another recipe for the variant too.
        assert_ne!(
            recipe_hash(&servers),
            recipe_hash(&recipe("http://mirror.example/debian", Variant::Servers))
        );
    }

    #[test]
    fn no_server_starts_at_boot() {
        let servers = recipe(MIRROR, Variant::Servers);
        for unit in Variant::Servers.disabled_units() {
            assert!(!UNITS.contains(unit), "{unit} is enabled");
            assert!(servers.contains(unit), "{unit} is not in the recipe");
        }
        // Each package's own service is among those disabled.
        for (pkg, unit) in [
            ("nginx", "nginx.service"),
            ("redis-server", "redis-server.service"),
            ("memcached", "memcached.service"),
            ("haproxy", "haproxy.service"),
            ("apache2", "apache2.service"),
        ] {
            assert!(Variant::Servers.extra_packages().contains(&pkg));
            assert!(Variant::Servers.disabled_units().contains(&unit), "{unit}");
        }
        assert!(Variant::Base.disabled_units().is_empty());
    }

    #[test]
    fn enabled_units_are_the_links_in_wants_and_requires() {
        let root = std::env::temp_dir().join(format!("c1m-lab-units-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        assert!(enabled_units(&root).unwrap().is_empty());
        let sys = root.join("etc/systemd/system");
        fs::create_dir_all(sys.join("multi-user.target.wants")).unwrap();
        fs::create_dir_all(sys.join("sysinit.target.requires")).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/nginx.service",
            sys.join("multi-user.target.wants/nginx.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/c1m-seed.service",
            sys.join("sysinit.target.requires/c1m-seed.service"),
        )
        .unwrap();
        // A unit file of its own is not an enablement.
        fs::write(sys.join("c1m-seed.service"), "").unwrap();
        assert_eq!(
            enabled_units(&root).unwrap(),
            vec!["c1m-seed.service".to_string(), "nginx.service".to_string()]
        );
        fs::remove_file(sys.join("multi-user.target.wants/nginx.service")).unwrap();
        assert_eq!(enabled_units(&root).unwrap(), vec!["c1m-seed.service"]);
        fs::remove_dir_all(&root).unwrap();
    }
}
