//! A point of a qcow2 disk restores to a qcow2 file by default (sparse, through `qemu-img
//! convert`, equal to the image by `qemu-img compare`), and to raw when asked; from the
//! snapshot tier's kept qcow2 clone by clone (on loop-mounted XFS). In place onto a qcow2 image
//! stays refused, saying how to restore it as a new qcow2 file.
//!
//! These tests need `qemu-nbd`, `qemu-img` and `qemu-io`; without them they fail, saying so.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{BlockSize, DiskFormat, RecoveryPoint, VmName};
use blockvault_jobs::{BackupSpec, CaptureMode, Engine, RestoreMethod, RestoreOutcome, Tier};
use blockvault_qemu::testing::{as_raw, qemu_io, require, run};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest, TransferOptions, Vault};

const MIB: u64 = 1 << 20;

/// Whether `qemu-img compare` finds the guest's disks of two images identical.
fn same_disk(a: &Path, a_format: &str, b: &Path) -> bool {
    let out = Command::new("qemu-img")
        .args(["compare", "-f", a_format, "-F", "qcow2"])
        .arg(a)
        .arg(b)
        .output()
        .expect("qemu-img compare");
    out.status.success()
}

fn magic(path: &Path) -> [u8; 4] {
    let bytes = std::fs::read(path).expect("read");
    bytes[..4].try_into().expect("4 bytes")
}

fn vm() -> VmName {
    VmName::new("vm1").expect("vm")
}

/// Names in `dir` that start with a dot: the restore's temporary files.
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

struct World {
    engine: Engine,
    vault: Vault,
    image: PathBuf,
    spec: BackupSpec,
}

impl World {
    async fn new(root: &Path, mode: CaptureMode) -> World {
        for tool in ["qemu-img", "qemu-io", "qemu-nbd"] {
            require(tool);
        }
        let (engine, _) = Engine::open(root.join("state"), Some(root.join("snapshots")))
            .await
            .expect("engine");
        let vault = Vault::init_local(root.join("vault")).await.expect("vault");
        let image = root.join("disk.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&image)
            .arg("64M"));
        qemu_io(&image, &["write -P 0x55 0 1M", "write -P 0x33 40M 64k"]);
        let mut spec = BackupSpec::new(vm(), vec![image.clone()]);
        spec.block_size = Some(BlockSize::new(64 << 10).expect("bs"));
        spec.capture.mode = mode;
        World {
            engine,
            vault,
            image,
            spec,
        }
    }

    async fn backup(&self) -> RecoveryPoint {
        let outcome = self
            .engine
            .backup(Ok(&self.vault), &self.spec, Arc::new(NoProgress))
            .await
            .expect("backup job");
        outcome
            .point
            .clone()
            .unwrap_or_else(|| panic!("no point: {outcome:?}"))
    }

    async fn restore(
        &self,
        point: &RecoveryPoint,
        out: &Path,
        from: Option<Tier>,
        format: Option<DiskFormat>,
    ) -> blockvault_jobs::Result<RestoreOutcome> {
        let request = RestoreRequest {
            vm: vm(),
            point: PointSelector::Id(point.id.to_string()),
            target: out.to_owned(),
            overwrite: false,
            in_place: false,
            known_content: Default::default(),
            options: TransferOptions::default(),
        };
        self.engine
            .restore_as(
                Some(&self.vault),
                &request,
                from,
                format,
                Arc::new(NoProgress),
            )
            .await
    }
}

