//! `convert_to_qcow2` and `Qcow2Header` against the real qemu-img.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;

use blockvault_qemu::{Error, Qcow2Header, convert_to_qcow2};

use blockvault_qemu::testing::{require, run};

const MIB: u64 = 1 << 20;

#[test]
fn a_sparse_raw_disk_converts_to_a_sparse_qcow2_of_the_same_disk() {
    require("qemu-img");
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("disk.raw");
    let file = std::fs::File::create(&raw).expect("create");
    file.set_len(64 * MIB).expect("size");
    file.write_all_at(&[0x5a; 256 << 10], 3 * MIB)
        .expect("data");
    // Written zeros are not written to the qcow2 either.
    file.write_all_at(&vec![0u8; 8 * MIB as usize], 20 * MIB)
        .expect("zeros");
    file.sync_all().expect("sync");
    let out = dir.path().join("disk.qcow2");
    convert_to_qcow2(&raw, &out).expect("convert");

    run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
        .arg(&raw)
        .arg(&out));
    let allocated = std::fs::metadata(&out).expect("stat").blocks() * 512;
    assert!(allocated < 4 * MIB, "{allocated} bytes allocated");
    let header = Qcow2Header::read(&out).expect("read").expect("qcow2");
    assert_eq!(header.virtual_size, 64 * MIB);
    assert!(header.self_contained());
    assert_eq!(
        Qcow2Header::read(&raw).expect("read"),
        None,
        "raw is no qcow2"
    );

    // A qcow2 with a backing file does not hold the disk by itself.
    let overlay = dir.path().join("overlay.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&out)
        .arg(&overlay));
    let header = Qcow2Header::read(&overlay).expect("read").expect("qcow2");
    assert!(header.has_backing_file && !header.self_contained());
}

#[test]
fn a_failed_conversion_says_qemu_imgs_words_and_leaves_no_output() {
    require("qemu-img");
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, vec![1u8; 64 << 10]).expect("write");
    let out = dir.path().join("missing-dir").join("disk.qcow2");
    let e = convert_to_qcow2(&raw, &out).expect_err("no such directory");
    assert!(matches!(e, Error::QemuImg { .. }), "{e}");
    assert!(e.to_string().contains("qemu-img could not convert"), "{e}");
    assert!(!out.exists());
    let e = convert_to_qcow2(&dir.path().join("nope.raw"), &dir.path().join("x.qcow2"))
        .expect_err("no raw file");
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(!dir.path().join("x.qcow2").exists());
}
