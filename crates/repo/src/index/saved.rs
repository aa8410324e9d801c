//! The index file: the sorted ids of a chunk index, kept in memory as 8-byte prefixes and read
//! whole from the file when a prefix matches.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use blockvault_core::ChunkId;

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"BVINDEX\0";
pub(super) const HEADER: usize = 24;

/// The ids of an index file, by the first 8 bytes of each (big endian, so they sort as the
/// ids do); the whole id is read from the file, kept open, when its prefix matches.
#[derive(Clone, Debug, Default)]
pub(super) struct Saved {
    file: Option<Arc<File>>,
    prefixes: Vec<u64>,
}

fn prefix(id: &ChunkId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

impl Saved {
    pub(super) fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether the file names `id`: bisection on the prefixes, then a read of each id on file
    /// with the same prefix (nearly always one). A read that fails answers no: the index errs
    /// towards uploading.
    pub(super) fn contains(&self, id: &ChunkId) -> bool {
        let first = prefix(id);
        let start = self.prefixes.partition_point(|&p| p < first);
        self.prefixes[start..]
            .iter()
            .take_while(|&&p| p == first)
            .enumerate()
            .any(|(k, _)| self.id_at(start + k).is_some_and(|on_file| on_file == *id))
    }

    /// The id at position `k` of the file.
    pub(super) fn id_at(&self, k: usize) -> Option<ChunkId> {
        let mut id = [0u8; 32];
        let offset = (HEADER + 32 * k) as u64;
        self.file.as_ref()?.read_exact_at(&mut id, offset).ok()?;
        Some(ChunkId::from_bytes(id))
    }

    /// The ids on file, in order, read through a small buffer.
    pub(super) fn ids<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = Result<ChunkId>> + 'a {
        const BATCH: usize = 1 << 15;
        let mut buf = Vec::new();
        let mut next = 0usize;
        let mut error = false;
        std::iter::from_fn(move || {
            if error || next >= self.len() {
                return None;
            }
            let in_buf = next % BATCH;
            if in_buf == 0 {
                let n = BATCH.min(self.len() - next);
                buf.resize(32 * n, 0);
                let offset = (HEADER + 32 * next) as u64;
                let read = match &self.file {
                    Some(file) => file.read_exact_at(&mut buf, offset),
                    None => Err(std::io::ErrorKind::NotFound.into()),
                };
                if let Err(e) = read {
                    error = true;
                    return Some(Err(Error::io(path, e)));
                }
            }
            next += 1;
            let mut id = [0u8; 32];
            id.copy_from_slice(&buf[32 * in_buf..32 * in_buf + 32]);
            Some(Ok(ChunkId::from_bytes(id)))
        })
    }

    /// The file at `path`, if it is whole: read through a small buffer, hashed as it is
    /// read, and checked to be sorted and distinct. A file that is missing, short, long,
    /// damaged or out of order is `None`: a cache miss.
    pub(super) fn read(path: &Path) -> Option<Saved> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &file);
        let mut hasher = blake3::Hasher::new();
        let mut header = [0u8; HEADER];
        reader.read_exact(&mut header).ok()?;
        hasher.update(&header);
        if &header[..8] != MAGIC || header[8..10] != 1u16.to_le_bytes() {
            return None;
        }
        let count = u64::from_le_bytes(header[16..24].try_into().ok()?);
        // The length must match before anything is allocated for `count`.
        if Some(len) != count.checked_mul(32)?.checked_add((HEADER + 32) as u64) {
            return None;
        }
        let mut prefixes = Vec::with_capacity(usize::try_from(count).ok()?);
        let mut last: Option<ChunkId> = None;
        let mut id = [0u8; 32];
        for _ in 0..count {
            reader.read_exact(&mut id).ok()?;
            hasher.update(&id);
            let id = ChunkId::from_bytes(id);
            if last.is_some_and(|last| last >= id) {
                return None;
            }
            prefixes.push(prefix(&id));
            last = Some(id);
        }
        let mut digest = [0u8; 32];
        reader.read_exact(&mut digest).ok()?;
        drop(reader);
        (hasher.finalize().as_bytes() == &digest).then(|| Saved {
            file: Some(Arc::new(file)),
            prefixes,
        })
    }

    /// Writes a file of `count` ids at `tmp` (for the index at `path`, named in errors): the
    /// ids of `kept` (sorted) merged with `side` (sorted, none of them in `kept`), hashed as
    /// they go, fsynced. Returns it open, with its prefixes.
    pub(super) fn write(
        tmp: &Path,
        path: &Path,
        count: usize,
        kept: impl Iterator<Item = Result<ChunkId>>,
        side: impl Iterator<Item = ChunkId>,
    ) -> Result<Saved> {
        let io = |e| Error::io(path, e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(io)?;
        let mut prefixes = Vec::with_capacity(count);
        {
            let mut out = HashingWriter {
                inner: std::io::BufWriter::with_capacity(1 << 20, &file),
                hasher: blake3::Hasher::new(),
            };
            out.write_all(MAGIC).map_err(io)?;
            out.write_all(&1u16.to_le_bytes()).map_err(io)?;
            out.write_all(&[0u8; 6]).map_err(io)?;
            out.write_all(&(count as u64).to_le_bytes()).map_err(io)?;
            let mut side = side.peekable();
            let mut put = |id: ChunkId| -> Result<()> {
                prefixes.push(prefix(&id));
                out.write_all(id.as_bytes()).map_err(io)
            };
            for id in kept {
                let id = id?;
                while let Some(first) = side.next_if(|s| *s < id) {
                    put(first)?;
                }
                put(id)?;
            }
            for id in side {
                put(id)?;
            }
            if prefixes.len() != count {
                return Err(io(std::io::Error::other(format!(
                    "could not read the index back to save it: {} ids written, {count} expected",
                    prefixes.len()
                ))));
            }
            let digest = out.hasher.finalize();
            let mut writer = out.inner;
            writer.write_all(digest.as_bytes()).map_err(io)?;
            writer.flush().map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        Ok(Saved {
            file: Some(Arc::new(file)),
            prefixes,
        })
    }
}

/// The ids of two sorted, distinct lists, in order, each once.
pub(super) fn union<'a>(a: &'a [ChunkId], b: &'a [ChunkId]) -> impl Iterator<Item = ChunkId> + 'a {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x < y => a.next().copied(),
        (Some(x), Some(y)) if y < x => b.next().copied(),
        (Some(_), Some(_)) => {
            b.next();
            a.next().copied()
        }
        (Some(_), None) => a.next().copied(),
        (None, _) => b.next().copied(),
    })
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
