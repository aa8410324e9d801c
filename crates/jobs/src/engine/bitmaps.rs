//! QEMU persistent dirty bitmaps as a Snapshot's changed blocks, for qcow2 disks no QEMU has
//! open (a stopped VM, or one its pre-hook stops), read directly or from their reflink clones.
//!
//! ```text
//! capture (in the freeze)  add blockvault-<new point> to each qcow2 disk (right after the
//!                          clones; before the read under the hook), and remove any other
//!                          blockvault bitmap but the parent's (left by a killed backup, or
//!                          by a commit that found the disk open)
//! read                     qemu-img info of what is read (the disk: the one the add read;
//!                          its clone: a clone carries the bitmaps as they were at the
//!                          clone, so read again) -> trust the
//!                          parent's bitmap (name, flags, granularity, size) ->
//!                          qemu-nbd -B blockvault-<parent> -> its dirty extents are the hint;
//!                          distrusted: qemu-nbd alone, a full scan with the Distrust as reason
//! point committed          remove the other blockvault bitmaps the add found (the parent's,
//!                          and what it could not remove); a failure is a job warning
//! Snapshot failed          remove blockvault-<new>: the parent's bitmap still covers every
//!                          write since the parent, so the next backup uses it
//! ```
//!
//! The new bitmap is added before anything of the disk is read and while its writer is
//! frozen, so every write after the point's instant is in it. The commit (or the removal
//! after a failure) runs before the post-hook when the disks are read under the hook, so a
//! VM its pre-hook stops is still stopped; after clones the post-hook has run, and a VM it
//! started again holds its disk: the parent's bitmap then stays until the next capture
//! removes it. Only the parent's bitmap is ever trusted, so a stale one costs nothing but its
//! space. A blockvault killed between the add and the commit leaves both bitmaps: the next
//! backup trusts the parent's (the newest point) and removes the orphan. A bitmap that cannot
//! be added (a qcow2 too old for bitmaps) is a warning: the next backup of that disk scans it
//! in full. A disk a QEMU has open cannot get a bitmap here: read directly (qemu-nbd could not
//! open it either) the job fails, saying to back the VM up through its QMP socket; cloned, it
//! is a warning and the next backup of the disk scans it in full.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{DiskFormat, PointId, RecoveryPoint};
use blockvault_qemu::{
    ImageInfo, QemuNbd, add_bitmap, bitmap_name, no_bitmaps, point_of, remove_bitmap, trust,
};
use blockvault_source::ChangeHint;

use super::disk_format::FormatCheck;

use crate::Result;

/// Runs blocking `f` off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// The format of `image` (the disk, or its clone) as `check` decides it, when it must be read
/// through QEMU; `None` for a raw image (see `disk_format.rs`).
pub(super) async fn qemu_format(image: &Path, check: FormatCheck) -> Result<Option<DiskFormat>> {
    let image = image.to_owned();
    blocking(move || Ok(Some(check.decide(&image)?).filter(|f| f.needs_qemu()))).await
}

/// The bitmaps a Snapshot added (`blockvault-<new point>`, one per qcow2 disk): removed again
/// unless the point is committed ([`NewBitmaps::commit`]); dropped uncommitted (a job
/// cancelled mid-capture), they are removed synchronously.
#[derive(Debug)]
pub(super) struct NewBitmaps {
    point: PointId,
    /// The parent point, whose bitmap the capture keeps.
    parent: Option<PointId>,
    /// The disks (not their clones) that have the new bitmap.
    images: Vec<PathBuf>,
    /// Per disk of `images`, its other blockvault bitmaps once the add removed what it
    /// could: the parent's, and any a removal refused. The commit removes these (no second
    /// `qemu-img info`: only blockvault adds `blockvault-*` bitmaps, under the VM's lock).
    others: Vec<Vec<String>>,
}

impl NewBitmaps {
    pub(super) fn new(point: PointId, parent: Option<PointId>) -> NewBitmaps {
        NewBitmaps {
            point,
            parent,
            images: Vec::new(),
            others: Vec::new(),
        }
    }

