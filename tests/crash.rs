//! A declare killed in the middle leaves a vault that verifies, and the next
//! declare completes (FORMAT.md §11 (write ordering), crash consequences).

use std::os::unix::process::CommandExt as _;
use std::time::{Duration, Instant};

use crate::common::{TestVault, kinds};

#[test]
fn kill_during_declare_then_verify_and_declare_again() {
    let v = TestVault::new();
    v.write("a.log", b"before the crash\n");
    // A command that streams 40 MB (more than one pack), then hangs: the
    // process is killed while it waits, with at least one pack written and
    // its segment not yet sealed.
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("custody"));
    cmd.args([
        "declare",
        "INC-CRASH",
        "--title",
        "crash",
        "--quiet",
        "--vault",
    ])
    .arg(&v.vault)
    .arg("--key")
    .arg(&v.key)
    .arg("--path")
    .arg(&v.data)
    .args([
        "--command",
        "sh -c 'head -c 40000000 /dev/urandom; sleep 120'",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .process_group(0);
    let child = cmd.spawn().unwrap();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(120);
    let packs = || crate::common::walk(&v.vault.join("packs")).len();
    while packs() == 0 {
        assert!(Instant::now() < deadline, "no pack was written in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the packer get well into the stream, then kill everything.
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let mut child = child;
    child.wait().unwrap();

    let (code, report) = v.verify();
    assert_eq!(
        code, 0,
        "an interrupted declare must leave a verifiable vault: {report:#}"
    );
    assert!(
        kinds(&report).contains(&"pack_unreferenced".to_string()),
        "{report:#}"
    );

    // The declaration itself was committed before any evidence was read.
    let shown = v.cmd(&["show", "INC-CRASH"]).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("not finished"), "{text}");

    let again = v.declare_data("INC-CRASH");
    assert_eq!(again["newly_declared"], false);
    assert_eq!(again["complete"], 1);
    v.assert_intact();
}
