//! Slow and broken links, for real: sshd test hosts (see `support`) behind a kernel `tbf` qdisc
//! on their veth, or with their link taken down. A transfer or command that keeps moving is
//! never cut off however long it takes; one that stops moving fails after the progress timeout
//! naming what it did, how far it got and how long it waited; an upload whose link comes back
//! resumes where it stopped. Each test restores what it changes (qdisc, link) on every exit.
//!
//! The figures (upload rates, time to detect a stopped link) are printed with `--nocapture`.

mod support;

use c1m_orchestrator::check::facts;
use c1m_orchestrator::run::deploy::{deploy, BINARIES};
use c1m_transport::ssh::{SshConfig, SshTransport};
use c1m_transport::{Become, Flow, Interrupted, Transport, TransportError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{Lab, LabOptions};

/// What the shaping tests need beyond the lab itself.
const NEEDS: &[&str] = &["root", "sshd", "ip", "ssh-keygen", "ssh-keyscan", "tc"];

fn lab(test: &str, sftp: bool) -> Option<Lab> {
    if !support::require(test, NEEDS) {
        return None;
    }
    Lab::start_with(
        test,
        LabOptions {
            sftp,
            sftp_log: sftp,
            ..Default::default()
        },
    )
}

/// Root on host 0, with a short connect timeout so reconnects to a dead link give up quickly.
fn connect(lab: &Lab, keepalive: Duration, patience: Duration) -> SshTransport {
    let mut t = SshTransport::connect(&config(lab, 0)).expect("ssh to the test host");
    t.set_liveness(keepalive, patience);
    t
}

/// Root on host `i`, with a short connect timeout.
fn config(lab: &Lab, i: usize) -> SshConfig {
    let h = &lab.hosts[i];
    SshConfig {
        name: h.name.clone(),
        address: h.address.clone(),
        port: h.port,
        user: h.user.clone(),
        key_file: Some(lab.keys.ed25519.clone()),
        known_hosts: lab.known_hosts.clone(),
        accept_new_host_keys: false,
        become_: Become::default(),
        connect_timeout: Duration::from_secs(2),
    }
}

fn bin_dir() -> PathBuf {
    std::env::var_os("C1M_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_c1m"))
                .parent()
                .expect("target dir")
                .to_path_buf()
        })
}

