//! The QEMU tools the tests drive directly (to make images and write as a guest would).

use std::process::{Command, Stdio};

/// Fails the test with what to install when a QEMU tool is missing.
pub(crate) fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: the QEMU tests need qemu-nbd, qemu-img, qemu-io and \
         qemu-storage-daemon (Debian/Ubuntu: apt-get install qemu-utils)"
    );
}

/// Runs a QEMU tool, failing the test with its stderr when it fails.
pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a QEMU tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