#[tokio::test]
async fn a_qcow2_point_restores_to_a_sparse_qcow2_file_by_default_and_to_raw_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let w = World::new(root, CaptureMode::Read).await;
    let first = w.backup().await;
    let first_image = root.join("first.qcow2");
    std::fs::copy(&w.image, &first_image).expect("copy the image");
    qemu_io(
        &w.image,
        &[
            "write -P 0x77 512k 64k",
            "write -P 0x11 12M 128k",
            "write -z 40M 64k",
        ],
    );
    let second = w.backup().await;
    assert_eq!(second.parent.as_ref(), Some(&first.id));
    assert_eq!(second.disks[0].format, DiskFormat::Qcow2);

    for (point, image, tier) in [
        (&second, &w.image, Tier::Vault),
        (&first, &first_image, Tier::Vault),
        (&second, &w.image, Tier::Snapshot),
    ] {
        let out = root.join(format!("q-{}-{tier}", point.id));
        let outcome = w
            .restore(point, &out, Some(tier), None)
            .await
            .expect("restore");
        let restored = out.join("disk.qcow2");
        assert_eq!(outcome.restored_by[0].format, DiskFormat::Qcow2);
        assert_eq!(outcome.report.disks[0].path, restored);
        assert_eq!(magic(&restored), *b"QFI\xfb", "not a qcow2 file");
        assert!(
            same_disk(&restored, "qcow2", image),
            "the restored qcow2 differs from the image (point {}, {tier})",
            point.id
        );
        // Sparse: a 64 MiB disk with about 1.2 MiB of data.
        let allocated = std::fs::metadata(&restored).expect("stat").blocks() * 512;
        assert!(allocated < 8 * MIB, "{allocated} bytes allocated");
        assert!(hidden(&out).is_empty(), "left behind: {:?}", hidden(&out));
    }

    let out = root.join("raw");
    let outcome = w
        .restore(&second, &out, None, Some(DiskFormat::Raw))
        .await
        .expect("restore raw");
    assert_eq!(outcome.restored_by[0].format, DiskFormat::Raw);
    let expected = as_raw(&w.image, &root.join("expected.raw"));
    assert!(
        std::fs::read(out.join("disk.qcow2")).expect("restored") == expected,
        "the raw restore differs from qemu-img convert"
    );
    assert!(hidden(&out).is_empty(), "left behind: {:?}", hidden(&out));

    // An existing file is not replaced: refused before anything is written.
    let before = std::fs::read(out.join("disk.qcow2")).expect("restored");
    let refused = w
        .restore(&second, &out, None, None)
        .await
        .expect_err("the target exists");
    assert!(refused.to_string().contains("exists"), "{refused}");
    assert!(std::fs::read(out.join("disk.qcow2")).expect("restored") == before);
    assert!(hidden(&out).is_empty(), "left behind: {:?}", hidden(&out));

    // A raw disk's point asked for as qcow2: the same guest's disk, as a qcow2 file.
    let out = root.join("as-qcow2");
    let restored = w
        .restore(&second, &out, None, Some(DiskFormat::Qcow2))
        .await
        .expect("restore qcow2");
    assert_eq!(restored.restored_by[0].format, DiskFormat::Qcow2);
    assert!(same_disk(&out.join("disk.qcow2"), "qcow2", &w.image));
}

#[tokio::test]
async fn in_place_onto_a_qcow2_image_is_refused_saying_how_to_restore_it_as_qcow2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let w = World::new(root, CaptureMode::Read).await;
    let point = w.backup().await;
    qemu_io(&w.image, &["write -P 0x99 0 64k"]);
    let before = std::fs::read(&w.image).expect("image");
    let request = RestoreRequest {
        vm: vm(),
        point: PointSelector::Id(point.id.to_string()),
        target: root.to_owned(),
        overwrite: false,
        in_place: true,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    for format in [None, Some(DiskFormat::Qcow2)] {
        let refused = w
            .engine
            .restore_as(Some(&w.vault), &request, None, format, Arc::new(NoProgress))
            .await
            .expect_err("in place onto qcow2");
        let text = refused.to_string();
        assert!(text.contains("qcow2"), "{text}");
        assert!(text.contains("new"), "no way out said: {text}");
        assert!(std::fs::read(&w.image).expect("image") == before);
    }
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_qcow2_point_restores_from_its_kept_clone_by_clone() {
    let fs = LoopFs::new(LoopKind::Xfs, 512 * MIB);
    let root = fs.path();
    let w = World::new(root, CaptureMode::Reflink).await;
    // A bitmap of the guest's (as a VM's own backups keep): a clone keeps it too.
    run(Command::new("qemu-img")
        .args(["bitmap", "--add"])
        .arg(&w.image)
        .arg("guest-bitmap"));
    let first = w.backup().await;
    let then = root.join("then.qcow2");
    std::fs::copy(&w.image, &then).expect("copy the image");
    qemu_io(&w.image, &["write -P 0x42 0 2M"]);
    let _second = w.backup().await;

    let out = root.join("cloned");
    let outcome = w
        .restore(&first, &out, Some(Tier::Snapshot), None)
        .await
        .expect("restore by clone");
    assert_eq!(
        outcome.restored_by[0].method,
        RestoreMethod::Clone,
        "{outcome:?}"
    );
    assert_eq!(outcome.restored_by[0].format, DiskFormat::Qcow2);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert!(
        same_disk(&out.join("disk.qcow2"), "qcow2", &then),
        "the cloned qcow2 differs from the image as it was"
    );
    let info = run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(out.join("disk.qcow2")));
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("guest-bitmap"), "the bitmap was lost: {info}");
    assert!(hidden(&out).is_empty(), "left behind: {:?}", hidden(&out));

    // As raw, the qcow2 clone is not the disk: the tier's chunks, raw.
    let out = root.join("raw");
    let outcome = w
        .restore(&first, &out, Some(Tier::Snapshot), Some(DiskFormat::Raw))
        .await
        .expect("restore raw");
    assert_eq!(outcome.restored_by[0].method, RestoreMethod::Chunks);
    assert_eq!(outcome.restored_by[0].format, DiskFormat::Raw);
    let expected = as_raw(&then, &root.join("then.raw"));
    assert!(std::fs::read(out.join("disk.qcow2")).expect("restored") == expected);
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.ext4: scripts/test.sh runs it"]
async fn a_conversion_that_fails_for_want_of_space_leaves_nothing_in_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let w = World::new(root, CaptureMode::Read).await;
    qemu_io(&w.image, &["write -P 0x11 2M 8M"]);
    let point = w.backup().await;
    // Room for the staged raw disk (~9 MiB of data), not for it and its qcow2 as well.
    let fs = LoopFs::new(LoopKind::Ext4, 14 * MIB);
    let out = fs.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let free = || free_bytes(fs.path());
    let before = free();
    let failed = w
        .restore(&point, &out, Some(Tier::Vault), None)
        .await
        .expect_err("no space for the qcow2");
    let text = failed.to_string();
    assert!(text.contains("qemu-img"), "{text}");
    assert!(
        std::fs::read_dir(&out).expect("list").next().is_none(),
        "left in the target: {:?}",
        std::fs::read_dir(&out)
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
    assert!(free() + MIB >= before, "space not given back");
    // As raw, it fits.
    let restored = w
        .restore(&point, &out, Some(Tier::Vault), Some(DiskFormat::Raw))
        .await
        .expect("raw fits");
    assert_eq!(restored.restored_by[0].format, DiskFormat::Raw);
}

