//! Leases: how backups and the garbage collector's sweep stay out of each other's way on a
//! store without compare-and-swap. The protocol is described in the store crate's docs
//! ("Garbage collection without compare-and-swap"); this is its implementation.

mod listed;
mod sweeper;
#[cfg(test)]
mod tests;
mod writer;

pub use listed::LEASE_TTL;
pub use sweeper::{SweepWait, Sweeper};
pub use writer::Lease;
