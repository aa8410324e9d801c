//! The knobs of the data path.

/// How much a transfer does at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferOptions {
    /// Objects in flight at once (uploads during a backup, downloads during a restore). Each
    /// holds at most one block in memory.
    pub concurrency: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions { concurrency: 8 }
    }
}
