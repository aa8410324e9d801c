//! Backing chains and the other formats, against the real QEMU tools: a copy of an overlay
//! kept in another directory (as a reflink clone is) is read with the original's chain, never
//! with a base of the same name beside the copy; a missing base is `BackingMissing` naming it;
//! an encrypted qcow2 is refused before qemu-nbd starts; `convert_to` writes each format at
//! the guest's exact size; `detect_format` knows each format qemu-img makes.

use std::path::{Path, PathBuf};
use std::process::Command;

use blockvault_core::DiskFormat;
use blockvault_qemu::testing::{require, run};
use blockvault_qemu::{Error, ImageInfo, QemuNbd, backing_of, convert_to, missing_backing};
use blockvault_source::{BlockSource, detect_format};

const M: usize = 1 << 20;

fn tools() {
    for tool in ["qemu-img", "qemu-io", "qemu-nbd"] {
        require(tool);
    }
}

fn qemu_img(dir: &Path, args: &[&str]) {
    run(Command::new("qemu-img").current_dir(dir).args(args));
}

fn qemu_io(dir: &Path, format: &str, image: &str, commands: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.current_dir(dir).args(["-f", format]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    run(cmd.arg(image));
}

fn read_all(source: &QemuNbd) -> Vec<u8> {
    let mut buf = vec![0u8; source.size() as usize];
    let mut at = 0;
    while at < buf.len() {
        let n = source.read_at(at as u64, &mut buf[at..]).expect("read");
        assert!(n > 0, "short read at {at}");
        at += n;
    }
    buf
}

/// `dir/vms`: base.qcow2 (0x11 at 0) <- mid.qcow2 (0x22 at 1M) <- disk.qcow2 (0x33 at 2M),
/// each named relatively. Returns the overlay.
fn chain(dir: &Path) -> PathBuf {
    tools();
    let vms = dir.join("vms");
    std::fs::create_dir_all(&vms).expect("vms");
    qemu_img(&vms, &["create", "-q", "-f", "qcow2", "base.qcow2", "4M"]);
    qemu_io(&vms, "qcow2", "base.qcow2", &["write -P 0x11 0 1M"]);
    qemu_img(
        &vms,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "mid.qcow2",
        ],
    );
    qemu_io(&vms, "qcow2", "mid.qcow2", &["write -P 0x22 1M 1M"]);
    qemu_img(
        &vms,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            "disk.qcow2",
        ],
    );
    qemu_io(&vms, "qcow2", "disk.qcow2", &["write -P 0x33 2M 1M"]);
    vms.join("disk.qcow2")
}

fn expected() -> Vec<u8> {
    let mut disk = vec![0u8; 4 * M];
    disk[..M].fill(0x11);
    disk[M..2 * M].fill(0x22);
    disk[2 * M..3 * M].fill(0x33);
    disk
}

#[test]
fn a_copy_of_an_overlay_is_read_with_the_originals_chain_not_a_decoy_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = chain(dir.path());
    let tier = dir.path().join("tier");
    std::fs::create_dir_all(&tier).expect("tier");
    let copy = tier.join("disk.qcow2");
    std::fs::copy(&disk, &copy).expect("copy");
    // A base of the same name beside the copy, with other data: must not be read.
    qemu_img(&tier, &["create", "-q", "-f", "qcow2", "mid.qcow2", "4M"]);
    qemu_io(&tier, "qcow2", "mid.qcow2", &["write -P 0x66 0 4M"]);

    let backing = backing_of(&copy, &disk).expect("backing").expect("has one");
    assert_eq!(backing.name, "mid.qcow2");
    assert_eq!(backing.path, Some(dir.path().join("vms/mid.qcow2")));
    assert_eq!(backing.format.as_deref(), Some("qcow2"));

    let served = QemuNbd::start_from(&copy, &disk, DiskFormat::Qcow2, None).expect("serve copy");
    assert_eq!(served.size(), 4 * M as u64);
    assert!(
        read_all(&served) == expected(),
        "the copy was not read with the disk's chain"
    );
    drop(served);
    // The disk itself, as QEMU resolves it.
    let served = QemuNbd::start(&disk, DiskFormat::Qcow2).expect("serve disk");
    assert!(read_all(&served) == expected());
}

#[test]
fn a_missing_base_is_named_for_the_disk_and_for_its_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = chain(dir.path());
    let copy = dir.path().join("disk-copy.qcow2");
    std::fs::copy(&disk, &copy).expect("copy");
    let base = dir.path().join("vms/base.qcow2");
    std::fs::remove_file(&base).expect("remove the base");
    let mid = dir.path().join("vms/mid.qcow2");
    assert_eq!(
        missing_backing(&disk, &disk, DiskFormat::Qcow2).expect("walk"),
        Some((mid.clone(), base.clone()))
    );
    for (image, home) in [(&disk, &disk), (&copy, &disk)] {
        let e = QemuNbd::start_from(image, home, DiskFormat::Qcow2, None).expect_err("no base");
        match &e {
            Error::BackingMissing { image, backing } => {
                assert_eq!((image, backing), (&mid, &base), "{e}");
            }
            other => panic!("not BackingMissing: {other}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("backing file") && text.contains("base.qcow2"),
            "{text}"
        );
        assert_eq!(e.kind(), blockvault_core::ErrorKind::NotFound);
    }
    // The top's own base missing, for the copy: named before qemu-nbd starts.
    std::fs::remove_file(&mid).expect("remove mid");
    let e = QemuNbd::start_from(&copy, &disk, DiskFormat::Qcow2, None).expect_err("no mid");
    assert!(
        matches!(&e, Error::BackingMissing { backing, .. } if *backing == mid),
        "{e}"
    );
}