/// A real binary's bytes: what a deploy sends.
fn server_binary() -> Vec<u8> {
    std::fs::read(bin_dir().join("c1m-server")).expect("c1m-server is built")
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn interrupted(e: TransportError) -> Interrupted {
    match e {
        TransportError::Interrupted(i) => *i,
        other => panic!("expected an interrupted operation, got {other:?}"),
    }
}

/// Mbit/s of `bytes` in `took`.
fn mbit(bytes: u64, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e6
}

/// Sleeps until `cond` holds, polling, at most `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `op` in a thread and, once `when` returns, takes host 0's link down until `op` ends;
/// `op`'s result and how long after the link went down it came. The link is up again after.
fn with_link_stopped<T: Send>(
    lab: &Lab,
    when: impl FnOnce(),
    op: impl FnOnce() -> T + Send,
) -> (T, Duration) {
    std::thread::scope(|s| {
        let running = s.spawn(op);
        when();
        let down = lab.hosts[0].link_down();
        let stopped = Instant::now();
        let result = running.join().expect("the operation's thread");
        let detected = stopped.elapsed();
        down.restore();
        (result, detected)
    })
}

/// Bytes of the temporary file beside `target` (a hidden `.NAME.c1m-*` name), 0 until it exists.
fn temp_bytes(target: &Path) -> u64 {
    let dir = target.parent().expect("a directory");
    let prefix = format!(
        ".{}.c1m-",
        target.file_name().expect("a file name").to_string_lossy()
    );
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// The binaries over a 2 Mbit/s link (each takes about half a minute; 2 rather than 1 Mbit/s
/// keeps this file's run under two minutes) with a progress timeout of 10 s: the deploy
/// outlasts the timeout many times over and completes, because its bytes keep moving.
#[test]
fn a_deploy_over_a_2_mbit_link_completes() {
    let Some(lab) = lab("a_deploy_over_a_2_mbit_link_completes", true) else {
        return;
    };
    let patience = Duration::from_secs(10);
    let mut t = connect(&lab, Duration::from_secs(2), patience);
    let f = facts::gather(&mut t).expect("facts");
    let remote = lab.dir.join("remote-bin");
    let remote_str = remote.to_string_lossy().into_owned();
    let logins = lab.hosts[0].accepted_logins();
    let _slow = lab.hosts[0].throttle_to_host("2mbit");

    let started = Instant::now();
    let d = deploy(&mut t, &f, &bin_dir(), &remote_str).expect("deploy over 2 Mbit/s");
    let took = started.elapsed();
    assert_eq!(d.uploaded, BINARIES.to_vec());
    assert_eq!(
        lab.hosts[0].accepted_logins(),
        logins,
        "one session carried it all: no attempt was given up and resumed"
    );
    let mut bytes = 0;
    for b in BINARIES {
        let local = std::fs::read(bin_dir().join(b)).unwrap();
        bytes += local.len() as u64;
        assert_eq!(
            sha256(&std::fs::read(remote.join(b)).unwrap()),
            sha256(&local)
        );
    }
    assert!(
        took > patience * 4,
        "a 2 Mbit/s link cannot carry {bytes} bytes in {took:?}: is the qdisc in place?"
    );
    eprintln!(
        "deploy over tbf 2mbit: {bytes} bytes in {:.1} s = {:.2} Mbit/s (progress timeout {} s)",
        took.as_secs_f64(),
        mbit(bytes, took),
        patience.as_secs()
    );
}

/// The link stops mid-upload and stays down: the upload fails once it has gone twice the
/// progress timeout without progress (the first to notice, the second for the link to come
/// back), naming the file, the bytes the host confirmed of how many, the time without progress
/// and the attempts; nothing is left at the target.
#[test]
fn an_upload_whose_link_stops_fails_naming_bytes_sent_and_time_waited() {
    let Some(lab) = lab("an_upload_whose_link_stops_fails", true) else {
        return;
    };
    let patience = Duration::from_secs(3);
    let mut t = connect(&lab, Duration::from_secs(1), patience);
    let data = server_binary();
    let target = lab.dir.join("stopped-c1m-server");
    let target_str = target.to_string_lossy().into_owned();
    let _slow = lab.hosts[0].throttle_to_host("1mbit");

    let (result, detected) = with_link_stopped(
        &lab,
        || {
            wait_until("the upload under way", Duration::from_secs(30), || {
                temp_bytes(&target) > 256 * 1024
            })
        },
        || t.write_file(&target_str, &data, 0o755),
    );
    let i = interrupted(result.expect_err("an upload over a stopped link must fail"));
    let msg = i.to_string();
    eprintln!(
        "stopped link: upload gave up {:.1} s after the link went down: {msg}",
        detected.as_secs_f64()
    );
    assert_eq!(i.flow, Flow::Sent);
    assert_eq!(i.total, Some(data.len() as u64));
    assert!(
        i.done > 0 && i.done < data.len() as u64,
        "bytes confirmed before the stop: {msg}"
    );
    assert!(i.quiet >= patience * 2, "{msg}");
    assert!(i.attempts >= 2, "a reconnect was tried: {msg}");
    assert!(
        msg.contains(&format!("uploading {target_str}: no progress for "))
            && msg.contains(&format!("of {} bytes sent", data.len())),
        "{msg}"
    );
    assert!(
        detected < patience * 2 + Duration::from_secs(15),
        "gave up {detected:?} after the stop"
    );
    assert!(
        !target.exists(),
        "a partial upload must never reach its target"
    );
}

/// What [`upload_through_stalls`] saw.
struct Stalled {
    result: Result<(), TransportError>,
    target: PathBuf,
    data: Vec<u8>,
    took: Duration,
    /// New logins the upload made.
    logins: usize,
}

/// Uploads c1m-server to host 0 over tbf 4mbit with progress timeout `patience`: once a
/// quarter has arrived the link blips (down for half the timeout, when `blip`), and once half
/// has arrived it stalls (down for the timeout and 2 s more).
fn upload_through_stalls(lab: &Lab, patience: Duration, blip: bool) -> Stalled {
    let mut t = connect(lab, Duration::from_secs(1), patience);
    let data = server_binary();
    let target = lab.dir.join("stalled-c1m-server");
    let target_str = target.to_string_lossy().into_owned();
    let logins = lab.hosts[0].accepted_logins();
    let _slow = lab.hosts[0].throttle_to_host("4mbit");
    let quarter = data.len() as u64 / 4;
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let sending = s.spawn(|| t.write_file(&target_str, &data, 0o750));
        let arrived = |what: &str, bytes: u64| {
            wait_until(what, Duration::from_secs(60), || {
                temp_bytes(&target) > bytes
            })
        };
        if blip {
            arrived("a quarter uploaded", quarter);
            // Shorter than the progress timeout: TCP retransmits once the link is back.
            let down = lab.hosts[0].link_down();
            std::thread::sleep(patience / 2);
            down.restore();
        }
        arrived("half uploaded", 2 * quarter);
        // Longer than the progress timeout: the upload gives up on this connection.
        let down = lab.hosts[0].link_down();
        std::thread::sleep(patience + Duration::from_secs(2));
        down.restore();
        sending.join().expect("upload thread")
    });
    Stalled {
        result,
        took: started.elapsed(),
        logins: lab.hosts[0].accepted_logins() - logins,
        target,
        data,
    }
}

