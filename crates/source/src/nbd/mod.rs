//! The project's own NBD client, and [`NbdSource`]: an NBD export (a qcow2 image through
//! `qemu-nbd`, a running VM's fleecing node) read as a [`BlockSource`](crate::BlockSource).
//!
//! # Protocol
//!
//! ```text
//! address.rs    NbdAddress: a unix socket or TCP, parsed from nbd+unix:// and nbd:// URIs
//! handshake.rs  fixed newstyle: NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT
//!               (base:allocation, qemu:dirty-bitmap:NAME), NBD_OPT_GO -> size, flags,
//!               block size limits
//! conn.rs       transmission: NBD_CMD_READ (structured or simple replies),
//!               NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC on drop; pipelined
//! source.rs     NbdSource: BlockSource over one connection, allocation and dirty extents
//! ```
//!
//! # Pipelining
//!
//! One connection carries up to [`NbdOptions::max_in_flight`] requests at once (64 by
//! default): each caller of `read_at` (the scan's rayon workers) takes the writer mutex just
//! long enough to send its 28-byte request, then waits; one reader thread reads every reply,
//! matches it to its request by cookie, fills the request's buffer and wakes its caller. One
//! request at a time is several times slower (the round trip and the server's per-request
//! latency are paid serially), and one pipelined connection already keeps `qemu-nbd` busy, so
//! this client does not open more connections when the server offers `NBD_FLAG_CAN_MULTI_CONN`
//! ([`NbdExportInfo::multi_conn`] says whether it does).
//!
//! # Hostile or broken servers
//!
//! Every length the server sends is checked against what was asked before anything is read or
//! allocated (option replies at most 64 KiB, read chunks inside their request, block status
//! chunks at most 1 Mi extents read as they arrive); a bad magic, a reply for a cookie not in
//! flight, a reply that leaves part of a read unanswered or a close mid-reply break the
//! connection with a clear [`Error::Nbd`](crate::Error::Nbd) for every request waiting and
//! every one after. A server that stalls with requests outstanding fails them after
//! [`NbdOptions::timeout`] (30 s by default). An error the server reports for one request
//! ([`Error::NbdServer`](crate::Error::NbdServer)) fails only that request.

mod address;
mod conn;
mod handshake;
mod proto;
mod source;

pub use address::NbdAddress;
pub use proto::errno_name;
pub use source::{Allocation, NbdExportInfo, NbdOptions, NbdSource};
