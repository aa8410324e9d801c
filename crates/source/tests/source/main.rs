//! The scanner through the public API: change hints against full scans on real sparse files,
//! and the consistency rules over sources that are not files.

#![expect(
    clippy::single_range_in_vec_init,
    reason = "a hint of one dirty extent is a list of one range"
)]

mod any_source;
mod change_hint;
mod fixtures;
mod nbd_garbage;
mod nbd_hostile;
mod nbd_nbdkit;
mod nbd_old_servers;
mod nbd_qemu;
mod nbd_qemu_edges;
