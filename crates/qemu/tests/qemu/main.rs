//! The QEMU processes this crate drives, against the real QEMU tools.
//!
//! These tests need qemu-utils (`qemu-img`, `qemu-io`, `qemu-nbd`, `qemu-storage-daemon`);
//! without them they fail, saying what to install. `scripts/test.sh` installs them.

mod convert;
mod img;
mod nbd;
mod tools;
