//! The journal beside a chunk index: ids appended as chunks land, folded into the index by
//! the next load or save.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use blockvault_core::ChunkId;

use crate::{Error, Result};

/// Appends ids to the index's journal as chunks land (shared by the upload tasks).
#[derive(Debug)]
pub struct Journal {
    pub(super) path: PathBuf,
    pub(super) file: std::sync::Mutex<File>,
}

impl Journal {
    /// Records that chunk `id` is in the vault. One small append, no fsync: it must survive the
    /// process being killed, and a host crash only costs re-sending some chunks.
    pub fn record(&self, id: &ChunkId) -> Result<()> {
        self.record_all(std::slice::from_ref(id))
    }

    /// Records chunks `ids`, in one append.
    pub fn record_all(&self, ids: &[ChunkId]) -> Result<()> {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| *id.as_bytes()).collect();
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&bytes).map_err(|e| Error::io(&self.path, e))
    }
}

pub(super) fn journal_path(index: &Path) -> PathBuf {
    index.with_extension("log")
}

/// The ids in a journal; a torn last record (the process died mid-append) is ignored.
pub(super) fn read_journal(path: &Path) -> Vec<ChunkId> {
    std::fs::read(path)
        .map(|bytes| {
            bytes
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok().map(ChunkId::from_bytes))
                .collect()
        })
        .unwrap_or_default()
}
