//! Which file system a path is on, and whether two paths share one.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{Error, Result};

/// The file systems capture knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    Xfs,
    Btrfs,
    Ext4,
    Tmpfs,
    /// Another one, by its `statfs` magic number.
    Other(u64),
}

impl FsKind {
    /// The file system `path` is on.
    pub fn of(path: &Path) -> Result<FsKind> {
        let stat = rustix::fs::statfs(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e.into(),
        })?;
        #[allow(clippy::unnecessary_cast)] // f_type's type differs between targets
        Ok(match stat.f_type as u64 {
            0x5846_5342 => FsKind::Xfs,
            0x9123_683e => FsKind::Btrfs,
            0xef53 => FsKind::Ext4,
            0x0102_1994 => FsKind::Tmpfs,
            other => FsKind::Other(other),
        })
    }

    /// Whether clones can exist here at all (a file system may still have them switched off,
    /// as XFS made without `-m reflink=1`: the clone itself says so).
    pub fn may_reflink(self) -> bool {
        matches!(self, FsKind::Xfs | FsKind::Btrfs)
    }
}

impl std::fmt::Display for FsKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsKind::Xfs => f.write_str("xfs"),
            FsKind::Btrfs => f.write_str("btrfs"),
            FsKind::Ext4 => f.write_str("ext4"),
            FsKind::Tmpfs => f.write_str("tmpfs"),
            FsKind::Other(magic) => write!(f, "file system 0x{magic:x}"),
        }
    }
}

/// Whether `a` and `b` (existing paths) are on the same file system (the same device).
pub fn same_fs(a: &Path, b: &Path) -> Result<bool> {
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| Error::io(p, e))
    };
    Ok(dev(a)? == dev(b)?)
}
