//! Encrypted vaults for the tests, made as a user makes them (`vault init --encryption`, the
//! quickest KDF so an unlock costs milliseconds), and running the binary with the passphrase in
//! a file (`BLOCKVAULT_PASSWORD_FILE`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::support::*;

/// The passphrase of the tests' encrypted vaults (searched for in every output and file).
pub const PASSPHRASE: &str = "correct horse battery staple 8c1e";

/// The options that make a test vault's key slot quick to open.
pub const QUICK_KDF: [&str; 4] = ["--kdf-memory-mib", "8", "--kdf-iterations", "1"];

/// A new vault at `location` (a directory, or `s3://BUCKET/PREFIX` with S3 settings from
/// `AWS_*`) encrypted under `passphrase`, its key in the vault's config: `vault init --vault
/// LOCATION --encryption` plus `extra` (e.g. a secondary).
pub fn init_encrypted_at(location: &str, passphrase: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = passphrase_file(dir.path(), "passphrase", passphrase);
    let mut args = vec!["vault", "init", "--vault", location, "--encryption"];
    args.extend(QUICK_KDF);
    args.extend_from_slice(extra);
    with_passphrase(&pass, args).success();
}

/// A new encrypted vault at `vault`, under [`PASSPHRASE`].
pub fn init_encrypted(vault: &Path) -> PathBuf {
    init_encrypted_at(arg(vault), PASSPHRASE, &[]);
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
