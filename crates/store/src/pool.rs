//! Read buffers for the chunks of a local directory vault, reused instead of freed.
//!
//! Why: a restore (or verify, or a transfer from the snapshot tier) reads thousands of chunk
//! files of up to a block each (1 MiB by default), on tokio's blocking threads, and frees each
//! buffer on a rayon worker once decoded. glibc serves such buffers from per-thread arenas and
//! keeps what is freed there: with a dozen threads the resident set grew by tens of MiB over
//! what was ever in use at once (a 1.46 GB restore at 4 MiB blocks peaked at 90-105 MiB;
//! 52-56 MiB with big buffers forced to `mmap`, 60 MiB with this pool). A buffer taken from
//! here goes back here when the last [`Bytes`] of it is dropped, so the same few buffers carry
//! every chunk.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Free buffers, at most `keep` of them.
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    /// A pool that keeps up to `keep` free buffers; more are freed as usual. Size it to the
    /// reads in flight at once.
    pub(crate) fn new(keep: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::with_capacity(keep)),
            keep,
        })
    }

    /// An empty buffer: a returned one (with its capacity) when there is one.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// `buf`'s bytes as [`Bytes`] that give the buffer back to this pool when the last clone
    /// is dropped.
    pub(crate) fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::clone(self),
        })
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < self.keep {
            free.push(buf);
        }
    }

    /// Free buffers held now (tests).
    #[cfg(test)]
    pub(crate) fn free_buffers(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A buffer lent out as [`Bytes`]; dropping it returns the buffer.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_bytes_is_dropped_and_the_pool_stays_bounded() {
        let pool = BufferPool::new(2);
        let mut buf = pool.take();
        buf.extend_from_slice(b"chunk");
        let capacity = buf.capacity();
        let bytes = pool.freeze(buf);
        let clone = bytes.slice(1..);
        assert_eq!(&bytes[..], b"chunk");
        drop(bytes);
        assert_eq!(pool.free_buffers(), 0, "a clone still holds it");
        assert_eq!(&clone[..], b"hunk");
        drop(clone);
        assert_eq!(pool.free_buffers(), 1);
        let again = pool.take();
        assert!(
            again.is_empty() && again.capacity() == capacity,
            "the same buffer, emptied"
        );

        let lent: Vec<Bytes> = (0..4).map(|_| pool.freeze(vec![1; 8])).collect();
        drop(lent);
        assert_eq!(pool.free_buffers(), 2, "no more than `keep` are kept");
    }
}
