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
//! convert.rs qemu-img convert of a restored raw disk into qcow2 (sparse); a qcow2 header's
//!            virtual size, backing file and external data file
//! img.rs     qemu-img for an image no QEMU has open: ImageInfo (format, sizes, bitmaps),
//!            add_bitmap / remove_bitmap (persistent, 64 KiB granularity)
//! nbd.rs     QemuNbd: qemu-nbd --read-only on a private unix socket, per disk; killed,
//!            reaped and its directory removed on drop
//! ```
//!
//! Nothing here decides when a disk is read through QEMU: the job engine does (the header,
//! [`detect_format`](blockvault_source::detect_format), or what the user said).

mod bitmap;
mod convert;
mod error;
mod img;
mod nbd;

pub use crate::{
    bitmap::{
        BITMAP_GRANULARITY, BITMAP_PREFIX, BitmapState, Distrust, bitmap_name, point_of, trust,
    },
    convert::{Qcow2Header, convert_to_qcow2},
    error::{Error, Result},
    img::{ImageInfo, add_bitmap, remove_bitmap},
    nbd::QemuNbd,
};
