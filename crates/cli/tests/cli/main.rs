//! End-to-end tests of the `blockvault` command: the real binary, real sparse images, real vault
//! directories, all in temp dirs, with `TZ=UTC`.
//!
//! - `roundtrip`: backup, list and restore any point (newest, by id, by prefix, by time).
//! - `incremental`: exact changed/stored counts of incremental backups.
//! - `layouts`: several disks, all-hole and all-zero images, sizes that are not whole blocks.
//! - `input_errors`: bad disks, block sizes, vaults, VMs, points and times.
//! - `interrupted`: a backup killed mid-transfer, and the one after it.
//! - `corruption`: damaged chunks, block maps and point records fail with exit 4.
//! - `damage`: a damaged record or tier config damages only itself.
//! - `disk_size`: a disk grown and shrunk between backups: recorded on the jobs, restored at
//!   each point's size.
//! - `commit_window`: a replicated vault's commit cut at each step loses no point.
//! - `replication`: replicated vaults: fallback, healing, repair by verify, redundancy changes.
//! - `replica_recovery`: a lost secondary replaced or resynced, a lost primary's replica
//!   promoted.
//! - `restore_target`: what a restore does to files already in its target directory.
//! - `qcow2`: qcow2 disks restored as qcow2 or raw, and the disk format checks of a backup.
//! - `encryption_keys`: `vault init --encryption` and `vault key ...`: slots, passphrases,
//!   export and import, key files; no passphrase in any output or file.
//! - `json_errors`: the `--json` error document.
//! - `exit_codes`: a command for each row of the README's exit-code table.
//! - `qmp`: `--qmp`: a running VM (a qemu-storage-daemon) fixed by QEMU fleecing.
//! - `help`: help texts teach the examples and the exit codes.
//! - `install`: shell completions, man pages and the systemd unit's command line.
//! - `s3`: the same commands with the vault on a real S3 server (Garage).
//! - `stats`: `vault stats` figures against a vault of known content (directory and S3).
//! - `tier_fallback`: `points`/`restore` when the vault cannot be opened: the snapshot tier
//!   answers only for a vault this host knows, with its points only.
//! - `s3_holder`: protection held by an S3 vault; a wrong secret at `protect`.

mod commit_window;
mod corruption;
mod crypt_support;
mod daemon;
mod damage;
mod disk_size;
mod encrypted;
mod encryption_keys;
mod exit_codes;
mod formats;
mod gc;
mod help;
mod incremental;
mod input_errors;
mod install;
mod interrupted;
mod jobs;
mod json_errors;
mod layouts;
mod protection;
mod qcow2;
mod qmp;
mod replica_recovery;
mod replication;
mod restore_target;
mod roundtrip;
mod s3;
mod s3_holder;
mod s3_settings;
mod stats;
mod support;
mod tier_fallback;
mod verify;
