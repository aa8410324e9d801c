//! Restore: a point's disks written into image files, new ones (renamed into place once all
//! are complete, `new.rs`) or the existing disks in place (`in_place.rs`), both through the
//! [`PointReader`](crate::PointReader)'s verified block path (`blocks.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockvault_core::{BlockMap, DiskName, RecoveryPoint, VmName};
use blockvault_store::Repairs;

use crate::{PointSelector, Progress, Repository, Result, TransferOptions};

mod blocks;
mod image;
mod in_place;
mod new;

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
    /// point (see [`Repository::restore`]).
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

impl Repository {
    /// Restores the point `request.point` of `request.vm` into `request.target`.
    ///
    /// Into new files (the default): every disk is written to a hidden partial file first:
    /// created sparse at the disk's size, then each non-zero block is fetched, decoded and
    /// verified against its id on the rayon pool, and written at its offset (all-zero 4 KiB
    /// pages inside a block are skipped, so the image stays as sparse as the original). Only
    /// when every disk is complete and synced are the partial files renamed to the disk names.
    /// On any failure the partial files are removed and existing files are untouched.
    ///
    /// In place (`request.in_place`): every disk of the point must already exist in
    /// `request.target` as a regular file, and all are checked and opened before any is
    /// touched. Each is then set to the point's size, read and hashed like a backup reads it
    /// (holes skipped), and only the blocks whose content differs from the point are fetched,
    /// verified and written straight into the disk; a block that is zero in the point but holds
    /// data on disk is punched back to a hole. The cost is one read of the disk plus the churn,
    /// not the disk size.
    ///
    /// # Crash semantics in place
    ///
    /// There is no partial file to throw away: a restore that fails or is killed leaves each
    /// disk a mix of old and restored blocks (and possibly already at the point's size). Running
    /// the same restore again finishes the job: it is idempotent, blocks already right are
    /// neither fetched nor rewritten. Do not start the VM on a disk whose in-place restore did
    /// not complete.
    pub async fn restore(
        &self,
        request: &RestoreRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let repaired_before = self.store().repairs();
        let point = self.resolve(&request.vm, &request.point).await?;
        let (point, disks) = if request.in_place {
            let targets = in_place::open_targets(&point, &request.target)?;
            let reader = self.reader(point).await?;
            let disks = in_place::restore_in_place(&reader, targets, request, &progress).await?;
            (reader.into_parts().0, disks)
        } else {
            for disk in &point.disks {
                new::check_target(&request.target.join(disk.name.as_str()), request.overwrite)?;
            }
            let reader = self.reader(point).await?;
            let disks = new::restore_new(&reader, request, &progress).await?;
            (reader.into_parts().0, disks)
        };
        Ok(RestoreReport {
            point,
            disks,
            elapsed: started.elapsed(),
            repairs: self.store().repairs().since(&repaired_before),
        })
    }
}
