//! The project's own NBD client, and [`NbdSource`]: an NBD export (a qcow2 image through
//! `qemu-nbd`, a running VM's fleecing node) read as a [`BlockSource`](crate::BlockSource).
//!
//! # Protocol
//!
//! ```text
//! address.rs    NbdAddress: a unix socket or TCP, parsed from nbd+unix:// and nbd:// URIs
//! handshake.rs  fixed newstyle: NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT
//!               (base:allocation, qemu:dirty-bitmap:NAME), NBD_OPT_GO -> size, flags,
//!               block size limits; NBD_OPT_EXPORT_NAME when the server has no GO;
//!               oldstyle (size and flags, simple replies only)
//! table.rs      the requests in flight and why a connection broke
//! reply.rs      the reader thread: replies checked and matched to their requests
//! conn.rs       transmission: NBD_CMD_READ (structured or simple replies),
//!               NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC on drop; pipelined
//! source.rs     NbdSource: BlockSource over a connection (or several), allocation and
//!               dirty extents
//! ```
//!
//! # Pipelining
//!
//! One connection carries up to [`NbdOptions::max_in_flight`] requests at once (64 by
//! default): each caller of `read_at` (the scan's rayon workers) takes the writer mutex just
//! long enough to send its 28-byte requests, then waits; one reader thread reads every reply,
//! matches it to its request by cookie, fills a pooled buffer and wakes its caller. A
//! `read_at` larger than [`NbdOptions::request_size`] (256 KiB) is split into requests that
//! are all sent before the first is waited for, so even two workers reading 1 MiB blocks keep
//! 8 requests in flight. Measured on qemu-nbd over a unix socket (256 MiB, 4 threads), one
//! request at a time is 1.6-2x slower than this.
//!
//! When the server offers `NBD_FLAG_CAN_MULTI_CONN` ([`NbdExportInfo::multi_conn`]; qemu-nbd
//! does for read-only exports), [`NbdOptions::connections`] opens more connections and reads
//! take them in turn; a server that turns the later ones away (a client limit), or holds
//! them back unanswered for 2 s (qemu-nbd past `--shared`), is read over those it took. It
//! is 1 by default: on a small host a second connection to qemu-nbd measured no faster than
//! one pipelined connection.
//!
//! # Servers
//!
//! Tested against qemu-nbd (`tests/source/nbd_qemu.rs`, `nbd_qemu_edges.rs`), nbdkit with
//! the plugins and filters that misbehave on purpose (`nbd_nbdkit/`), a fake old server
//! (`nbd_old_servers.rs`) and a fake hostile one (`nbd_hostile.rs`). Servers differ: nbdkit
//! sends one data chunk per read (qemu-nbd sends hole chunks too), block status replies that
//! stop short of or run past the request, and may speak only simple replies (`--no-sr`) or
//! the oldstyle handshake (read with simple replies, no export names); an older server may
//! lack `NBD_OPT_GO` (then `NBD_OPT_EXPORT_NAME`) or meta contexts (then every byte is
//! data); a server that requires TLS is refused saying so.
//!
//! # Hostile or broken servers
//!
//! Every length the server sends is checked against what was asked before anything is read or
//! allocated (option replies at most 64 KiB, read chunks inside their request, block status
//! chunks at most 1 Mi extents read as they arrive); a bad magic, a reply for a cookie not in
//! flight, a reply that leaves part of a read unanswered, chunks that overlap or never end
//! (more than 64 error chunks) and a close mid-reply break the connection with a clear
//! [`Error::Nbd`](crate::Error::Nbd) for every request waiting and every one after; so does
//! the reader thread stopping for any reason. A server that stalls with requests outstanding,
//! or in the middle of a reply, fails them after [`NbdOptions::timeout`] (30 s by default). An error the server reports for one request
//! ([`Error::NbdServer`](crate::Error::NbdServer)) fails only that request.

mod address;
mod conn;
mod handshake;
mod proto;
mod reply;
mod source;
mod table;

pub use address::NbdAddress;
pub use proto::errno_name;
pub use source::{Allocation, NbdExportInfo, NbdOptions, NbdSource};
