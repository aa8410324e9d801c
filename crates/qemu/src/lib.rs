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
//! nbd.rs     QemuNbd: qemu-nbd --read-only on a private unix socket, per disk; killed,
//!            reaped and its directory removed on drop
//! qmp.rs     Qmp: a synchronous QMP client (a running VM's monitor, or a
//!            qemu-storage-daemon's), every read bounded by a timeout
//! nodes.rs   a running QEMU's block nodes: the disk's node by its image path, its bitmaps
//! fleece.rs  Fleecing: a running VM's disks fixed at one instant by one QMP transaction
//!            (new bitmap, parent's disabled, backup sync=none into a scratch qcow2),
//!            exported over NBD, torn down whatever happens
//! leftovers.rs  cleanup_leftovers: what a killed blockvault left in a QEMU, removed
//! teardown.rs   the names of what blockvault adds to a QEMU; exports and jobs removed
//! ```
//!
//! Nothing here decides when a disk is read through QEMU: the job engine does (the header,
//! [`DiskFormat::detect`](blockvault_source::DiskFormat::detect), or what the user said).

mod bitmap;
mod error;
mod fleece;
mod leftovers;
mod nbd;
mod nodes;
mod qmp;
mod teardown;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::{
    bitmap::{
        BITMAP_GRANULARITY, BITMAP_PREFIX, BitmapState, Distrust, bitmap_name, point_of, trust,
    },
    error::{Error, QmpRefusal, Result},
    fleece::{DiskCheck, FleeceDisk, FleecedDisk, Fleecing, FleecingOptions},
    leftovers::{Leftovers, cleanup_leftovers},
    nbd::QemuNbd,
    nodes::{BlockNode, NODE_PREFIX, block_nodes},
    qmp::{Action, MAX_LINE, Qmp},
};
