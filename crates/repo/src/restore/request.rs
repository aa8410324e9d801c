//! What a restore is asked to do, and what it reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use blockvault_core::{BlockMap, DiskName, RecoveryPoint, VmName};
use blockvault_store::Repairs;

use crate::{PointSelector, TransferOptions};

/// Restore one point of a VM, into new image files or in place over the existing disks.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub vm: VmName,
    pub point: PointSelector,
    /// The directory the disks are in: each disk is the file named after the disk. A restore
    /// into new files creates the directory if missing; an in-place restore needs every disk's
    /// file to exist there.
    pub target: PathBuf,
    /// Replace existing files of the same names (they stay untouched until the new images are
    /// complete). Ignored in place: asking for an in-place restore is itself the consent to
    /// overwrite the disks.
    pub overwrite: bool,
    /// Restore over the existing disk images, writing only the blocks that differ from the
    /// point (see [`Repository::restore`](crate::Repository::restore)).
    pub in_place: bool,
    /// In place: the block maps the target disks are known to hold, by disk name (the caller
    /// vouches for them, for example because it wrote the disk and nothing wrote to it since).
    /// A disk found here is not scanned; the others are. Ignored unless in place.
    pub known_content: HashMap<DiskName, BlockMap>,
    pub options: TransferOptions,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub point: RecoveryPoint,
    pub disks: Vec<RestoredDisk>,
    pub elapsed: Duration,
    /// On a replicated vault: the objects read from the secondary because the primary's copy
    /// was missing or corrupt (and healed on the primary). Zero otherwise.
    pub repairs: Repairs,
}

/// One restored disk image.
#[derive(Clone, Debug)]
pub struct RestoredDisk {
    pub name: DiskName,
    pub path: PathBuf,
    pub size: u64,
    /// Bytes of block data written; the rest of the image is holes (new files) or was already
    /// right (in place).
    pub bytes_written: u64,
    /// Blocks in the disk.
    pub blocks: u64,
    /// Blocks written: into a new file, every non-zero block; in place, the blocks that differed
    /// from the point (rewritten, or punched back to a hole where the point has zeros).
    pub blocks_changed: u64,
    /// In place: bytes of the existing disk read and hashed to find the blocks that differ (0
    /// when its content was known, see [`RestoreRequest::known_content`]).
    pub bytes_scanned: u64,
}
