/// Receives progress of long operations, for a progress bar or a log. Called from worker
/// threads, often: keep implementations cheap (an atomic add).
pub trait Progress: Send + Sync {
    /// A phase starts that will process `total_bytes` (for example "scan" or "restore").
    fn begin(&self, _phase: &str, _total_bytes: u64) {}

    /// `bytes` more of the current phase are done.
    fn advance(&self, _bytes: u64) {}

    /// The operation waits, doing nothing it could count: for `holders` (who holds the vault:
    /// "backup of web01 by host a (pid 4242)") to end, whose leases expire by `expires` at the
    /// latest if they died; it gives up at `gives_up`. Called again when either changes.
    fn waiting(&self, _holders: &str, _expires: jiff::Timestamp, _gives_up: jiff::Timestamp) {}
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
