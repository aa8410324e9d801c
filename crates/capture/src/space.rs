//! The space a file really holds on a file system with reflinks: a clone shares its unchanged
//! extents with its source, so what it costs (and what deleting it frees) is only what no
//! other file shares.

use std::fs::File;
use std::path::Path;

use crate::{Error, ExtentFlags, Result, extents_of};

/// Bytes of the file at `path` in extents that no other file shares (FIEMAP extents without
/// the `SHARED` flag): what deleting it would free now. Holes cost nothing; preallocated
/// (unwritten) extents count, they hold space.
///
/// The count is the file system's view at the call: an extent shared by two clones is not
/// counted in either, and becomes the other's once one of them is deleted (on XFS, once the
/// deleted file's extents are released, in the background, moments later). btrfs shares (and
/// frees) whole extents: a clone's extent that its source overwrote only in part stays shared
/// while the source holds the rest of it, and deleting the clone frees none of it.
pub fn exclusive_bytes(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    exclusive_bytes_of(&file, path)
}

/// [`exclusive_bytes`] of an open file (`path` names it in errors).
pub fn exclusive_bytes_of(file: &File, path: &Path) -> Result<u64> {
    Ok(extents_of(file, path)?
        .iter()
        .filter(|e| !e.flags.contains(ExtentFlags::SHARED))
        .map(|e| e.len)
        .sum())
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::clone_file;
    use crate::testing::{LoopFs, LoopKind};

    const MIB: u64 = 1 << 20;

    fn write_at(path: &Path, offset: u64, len: u64, seed: u8) {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("open");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ seed).collect();
        file.write_all_at(&data, offset).expect("write");
        file.sync_all().expect("sync");
    }

    fn a_clone_costs_what_diverged(kind: LoopKind) {
        let fs = LoopFs::new(kind, 512 * MIB);
        let image = fs.path().join("disk.img");
        write_at(&image, 0, 8 * MIB, 1);
        // A hole at the end: it costs nothing.
        File::options()
            .write(true)
            .open(&image)
            .expect("open")
            .set_len(16 * MIB)
            .expect("grow");
        assert_eq!(exclusive_bytes(&image).expect("alone"), 8 * MIB);

        let clone = fs.path().join("disk.clone");
        clone_file(&image, &clone).expect("clone");
        assert_eq!(exclusive_bytes(&clone).expect("clone"), 0);
        assert_eq!(exclusive_bytes(&image).expect("image"), 0);

        // The image diverges by 2 MiB in its own extents (a whole-extent rewrite, so btrfs
        // frees the old one from the image too).
        std::fs::remove_file(&image).expect("rm");
        clone_file(&clone, &image).expect("clone back");
        write_at(&image, 8 * MIB, 2 * MIB, 7);
        assert_eq!(exclusive_bytes(&image).expect("image"), 2 * MIB);
        assert_eq!(exclusive_bytes(&clone).expect("clone"), 0);

        // Once the image is gone, the clone holds everything alone (XFS releases an unlinked
        // file's extents in the background, within moments).
        std::fs::remove_file(&image).expect("rm");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while exclusive_bytes(&clone).expect("clone") != 8 * MIB
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(exclusive_bytes(&clone).expect("clone"), 8 * MIB);

        let missing = fs.path().join("missing");
        let err = exclusive_bytes(&missing).expect_err("missing");
        assert_eq!(err.kind(), blockvault_core::ErrorKind::NotFound, "{err}");
    }

    #[test]
    #[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
    fn a_clone_costs_what_diverged_on_xfs() {
        a_clone_costs_what_diverged(LoopKind::Xfs);
    }

    #[test]
    #[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
    fn a_clone_costs_what_diverged_on_btrfs() {
        a_clone_costs_what_diverged(LoopKind::Btrfs);
    }
}
