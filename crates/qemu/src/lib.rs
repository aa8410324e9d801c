//! QEMU's processes and tools, driven for the Snapshot.
//!
//! A disk in any format QEMU reads (qcow2 above all) is read as the guest sees it, through
//! QEMU: this crate starts the QEMU process that serves it, hands back a
//! [`BlockSource`](blockvault_source::BlockSource) over the source crate's NBD client, and
//! always stops what it started.
//!
//! ```text
//! bitmap.rs  dirty bitmaps as changed-block tracking: blockvault-<point> names, and when a
//!            bitmap is trusted (Distrust says why not)
//! chain.rs   a disk's backing chain (an overlay on a base image), resolved as QEMU would,
//!            also for the disk's clone kept elsewhere; the first missing file of it
//! convert.rs qemu-img convert of a restored raw disk into qcow2, vmdk, ... (sparse); a qcow2
//!            header's version, size, backing file, external data file, encryption
//! support.rs what blockvault can do with an image: an encrypted qcow2 refused, and why an
//!            image cannot hold dirty bitmaps (every format but qcow2; qcow2 compat 0.10)
//! img.rs     qemu-img for an image no QEMU has open: ImageInfo (format, sizes, bitmaps),
//!            add_bitmap / remove_bitmap (persistent, 64 KiB granularity)
//! nbd.rs     QemuNbd: qemu-nbd --read-only on a private unix socket, per disk; killed,
//!            reaped and its directory removed on drop
//! qmp.rs     Qmp: a synchronous QMP client (a running VM's monitor, or a
//!            qemu-storage-daemon's), every read bounded by a timeout
//! nodes.rs   a running QEMU's block nodes: the disk's node by its image path, its bitmaps
//! schema.rs  what this QEMU's QMP accepts (query-qmp-schema), for features newer QEMUs add
//! fleece.rs  Fleecing: a running VM's disks fixed at one instant by one QMP transaction
//!            (new bitmap, parent's disabled, backup sync=none into a scratch qcow2),
//!            exported over NBD, torn down whatever happens
//! leftovers.rs  cleanup_leftovers: what a killed blockvault left in a QEMU, removed
//! teardown.rs   the names of what blockvault adds to a QEMU; exports and jobs removed
//! ```
//!
//! Nothing here decides when a disk is read through QEMU: the job engine does (the header,
//! [`detect_format`](blockvault_source::detect_format), or what the user said).
//!
//! A running VM is driven through its monitor ([`Qmp`]; a monitor serves one client at a
//! time, so a VM under libvirt needs a second `-qmp` socket for blockvault):
//!
//! ```text
//! Fleecing::start   leftovers removed, disks found, bitmaps trusted, scratch nodes added
//! Fleecing::fix     ONE transaction: new bitmap, parent's disabled, backup sync=none
//! Fleecing::export  NBD exports of the fixed instant (+ the parent's bitmap) -> NbdSources
//! Fleecing::finish  exports, jobs, nodes, server, scratch files removed; bitmaps settled
//! ```
//!
//! Crash semantics: everything blockvault adds to a QEMU is named `blockvault-*`; a killed
//! blockvault leaves them running (the guest is unaffected: the fleecing job only copies old
//! data aside), and the next [`Fleecing::start`] (or [`cleanup_leftovers`]) removes them and
//! mends the bitmaps so that no write since the parent point is lost. A QEMU that crashes
//! loses the bitmaps it added and leaves those it loaded inconsistent: never trusted, a full
//! scan says why.
//!
//! The `testing` feature adds `testing::TestVm`: a `qemu-storage-daemon` with QMP monitors
//! standing in for a running VM, for this crate's tests and those of the crates above.

mod bitmap;
mod chain;
mod convert;
mod error;
mod fleece;
mod img;
mod leftovers;
mod nbd;
mod nodes;
mod qmp;
mod schema;
mod support;
mod teardown;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::{
    bitmap::{
        BITMAP_GRANULARITY, BITMAP_PREFIX, BitmapState, Distrust, bitmap_name, point_of, trust,
    },
    chain::{Backing, backing_of, missing_backing},
    convert::{Qcow2Header, convert_to, convert_to_qcow2},
    error::{Error, QmpRefusal, Result},
    fleece::{BitmapHome, DiskCheck, FleeceDisk, FleecedDisk, Fleecing, FleecingOptions},
    img::{ImageInfo, add_bitmap, remove_bitmap},
    leftovers::{Leftovers, cleanup_leftovers},
    nbd::QemuNbd,
    nodes::{BlockNode, NODE_PREFIX, block_nodes},
    qmp::{Action, MAX_LINE, Qmp},
    schema::command_takes,
    support::{check_readable, no_bitmaps},
};
