//! A restore into new files: every disk into a hidden partial file, renamed into place only
//! once all are complete.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::DiskName;

use super::blocks::{SyncKind, Written, data_blocks, sync, write_blocks};
use super::image::ImageFile;
use super::request::{RestoreRequest, RestoredDisk};
use crate::reader::PointReader;
use crate::{Error, Progress, Result};

/// The file a disk is restored into before it is complete and renamed into place.
fn partial_path(target: &Path, disk: &DiskName) -> PathBuf {
    target.join(format!(".{disk}.blockvault-partial"))
}

/// Refuses a restore target that exists, unless `overwrite`, and one that is not a file.
pub(super) fn check_target(path: &Path, overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
        Ok(meta) if !meta.is_file() => Err(Error::TargetNotAFile {
            path: path.to_owned(),
        }),
        Ok(_) if !overwrite => Err(Error::TargetExists {
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
    }
}

/// A restore into new files: partial files, renamed into place once all are complete.
pub(super) async fn restore_new(
    reader: &PointReader,
    request: &RestoreRequest,
    progress: &Arc<dyn Progress>,
) -> Result<Vec<RestoredDisk>> {
    let (point, maps) = (reader.point(), reader.maps());
    let target = &request.target;
    let total = maps
        .iter()
        .flat_map(data_blocks)
        .map(|b| b.len as u64)
        .sum();
    progress.begin("restore", total);
    std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;

    let mut partials = Vec::with_capacity(maps.len());
    let written = write_all_disks(reader, target, request, progress, &mut partials).await;
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            for partial in &partials {
                let _ = std::fs::remove_file(partial);
            }
            return Err(e);
        }
    };
    let mut disks = Vec::with_capacity(maps.len());
    for (n, ((disk, partial), written)) in
        point.disks.iter().zip(&partials).zip(written).enumerate()
    {
        let path = target.join(disk.name.as_str());
        if let Err(e) = std::fs::rename(partial, &path) {
            for rest in &partials[n..] {
                let _ = std::fs::remove_file(rest);
            }
            return Err(Error::io(&path, e));
        }
        disks.push(RestoredDisk {
            name: disk.name.clone(),
            path,
            size: disk.size,
            bytes_written: written.bytes,
            blocks: maps[n].len() as u64,
            blocks_changed: written.blocks,
            bytes_scanned: 0,
        });
    }
    sync_dir(target)?;
    Ok(disks)
}

/// Writes every disk of `point` to its partial file (pushed to `partials` as it is
/// created, so the caller can clean up); returns what was written per disk.
async fn write_all_disks(
    reader: &PointReader,
    target: &Path,
    request: &RestoreRequest,
    progress: &Arc<dyn Progress>,
    partials: &mut Vec<PathBuf>,
) -> Result<Vec<Written>> {
    let (point, maps) = (reader.point(), reader.maps());
    let mut written = Vec::with_capacity(maps.len());
    for (n, (disk, map)) in point.disks.iter().zip(maps).enumerate() {
        let partial = partial_path(target, &disk.name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, e))?;
        partials.push(partial.clone());
        file.set_len(map.disk_size())
            .map_err(|e| Error::io(&partial, e))?;
        let image = Arc::new(ImageFile::new(file, partial));
        let done = write_blocks(
            reader,
            n,
            data_blocks(map),
            &image,
            request.options.concurrency,
            progress,
        )
        .await?;
        sync(image, SyncKind::All).await?;
        written.push(done);
    }
    Ok(written)
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
