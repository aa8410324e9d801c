//! The local snapshot tier: point-in-time copies of a VM's disks on the host, for instant
//! restore and as the source of the transfer to the vault.
//!
//! # Layout
//!
//! One directory per VM under the tier's root (by default `STATE_DIR/snapshots`):
//!
//! ```text
//! <root>/.vaults/<hash>.json               the key of each vault this host opened, and a
//!                                          spare copy of each encrypted tier's (`keys.rs`)
//! <root>/<vm>/vault.config                 the same self-describing format as a vault
//! <root>/<vm>/chunks/<2 hex>/<64 hex>      blocks, stored as chunk objects (zstd-1 when smaller)
//! <root>/<vm>/maps/<vm>/<point>/<disk>.map one block map per disk per point
//! <root>/<vm>/points/<vm>/<point>          the point record, written last (the commit)
//! <root>/<vm>/quarantine/...               what heal.rs set aside
//! <root>/<vm>/clones/<point>/<disk>        on a file system with reflinks: each point's
//!                                          clone of each disk (see `clones.rs`)
//! ```
//!
//! Each VM's snapshots are a [`Repository`](blockvault_repo::Repository) over a local
//! directory, the same data path the vault is built on: a Snapshot is a write session into it
//! (its parent is the VM's previous snapshot, so only changed blocks are written), a restore
//! from it reads it through the repository, and the Transfer subtask copies a point from it
//! into the vault without compressing anything twice (`Repository::transfer`). Chunks are
//! compressed once, here, while the disk is read. The tier and the vault are peers: neither
//! crate depends on the other. The tier's writers hold no lease (its write guard is
//! [`NoGuard`](blockvault_repo::NoGuard)): this host's engine alone writes and sweeps it, under
//! the VM's snapshot lock (below).
//!
//! # Encryption
//!
//! A VM's tier uses its vault's codec, so the Transfer stays a byte copy: an encrypted
//! vault's VMs have encrypted tiers, created with the vault's id and `encryption` and opened
//! through the process's [`Keyring`](blockvault_repo::Keyring) (an instant restore needs the
//! passphrase, not the vault). A tier under another key than its vault's is started fresh;
//! see `keys.rs` for where the tier learns the key without waiting for the vault.
//!
//! # Invariant and expiry
//!
//! Every chunk that a live snapshot point's maps name is in the VM's directory, so each point
//! restores from the tier alone. Points expire after the instant-restore days of the backup
//! that made them: [`SnapshotTier::expire`] deletes their records and maps, then
//! [`SnapshotTier::sweep`] deletes the chunks no remaining point names, found in the store's
//! listing of chunks (the sweep goes through the store, never the files), and the kept clones
//! of points no longer committed (see `clones.rs`). Vault copies are not touched.
//!
//! # Space
//!
//! [`SnapshotTier::space`] is the repository's files plus what the kept clones hold alone: a
//! clone shares every extent its disk did not overwrite since, so its cost is what diverged,
//! never its apparent size. Sweeps report what the file system really freed.
//!
//! # Damage
//!
//! The tier is this host's rebuildable state: what is damaged is set aside under
//! `<root>/<vm>/quarantine/` and everything else goes on (see `heal.rs`). A damaged point
//! record or a point with a damaged map never hides the VM's other snapshot points or stops
//! expiry, and a damaged `vault.config` is rebuilt.
//!
//! # Locking
//!
//! The sweep deletes every chunk that no committed point names, so it must not run while a
//! Snapshot of the same VM is writing one: callers hold the VM's snapshot lock (the job engine
//! does) around [`SnapshotTier::expire`] and [`SnapshotTier::sweep`]. A Transfer reads only
//! the chunks of its own, live point, so it may run alongside. Per-VM directories keep the
//! rule local: one VM's sweep never races another VM's snapshot.

mod clones;
mod error;
mod formats;
mod heal;
mod keys;
mod sweep;
mod tier;

pub use crate::{
    clones::Staging,
    error::{Error, Result},
    keys::{OpenedTier, TierKey},
    sweep::SweepReport,
    tier::{SnapshotTier, TierSpace},
};
