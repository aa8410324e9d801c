//! qcow2 disks through the binary: a point of a qcow2 disk restores to a qcow2 file by default
//! and to raw with `--format raw`, says the format per disk (and `points` shows it); without
//! qemu-img the restore fails clearly and leaves nothing behind.
//!
//! These tests need `qemu-img`, `qemu-io` and `qemu-nbd`; without them they fail, saying so.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::formats::tool;
use crate::support::*;

const VM: &str = "qvm";

fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: the qcow2 tests need qemu-img, qemu-io and qemu-nbd \
         (Debian/Ubuntu: apt-get install qemu-utils)"
    );
}

fn qemu_io(image: &Path, commands: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    tool(cmd.arg(image));
}

/// A 32 MiB qcow2 image with a little data.
fn qcow2_disk(path: &Path) {
    for t in ["qemu-img", "qemu-io", "qemu-nbd"] {
        require(t);
    }
    tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(path)
            .arg("32M"),
    );
    qemu_io(path, &["write -P 0x5a 0 1M", "write -P 0x3c 20M 64k"]);
}

/// Whether `qemu-img compare` finds the guest's disks of `a` (in `format`) and the qcow2 `b`
/// identical.
fn same_disk(a: &Path, format: &str, b: &Path) -> bool {
    crate::formats::same_disk(a, format, b, "qcow2")
}

/// `backup --check-changes`: the dirty bitmap is checked by a full read, and the job says so.
#[test]
fn check_changes_reads_everything_and_says_the_bitmap_was_sound() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let image = sb.path("vm.qcow2");
    qcow2_disk(&image);
    backup(&vault, VM, &[&image], Some("64KiB"));
    qemu_io(&image, &["write -P 0x11 8M 64k"]);
    let run = |extra: &[&str]| {
        let mut args = vec!["backup", "--json", "--vault", arg(&vault), "--vm", VM];
        args.extend(["--disk", arg(&image)]);
        args.extend(extra);
        let run = blockvault(&args).success();
        let doc = run.json();
        let snapshot = doc["job"]["subtasks"]
            .as_array()
            .and_then(|s| s.iter().find(|t| t["kind"] == "snapshot").cloned())
            .unwrap_or_else(|| panic!("no snapshot subtask: {run}"));
        (snapshot["capture"]["disks"][0].clone(), run)
    };
    let (checked, text) = run(&["--check-changes"]);
    assert_eq!(checked["changes"], "full-scan", "{text}");
    assert_eq!(checked["hint_missed"], 0, "{text}");
    assert_eq!(checked["bytes_read"], checked["bytes_allocated"], "{text}");
    // Without it, the next backup reads only what its parent's bitmap marks.
    qemu_io(&image, &["write -P 0x12 9M 64k"]);
    let (tracked, text) = run(&[]);
    assert_eq!(tracked["changes"], "dirty-bitmap", "{text}");
    assert_eq!(tracked["bytes_read"], 64 << 10, "{text}");
    assert!(tracked["read_us"].as_u64().is_some(), "{text}");
    let help = blockvault(["backup", "--help"]).success();
    assert!(help.stdout.contains("--check-changes"), "{help}");
}

#[test]
fn a_qcow2_disk_restores_as_qcow2_by_default_and_as_raw_when_asked() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let image = sb.path("vm.qcow2");
    qcow2_disk(&image);
    let first = backup(&vault, VM, &[&image], Some("64KiB"));
    assert_eq!(first["disks"][0]["format"], "qcow2", "{first}");
    qemu_io(&image, &["write -P 0x77 4M 128k"]);
    backup(&vault, VM, &[&image], Some("64KiB"));

    let listed = points(&vault, VM);
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|p| p["disks"][0]["format"] == "qcow2"));
    let table = blockvault(["points", "--vault", arg(&vault)]).success();
    assert!(table.stdout.contains("1 qcow2"), "{table}");

    // Default: as recorded, qcow2; from the vault and from the snapshot tier.
    for from in ["vault", "snapshot"] {
        let to = sb.path(&format!("q-{from}"));
        let doc = restore(&vault, VM, &to, &["--from", from]);
        assert_eq!(doc["disks"][0]["format"], "qcow2", "{doc}");
        let restored = to.join("vm.qcow2");
        assert!(same_disk(&restored, "qcow2", &image), "{from}: differs");
        let allocated = std::fs::metadata(&restored).expect("stat").blocks() * 512;
        assert!(allocated < 8 << 20, "not sparse: {allocated} bytes");
        assert_eq!(entries(&to), ["vm.qcow2"], "temporaries left");
    }
    let text = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&sb.path("text")),
    ])
    .success();
    assert!(text.stdout.contains("vm.qcow2 as qcow2"), "{text}");

    // --format raw: the guest's disk as raw bytes.
    let to = sb.path("raw");
    let doc = restore(&vault, VM, &to, &["--format", "raw"]);
    assert_eq!(doc["disks"][0]["format"], "raw", "{doc}");
    assert!(same_disk(&to.join("vm.qcow2"), "raw", &image));
    assert_eq!(entries(&to), ["vm.qcow2"]);

    // --format with --in-place is a usage error.
    let run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&to),
        "--in-place",
        "--format",
        "qcow2",
    ]);
    assert!(run.parse_failure().contains("--format"), "{run}");
}

