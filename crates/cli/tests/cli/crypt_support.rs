//! Encrypted vaults for the tests, until `vault init --encryption` is on this branch (the
//! lead switches these to the CLI at merge): a vault made by `vault init`, empty, given an
//! encryption in its config (and in its secondary's), with a quick KDF; and running the binary
//! with the passphrase in a file (`BLOCKVAULT_PASSWORD_FILE`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use blockvault_core::{Encryption, Kdf, KeyHome, MasterKey};
use blockvault_store::Store;

use crate::support::*;

/// The passphrase of the tests' encrypted vaults (searched for in every output and file).
pub const PASSPHRASE: &str = "correct horse battery staple 8c1e";

/// Makes the new, empty vault at `vault` (and its secondary, if replicated) encrypted under
/// `passphrase`, its key in the vault's config.
pub fn encrypt_vault(vault: &Path, passphrase: &str) {
    encrypt_location(&vault.display().to_string(), passphrase);
}

/// [`encrypt_vault`] for a vault given by location: a directory, or `s3://BUCKET/PREFIX` (S3
/// settings from `AWS_*`).
pub fn encrypt_location(location: &str, passphrase: &str) {
    use blockvault_store::{S3Options, VaultLocation};
    let open = |location: &str| -> Store {
        match location.parse::<VaultLocation>().expect("a location") {
            VaultLocation::Local(dir) => Store::local(dir).expect("store"),
            VaultLocation::S3 { bucket, prefix } => {
                let options = S3Options::from_env().expect("S3 settings");
                Store::s3(&bucket, &prefix, &options).expect("S3 store")
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let master = MasterKey::generate();
        let kdf = Kdf::argon2id(8 * 1024, 1).expect("kdf");
        let encryption = Encryption::new(
            &master,
            passphrase.as_bytes(),
            kdf,
            KeyHome::Vault,
            jiff::Timestamp::now(),
        )
        .expect("encryption");
        let store = open(location);
        let mut config = store.config().await.expect("config");
        config.encryption = Some(encryption.clone());
        store.write_config(&config).await.expect("write config");
        if let Some(secondary) = config.redundancy.secondary() {
            let secondary = open(secondary);
            let mut replica = secondary.config().await.expect("replica config");
            replica.encryption = Some(encryption);
            secondary
                .write_config(&replica)
                .await
                .expect("write replica config");
        }
    });
}

/// A new encrypted vault at `vault` (`vault init`, then [`encrypt_vault`]).
pub fn init_encrypted(vault: &Path) -> PathBuf {
    blockvault(["vault", "init", arg(vault)]).success();
    encrypt_vault(vault, PASSPHRASE);
    vault.to_owned()
}

/// A file holding `passphrase` (mode 0600), in `dir`.
pub fn passphrase_file(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, passphrase).expect("write passphrase file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// Runs `blockvault ARGS` with `BLOCKVAULT_PASSWORD_FILE=file`.
pub fn with_passphrase<I, S>(file: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    blockvault_with_env(args, &[("BLOCKVAULT_PASSWORD_FILE", file.as_os_str())])
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}
