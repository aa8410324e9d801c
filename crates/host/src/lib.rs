//! This host's blockvault, for every front end: the CLI today, a daemon endpoint or a web
//! dashboard next. A front end parses, asks the host, and prints; what it must not decide
//! for itself lives here.
//!
//! # What a host is
//!
//! - [`StateDir`]: the state directory, and the one table of every path a host keeps under it
//!   (catalog, snapshot tier, `s3.toml`, locks, chunk index cache, ...).
//! - [`Host`]: opened on a state directory, doing no I/O until asked; it opens the job
//!   [`Engine`](blockvault_jobs::Engine) (recovering what a crash interrupted, as warnings),
//!   vaults by location (a replicated vault with its secondary, or its primary alone with
//!   [`secondary_warning`]; S3 settings from `STATE/s3.toml` overridden by `AWS_*`, each S3
//!   location probed once with a short retry budget so a typo fails fast), the vault a backup
//!   job opens alongside its Snapshot ([`Host::backup_vault`]), and the daemon's view of the
//!   vaults ([`Host::daemon_vaults`]). Every vault, replica and snapshot tier it opens goes
//!   through the host's one [`Keyring`](blockvault_repo::Keyring) ([`Host::keyring`]): an
//!   encrypted vault's key is unlocked once per process ([`HostUnlock`]; the daemon's host,
//!   [`Host::for_daemon`], never prompts: [`DaemonUnlock`]), and a key that does not unlock
//!   is an error of kind Locked before anything is read or written.
//! - Concurrency defaults by where a vault is ([`write_options`], [`read_options`]).
//! - Views and rules: the points of a VM with what retention says of each and the records
//!   that cannot be read ([`PointsView`]), the protected items ([`items`]) and those a vault
//!   records with their holders ([`vault_holdings`]), what a protect
//!   request keeps ([`protect_request`]), the redundancy rule (chosen before the first
//!   backup; [`Host::set_redundancy`], [`secondary_for`]), promotion of a replica and what
//!   moves with it ([`Host::promote`]); policy files read from disk ([`policy_files`]) and the
//!   zone of a new policy ([`host_timezone`]); what `vault stats` shows ([`StatsView`]).
//! - Passphrases of encrypted vaults, taken as restic and borg take theirs: a
//!   [`PassphraseSource`] (a file, a command, or a prompt on the terminal, chosen by
//!   `BLOCKVAULT_PASSWORD_FILE` / `BLOCKVAULT_PASSWORD_COMMAND`, or their `_NEW_` pair for a
//!   new one) read into a [`Passphrase`] for the vault a [`VaultAbout`] names: wiped from memory
//!   when dropped, never in a message. No vault format here; the keys it opens are core's.
//! - Key management of encrypted vaults (`keys`): a new vault's key
//!   ([`Host::create_encrypted_vault`], repokey or key file), its slots listed
//!   ([`Host::vault_keys`]), added, rewrapped under a new passphrase and removed
//!   ([`SlotsChanged`]), exported and imported. Each change unlocks first ([`unlock`]) and
//!   writes last: the replica's config, then the primary's, or the key file by a rename.
//! - Reads without the vault: `points` and `restore` answer from the snapshot tier when the
//!   vault cannot be opened only for a vault this host knows by its id, and only with that
//!   vault's points ([`ReadVault`], [`Host::read_vault`]); an unknown location's error stands.
//!
//! # Errors
//!
//! Every crate's `Error` has a `kind()`, an [`ErrorKind`](blockvault_core::ErrorKind)
//! (usage, not-found, integrity, refused, locked, failure) that looks through the errors it wraps;
//! this crate's [`Error`] carries the kinds of the crates below and its own. A front end maps
//! the kind to what it shows (the CLI: exit codes); [`kind_of`] names the kind of any
//! blockvault error met in a chain of errors of other types.

mod concurrency;
mod daemon_unlock;
mod error;
mod host;
mod keys;
mod passphrase;
mod points;
mod policies;
mod protection;
mod redundancy;
mod stats;
mod unlock;
mod vaults;

pub use crate::{
    concurrency::{read_options, write_options},
    daemon_unlock::DaemonUnlock,
    error::{Error, Result, describe, kind_of},
    host::Host,
    keys::{CreatedKey, KeysView, NewEncryption, SlotsChanged},
    passphrase::{Passphrase, PassphraseSource, VaultAbout},
    points::{Held, PointsView, ReadVault, retained_until},
    policies::{host_timezone, policy_files},
    protection::{
        HeldView, ItemView, check_backup, default_retain_until, items, next_backup,
        protect_request, protected_item, vault_holdings,
    },
    redundancy::{Promoted, RedundancyKind, Replaced, secondary_for},
    stats::StatsView,
    unlock::{HostUnlock, KEY_FILE_ENV, key_file_path, slots, unlock},
    vaults::{canonical, secondary_warning},
};
pub use blockvault_core::ErrorKind;
pub use blockvault_core::StateDir;
/// Sizes in words (`1.40 GiB`), as every message of this host says them.
pub use blockvault_core::bytes;
/// What a VM's snapshot tier takes on this host (see `points` and `items`).
pub use blockvault_snapshot::TierSpace;
