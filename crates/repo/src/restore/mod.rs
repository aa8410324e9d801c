//! Restore: a point's disks written into image files, new ones (renamed into place once all
//! are complete, `new.rs`) or the existing disks in place (`in_place.rs`), both through the
//! [`PointReader`](crate::PointReader)'s verified block path (`blocks.rs`).

use std::sync::Arc;
use std::time::Instant;

use crate::{Progress, Repository, Result};

mod blocks;
mod image;
mod in_place;
mod new;
mod request;

pub use request::{RestoreReport, RestoreRequest, RestoredDisk};

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
