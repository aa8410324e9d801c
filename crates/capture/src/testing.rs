//! File systems with reflinks for tests: XFS (`mkfs.xfs -m reflink=1`) and btrfs, each made in
//! a sparse image file and loop-mounted on a temporary directory; unmounted and removed on drop.
//!
//! Needs root, a free loop device and `mkfs.xfs`/`mkfs.btrfs` (xfsprogs, btrfs-progs; the
//! project's `scripts/test.sh` installs them). Tests that use it are `#[ignore]`d with that
//! reason, and `scripts/test.sh` runs them (`--include-ignored`): there they fail, never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which file system to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopKind {
    Xfs,
    Btrfs,
    /// Without reflinks: the fallback path.
    Ext4,
}

/// A loop-mounted file system, for one test.
#[derive(Debug)]
pub struct LoopFs {
    kind: LoopKind,
    /// Holds the image file and the mount point.
    dir: tempfile::TempDir,
    mount: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// A fresh file system of `kind` in a sparse image of `size` bytes (at least 512 MiB for
    /// XFS), mounted. Panics with the command's output when it cannot be made: a test that
    /// asked for one cannot go on without it.
    pub fn new(kind: LoopKind, size: u64) -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix("blockvault-loopfs")
            .tempdir()
            .expect("temp dir for the loop file system");
        let image = dir.path().join("fs.img");
        let file = std::fs::File::create(&image).expect("create the file system image");
        file.set_len(size).expect("size the file system image");
        drop(file);
        let image_arg = image.to_string_lossy().into_owned();
        match kind {
            LoopKind::Xfs => run("mkfs.xfs", &["-q", "-f", "-m", "reflink=1", &image_arg]),
            LoopKind::Btrfs => run("mkfs.btrfs", &["-q", "-f", &image_arg]),
            LoopKind::Ext4 => run("mkfs.ext4", &["-q", "-F", &image_arg]),
        }
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        run(
            "mount",
            &["-o", "loop", &image_arg, &mount.to_string_lossy()],
        );
        LoopFs {
            kind,
            dir,
            mount,
            mounted: true,
        }
    }

    pub fn kind(&self) -> LoopKind {
        self.kind
    }

    /// The mounted file system's root.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// The image file that holds the file system.
    pub fn image(&self) -> PathBuf {
        self.dir.path().join("fs.img")
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazily: a test that failed may still hold a file open in it.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
            self.mounted = false;
        }
    }
}

/// Runs `program` with `args`, panicking with its output if it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (installed? scripts/test.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
