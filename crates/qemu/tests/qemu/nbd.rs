//! `QemuNbd`, the managed `qemu-nbd`: a qcow2 image read through it equals `qemu-img convert
//! -O raw` byte for byte, its data extents skip unallocated clusters, the process is gone once
//! it is dropped, and a corrupt qcow2 or a missing file is a clear error that leaves no
//! process behind.
//!
//! These tests need `qemu-nbd`, `qemu-img` and `qemu-io`; without them they fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use blockvault_core::DiskFormat;
use blockvault_qemu::{Error, QemuNbd};
use blockvault_source::{BlockSource, detect_format};

use blockvault_qemu::testing::{require, run};

const M: u64 = 1 << 20;

/// An 8 MiB qcow2 with 1 MiB of 0x55 at 0 and 64 KiB of 0x33 at 5 MiB.
fn qcow2(dir: &Path) -> PathBuf {
    for tool in ["qemu-img", "qemu-io", "qemu-nbd"] {
        require(tool);
    }
    let path = dir.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("8M"));
    run(Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x55 0 1M",
            "-c",
            "write -P 0x33 5M 64k",
        ])
        .arg(&path));
    path
}

fn as_raw(image: &Path, dir: &Path) -> Vec<u8> {
    let raw = dir.join("converted.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(image)
        .arg(&raw));
    std::fs::read(&raw).expect("read the converted image")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The qemu-nbd processes serving `image`, by their command lines.
fn servers_of(image: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"qemu-nbd"))
            && args.contains(&image.as_os_str().as_encoded_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn detects_qcow2_by_its_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path());
    assert_eq!(detect_format(&image).expect("detect"), DiskFormat::Qcow2);
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, vec![0x55u8; 4096]).expect("write raw");
    assert_eq!(detect_format(&raw).expect("detect"), DiskFormat::Raw);
    let short = dir.path().join("short");
    std::fs::write(&short, b"QF").expect("write short");
    assert_eq!(detect_format(&short).expect("detect"), DiskFormat::Raw);
    let missing = detect_format(&dir.path().join("nope.qcow2"));
    assert!(
        matches!(missing, Err(blockvault_source::Error::NotFound { .. })),
        "{missing:?}"
    );
}

#[test]
fn qcow2_reads_as_qemu_img_converts_it_and_the_server_is_gone_after_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path());
    let expected = as_raw(&image, dir.path());
    let server = QemuNbd::start(&image, DiskFormat::Qcow2).expect("start qemu-nbd");
    let pid = server.pid();
    let socket_dir = server.socket_dir().to_owned();
    assert!(alive(pid), "qemu-nbd {pid} is running while served");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket_dir)
            .expect("socket dir")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700, "the socket's directory is private");

    assert_eq!(server.size(), 8 * M);
    assert_eq!(server.path(), image.as_path());
    let mut read = vec![0u8; server.size() as usize];
    for (i, chunk) in read.chunks_mut(M as usize).enumerate() {
        let n = server
            .read_at(i as u64 * M, chunk)
            .expect("read through qemu-nbd");
        assert_eq!(n, chunk.len());
    }
    assert!(read == expected, "the export differs from qemu-img convert");
    assert_eq!(&read[..4], &[0x55; 4]);
    assert_eq!(&read[(5 * M) as usize..(5 * M) as usize + 4], &[0x33; 4]);

    // Only the written clusters are data: the rest of the 8 MiB is never read.
    let extents = server.data_extents().expect("data extents");
    let data: u64 = extents.iter().map(|r| r.end - r.start).sum();
    assert!(
        extents.iter().any(|r| r.start == 0 && r.end >= M),
        "{extents:?}"
    );
    assert!(
        extents
            .iter()
            .any(|r| r.start <= 5 * M && r.end >= 5 * M + (64 << 10)),
        "{extents:?}"
    );
    assert!(
        data < 2 * M,
        "unallocated clusters reported as data: {extents:?}"
    );

    drop(server);
    assert!(!alive(pid), "qemu-nbd {pid} still exists after drop");
    assert!(!socket_dir.exists(), "the socket's directory was removed");
    assert!(servers_of(&image).is_empty());
}

#[test]
fn a_corrupt_qcow2_is_a_clear_error_and_leaves_no_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = qcow2(dir.path());
    let before = std::fs::read(&image).expect("read image");
    // The header cut short: the magic is still there, the rest is not.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .expect("open");
    file.set_len(32).expect("truncate the header");
    drop(file);
    assert_eq!(detect_format(&image).expect("detect"), DiskFormat::Qcow2);
    let err = QemuNbd::start(&image, DiskFormat::Qcow2).expect_err("a truncated qcow2 is refused");
    let message = err.to_string();
    assert!(matches!(err, Error::QemuNbd { .. }), "{err:?}");
    assert!(
        message.contains("qemu-nbd could not serve") && message.contains("disk.qcow2"),
        "{message}"
    );
    // qemu-nbd's exit and its own reason (its stderr, "qemu-nbd: ...") are passed on.
    assert!(message.contains("exited"), "{message}");
    assert!(message.contains("qemu-nbd: "), "{message}");
    assert!(servers_of(&image).is_empty(), "a qemu-nbd is left running");
    // The image is left as it was given (nothing is written to it).
    assert_eq!(std::fs::metadata(&image).expect("stat").len(), 32);
    assert_eq!(&std::fs::read(&image).expect("read")[..], &before[..32]);
}

#[test]
fn a_missing_image_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err =
        QemuNbd::start(&dir.path().join("gone.qcow2"), DiskFormat::Qcow2).expect_err("no image");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("gone.qcow2"), "{err}");
}