#[test]
fn without_qemu_img_a_qcow2_restore_fails_clearly_and_leaves_nothing() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let image = sb.path("vm.qcow2");
    qcow2_disk(&image);
    backup(&vault, VM, &[&image], Some("64KiB"));

    // A PATH without QEMU's tools.
    let empty = sb.path("no-tools");
    std::fs::create_dir(&empty).expect("mkdir");
    let to = sb.path("out");
    for from in ["vault", "snapshot"] {
        let run = blockvault_with_env(
            [
                "restore",
                "--vault",
                arg(&vault),
                "--vm",
                VM,
                "--to",
                arg(&to),
                "--from",
                from,
            ],
            &[("PATH", OsStr::new(arg(&empty)))],
        );
        let line = run.failure(1);
        assert!(
            line.contains("qemu-img") && line.contains("not installed"),
            "{run}"
        );
        assert!(entries(&to).is_empty(), "left behind: {:?}", entries(&to));
    }
    // Raw needs no qemu-img.
    let run = blockvault_with_env(
        [
            "restore",
            "--vault",
            arg(&vault),
            "--vm",
            VM,
            "--to",
            arg(&to),
            "--format",
            "raw",
        ],
        &[("PATH", OsStr::new(arg(&empty)))],
    )
    .success();
    assert!(run.stdout.starts_with("restored point "), "{run}");
    assert_eq!(entries(&to), ["vm.qcow2"]);
}

/// Writes the qcow2 magic (and a header naming a host file as its backing file) over the
/// first bytes of the raw disk `path`, as a guest could.
fn write_qcow2_header(path: &Path, backing: &Path) {
    use std::os::unix::fs::FileExt;
    let name = backing.as_os_str().as_encoded_bytes();
    let mut head = vec![0u8; 512];
    head[..4].copy_from_slice(b"QFI\xfb");
    head[4..8].copy_from_slice(&3u32.to_be_bytes());
    head[8..16].copy_from_slice(&256u64.to_be_bytes());
    head[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
    head[20..24].copy_from_slice(&16u32.to_be_bytes());
    head[24..32].copy_from_slice(&(4u64 << 20).to_be_bytes());
    head[256..256 + name.len()].copy_from_slice(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.write_all_at(&head, 0).expect("write");
    file.sync_all().expect("sync");
}

/// The header is held to the format the disk was last read in even once every snapshot of
/// the VM is gone (expired after its instant-restore days, or forgotten): the tier keeps the
/// formats beside the snapshots.
#[test]
fn a_header_planted_after_the_snapshots_are_gone_is_still_refused() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = Image::create(&sb.path("guest.img"), 4 << 20);
    disk.write(1 << 20, &noise(64 << 10, 5));
    backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let tier = snapshot_tier(&vault, VM);
    assert!(tier.is_dir(), "no snapshot tier at {}", tier.display());
    std::fs::remove_dir_all(&tier).expect("the snapshots go");
    let secret = sb.path("host-secret");
    std::fs::write(&secret, b"a host file the guest must never read").expect("write");
    write_qcow2_header(&disk.path, &secret);
    let run = blockvault([
        "backup",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ]);
    let line = run.failure(6);
    assert!(line.contains("--disk-format"), "{run}");
    assert_eq!(points(&vault, VM).len(), 1, "a point was written");
}

#[test]
fn a_raw_disk_whose_header_turns_qcow2_is_refused_until_its_format_is_said() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = Image::create(&sb.path("guest.img"), 4 << 20);
    disk.write(1 << 20, &noise(64 << 10, 3));
    backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let secret = sb.path("host-secret");
    std::fs::write(&secret, b"a host file the guest must never read").expect("write");
    write_qcow2_header(&disk.path, &secret);
    let backup_args = [
        "backup",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
        "--block-size",
        "64KiB",
    ];

    let run = blockvault(backup_args);
    let line = run.failure(6);
    assert!(
        line.contains(arg(&disk.path)) && line.contains("--disk-format"),
        "{run}"
    );
    assert_eq!(points(&vault, VM).len(), 1, "a point was written");

    // Said outright: the file's bytes, header and all.
    let mut raw = backup_args.to_vec();
    raw.extend(["--disk-format", "raw", "--json"]);
    let run = blockvault(&raw).success();
    assert_eq!(run.json()["job"]["status"], "completed", "{run}");
    let listed = points(&vault, VM);
    assert_eq!(listed.len(), 2);
    assert!(
        listed[1]["disks"][0].get("format").is_none(),
        "{}",
        listed[1]
    );
    let to = sb.path("out");
    restore(&vault, VM, &to, &[]);
    let restored = std::fs::read(to.join("guest.img")).expect("restored");
    assert!(
        restored == std::fs::read(&disk.path).expect("disk"),
        "not the raw bytes"
    );

    // A protected VM keeps the format it was given.
    let state = host_state(&vault);
    let run = blockvault([
        "protect",
        "--json",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
        "--disk-format",
        "raw",
        "--state-dir",
        arg(&state),
    ])
    .success();
    assert_eq!(run.json()["item"]["disk_format"], "raw", "{run}");
    let run = blockvault([
        "backup-now",
        "--vm",
        VM,
        "--json",
        "--state-dir",
        arg(&state),
    ]);
    let run = run.success();
    assert_eq!(run.json()["job"]["status"], "completed", "{run}");
    assert_eq!(points(&vault, VM).len(), 3);
}