    /// Adds the new point's bitmap to the qcow2 disk `image`.
    ///
    /// A failure is for the caller to weigh ([`NewBitmaps::not_added`] says it as a warning):
    /// a disk a QEMU has open ([`blockvault_qemu::Error::ImageLocked`]) cannot be read
    /// without its QEMU either, unless it was cloned; anything else (a qcow2 too old for
    /// bitmaps) only costs the next backup of the disk a full scan.
    ///
    /// Once it is added, every other blockvault bitmap of the disk but the parent's goes; what
    /// cannot be removed is returned as warnings, with the image's info as read after the add
    /// (for [`serve`] of the disk itself: its bitmaps are the ones the read will see).
    ///
    /// An image that cannot hold bitmaps at all (another format than qcow2, a compat 0.10
    /// qcow2) gets none and no warning: [`serve`] gives the reason, once, on the job.
    pub(super) async fn add(
        &mut self,
        image: &Path,
        format: DiskFormat,
    ) -> Result<(Vec<String>, Option<ImageInfo>), blockvault_qemu::Error> {
        let path = image.to_owned();
        if blocking(move || no_bitmaps(&path, format)).await.is_some() {
            return Ok((Vec::new(), None));
        }
        let (path, name) = (image.to_owned(), bitmap_name(&self.point));
        blocking(move || add_bitmap(&path, &name)).await?;
        let keep: Vec<String> = [Some(&self.point), self.parent.as_ref()]
            .into_iter()
            .flatten()
            .map(bitmap_name)
            .collect();
        let path = image.to_owned();
        let (warnings, info, others) = blocking(move || {
            let info = match ImageInfo::read(&path) {
                Ok(info) => info,
                Err(e) => {
                    let warning = format!(
                        "could not list the dirty bitmaps of disk {} to remove the old ones: {e}",
                        path.display()
                    );
                    // The parent's is all the commit can be sure to find.
                    let others = keep.into_iter().skip(1).collect();
                    return (vec![warning], None, others);
                }
            };
            let (warnings, others) = remove_others(&path, &info, &keep);
            (warnings, Some(info), others)
        })
        .await;
        self.images.push(image.to_owned());
        self.others.push(others);
        Ok((warnings, info))
    }

    /// The warning of a bitmap [`NewBitmaps::add`] could not add to `image`.
    pub(super) fn not_added(&self, image: &Path, e: &blockvault_qemu::Error) -> String {
        format!(
            "could not add dirty bitmap {} to disk {}: {e}; its next backup scans it in full",
            bitmap_name(&self.point),
            image.display()
        )
    }

    /// Settles the bitmaps once the point is `committed` ([`NewBitmaps::commit`]) or not
    /// ([`NewBitmaps::abandon`]); the warnings of what could not be removed.
    pub(super) async fn settle(self, committed: bool) -> Vec<String> {
        if committed {
            self.commit().await
        } else {
            self.abandon().await
        }
    }

    /// The point is committed: every other blockvault bitmap of each disk goes (the parent's,
    /// and any a killed backup left). Returns the warnings of what could not be removed.
    async fn commit(mut self) -> Vec<String> {
        let images = std::mem::take(&mut self.images);
        let others = std::mem::take(&mut self.others);
        blocking(move || {
            images
                .iter()
                .zip(&others)
                .flat_map(|(image, names)| names.iter().filter_map(|name| remove_old(image, name)))
                .collect()
        })
        .await
    }

    /// The Snapshot failed: the new bitmap goes from each disk (the parent's stays, and still
    /// covers every write since the parent). Returns the warnings of what could not be removed.
    async fn abandon(mut self) -> Vec<String> {
        let (images, point) = (std::mem::take(&mut self.images), self.point.clone());
        blocking(move || remove_new(&images, &point)).await
    }
}

impl Drop for NewBitmaps {
    fn drop(&mut self) {
        // Uncommitted and not abandoned: the job's future was dropped mid-way.
        let _ = remove_new(&self.images, &self.point);
    }
}

