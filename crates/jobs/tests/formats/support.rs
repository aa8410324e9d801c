//! A world (engine, local vault, one disk) and the QEMU checks the format tests share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use blockvault_core::{BlockSize, DiskFormat, RecoveryPoint, VmName};
use blockvault_jobs::{
    BackupOutcome, BackupSpec, CaptureMode, CaptureRecord, Engine, RestoreOutcome, SubtaskKind,
    Tier,
};
use blockvault_qemu::testing::{require, run};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest, TransferOptions, Vault};

pub const BLOCK: u64 = 64 << 10;

pub fn vm() -> VmName {
    VmName::new("vm1").expect("vm")
}

pub fn require_qemu() {
    for tool in ["qemu-img", "qemu-io", "qemu-nbd"] {
        require(tool);
    }
}

/// `qemu-img ARGS`, which must succeed.
pub fn qemu_img(args: &[&str]) {
    run(Command::new("qemu-img").args(args));
}

/// Writes to `image` (in `format`) as a guest would: one `qemu-io` run of `commands`.
pub fn write(image: &Path, format: &str, commands: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", format]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    run(cmd.arg(image));
}

/// The guest's disk of `image` (in `format`), as `qemu-img convert -O raw` makes it.
pub fn guest(image: &Path, format: &str, out: &Path) -> Vec<u8> {
    run(Command::new("qemu-img")
        .args(["convert", "-f", format, "-O", "raw"])
        .arg(image)
        .arg(out));
    std::fs::read(out).expect("read the converted image")
}

/// Whether `qemu-img compare` finds the guest's disks identical, of the same size.
pub fn same_disk(a: &Path, a_format: &str, b: &Path, b_format: &str) -> bool {
    let (a_size, b_size) = (size(a, a_format), size(b, b_format));
    if a_size != b_size {
        eprintln!(
            "{} is {a_size} bytes, {} {b_size}",
            a.display(),
            b.display()
        );
        return false;
    }
    let out = Command::new("qemu-img")
        .args(["compare", "-f", a_format, "-F", b_format])
        .arg(a)
        .arg(b)
        .output()
        .expect("qemu-img compare");
    if !out.status.success() {
        eprintln!(
            "qemu-img compare {}: {}{}",
            a.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// The guest's size of `image` read as `format`, as qemu-img says.
pub fn size(image: &Path, format: &str) -> u64 {
    let format: DiskFormat = format.parse().expect("format");
    blockvault_qemu::ImageInfo::read_as(image, Some(format))
        .expect("qemu-img info")
        .virtual_size
}

/// The qemu-nbd processes with `root` anywhere in their arguments (a path, or in
/// `--image-opts`).
pub fn servers_under(root: &Path) -> usize {
    let root = root.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .expect("list /proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"qemu-nbd"))
                && args
                    .iter()
                    .any(|a| a.windows(root.len()).any(|w| w == root))
        })
        .count()
}

pub struct World {
    /// The temporary directory or loop-mounted file system everything is in.
    pub _guard: Box<dyn std::any::Any>,
    pub root: PathBuf,
    pub engine: Engine,
    pub vault: Vault,
    pub spec: BackupSpec,
}

impl World {
    /// A world in a fresh temporary directory; the disk is added by the test.
    pub async fn temp() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        World::in_root(Box::new(dir), root, CaptureMode::Read).await
    }

    /// A world in `root` (kept alive by `guard`), captured as `mode` says, 64 KiB blocks.
    pub async fn in_root(guard: Box<dyn std::any::Any>, root: PathBuf, mode: CaptureMode) -> World {
        require_qemu();
        let (engine, _) = Engine::open(root.join("state"), Some(root.join("snapshots")))
            .await
            .expect("engine");
        let vault = Vault::init_local(root.join("vault")).await.expect("vault");
        let mut spec = BackupSpec::new(vm(), Vec::new());
        spec.block_size = Some(BlockSize::new(BLOCK).expect("bs"));
        spec.capture.mode = mode;
        World {
            _guard: guard,
            root,
            engine,
            vault,
            spec,
        }
    }

    pub async fn backup(&self) -> BackupOutcome {
        self.engine
            .backup(Ok(&self.vault), &self.spec, Arc::new(NoProgress))
            .await
            .expect("backup job")
    }

    /// A backup that must make a point: the point, its capture record and the warnings.
    pub async fn point(&self) -> (RecoveryPoint, CaptureRecord, Vec<String>) {
        let outcome = self.backup().await;
        let point = outcome
            .point
            .clone()
            .unwrap_or_else(|| panic!("no point: {outcome:?}"));
        (point, record(&outcome), outcome.warnings)
    }

    /// `point` restored from `tier` into the new directory `out`, in `format` (`None`: as
    /// recorded).
    pub async fn restore(
        &self,
        point: &RecoveryPoint,
        out: &Path,
        tier: Tier,
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
                Some(tier),
                format,
                Arc::new(NoProgress),
            )
            .await
    }

    /// `point`'s first disk restored from the vault as raw bytes.
    pub async fn restored_raw(&self, point: &RecoveryPoint, name: &str) -> Vec<u8> {
        let out = self.root.join(name);
        self.restore(point, &out, Tier::Vault, Some(DiskFormat::Raw))
            .await
            .expect("restore raw");
        std::fs::read(out.join(point.disks[0].name.as_str())).expect("restored disk")
    }

    /// An in-place restore of `point` over the disks in `dir`: must be refused, the images
    /// untouched; the refusal's words.
    pub async fn refused_in_place(&self, point: &RecoveryPoint, dir: &Path) -> String {
        let images: Vec<Vec<u8>> = self
            .spec
            .disks
            .iter()
            .map(|d| std::fs::read(d).expect("image"))
            .collect();
        let request = RestoreRequest {
            vm: vm(),
            point: PointSelector::Id(point.id.to_string()),
            target: dir.to_owned(),
            overwrite: false,
            in_place: true,
            known_content: Default::default(),
            options: TransferOptions::default(),
        };
        let refused = self
            .engine
            .restore(Some(&self.vault), &request, None, Arc::new(NoProgress))
            .await
            .expect_err("in place onto an image that is not raw");
        for (disk, before) in self.spec.disks.iter().zip(images) {
            assert!(
                std::fs::read(disk).expect("image") == before,
                "the in-place restore wrote {}",
                disk.display()
            );
        }
        refused.to_string()
    }
}

pub fn record(outcome: &BackupOutcome) -> CaptureRecord {
    outcome
        .job
        .subtask(SubtaskKind::Snapshot)
        .and_then(|s| s.capture.clone())
        .unwrap_or_else(|| panic!("no capture recorded: {outcome:?}"))
}

/// The names of `image`'s dirty bitmaps.
pub fn bitmaps(image: &Path) -> Vec<String> {
    blockvault_qemu::ImageInfo::read(image)
        .expect("qemu-img info")
        .bitmaps
        .into_iter()
        .map(|b| b.name)
        .collect()
}
