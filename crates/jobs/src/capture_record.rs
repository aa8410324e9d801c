//! What a Snapshot subtask records of its capture: how the instant was fixed, how long the VM
//! was frozen, and how each disk's changes were found. Shown by `jobs show`, in its `--json`
//! and in the daemon's log; kept in the catalog as one JSON column of the subtask.

use std::time::Duration;

use blockvault_core::Capture;
use serde::{Deserialize, Serialize};

/// How a Snapshot fixed the instant and read the disks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRecord {
    pub capture: Capture,
    /// The freeze window: from the end of the pre-hook to the start of the post-hook, in
    /// microseconds (what the VM's guest waited). `None` without hooks: nothing was frozen.
    pub freeze_us: Option<u64>,
    /// How long the reflink clones of all disks took, in microseconds (inside the freeze
    /// window when there are hooks); `None` when the disks were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_us: Option<u64>,
    /// Each disk, in the VM's order.
    pub disks: Vec<DiskCapture>,
}

impl CaptureRecord {
    pub fn freeze(&self) -> Option<Duration> {
        self.freeze_us.map(Duration::from_micros)
    }

    /// Bytes read and bytes allocated, over all disks.
    pub fn bytes_read(&self) -> (u64, u64) {
        self.disks.iter().fold((0, 0), |(read, allocated), d| {
            (read + d.bytes_read, allocated + d.bytes_allocated)
        })
    }
}

/// How one disk was captured and read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskCapture {
    pub disk: String,
    /// The disk's extents when it was cloned (what the clone cost); `None` when not cloned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extents: Option<u64>,
    /// Where the changes since the parent point came from.
    pub changes: ChangesFrom,
    /// Why the disk was scanned in full when its changes could have come from elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scan_reason: Option<String>,
    /// Bytes read and hashed.
    pub bytes_read: u64,
    /// Bytes of its allocated blocks: what a full scan reads.
    pub bytes_allocated: u64,
}

/// Where a disk's changes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangesFrom {
    /// Every allocated block read and hashed.
    FullScan,
    /// The extents of the parent's clone and the new clone compared (FIEMAP): only the
    /// ranges whose place on the device differs were read.
    FileSystem,
}

impl ChangesFrom {
    pub fn key(self) -> &'static str {
        match self {
            ChangesFrom::FullScan => "full-scan",
            ChangesFrom::FileSystem => "file-system",
        }
    }
}
