//! Disk images as users have them, through the engine: qcow2 overlays on base images (read
//! directly and from reflink clones whose relative backing name no longer resolves), the other
//! formats QEMU reads and writes (vmdk, vdi, vhdx, vpc, qed), and qcow2's variants (compat
//! 0.10, compressed, odd cluster sizes, extended L2, external data file, encrypted). Every
//! image is made by qemu-img in the test; every point is checked byte for byte against
//! `qemu-img convert -O raw` or `qemu-img compare`.
//!
//! These tests need `qemu-img`, `qemu-io` and `qemu-nbd`; without them they fail, saying so.
//! Those that clone need root, loop devices and mkfs.xfs (`#[ignore]`d: scripts/test.sh runs
//! them).

mod formats {
    pub mod chain;
    pub mod others;
    pub mod support;
    pub mod variants;
}
