//! QEMU: acceleration choice, starting a VM inside the lab namespace with direct kernel boot on a
//! qcow2 overlay, and stopping it (QMP `quit`, then SIGKILL by pid).

use super::exec::run;
use super::image::Image;
use super::layout::{VmSpec, NETNS, PREFIX_LEN};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            // tb-size bounds the translation cache per VM (the default is 1 GiB of host RAM).
            Accel::Tcg => ["-accel", "tcg,tb-size=128", "-cpu", "max"],
        }
    }
}

/// Chooses KVM if it boots this image's kernel, TCG otherwise, and says why.
///
/// Opening /dev/kvm is not enough: some hosts expose a KVM (e.g. kvm-pvm) on which a stock
/// Debian kernel aborts. The probe boots the real guest kernel with no root disk: reaching the
/// "unable to mount root" panic proves the CPU model and early boot work under KVM.
pub fn choose_accel(img: &Image, work: &Path) -> (Accel, String) {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return (Accel::Tcg, "no usable /dev/kvm".into());
    }
    match probe_kvm(img, work) {
        Ok(()) => (Accel::Kvm, "KVM boots the guest kernel".into()),
        Err(e) => (Accel::Tcg, format!("KVM probe failed: {e:#}")),
    }
}

fn probe_kvm(img: &Image, work: &Path) -> Result<()> {
    let log = work.join("kvm-probe.log");
    let _ = fs::remove_file(&log);
    let mut child = Command::new(QEMU)
        .args([
            "-machine",
            "q35",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(Accel::Kvm.args())
        .args(["-no-reboot", "-serial"])
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&img.kernel)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/c1m-probe-none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the KVM probe")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = fs::read_to_string(&log).unwrap_or_default();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    if console.contains("VFS: Unable to mount root") {
        return Ok(());
    }
    let why = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    match status {
        None => bail!("guest kernel did not reach its root mount in 30 s"),
        Some(s) => bail!("qemu exited ({s}) before the kernel reached its root mount {why}"),
    }
}

/// Files of one VM.
pub struct VmFiles {
    pub overlay: PathBuf,
    pub seed: PathBuf,
    pub pid: PathBuf,
    pub qmp: PathBuf,
    pub console: PathBuf,
}

impl VmFiles {
    pub fn new(dir: &Path) -> Self {
        VmFiles {
            overlay: dir.join("overlay.qcow2"),
            seed: dir.join("seed.tar"),
            pid: dir.join("qemu.pid"),
            qmp: dir.join("qmp.sock"),
            console: dir.join("console.log"),
        }
    }
}

/// How QEMU's virtio-net moves a guest's transmit queue: on a 150 µs timer after the guest's
/// first kick, with further kicks off meanwhile, instead of at once on every kick (`tx=bh`, the
/// default). Under TCG a kick is an emulated I/O write: with `bh`, `vp_notify` was the server
/// VM's top symbol (17.6% of its samples while connecting). On 2026-12-06, four boots
/// alternating timer, bh, timer, bh, 100,000 connections a run: with `timer` the lab reached
/// 100k in 41.5, 38.2 and 44.5 s (62.1 s in the first run after a boot) with the server VM at
/// 0.16–0.19 CPU s per 1,000 connections; with `bh` in 59.3 and 56.6 s at 0.24–0.25, and the
/// last `bh` boot lost a client VM's network at 84,403 connections, as two unpaced 1M runs had.
const TX_MODE: &str = "tx=timer";

/// Creates the VM's overlay on the shared base and starts QEMU (daemonized) in the lab
/// namespace. Returns its pid.
pub fn start(vm: &VmSpec, img: &Image, files: &VmFiles, accel: Accel) -> Result<u32> {
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&img.base)
        .arg(&files.overlay))?;
    // The kernel stays quiet; systemd's status lines on the console are how `up` sees a
    // slow boot still progressing (see `up::wait_for_ssh`).
    let cmdline = format!(
        "root=/dev/vda rw console=ttyS0 net.ifnames=0 ip={addr}:::{mask}::eth0:off \
         systemd.hostname={name} quiet systemd.show_status=1",
        addr = vm.addr,
        mask = netmask(PREFIX_LEN),
        name = vm.name
    );
    run(Command::new("ip")
        .args(["netns", "exec", NETNS, QEMU])
        .args(["-name", &vm.name, "-machine", "q35"])
        .args(accel.args())
        .args(["-m", &vm.mem_mib.to_string(), "-smp", &vm.cpus.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-user-config"])
        .arg("-serial")
        .arg(format!("file:{}", files.console.display()))
        .arg("-kernel")
        .arg(&img.kernel)
        .arg("-initrd")
        .arg(&img.initrd)
        .args(["-append", &cmdline])
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=qcow2,discard=unmap",
            files.overlay.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            files.seed.display()
        ))
        .arg("-netdev")
        .arg(format!(
            "tap,id=net0,ifname={},script=no,downscript=no",
            vm.tap()
        ))
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=net0,mac={},{TX_MODE}",
            vm.mac()
        ))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", files.qmp.display()))
        .arg("-pidfile")
        .arg(&files.pid)
        .arg("-daemonize"))
    .with_context(|| format!("starting VM {}", vm.name))?;
    read_pid(&files.pid).with_context(|| format!("VM {} started but left no pid", vm.name))
}

fn netmask(prefix: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::MAX << (32 - u32::from(prefix)))
}

pub fn read_pid(path: &Path) -> Result<u32> {
    let s = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    s.trim()
        .parse()
        .with_context(|| format!("{}: not a pid", path.display()))
}

/// Whether `pid` is a live QEMU of this lab (its command line names `marker`, the state dir),
/// so a recycled pid is never signalled.
pub fn is_lab_qemu(pid: u32, marker: &Path) -> bool {
    let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmd = String::from_utf8_lossy(&raw);
    cmd.contains(QEMU) && cmd.contains(&*marker.to_string_lossy())
}

/// Every live QEMU whose command line names `marker` (pid files may be gone after a crash).
pub fn lab_qemus(marker: &Path) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| is_lab_qemu(pid, marker))
        .collect()
}

/// Asks QEMU to quit over QMP.
pub fn qmp_quit(sock: &Path) -> Result<()> {
    let stream = UnixStream::connect(sock).with_context(|| format!("QMP {}", sock.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?; // greeting
    let mut w = stream;
    w.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    w.write_all(b"{\"execute\":\"quit\"}\n")?;
    line.clear();
    let _ = reader.read_line(&mut line);
    Ok(())
}

/// Stops `pid`: QMP quit, a grace period, then SIGKILL.
pub fn stop(pid: u32, qmp: &Path, marker: &Path) -> Result<()> {
    if !is_lab_qemu(pid, marker) {
        return Ok(());
    }
    if qmp.exists() {
        let _ = qmp_quit(qmp);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_lab_qemu(pid, marker) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) has no memory effects; the pid was just checked to be this lab's QEMU.
    let pid_t = libc::pid_t::try_from(pid).context("pid out of range")?;
    unsafe {
        libc::kill(pid_t, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_lab_qemu(pid, marker) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("QEMU pid {pid} survived SIGKILL")
}

/// Resident memory of a process in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
