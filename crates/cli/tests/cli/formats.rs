//! Disks in the other formats QEMU reads through the binary: a vmdk is backed up by its
//! header (twice, no warning: the full scan's reason is on the job), `points` shows its
//! format, a restore writes a vmdk by default and qcow2 or raw on request; `--disk-format`
//! and `restore --format` take every format QEMU names, and their help lists them.
//!
//! These tests need `qemu-img`, `qemu-io` and `qemu-nbd`; without them they fail, saying so.

use std::path::Path;
use std::process::Command;

use crate::support::*;

const VM: &str = "fvm";

/// Runs a QEMU tool, failing the test with its stderr when it fails.
pub(crate) fn tool(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (apt-get install qemu-utils): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `qemu-img compare` finds the guest's disks of `a` and `b` identical.
pub(crate) fn same_disk(a: &Path, a_format: &str, b: &Path, b_format: &str) -> bool {
    Command::new("qemu-img")
        .args(["compare", "-q", "-f", a_format, "-F", b_format])
        .arg(a)
        .arg(b)
        .status()
        .expect("qemu-img compare")
        .success()
}

/// `path` as a 32 MiB sparse vmdk with a little data, made by qemu-img.
fn vmdk_disk(path: &Path) {
    tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk"])
            .arg(path)
            .arg("32M"),
    );
    tool(
        Command::new("qemu-io")
            .args([
                "-f",
                "vmdk",
                "-c",
                "write -P 0x5a 0 1M",
                "-c",
                "write -P 0x3c 20M 64k",
            ])
            .arg(path),
    );
}

#[test]
fn a_vmdk_disk_backs_up_by_its_header_and_restores_as_vmdk_or_as_asked() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let image = sb.path("vm.vmdk");
    vmdk_disk(&image);
    // `backup` checks there is no warning: the reason is the job's, once.
    let point = backup(&vault, VM, &[&image], Some("64KiB"));
    assert_eq!(point["disks"][0]["format"], "vmdk", "{point}");
    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&image),
    ])
    .success();
    assert_eq!(run.json()["warnings"], serde_json::json!([]), "{run}");
    assert!(
        run.stdout.contains("vmdk images cannot hold dirty bitmaps"),
        "{run}"
    );
    let table = blockvault(["points", "--vault", arg(&vault)]).success();
    assert!(table.stdout.contains("1 vmdk"), "{table}");

    for (dir, args, format) in [
        ("own", &[][..], "vmdk"),
        ("q", &["--format", "qcow2"][..], "qcow2"),
        ("r", &["--format", "raw"][..], "raw"),
    ] {
        let to = sb.path(dir);
        let doc = restore(&vault, VM, &to, args);
        assert_eq!(doc["disks"][0]["format"], format, "{doc}");
        assert!(
            same_disk(&to.join("vm.vmdk"), format, &image, "vmdk"),
            "{dir}"
        );
        assert_eq!(entries(&to), ["vm.vmdk"], "temporaries left");
    }
}

#[test]
fn every_qemu_format_is_a_disk_format_and_the_help_lists_them() {
    let help = blockvault(["backup", "--help"]).success();
    for format in ["qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed"] {
        assert!(help.stdout.contains(format), "backup --help lacks {format}");
    }
    let help = blockvault(["restore", "--help"]).success();
    assert!(
        help.stdout.contains("vmdk, vdi, vhdx, vpc or qed"),
        "{help}"
    );
    let run = blockvault([
        "backup",
        "--vault",
        "/nonexistent",
        "--vm",
        VM,
        "--disk",
        "/x",
        "--disk-format",
        "vhd",
    ]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("vpc") && run.stderr.contains("qed"),
        "{run}"
    );
    let run = blockvault([
        "restore",
        "--vault",
        "/nonexistent",
        "--vm",
        VM,
        "--to",
        "/x",
        "--format",
        "vhd",
    ]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("vmdk") && run.stderr.contains("qed"),
        "{run}"
    );
}
