/// Receives progress of long operations, for a progress bar or a log. Called from worker
/// threads, often: keep implementations cheap (an atomic add).
pub trait Progress: Send + Sync {
    /// A phase starts that will process `total_bytes` (for example "scan" or "restore").
    fn begin(&self, _phase: &str, _total_bytes: u64) {}

    /// `bytes` more of the current phase are done.
    fn advance(&self, _bytes: u64) {}
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
