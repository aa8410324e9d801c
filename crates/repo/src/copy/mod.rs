//! Copy: a point from one repository into another (the Transfer subtask of a backup job, from
//! the snapshot tier into the vault), and the early send that tees a write session's chunks
//! into the copy while the scan still runs.
//!
//! ```text
//! guard + what the target holds    `prepared.rs`: lease, newest point, its maps, chunk index
//!   -> early send (optional)       `early.rs`: chunks offered by the write session, put at once
//!   -> copy the rest, verified     `transfer.rs`: read as stored, checked, put
//!   -> commit                      maps, then the point record under the source point's id
//! ```

mod early;
mod prepared;
mod transfer;

pub use early::{EarlySend, HELD_BYTES};
pub use prepared::Sent;
pub use transfer::{TransferReport, TransferRequest};
