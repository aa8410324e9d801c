//! `blockvault vault ...`: create a vault, show it, and change or repair its redundancy.

use blockvault_core::VmName;
use blockvault_store::VaultLocation;
use clap::Subcommand;

use super::keys::{EncryptionArgs, KeyCommand};
use super::{TransferArgs, VaultArg};

macro_rules! stats_examples {
    () => {
        "Examples:\n  blockvault vault stats --vault /srv/vault\n  \
         blockvault vault stats --vault s3://backups/vault --vm web01 --json"
    };
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create a vault in a new or empty directory, or in an S3 bucket.
    #[command(
        long_about = "Create a vault in a new or empty directory, or in an S3 bucket.\n\n\
            With --encryption, everything the vault stores is encrypted on this host \
            (AES-256-GCM; chunk ids keyed, so the store cannot test for content it can guess) \
            under a new random key that a passphrase protects. The passphrase comes from \
            BLOCKVAULT_PASSWORD_FILE or BLOCKVAULT_PASSWORD_COMMAND (the same setting then \
            opens the vault for every later command), else it is typed twice on the terminal; \
            never on the command line. A replicated vault's secondary carries the same \
            encryption. Export the key at once (`blockvault vault key export`) and keep it and \
            the passphrase apart from the vault: a lost key or passphrase cannot be recovered, \
            by anyone. Refused before anything is written: --key-file without --encryption \
            key-file (exit 2), a key file path that exists (exit 6), no passphrase (exit 2), \
            --kdf-* out of bounds (exit 2).",
        after_help = init_example!(),
        after_long_help = concat!(init_example!(), exit_codes!())
    )]
    Init {
        /// Where: a directory (created if missing; must be empty if it exists), or
        /// s3://BUCKET/PREFIX (the bucket must exist; the prefix must be empty).
        #[arg(
            value_name = "DIR|s3://BUCKET/PREFIX",
            required_unless_present = "vault_flag",
            conflicts_with = "vault_flag"
        )]
        vault: Option<VaultLocation>,

        /// The same as the positional location.
        #[arg(
            long = "vault",
            id = "vault_flag",
            value_name = "DIR|s3://BUCKET/PREFIX"
        )]
        vault_flag: Option<VaultLocation>,

        /// single: one store. replicated: every object is also written to --secondary, and a
        /// read falls back to it when the primary's copy is missing or corrupt. Chosen here;
        /// changeable only while the vault holds no backup items (`vault set-redundancy`).
        #[arg(long, value_enum, value_name = "KIND")]
        redundancy: Option<RedundancyKind>,

        /// The secondary store of a replicated vault: another directory (created if missing;
        /// must be empty) or s3://BUCKET/PREFIX (same S3 settings as the vault).
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        secondary: Option<VaultLocation>,

        #[command(flatten)]
        encryption: EncryptionArgs,
    },

    /// Manage the key of an encrypted vault: passphrases (key slots), export, import.
    #[command(subcommand)]
    Key(KeyCommand),

    /// Show a vault: id, creation time, block size, redundancy and secondary, encryption,
    /// backup items.
    #[command(after_help = "Example:\n  blockvault vault show --vault /srv/vault --json")]
    Show {
        #[command(flatten)]
        vault: VaultArg,
    },

    /// Count what a vault holds, per VM and in all: sizes, dedup and compression, garbage.
    #[command(
        long_about = "Count what a vault holds, per VM and for the whole vault (like `restic \
            stats` and `borg info`). Every block map of every point is read (a progress bar \
            counts them), and the objects' sizes come from the store's listings; nothing is \
            decompressed and nothing is written. The figures:\n\n\
            points: point records that read (damaged ones are counted apart).\n\
            logical: the disks' sizes summed over every point (what restoring each would \
            write, holes included); newest: the same for the newest point (of each VM).\n\
            referenced: the bytes of the blocks the maps name, summed over every point and \
            disk; holes and all-zero blocks are left out.\n\
            unique: the uncompressed bytes of the distinct chunks named (each counted once).\n\
            stored: for a VM, the compressed bytes of those chunk objects (a chunk shared with \
            other VMs counts for each) plus its block maps and point records; for the vault, \
            every chunk object (garbage included) plus every map and record.\n\
            dedup ratio: referenced / unique. compression ratio: unique / the compressed bytes \
            of the unique chunks.\n\
            garbage (vault): chunk objects no point names, which `gc` deletes once older than \
            its grace period. damaged (vault): chunks verify marked bad, sent again by the \
            next backup that holds their data.\n\n\
            With --vm only that VM is counted (the vault's own figures need every map).",
        after_help = stats_examples!(),
        after_long_help = concat!(stats_examples!(), exit_codes!())
    )]
    Stats {
        #[command(flatten)]
        vault: VaultArg,

        /// Only this VM (exit 3 when it has no point in the vault).
        #[arg(long, value_name = "NAME")]
        vm: Option<VmName>,
    },

    /// Change a vault's redundancy; only while it holds no backup items.
    #[command(
        long_about = "Change a vault's redundancy: single, or replicated to --secondary. \
            Redundancy is chosen before the first backup: this is refused (exit 6, nothing \
            changed) once any VM has a backup in the vault or is protected by it. Going \
            replicated copies what the vault already holds to the secondary (which must be new \
            or empty) and writes the secondary's own config; going single leaves the secondary \
            as it is and stops writing to it.",
        after_help = "Examples:\n  blockvault vault set-redundancy --vault /srv/vault replicated \
            --secondary /mnt/replica\n  blockvault vault set-redundancy --vault /srv/vault single"
    )]
    SetRedundancy {
        #[command(flatten)]
        vault: VaultArg,

        /// single (one store) or replicated (every object also in --secondary).
        #[arg(value_enum, value_name = "KIND")]
        redundancy: RedundancyKind,

        /// The secondary store (required with `replicated`): a new or empty directory, or
        /// s3://BUCKET/PREFIX.
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        secondary: Option<VaultLocation>,
    },

    /// Give a vault a new secondary (one that replaces a lost one), copying everything to it.
    #[command(
        long_about = "Give a vault a new secondary store, whatever the vault holds: to replace \
            a secondary that is lost (backups fail with exit 5 until then), or to move it \
            elsewhere. Everything of the primary the new secondary lacks is copied (chunks, \
            block maps, soft-delete markers, then point records last, each checked: a chunk \
            against its id, a map against its point's digest), then the vault's config names \
            it. The new secondary must be new or empty, or already this vault's replica: run \
            the command again after an interruption and it copies only what is still missing. \
            On a single vault (a promoted replica) this makes it replicated.",
        after_help = "Examples:\n  blockvault vault replace-secondary --vault /srv/vault /mnt/replica2\n  \
            blockvault vault replace-secondary --vault /srv/vault s3://backups/replica --json"
    )]
    ReplaceSecondary {
        #[command(flatten)]
        vault: VaultArg,

        /// The new secondary: a new or empty directory (created if missing), or
        /// s3://BUCKET/PREFIX; or this vault's replica, to resume an interrupted replacement.
        #[arg(value_name = "DIR|s3://BUCKET/PREFIX")]
        secondary: VaultLocation,

        #[command(flatten)]
        transfer: TransferArgs,
    },

    /// Copy to a vault's secondary whatever it lacks (rebuilds a lost one where it was).
    #[command(
        long_about = "Copy to the vault's secondary store everything of the primary it lacks, \
            checked, point records last, and remove from it the points the primary no longer \
            has: for a secondary that lost objects, or that was lost and is rebuilt where it \
            was (a directory is created again). The same as `vault replace-secondary` with the \
            secondary the vault already has.",
        after_help = "Example:\n  blockvault vault resync --vault /srv/vault --json"
    )]
    Resync {
        #[command(flatten)]
        vault: VaultArg,

        #[command(flatten)]
        transfer: TransferArgs,
    },

    /// Make a replicated vault's secondary the vault itself, when its primary is lost.
    #[command(
        long_about = "Make the replica in --vault (a replicated vault's secondary) the vault \
            itself: a single vault with the same vault id, so that points, restores, backups \
            and the snapshot tier carry on against it. This host's protected items move to it. \
            Refused while the primary still answers and holds the vault (two vaults with one \
            id must not both take writes) unless --force. A primary that comes back later \
            refuses every write. Afterwards `vault replace-secondary` gives it a new secondary.",
        after_help = "Example:\n  blockvault vault promote --vault /mnt/replica\n  \
            blockvault vault replace-secondary --vault /mnt/replica /mnt/replica2"
    )]
    Promote {
        #[command(flatten)]
        vault: VaultArg,

        /// Promote even though the primary still answers and holds the vault: only when it is
        /// lost for good (a damaged store) or will never be used again.
        #[arg(long)]
        force: bool,
    },
}

/// A vault's redundancy, as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RedundancyKind {
    Single,
    Replicated,
}

impl From<RedundancyKind> for blockvault_host::RedundancyKind {
    fn from(kind: RedundancyKind) -> blockvault_host::RedundancyKind {
        match kind {
            RedundancyKind::Single => blockvault_host::RedundancyKind::Single,
            RedundancyKind::Replicated => blockvault_host::RedundancyKind::Replicated,
        }
    }
}