/// Removes every blockvault bitmap `info` lists for `image` but those named in `keep`.
/// Returns the warnings of what could not be removed, and the blockvault bitmaps left besides
/// the first of `keep` (the new one): the others of `keep`, and what could not be removed.
fn remove_others(image: &Path, info: &ImageInfo, keep: &[String]) -> (Vec<String>, Vec<String>) {
    let mut left: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    for bitmap in info.bitmaps.iter().filter(|b| point_of(&b.name).is_some()) {
        if keep.contains(&bitmap.name) {
            if keep.first() != Some(&bitmap.name) {
                left.push(bitmap.name.clone());
            }
        } else if let Some(warning) = remove_old(image, &bitmap.name) {
            warnings.push(warning);
            left.push(bitmap.name.clone());
        }
    }
    (warnings, left)
}

/// Removes the old blockvault bitmap `name` from `image`; the warning when it cannot.
fn remove_old(image: &Path, name: &str) -> Option<String> {
    remove_bitmap(image, name).err().map(|e| {
        format!(
            "could not remove the old dirty bitmap {name} from disk {} (the next backup \
             removes it): {e}",
            image.display()
        )
    })
}

fn remove_new(images: &[PathBuf], point: &PointId) -> Vec<String> {
    let name = bitmap_name(point);
    images
        .iter()
        .filter_map(|image| {
            remove_bitmap(image, &name).err().map(|e| {
                format!(
                    "could not remove dirty bitmap {name} of the failed snapshot from disk {}: \
                     {e}; the next backup still trusts the parent's",
                    image.display()
                )
            })
        })
        .collect()
}

/// A disk read through QEMU, with the change hint its parent's bitmap gave.
pub(super) struct Served {
    pub(super) server: Arc<QemuNbd>,
    pub(super) hint: ChangeHint,
    /// Why there is no hint (the disk is scanned in full).
    pub(super) reason: Option<String>,
}

/// Serves `image` (the disk `home` in `format`, or its clone: read with `home`'s backing
/// chain) through `qemu-nbd`, exporting the bitmap of `parent` when it is trusted for the disk
/// `disk` (as the parent recorded it), whose dirty extents are then the hint; otherwise no
/// hint, and the reason. `info` is the image's info when the caller has just read it
/// ([`NewBitmaps::add`]); `None` reads it.
pub(super) async fn serve(
    image: &Path,
    home: &Path,
    format: DiskFormat,
    disk: &blockvault_core::DiskName,
    parent: Option<&RecoveryPoint>,
    info: Option<ImageInfo>,
) -> Result<Served> {
    let (image, home) = (image.to_owned(), home.to_owned());
    let parent = parent.map(|p| (p.id.clone(), p.disks.iter().find(|d| d.name == *disk)));
    let parent = parent.map(|(id, d)| (id, d.map(|d| d.size)));
    let disk = disk.clone();
    let served = blocking(move || {
        let plain = |reason: String| {
            QemuNbd::start_from(&image, &home, format, None).map(|server| Served {
                server: Arc::new(server),
                hint: ChangeHint::Everything,
                reason: Some(reason),
            })
        };
        if let Some(reason) = no_bitmaps(&image, format) {
            return plain(reason);
        }
        let (parent, size_then) = match parent {
            None => {
                return plain(
                    "no earlier snapshot of this VM on this host to compare with".to_owned(),
                );
            }
            Some((parent, None)) => {
                return plain(format!(
                    "the parent point {parent} has no disk {disk} (a new disk)"
                ));
            }
            Some((parent, Some(size))) => (parent, size),
        };
        let info = match info.map_or_else(|| ImageInfo::read(&image), Ok) {
            Ok(info) => info,
            Err(e) => return plain(format!("its dirty bitmaps could not be read: {e}")),
        };
        let name = match trust(&info.bitmaps, &parent, size_then, info.virtual_size) {
            Ok(bitmap) => bitmap.name.clone(),
            Err(distrust) => return plain(distrust.to_string()),
        };
        let served = QemuNbd::start_from(&image, &home, format, Some(&name)).and_then(|server| {
            let dirty = server.dirty_extents()?;
            Ok((server, dirty))
        });
        match served {
            Ok((server, dirty)) => Ok(Served {
                server: Arc::new(server),
                hint: ChangeHint::Dirty(dirty),
                reason: None,
            }),
            // qemu-nbd or the export refused the bitmap it was trusted: no hint, its words.
            Err(e) => plain(format!("dirty bitmap {name} could not be read: {e}")),
        }
    })
    .await;
    Ok(served?)
}
