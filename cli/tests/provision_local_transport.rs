//! LocalTransport against the real filesystem and shell: exit codes, stdin, missing files,
//! atomic writes with modes, and paths that would be shell syntax if not quoted.

use c1m_transport::local::LocalTransport;
use c1m_transport::{shell_quote, Become, Transport};
use std::os::unix::fs::PermissionsExt;

struct Scratch(std::path::PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn exec_read_write_on_this_machine() {
    let dir = std::env::temp_dir().join(format!("c1m-test-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let s = Scratch(dir);
    let mut t = LocalTransport::new("localhost", &Become::default());
    assert_eq!(t.host(), "localhost");

    let out = t
        .exec(
            "read x; echo \"got $x\"; echo err >&2; exit 3",
            Some(b"hello\n"),
        )
        .unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout_str(), "got hello\n");
    assert_eq!(out.stderr_str(), "err\n");

    let odd = s.0.join("a file; touch x $(id)");
    let path = odd.to_str().unwrap();
    assert_eq!(t.read_file(path).unwrap(), None);
    t.write_file(path, b"one\n", 0o640).unwrap();
    assert_eq!(t.read_file(path).unwrap().as_deref(), Some(&b"one\n"[..]));
    assert_eq!(
        std::fs::metadata(&odd).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    t.write_file(path, b"two\n", 0o600).unwrap();
    assert_eq!(std::fs::read_to_string(&odd).unwrap(), "two\n");
    // Only the file itself: no temporary left behind, nothing else created.
    let names: Vec<_> = std::fs::read_dir(&s.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let out = t.exec(&format!("cat {}", shell_quote(path)), None).unwrap();
    assert_eq!(out.stdout_str(), "two\n");
    assert!(!s.0.join("x").exists());

    // Writing into a missing directory is an error, not a panic.
    assert!(t
        .write_file(s.0.join("no/such/dir/f").to_str().unwrap(), b"x", 0o644)
        .is_err());
}
