//! `qemu-img` through `ImageInfo`, `add_bitmap` and `remove_bitmap`: a fresh qcow2's info,
//! bitmaps added and removed with their flags, a bitmap left `in-use` by a QEMU killed with
//! SIGKILL reads as inconsistent, an image a QEMU has open refuses changes with a clear error,
//! and a missing image is not found. `QemuNbd::start_with` exports a bitmap (`qemu-nbd -B`):
//! its dirty extents are the writes since it was added, at its granularity; a missing or
//! inconsistent bitmap is refused clearly.
//!
//! These tests need `qemu-img` and `qemu-io`; without them they fail, saying so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use blockvault_core::DiskFormat;
use blockvault_qemu::{
    BITMAP_GRANULARITY, Distrust, Error, ImageInfo, QemuNbd, add_bitmap, bitmap_name,
    remove_bitmap, trust,
};
use blockvault_source::BlockSource;

use blockvault_qemu::testing::{require, run};

const M: u64 = 1 << 20;

fn qcow2(dir: &Path, size: &str) -> PathBuf {
    for tool in ["qemu-img", "qemu-io"] {
        require(tool);
    }
    let path = dir.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size));
    path
}

/// A `qemu-io` holding `image` open (read-write) after writing `write` (a qemu-io command);
/// killed with SIGKILL (and reaped) when dropped, as a crashed QEMU would die.
struct OpenByQemu(Child);

impl OpenByQemu {
    fn new(image: &Path, write: &str) -> OpenByQemu {
        // stdbuf: qemu-io's stdout is a pipe here, and its report of the write must arrive
        // while it still runs.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "qemu-io",
                "-f",
                "qcow2",
                "-c",
                write,
                "-c",
                "sleep 60000",
            ])
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-io");
        let stdout = child.stdout.take().expect("stdout");
        let mut guard = OpenByQemu(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("qemu-io's report");
        assert!(line.starts_with("wrote"), "qemu-io said {line:?}");
        assert!(
            guard.0.try_wait().expect("qemu-io").is_none(),
            "qemu-io exited"
        );
        guard
    }
}

impl Drop for OpenByQemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_fresh_qcow2_has_its_size_cluster_and_no_bitmaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path(), "16M");
    let info = ImageInfo::read(&image).expect("info");
    assert_eq!(info.format, "qcow2");
    assert_eq!(info.disk_format(), Some(DiskFormat::Qcow2));
    assert_eq!(info.virtual_size, 16 * M);
    assert_eq!(info.cluster_size, Some(64 << 10));
    assert!(info.bitmaps.is_empty(), "{info:?}");

    let raw = dir.path().join("disk.raw");
    std::fs::File::create(&raw)
        .expect("raw")
        .set_len(3 * M)
        .expect("size");
    let info = ImageInfo::read(&raw).expect("info of a raw image");
    assert_eq!(info.disk_format(), Some(DiskFormat::Raw));
    assert_eq!(info.virtual_size, 3 * M);
    assert!(info.bitmaps.is_empty());
    // A raw image holds no bitmaps: qemu-img's reason, and the image untouched.
    let err = add_bitmap(&raw, "blockvault-x").expect_err("a bitmap on a raw image");
    assert!(matches!(err, Error::QemuImg { .. }), "{err:?}");
    assert!(err.to_string().contains("disk.raw"), "{err}");
    assert_eq!(std::fs::metadata(&raw).expect("raw").len(), 3 * M);
}

#[test]
fn bitmaps_are_added_recording_and_persistent_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path(), "16M");
    let point = "20261207-170000-0001".parse().expect("point");
    let name = bitmap_name(&point);
    add_bitmap(&image, &name).expect("add");
    add_bitmap(&image, "someone-elses").expect("add another");
    let info = ImageInfo::read(&image).expect("info");
    let bitmap = info.bitmap(&name).expect("the bitmap").clone();
    assert_eq!(bitmap.granularity, BITMAP_GRANULARITY);
    assert!(bitmap.recording && bitmap.persistent && !bitmap.inconsistent);
    assert_eq!(
        trust(&info.bitmaps, &point, 16 * M, info.virtual_size),
        Ok(&bitmap)
    );

    // A second bitmap of the same name is refused in qemu-img's words; the first stays.
    let err = add_bitmap(&image, &name).expect_err("a duplicate");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(
        ImageInfo::read(&image)
            .expect("info")
            .bitmap(&name)
            .is_some()
    );

    assert!(remove_bitmap(&image, &name).expect("remove"));
    let info = ImageInfo::read(&image).expect("info");
    assert!(info.bitmap(&name).is_none(), "{info:?}");
    assert!(info.bitmap("someone-elses").is_some(), "{info:?}");
    assert!(matches!(
        trust(&info.bitmaps, &point, 16 * M, 16 * M),
        Err(Distrust::Missing { .. })
    ));
    // Removing what is not there says so, and is no error.
    assert!(!remove_bitmap(&image, &name).expect("remove again"));
}

