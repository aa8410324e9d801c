//! The QEMU processes this crate drives, against the real QEMU tools.
//!
//! These tests need qemu-utils (`qemu-img`, `qemu-io`, `qemu-nbd`, `qemu-storage-daemon`);
//! without them they fail, saying what to install. `scripts/test.sh` installs them.

mod chain;
mod convert;
mod fleece;
mod img;
mod leftovers;
mod nbd;
mod qmp;
