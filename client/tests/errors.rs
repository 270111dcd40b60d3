//! The client against real sockets when things go wrong.

use std::process::Command;

#[test]
fn nothing_listening_reports_econnrefused_and_fails() {
    // Port 1 on 127.0.0.1 has no listener on a test machine.
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
        .args(["--target", "127.0.0.1", "--port", "1", "--ports", "1"])
        .args(["--connections", "100", "--max-errors", "50"])
        .output()
        .expect("c1m-client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}");
    assert!(stdout.contains("ECONNREFUSED"), "{stdout}");
    assert!(
        stdout.contains("nothing accepts connections on 127.0.0.1:1-1"),
        "the message should say what to check: {stdout}"
    );
    assert!(stdout.contains("target not reached: 0 of 100"), "{stdout}");
}

#[test]
fn too_few_four_tuples_is_refused_before_connecting() {
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
        .args(["--port", "1", "--ports", "1", "--connections", "10000000"])
        .output()
        .expect("c1m-client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("add source IPs (--source-ips)"), "{stderr}");
}

#[test]
fn bad_arguments_are_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
        .args(["--source-ips", "127.0.0.9-127.0.0.1", "--connections", "1"])
        .output()
        .expect("c1m-client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("127.0.0.9-127.0.0.1"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
        .args(["--hold", "10 parsecs"])
        .output()
        .expect("c1m-client runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit"));
}

#[test]
fn help_lists_the_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
        .arg("--help")
        .output()
        .expect("c1m-client runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for code in [
        "  0  the test ran as asked",
        "  1  the test failed",
        "  2  bad usage",
    ] {
        assert!(text.contains(code), "{code} in {text}");
    }
}

#[test]
fn protocol_options_that_cannot_go_on_the_wire_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
        .args([
            "--protocol",
            "http",
            "--header",
            "no colon here",
            "--connections",
            "1",
        ])
        .output()
        .expect("c1m-client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--header `no colon here`"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
        .args(["--protocol", "gopher"])
        .output()
        .expect("c1m-client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("websocket"),
        "the choices are listed: {stderr}"
    );
}