/// Free bytes of the file system at `path`.
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df figure")
}

/// A VM with a raw disk and a qcow2 disk: each restores in its own format, by clone where
/// the tier kept clones, and `--format qcow2` makes both qcow2.
async fn mixed_disks(root: &Path, mode: CaptureMode, method: RestoreMethod) {
    let mut w = World::new(root, mode).await;
    let raw = root.join("data.img");
    let file = std::fs::File::create(&raw).expect("create");
    file.set_len(8 * MIB).expect("size");
    std::os::unix::fs::FileExt::write_all_at(&file, &[0xab; 300 << 10], MIB).expect("write");
    file.sync_all().expect("sync");
    w.spec.disks.push(raw.clone());
    let point = w.backup().await;
    assert_eq!(point.disks[0].format, DiskFormat::Qcow2);
    assert_eq!(point.disks[1].format, DiskFormat::Raw);

    let out = root.join("mixed");
    let outcome = w
        .restore(&point, &out, Some(Tier::Snapshot), None)
        .await
        .expect("restore");
    let how: Vec<_> = outcome
        .restored_by
        .iter()
        .map(|h| (h.name.to_string(), h.format, h.method))
        .collect();
    assert_eq!(
        how,
        vec![
            ("disk.qcow2".to_owned(), DiskFormat::Qcow2, method),
            ("data.img".to_owned(), DiskFormat::Raw, method),
        ]
    );
    assert!(same_disk(&out.join("disk.qcow2"), "qcow2", &w.image));
    assert!(std::fs::read(out.join("data.img")).expect("raw") == std::fs::read(&raw).expect("raw"));
    assert!(hidden(&out).is_empty(), "left behind: {:?}", hidden(&out));

    let out = root.join("all-qcow2");
    let outcome = w
        .restore(&point, &out, Some(Tier::Snapshot), Some(DiskFormat::Qcow2))
        .await
        .expect("restore as qcow2");
    assert!(
        outcome
            .restored_by
            .iter()
            .all(|h| h.format == DiskFormat::Qcow2)
    );
    assert!(same_disk(&out.join("disk.qcow2"), "qcow2", &w.image));
    assert!(same_disk(&raw, "raw", &out.join("data.img")));
    assert!(hidden(&out).is_empty(), "left behind: {:?}", hidden(&out));
}

#[tokio::test]
async fn a_raw_and_a_qcow2_disk_each_restore_in_their_own_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    mixed_disks(dir.path(), CaptureMode::Read, RestoreMethod::Chunks).await;
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs: scripts/test.sh runs it"]
async fn a_raw_and_a_qcow2_disk_each_restore_by_clone_in_their_own_format() {
    let fs = LoopFs::new(LoopKind::Xfs, 512 * MIB);
    mixed_disks(fs.path(), CaptureMode::Reflink, RestoreMethod::Clone).await;
}
