//! `--qmp SOCKET`: a running VM (a `qemu-storage-daemon` standing in for it) through the
//! binary. `protect` describes each disk as fleecing will read it and keeps the monitor on the
//! item; `backup` fixes the disk by QEMU fleecing; a monitor nobody answers on is one clear
//! error line.
//!
//! These tests need qemu-utils (qemu-img, qemu-storage-daemon).

use blockvault_qemu::testing::{GuestNbd, TestVm};
use serde_json::json;

use crate::support::*;

const VM: &str = "web01";

#[test]
fn protect_and_backup_a_running_vm_through_its_monitor() {
    let qemu = TestVm::start(&[8 * MIB], GuestNbd::OnWrite);
    qemu.guest_write(0, &["write -P 0x11 0 1M"]);
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let qmp = qemu.qmp_socket();
    let disk = qemu.disk(0).to_owned();
    let common = ["--vault", arg(&vault), "--vm", VM, "--disk", arg(&disk)];

    let mut args = vec!["protect"];
    args.extend(common);
    args.extend(["--qmp", arg(&qmp)]);
    let run = blockvault(&args).success();
    assert!(run.stdout.contains("is protected by"), "{run}");
    assert!(run.stdout.contains("node disk0 (qcow2"), "{run}");
    assert!(run.stdout.contains("dirty bitmaps"), "{run}");

    let mut args = vec!["backup", "--json"];
    args.extend(common);
    args.extend(["--qmp", arg(&qmp)]);
    let run = blockvault(&args).success();
    let doc = run.json();
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    assert_eq!(doc["warnings"], json!([]), "{run}");
    assert!(run.stdout.contains("qemu-fleecing"), "{run}");
}

#[test]
fn a_dead_monitor_is_one_clear_error() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut image = Image::create(&sb.path("disk.img"), 4 * MIB);
    image.write(0, &noise(64 * KIB, 1));
    let dead = sb.path("nobody.qmp");
    let run = blockvault([
        "backup",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&image.path),
        "--qmp",
        arg(&dead),
    ]);
    let line = run.failure(1);
    assert!(
        line.contains("QEMU monitor") && line.contains("nobody.qmp") && line.contains("connect"),
        "{run}"
    );
    assert!(points(&vault, VM).is_empty(), "a point was made\n{run}");
}
