//! The image file a restore writes, and the page-level writer both kinds of restore share,
//! which knows what already lies under a block (zeros to skip, or old data to clear).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use blockvault_core::is_zero;
use rustix::fs::FallocateFlags;

/// An image being written, open, with its path for messages.
#[derive(Debug)]
pub(crate) struct ImageFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// Cleared the first time the file system refuses to punch a hole; zeros are written then.
    pub(crate) can_punch: AtomicBool,
}

impl ImageFile {
    pub(crate) fn new(file: File, path: PathBuf) -> ImageFile {
        ImageFile {
            file,
            path,
            can_punch: AtomicBool::new(true),
        }
    }
}

/// What a block's range of the file holds before the block is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Before {
    /// Zeros (a hole, or zeros on disk): the block's zero pages need no write.
    Zeros,
    /// Other data: the block's zero pages must be cleared too.
    Data,
}

/// Page size for sparse writes: runs of all-zero 4 KiB pages are left as (or made) holes.
const PAGE: usize = 4096;

/// Writes `data` at `offset`, page run by page run: runs of non-zero pages are written; runs of
/// all-zero pages are skipped where the file holds zeros, and cleared where it holds other
/// data. Returns the bytes written.
pub(crate) fn write_block(
    image: &ImageFile,
    data: &[u8],
    offset: u64,
    before: Before,
) -> std::io::Result<u64> {
    let page_at = |at: usize| &data[at..(at + PAGE).min(data.len())];
    let mut written = 0u64;
    let mut start = 0usize;
    while start < data.len() {
        let zero = is_zero(page_at(start));
        let mut end = start + page_at(start).len();
        while end < data.len() && is_zero(page_at(end)) == zero {
            end += page_at(end).len();
        }
        let at = offset + start as u64;
        if !zero {
            image.file.write_all_at(&data[start..end], at)?;
            written += (end - start) as u64;
        } else if before == Before::Data {
            written += clear(image, at, (end - start) as u64)?;
        }
        start = end;
    }
    Ok(written)
}

/// Makes `len` bytes at `offset` zeros: punches a hole (the size is kept), or writes zeros
/// where the file system cannot punch (remembered for the rest of the image). Returns the
/// bytes written: 0 for a hole.
pub(crate) fn clear(image: &ImageFile, offset: u64, len: u64) -> std::io::Result<u64> {
    if image.can_punch.load(Ordering::Relaxed) {
        let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&image.file, mode, offset, len) {
            Ok(()) => return Ok(0),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
                image.can_punch.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64);
        image
            .file
            .write_all_at(&ZEROS[..n as usize], offset + done)?;
        done += n;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::Path;

    use blockvault_source::RawFile;

    use super::*;

    fn data_file(dir: &Path) -> ImageFile {
        let path = dir.join("disk.img");
        std::fs::write(&path, vec![0x5a; 256 << 10]).expect("write");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        ImageFile::new(file, path)
    }

    #[test]
    fn sparse_writes_skip_zero_pages_and_keep_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        image.file.set_len(0).expect("empty");
        image.file.set_len(1 << 20).expect("len");
        let mut data = vec![0u8; 64 << 10];
        data[5000] = 1; // page 1
        data[(64 << 10) - 1] = 2; // last page
        let written = write_block(&image, &data, 128 << 10, Before::Zeros).expect("write");
        assert_eq!(written, 2 * PAGE as u64);
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(&content[128 << 10..(128 << 10) + (64 << 10)], &data[..]);
        assert!(content[..128 << 10].iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_over_data_clear_zero_pages_and_keep_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        // Page 0 zero, pages 1-2 data, pages 3.. zero, and a short tail page of data.
        let mut data = vec![0u8; (48 << 10) + 100];
        data[PAGE..3 * PAGE].fill(7);
        data[48 << 10..].fill(9);
        let written = write_block(&image, &data, 0, Before::Data).expect("write");
        let punched = image.can_punch.load(Ordering::Relaxed);
        let data_pages = 2 * PAGE as u64 + 100;
        assert_eq!(
            written,
            if punched {
                data_pages
            } else {
                data.len() as u64
            }
        );
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(content.len(), 256 << 10, "the size is kept");
        assert_eq!(&content[..data.len()], &data[..]);
        assert!(content[data.len()..].iter().all(|&b| b == 0x5a));
    }

    #[test]
    fn clear_punches_a_hole_and_keeps_the_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        let written = clear(&image, 64 << 10, 128 << 10).expect("clear");
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(content.len(), 256 << 10);
        assert!(content[64 << 10..192 << 10].iter().all(|&b| b == 0));
        assert!(content[..64 << 10].iter().all(|&b| b == 0x5a));
        assert!(content[192 << 10..].iter().all(|&b| b == 0x5a));
        if image.can_punch.load(Ordering::Relaxed) {
            assert_eq!(written, 0, "a punched hole writes nothing");
            let extents = RawFile::open(&image.path)
                .expect("open")
                .data_extents()
                .expect("extents");
            assert!(
                extents
                    .iter()
                    .all(|r| r.end <= 64 << 10 || r.start >= 192 << 10),
                "{extents:?}"
            );
        } else {
            assert_eq!(written, 128 << 10);
        }
    }

    #[test]
    fn clear_writes_zeros_where_holes_cannot_be_punched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = data_file(dir.path());
        image.can_punch.store(false, Ordering::Relaxed);
        let written = clear(&image, 10, (150 << 10) + 3).expect("clear");
        assert_eq!(written, (150 << 10) + 3);
        let content = std::fs::read(&image.path).expect("read");
        assert_eq!(content.len(), 256 << 10);
        assert_eq!(content[9], 0x5a);
        assert!(content[10..10 + (150 << 10) + 3].iter().all(|&b| b == 0));
        assert_eq!(content[10 + (150 << 10) + 3], 0x5a);
    }
}