#[test]
fn an_encrypted_qcow2_is_refused_before_qemu_nbd_starts() {
    tools();
    let dir = tempfile::tempdir().expect("tempdir");
    qemu_img(
        dir.path(),
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "--object",
            "secret,id=s,data=x",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=s",
            "enc.qcow2",
            "4M",
        ],
    );
    let image = dir.path().join("enc.qcow2");
    let e = QemuNbd::start(&image, DiskFormat::Qcow2).expect_err("encrypted");
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("encrypted"), "{e}");
    assert_eq!(e.kind(), blockvault_core::ErrorKind::Refused);
}

#[test]
fn each_format_converts_at_the_exact_size_is_detected_and_reads_back() {
    tools();
    let dir = tempfile::tempdir().expect("tempdir");
    // An odd size: vpc would round it to a disk geometry without force_size.
    let size = 10 * M + 512 * 3;
    let mut disk = vec![0u8; size];
    disk[M..M + 4096].fill(0x5a);
    disk[size - 512..].fill(0xa5);
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, &disk).expect("raw");
    for format in DiskFormat::ALL.into_iter().filter(|f| !f.is_raw()) {
        let out = dir.path().join(format!("disk.{format}"));
        convert_to(&raw, &out, format).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(detect_format(&out).expect("detect"), format);
        let info = ImageInfo::read_as(&out, Some(format)).expect("info");
        assert_eq!(info.virtual_size, size as u64, "{format}");
        assert!(info.backing_file.is_none(), "{format}");
        let served = QemuNbd::start(&out, format).expect("serve");
        assert!(read_all(&served) == disk, "{format}: differs");
    }
}

/// An overlay made before QEMU recorded backing formats: its base's format is probed (as QEMU
/// does) for a copy too.
#[test]
fn a_copy_of_an_overlay_without_a_recorded_backing_format_probes_its_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = chain(dir.path());
    // The backing format header extension renamed to an unknown one, which QEMU ignores.
    let mut head = std::fs::read(&disk).expect("overlay");
    let at = head
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .expect("a backing format extension");
    head[at..at + 4].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    std::fs::write(&disk, &head).expect("write");
    assert_eq!(ImageInfo::read(&disk).expect("info").backing_format, None);
    let copy = dir.path().join("disk-copy.qcow2");
    std::fs::copy(&disk, &copy).expect("copy");
    let backing = backing_of(&copy, &disk).expect("backing").expect("has one");
    assert_eq!(backing.format.as_deref(), Some("qcow2"), "probed");
    let served = QemuNbd::start_from(&copy, &disk, DiskFormat::Qcow2, None).expect("serve");
    assert!(read_all(&served) == expected());
}

/// A base on a block device (an LV holding a template, here a loop device): QEMU's `file`
/// driver refuses block devices, so the copy's chain must name it with `host_device`.
#[test]
#[ignore = "needs root and a loop device (losetup): scripts/test.sh runs it"]
fn a_copy_of_an_overlay_on_a_block_device_base_is_read() {
    tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let base_file = dir.path().join("base.raw");
    std::fs::write(&base_file, vec![0x44u8; 4 * M]).expect("base");
    let out = run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&base_file));
    let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    struct Detach(PathBuf);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _detach = Detach(device.clone());
    let vms = dir.path().join("vms");
    std::fs::create_dir_all(&vms).expect("vms");
    let base = device.to_str().expect("a device path");
    qemu_img(
        &vms,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            base,
            "-F",
            "raw",
            "disk.qcow2",
        ],
    );
    qemu_io(&vms, "qcow2", "disk.qcow2", &["write -P 0x55 1M 64k"]);
    let copies = dir.path().join("tier");
    std::fs::create_dir_all(&copies).expect("tier");
    let (disk, copy) = (vms.join("disk.qcow2"), copies.join("disk.qcow2"));
    std::fs::copy(&disk, &copy).expect("copy");
    let served = QemuNbd::start_from(&copy, &disk, DiskFormat::Qcow2, None).expect("serve copy");
    let read = read_all(&served);
    assert_eq!(read.len(), 4 * M);
    assert!(read[..M].iter().all(|&b| b == 0x44), "the base's bytes");
    assert!(
        read[M..M + (64 << 10)].iter().all(|&b| b == 0x55),
        "the overlay's"
    );
}