#[test]
fn a_qemu_killed_with_the_image_open_leaves_the_bitmap_inconsistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path(), "16M");
    let point = "20261207-170000-0002".parse().expect("point");
    let name = bitmap_name(&point);
    add_bitmap(&image, &name).expect("add");
    let open = OpenByQemu::new(&image, "write -P 0x5a 1M 64k");

    // While it is open: the info is still read (shared), a change is refused clearly.
    let info = ImageInfo::read(&image).expect("info while open");
    assert!(info.bitmap(&name).expect("bitmap").inconsistent);
    let err = add_bitmap(&image, "blockvault-next").expect_err("locked");
    assert!(matches!(err, Error::ImageLocked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("QMP") && text.contains("lock") && text.contains("disk.qcow2"),
        "{text}"
    );
    let err = remove_bitmap(&image, &name).expect_err("locked");
    assert!(matches!(err, Error::ImageLocked { .. }), "{err:?}");

    drop(open);
    let info = ImageInfo::read(&image).expect("info after the kill");
    let bitmap = info.bitmap(&name).expect("bitmap");
    assert!(bitmap.inconsistent, "{bitmap:?}");
    assert!(matches!(
        trust(&info.bitmaps, &point, 16 * M, 16 * M),
        Err(Distrust::Inconsistent { .. })
    ));
    // An inconsistent bitmap can still be removed (and a new one added).
    assert!(remove_bitmap(&image, &name).expect("remove"));
    add_bitmap(&image, &name).expect("add again");
    let info = ImageInfo::read(&image).expect("info");
    assert!(!info.bitmap(&name).expect("bitmap").inconsistent);
}

#[test]
fn a_missing_image_is_not_found() {
    require("qemu-img");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("gone.qcow2");
    for err in [
        ImageInfo::read(&image).expect_err("info"),
        add_bitmap(&image, "blockvault-x").expect_err("add"),
        remove_bitmap(&image, "blockvault-x").expect_err("remove"),
    ] {
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert_eq!(err.kind(), blockvault_core::ErrorKind::NotFound);
        assert!(err.to_string().contains("gone.qcow2"), "{err}");
    }
    assert!(!image.exists(), "nothing was created");
}

fn qemu_io(image: &Path, commands: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    run(cmd.arg(image));
}

#[test]
fn a_bitmap_exported_by_qemu_nbd_marks_the_writes_since_it_was_added() {
    require("qemu-nbd");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path(), "16M");
    // Written before the bitmap: not its business.
    qemu_io(&image, &["write -P 0x11 0 2M"]);
    add_bitmap(&image, "blockvault-a").expect("add");
    let k = 1 << 10;
    qemu_io(
        &image,
        &[
            "write -P 0x22 1M 64k",
            // Unaligned: the whole 64 KiB granule is dirty.
            "write -P 0x33 5000k 4k",
            "write -P 0x44 12M 200k",
            "write -z 15M 64k",
        ],
    );
    let server =
        QemuNbd::start_with(&image, DiskFormat::Qcow2, Some("blockvault-a")).expect("serve");
    let dirty = server.dirty_extents().expect("dirty extents");
    assert_eq!(
        dirty,
        vec![
            M..M + 64 * k,
            4992 * k..4992 * k + 64 * k,
            12 * M..12 * M + 256 * k,
            15 * M..15 * M + 64 * k,
        ],
        "{dirty:?}"
    );
    // The export is the image as before: the bitmap changes nothing of the reads.
    let mut buf = vec![0u8; 4];
    assert_eq!(server.read_at(M, &mut buf).expect("read"), 4);
    assert_eq!(buf, [0x22; 4]);
    drop(server);

    // Without a bitmap asked for there are no dirty extents to give.
    let plain = QemuNbd::start(&image, DiskFormat::Qcow2).expect("serve");
    let err = plain.dirty_extents().expect_err("no bitmap");
    assert!(err.to_string().contains("dirty bitmap"), "{err}");
}

#[test]
fn qemu_nbd_refuses_a_missing_or_inconsistent_bitmap_clearly() {
    require("qemu-nbd");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path(), "16M");
    let err = QemuNbd::start_with(&image, DiskFormat::Qcow2, Some("blockvault-none"))
        .expect_err("no such bitmap");
    assert!(matches!(err, Error::QemuNbd { .. }), "{err:?}");
    assert!(err.to_string().contains("blockvault-none"), "{err}");

    add_bitmap(&image, "blockvault-b").expect("add");
    drop(OpenByQemu::new(&image, "write -P 0x5a 0 64k"));
    let err = QemuNbd::start_with(&image, DiskFormat::Qcow2, Some("blockvault-b"))
        .expect_err("an inconsistent bitmap");
    assert!(matches!(err, Error::QemuNbd { .. }), "{err:?}");
    assert!(err.to_string().contains("blockvault-b"), "{err}");
}