impl Stalled {
    /// The upload completed: the file is whole, with its mode.
    fn assert_whole(self) -> Self {
        if let Err(e) = &self.result {
            panic!("the upload resumes once the link is back: {e}");
        }
        assert_eq!(
            sha256(&std::fs::read(&self.target).unwrap()),
            sha256(&self.data)
        );
        let meta = std::fs::metadata(&self.target).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            0o750
        );
        self
    }
}

/// A blip shorter than the progress timeout is ridden out on the same connection; a stall
/// longer than it breaks the connection, and the upload resumes over a new one from what the
/// host already has: nothing is sent twice, and the file is whole and verified.
#[test]
fn an_upload_whose_link_stalls_resumes_without_resending() {
    let Some(lab) = lab("an_upload_whose_link_stalls_resumes", true) else {
        return;
    };
    let patience = Duration::from_secs(5);
    let up = upload_through_stalls(&lab, patience, true).assert_whole();
    assert_eq!(
        up.logins, 1,
        "one new session for the resume, none for the blip"
    );
    // The new session's handle wrote the rest only: at most the half that had not arrived
    // before the stall. (The abandoned session's SFTP server logs its handle only once its own
    // TCP connection is gone; when it has, both add up to the file exactly once.)
    let name = up
        .target
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let written: Vec<u64> = lab.hosts[0]
        .sftp_written(&name)
        .into_iter()
        .filter(|&w| w > 0)
        .collect();
    let len = up.data.len() as u64;
    let resumed = *written.last().unwrap_or_else(|| {
        panic!(
            "the resumed handle is not in the SFTP server's log: {:?}",
            lab.hosts[0].sftp_written("")
        )
    });
    assert!(
        resumed > 0 && resumed <= len - len / 2,
        "the resumed session wrote {resumed} of {len} bytes: {written:?}"
    );
    if written.len() >= 2 {
        assert_eq!(written.iter().sum::<u64>(), len, "{written:?}");
    }
    eprintln!(
        "stalled link: {len} bytes in {:.1} s over tbf 4mbit with a {:.1} s blip and a {:.1} s \
         stall; the resumed session wrote {resumed}",
        up.took.as_secs_f64(),
        (patience / 2).as_secs_f64(),
        (patience + Duration::from_secs(2)).as_secs_f64()
    );
}

/// Without an SFTP subsystem the bytes go through a command's stdin; a stall there resumes
/// too (from the temporary file's size, with `dd seek=`), and the SHA-256 is checked on the
/// host before the file is moved into place.
#[test]
fn an_upload_through_the_shell_resumes_after_a_stall() {
    let Some(lab) = lab("an_upload_through_the_shell_resumes", false) else {
        return;
    };
    let up = upload_through_stalls(&lab, Duration::from_secs(4), false).assert_whole();
    assert!(up.logins >= 1, "the upload resumed over a new session");
}

/// Downloads are judged the same way: a file read over a slow link completes however long it
/// takes; one whose link stops fails after the progress timeout with the bytes received.
/// (This is how the control connection reads /proc files on a busy host.)
#[test]
fn a_read_over_a_slow_link_completes_and_a_stopped_one_fails() {
    let Some(lab) = lab("a_read_over_a_slow_link", true) else {
        return;
    };
    let patience = Duration::from_secs(3);
    let mut t = connect(&lab, Duration::from_secs(1), patience);
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let path = lab.dir.join("download");
    std::fs::write(&path, &data).unwrap();
    let path_str = path.to_string_lossy().into_owned();
    let _slow = lab.hosts[0].throttle_from_host("1mbit");

    let started = Instant::now();
    let got = t.read_file(&path_str).expect("a slow read completes");
    let took = started.elapsed();
    assert_eq!(got.as_deref(), Some(data.as_slice()));
    assert!(took > patience * 4, "{took:?}: is the qdisc in place?");
    eprintln!(
        "read over tbf 1mbit: {} bytes in {:.1} s = {:.2} Mbit/s (progress timeout {} s)",
        data.len(),
        took.as_secs_f64(),
        mbit(data.len() as u64, took),
        patience.as_secs()
    );

    let (result, detected) = with_link_stopped(
        &lab,
        || std::thread::sleep(Duration::from_secs(3)),
        || t.read_file(&path_str),
    );
    let i = interrupted(result.expect_err("a read over a stopped link must fail"));
    let msg = i.to_string();
    eprintln!(
        "stopped link: read gave up {:.1} s after the link went down: {msg}",
        detected.as_secs_f64()
    );
    assert_eq!(i.flow, Flow::Received);
    assert!(i.done > 0 && i.done < data.len() as u64, "{msg}");
    assert!(i.quiet >= patience, "{msg}");
    assert!(msg.contains(&format!("reading {path_str}")), "{msg}");
    assert!(detected < patience + Duration::from_secs(3), "{detected:?}");
}

