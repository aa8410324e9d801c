use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;

/// One change to a disk: `len` bytes at `offset`.
#[derive(Clone, Copy, Debug)]
pub enum Change {
    /// Bytes `byte, byte+1, ..` (a byte of 0 writes runs of small values, zeros among them).
    Write { offset: u64, len: u64, byte: u8 },
    /// Explicit zeros over the range.
    Zero { offset: u64, len: u64 },
    /// A hole punched (a discard): reads as zeros, no longer allocated.
    Punch { offset: u64, len: u64 },
}

impl Change {
    /// The byte range the change touches in a `size`-byte disk.
    pub fn range(&self, size: u64) -> Range<u64> {
        let (offset, len) = match *self {
            Change::Write { offset, len, .. }
            | Change::Zero { offset, len }
            | Change::Punch { offset, len } => (offset, len),
        };
        let start = offset.min(size);
        start..(start + len).min(size)
    }
}

/// A sparse disk image file and, beside it, what it must contain.
pub struct Disk {
    pub path: PathBuf,
    file: File,
    pub content: Vec<u8>,
}

impl Disk {
    /// A `size`-byte file that is one hole.
    pub fn sparse(dir: &Path, name: &str, size: u64) -> Disk {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create");
        file.set_len(size).expect("len");
        Disk {
            path,
            file,
            content: vec![0; size as usize],
        }
    }

    pub fn size(&self) -> u64 {
        self.content.len() as u64
    }

    pub fn apply(&mut self, change: Change) {
        let range = change.range(self.size());
        if range.is_empty() {
            return;
        }
        let (start, end) = (range.start as usize, range.end as usize);
        let data: Vec<u8> = match change {
            Change::Write { byte, .. } => (0..end - start)
                .map(|i| byte.wrapping_add((i % 5) as u8))
                .collect(),
            Change::Zero { .. } => vec![0; end - start],
            Change::Punch { .. } => {
                let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
                match rustix::fs::fallocate(&self.file, mode, range.start, range.end - range.start)
                {
                    Ok(()) => {
                        self.content[start..end].fill(0);
                        return;
                    }
                    // A file system without holes: zeros are the same disk.
                    Err(_) => vec![0; end - start],
                }
            }
        };
        self.file.write_all_at(&data, range.start).expect("write");
        self.content[start..end].copy_from_slice(&data);
    }

    pub fn resize(&mut self, size: u64) {
        self.file.set_len(size).expect("resize");
        self.content.resize(size as usize, 0);
    }
}
