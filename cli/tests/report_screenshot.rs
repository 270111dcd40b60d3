//! Opens `c1m report --format html` in headless Chromium through `scripts/report-screenshot`
//! and checks a real screenshot comes out: a PNG of the requested size with the page drawn on
//! it. Skipped without chromium unless `C1M_REQUIRE_LAB=1`.

mod report_common;

use report_common::*;
use std::path::Path;
use std::process::Command;

fn have_chromium() -> bool {
    ["chromium", "chromium-browser"].iter().any(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn html_report_renders_in_headless_chromium() {
    if !require(have_chromium(), "chromium (apt-get install chromium)") {
        return;
    }
    let tmp = TempDir::new("shot");
    // A real local run when `c1m run` works here (rate-capped so the charts show a ramp),
    // else a synthetic two-client run.
    let port = 25_000 + (std::process::id() % 200) as u16 * 20;
    let run = real_run(tmp.path(), 8000, port, &["--rate", "3000"]).unwrap_or_else(|| {
        let run = tmp.path().join("run");
        synthetic_run(&run, &Spec::default());
        run
    });
    let page = tmp.path().join("report.html");
    let png = tmp.path().join("report.png");
    report(&[
        run.to_str().unwrap(),
        "--format",
        "html",
        "--output",
        page.to_str().unwrap(),
    ]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/report-screenshot");
    let out = Command::new(&script)
        .args([page.as_os_str(), png.as_os_str()])
        .arg("1200x1400")
        .output()
        .expect("run scripts/report-screenshot");
    assert!(
        out.status.success(),
        "report-screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(png_size(&bytes), (1200, 1400));
    // A blank page compresses to a few KiB; tables, text and two charts do not.
    assert!(
        bytes.len() > 40_000,
        "screenshot only {} bytes: page blank?",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("C1M_REPORT_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}
