//! `blockvault vault init --encryption ...` and `blockvault vault key ...`: the key of an
//! encrypted vault.

use std::path::PathBuf;

use blockvault_core::{Kdf, KeyHome};
use clap::{Args, Subcommand, ValueEnum};

use super::VaultArg;
use crate::exit::UsageError;

/// The example of each key command, shown by `-h` and, with the exit codes, by `--help`.
macro_rules! key_example {
    (list) => {
        "Example:\n  blockvault vault key list --vault /srv/vault --json"
    };
    (add) => {
        "Example:\n  BLOCKVAULT_PASSWORD_FILE=/root/vault.pass \
            BLOCKVAULT_NEW_PASSWORD_FILE=/root/spare.pass \\\n    blockvault vault key add --vault /srv/vault"
    };
    (passwd) => {
        "Example:\n  BLOCKVAULT_PASSWORD_FILE=/root/old.pass \
            BLOCKVAULT_NEW_PASSWORD_FILE=/root/new.pass \\\n    blockvault vault key passwd --vault /srv/vault"
    };
    (remove) => {
        "Example:\n  blockvault vault key remove --vault /srv/vault --slot 3fa2c901"
    };
    (export) => {
        "Examples:\n  blockvault vault key export --vault /srv/vault --out /root/vault.key\n  \
            blockvault vault key export --vault s3://backups/vault | lpr"
    };
    (import) => {
        "Example:\n  blockvault vault key import --vault /srv/vault /root/vault.key"
    };
}

/// Where the passphrases come from, said once for every key command.
macro_rules! passphrase_sources {
    () => {
        "\n\nThe current passphrase comes from BLOCKVAULT_PASSWORD_FILE (a file holding it) or \
         BLOCKVAULT_PASSWORD_COMMAND (a command printing it, e.g. a secret manager's), else it \
         is asked on the terminal; a new one from BLOCKVAULT_NEW_PASSWORD_FILE or \
         BLOCKVAULT_NEW_PASSWORD_COMMAND, else it is asked twice. Never on the command line. \
         A key-file vault's key file is read from BLOCKVAULT_KEY_FILE, else \
         STATE_DIR/keys/<vault id>.key."
    };
}

/// How `vault init` encrypts a new vault.
#[derive(Debug, Clone, Args)]
pub struct EncryptionArgs {
    /// Encrypt the vault (AES-256-GCM, keyed chunk ids) under a new random key protected by a
    /// passphrase. repokey (the default with --encryption alone): the key slots are kept in
    /// the vault's config, the passphrase alone opens it. key-file: they are kept in a key
    /// file on this host (--key-file), and the vault holds nothing a passphrase opens.
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        num_args = 0..=1,
        default_missing_value = "repokey",
        require_equals = false
    )]
    pub encryption: Option<EncryptionMode>,

    /// With --encryption key-file: where to write the key file (mode 0600; refused when a file
    /// is there). Default: STATE_DIR/keys/<vault id>.key (or BLOCKVAULT_KEY_FILE), where
    /// every later command looks for it; elsewhere, set BLOCKVAULT_KEY_FILE to it.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// Where an encrypted vault keeps its key slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncryptionMode {
    /// In the vault's config.
    Repokey,
    /// In a key file kept outside the vault.
    KeyFile,
}

impl From<EncryptionMode> for KeyHome {
    fn from(mode: EncryptionMode) -> KeyHome {
        match mode {
            EncryptionMode::Repokey => KeyHome::Vault,
            EncryptionMode::KeyFile => KeyHome::KeyFile,
        }
    }
}

/// How a new passphrase is stretched (argon2id).
#[derive(Debug, Clone, Args)]
pub struct KdfArgs {
    /// argon2id memory for each unlock, MiB (8 to 4096). Default: 64 (about a quarter of a
    /// second per unlock; each guess costs an attacker the same).
    #[arg(long, value_name = "MIB")]
    pub kdf_memory_mib: Option<u32>,

