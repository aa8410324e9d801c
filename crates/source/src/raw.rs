use std::fs::File;
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use rustix::fs::SeekFrom;

use crate::{BlockSource, Error, Result};

/// An open raw disk image: a regular file (sparse or not) or a block device. Today's
/// [`BlockSource`].
///
/// Reads are positional (`pread`), so any number of threads can read one image at once, and
/// nothing is memory-mapped: a mapped 8 GiB image would count its cached pages against the
/// process's resident memory, and an image that shrinks under a mapping raises SIGBUS where a
/// short `pread` is a clear error.
#[derive(Debug)]
pub struct RawFile {
    path: PathBuf,
    file: File,
    size: u64,
}

impl RawFile {
    /// Opens `path` for reading and records its size.
    pub fn open(path: impl AsRef<Path>) -> Result<RawFile> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::NotFound {
                path: path.to_owned(),
            },
            _ => Error::io(path, e),
        })?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(Error::NotADisk {
                path: path.to_owned(),
                kind: "a directory",
            });
        }
        if !(kind.is_file() || kind.is_block_device()) {
            return Err(Error::NotADisk {
                path: path.to_owned(),
                kind: "a special file",
            });
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut image = RawFile {
            path: path.to_owned(),
            file,
            size: 0,
        };
        image.size = image.size_now()?;
        Ok(image)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size recorded when the image was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The size now: `fstat` for files, the end offset for block devices.
    fn size_now(&self) -> Result<u64> {
        let meta = self.file.metadata().map_err(|e| Error::io(&self.path, e))?;
        if meta.file_type().is_block_device() {
            rustix::fs::seek(&self.file, SeekFrom::End(0))
                .map_err(|e| Error::io(&self.path, e.into()))
        } else {
            Ok(meta.len())
        }
    }

    /// The byte ranges that may hold data, found with `SEEK_DATA`/`SEEK_HOLE`; everything else
    /// is a hole and reads as zeros. Where the file system cannot tell (or for block devices),
    /// the whole image is one range.
    pub fn data_extents(&self) -> Result<Vec<Range<u64>>> {
        let mut extents = Vec::new();
        let mut pos = 0u64;
        while pos < self.size {
            let start = match rustix::fs::seek(&self.file, SeekFrom::Data(pos)) {
                Ok(start) => start,
                // ENXIO: no data at or after `pos`.
                Err(rustix::io::Errno::NXIO) => break,
                // Not supported here: treat everything as data.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => {
                    return Ok(self.everything());
                }
                Err(e) => return Err(Error::io(&self.path, e.into())),
            };
            if start >= self.size {
                break;
            }
            let end = match rustix::fs::seek(&self.file, SeekFrom::Hole(start)) {
                Ok(end) => end.min(self.size),
                Err(rustix::io::Errno::NXIO) => self.size,
                Err(e) => return Err(Error::io(&self.path, e.into())),
            };
            if end <= start {
                // A file system that reports nonsense: fall back to reading everything.
                return Ok(self.everything());
            }
            extents.push(start..end);
            pos = end;
        }
        Ok(extents)
    }

    /// One extent covering the whole image, for when holes cannot be found.
    fn everything(&self) -> Vec<Range<u64>> {
        std::iter::once(0..self.size).collect()
    }
}

/// The inherent methods above carry the same names so that callers holding a [`RawFile`] need
/// not import the trait.
impl BlockSource for RawFile {
    fn path(&self) -> &Path {
        RawFile::path(self)
    }

    fn size(&self) -> u64 {
        RawFile::size(self)
    }

    fn current_size(&self) -> Result<u64> {
        self.size_now()
    }

    fn data_extents(&self) -> Result<Vec<Range<u64>>> {
        RawFile::data_extents(self)
    }

    /// One `pread`, retried when a signal interrupts it.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_files_report_only_their_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.img");
        let f = File::create(&path).expect("create");
        f.set_len(64 << 20).expect("len");
        f.write_all_at(&[1u8; 4096], 8 << 20).expect("write");
        f.write_all_at(&[2u8; 4096], 40 << 20).expect("write");
        drop(f);
        let image = RawFile::open(&path).expect("open");
        assert_eq!(image.size(), 64 << 20);
        let extents = image.data_extents().expect("extents");
        let data: u64 = extents.iter().map(|r| r.end - r.start).sum();
        assert!(
            extents.iter().any(|r| r.contains(&(8 << 20))),
            "{extents:?}"
        );
        assert!(
            extents.iter().any(|r| r.contains(&(40 << 20))),
            "{extents:?}"
        );
        assert!(data < 8 << 20, "holes were not skipped: {extents:?}");
    }

    #[test]
    fn open_names_missing_files_and_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = RawFile::open(dir.path().join("nope.img")).expect_err("missing");
        assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
        assert!(missing.to_string().contains("nope.img"));
        let is_dir = RawFile::open(dir.path()).expect_err("dir");
        assert!(
            matches!(
                is_dir,
                Error::NotADisk {
                    kind: "a directory",
                    ..
                }
            ),
            "{is_dir}"
        );
    }
}