/// A command is judged by whether the host still talks, not by a budget: one that prints
/// nothing for three times the progress timeout completes (the host answers keepalives), and
/// one whose link stops fails after about the progress timeout, naming the command.
#[test]
fn a_quiet_command_outlasts_the_progress_timeout_and_a_stopped_one_fails() {
    let Some(lab) = lab("a_quiet_command_outlasts_the_progress_timeout", true) else {
        return;
    };
    let patience = Duration::from_secs(3);
    let mut t = connect(&lab, Duration::from_secs(1), patience);
    quiet_then_stopped(&lab, &mut t, patience, "stopped link");
}

/// A command quiet for three times `patience` completes over `t`; one running when the
/// link stops fails after about `patience`, naming the command.
fn quiet_then_stopped(lab: &Lab, t: &mut SshTransport, patience: Duration, what: &str) {
    let started = Instant::now();
    let out = t.exec("sleep 9; echo done", None).expect("a quiet command");
    assert_eq!(out.stdout_str(), "done\n");
    assert!(started.elapsed() >= patience * 3);

    let (result, detected) = with_link_stopped(
        lab,
        || std::thread::sleep(Duration::from_millis(500)),
        || t.exec("sleep 60", None),
    );
    let i = interrupted(result.expect_err("a command over a stopped link must fail"));
    let msg = i.to_string();
    eprintln!(
        "{what}: command gave up {:.1} s after the link went down: {msg}",
        detected.as_secs_f64()
    );
    assert!(msg.contains("running `sleep 60`: no progress for"), "{msg}");
    assert!(
        detected < patience * 2 + Duration::from_secs(1),
        "{detected:?}"
    );
}

/// Through a ProxyJump tunnel a command is judged the same way, by what the far host says as
/// the tunnel carries it (its socket's kernel knows nothing of that host): a command quiet for
/// three times the progress timeout completes, and one whose jump host's link stops fails
/// after about the progress timeout.
#[test]
fn a_quiet_command_through_a_jump_host_outlasts_the_timeout_and_a_stopped_one_fails() {
    let test = "a_quiet_command_through_a_jump_host";
    if !support::require(test, NEEDS) {
        return;
    }
    let Some(mut lab) = Lab::start(test, 2) else {
        return;
    };
    lab.isolate_behind(0, &[1]);
    let patience = Duration::from_secs(3);
    let mut t = SshTransport::connect_via(&config(&lab, 1), &[config(&lab, 0)])
        .expect("ssh to host 1 through host 0");
    t.set_liveness(Duration::from_secs(1), patience);
    quiet_then_stopped(&lab, &mut t, patience, "stopped jump host");
}

/// A host's pace is measured, not assumed: an SFTP request (no program started) answers
/// faster than starting `true` through the shell, and budgets scale with what was measured.
#[test]
fn a_hosts_pace_is_measured() {
    let Some(lab) = lab("a_hosts_pace_is_measured", true) else {
        return;
    };
    let mut t = connect(&lab, Duration::from_secs(5), Duration::from_secs(30));
    let pace = c1m_transport::pace::measure(&mut t, 5).expect("pace");
    let round_trip = pace.round_trip.expect("the test host has SFTP");
    eprintln!(
        "pace of a netns sshd host: SFTP round trip {:.2} ms, exec {:.2} ms, network RTT {:?}",
        round_trip.as_secs_f64() * 1e3,
        pace.exec.as_secs_f64() * 1e3,
        t.network_rtt()
    );
    assert!(round_trip < pace.exec, "{pace:?}");
    assert!(
        t.network_rtt().is_some_and(|rtt| rtt < pace.exec),
        "{pace:?}"
    );
    assert_eq!(
        pace.budget(Duration::from_secs(30), 2),
        Duration::from_secs(30)
    );
}