    /// argon2id passes over that memory (1 to 64). Default: 3.
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

impl KdfArgs {
    /// The parameters asked for; `None` when neither option is given.
    pub fn kdf(&self) -> Result<Option<Kdf>, UsageError> {
        if self.kdf_memory_mib.is_none() && self.kdf_iterations.is_none() {
            return Ok(None);
        }
        let recommended = Kdf::recommended();
        let (low, high) = (Kdf::MEMORY_KIB.start() / 1024, Kdf::MEMORY_KIB.end() / 1024);
        let memory = match self.kdf_memory_mib {
            Some(mib) if (low..=high).contains(&mib) => mib * 1024,
            Some(mib) => {
                return Err(UsageError(format!(
                    "--kdf-memory-mib {mib} is outside {low}..={high} (MiB)"
                )));
            }
            None => recommended.memory_kib,
        };
        let iterations = self.kdf_iterations.unwrap_or(recommended.iterations);
        if !Kdf::ITERATIONS.contains(&iterations) {
            return Err(UsageError(format!(
                "--kdf-iterations {iterations} is outside {}..={}",
                Kdf::ITERATIONS.start(),
                Kdf::ITERATIONS.end()
            )));
        }
        Kdf::argon2id(memory, iterations)
            .map(Some)
            .map_err(|e| UsageError(e.to_string()))
    }
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the key slots of an encrypted vault (no passphrase needed).
    #[command(
        long_about = concat!(
            "List the key of an encrypted vault: its id, where its slots are kept (the vault's \
             config, or a key file on this host), and each slot: its id, when it was made, and \
             how its passphrase is stretched. Any one slot's passphrase opens the vault. \
             Nothing is unlocked or written.",
            passphrase_sources!()
        ),
        after_help = key_example!(list),
        after_long_help = concat!(key_example!(list), exit_codes!())
    )]
    List {
        #[command(flatten)]
        vault: VaultArg,
    },

    /// Add a passphrase (a key slot); the current one must open the vault.
    #[command(
        long_about = concat!(
            "Add a passphrase to an encrypted vault: a new key slot holding the same key, \
             for a second person or a spare kept in a safe. The current passphrase must open \
             the vault first; the new one is asked twice. Both open the vault afterwards. \
             Nothing but the key slots changes (the vault's config, and its replica's; a \
             key-file vault's key file).",
            passphrase_sources!()
        ),
        after_help = key_example!(add),
        after_long_help = concat!(key_example!(add), exit_codes!())
    )]
    Add {
        #[command(flatten)]
        vault: VaultArg,

        #[command(flatten)]
        kdf: KdfArgs,
    },

    /// Change the passphrase that opens the vault (rewraps the key; no data is touched).
    #[command(
        long_about = concat!(
            "Change a passphrase: the key slot the current passphrase opens is replaced by one \
             for the new passphrase (a new slot id). Only the key is rewrapped: no chunk, map \
             or record is read or written. The old passphrase no longer opens the vault; key \
             files exported earlier still hold the old slot, so export again and destroy the \
             old copies. --kdf-* change how the new passphrase is stretched (default: as the \
             old slot).",
            passphrase_sources!()
        ),
        after_help = key_example!(passwd),
        after_long_help = concat!(key_example!(passwd), exit_codes!())
    )]
    Passwd {
        #[command(flatten)]
        vault: VaultArg,

        #[command(flatten)]
        kdf: KdfArgs,
    },

    /// Remove a key slot; refused for the last one.
    #[command(
        long_about = concat!(
            "Remove a key slot (see `vault key list` for the ids): its passphrase no longer \
             opens the vault. The passphrase of some slot must open the vault first (proof you \
             hold the key). Refused for an unknown slot (exit 3) and for the last slot (exit \
             6): without a slot no one can open the vault, ever.",
            passphrase_sources!()
        ),
        after_help = key_example!(remove),
        after_long_help = concat!(key_example!(remove), exit_codes!())
    )]
    Remove {
        #[command(flatten)]
        vault: VaultArg,

        /// The slot's id (8 hex digits).
        #[arg(long, value_name = "ID")]
        slot: String,
    },

    /// Export the key (its slots, still passphrase-protected) to a file or stdout.
    #[command(
        long_about = concat!(
            "Export the vault's key: a JSON key file with the key slots, each still wrapped by \
             its passphrase, so the file alone opens nothing. The current passphrase must open \
             it first (the export is proven usable). Keep the file apart from the vault: a \
             vault whose key is lost cannot be read by anyone. The file is written mode 0600 \
             and never over an existing file; `-` (the default) prints it.",
            passphrase_sources!()
        ),
        after_help = key_example!(export),
        after_long_help = concat!(key_example!(export), exit_codes!())
    )]
    Export {
        #[command(flatten)]
        vault: VaultArg,

        /// Where to write the key file; `-` for stdout (the default).
        #[arg(long, value_name = "FILE|-")]
        out: Option<PathBuf>,
    },

    /// Import an exported key: install a key file, or restore removed slots.
    #[command(
        long_about = concat!(
            "Import a key file `vault key export` wrote. It must hold this vault's key (else \
             exit 7, nothing changed) and the current passphrase must open it. A key-file \
             vault: the file is installed where this host looks for it (BLOCKVAULT_KEY_FILE, \
             else STATE_DIR/keys/<vault id>.key; refused when a file is there), e.g. on a new \
             host. A vault that keeps its key: the file's slots the vault no longer has are \
             added back (a passphrase removed by mistake).",
            passphrase_sources!()
        ),
        after_help = key_example!(import),
        after_long_help = concat!(key_example!(import), exit_codes!())
    )]
    Import {
        #[command(flatten)]
        vault: VaultArg,

        /// The key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}
