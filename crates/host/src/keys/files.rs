//! Key files on this host's disk: written mode 0600 in a directory made 0700, never over a
//! file that is there (a key file is the only copy of a key-file vault's slots), and replaced
//! only by a rename (a crash leaves the old file or the new one, never half of one).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use blockvault_core::KeyFile;

use crate::{Error, Result};

/// Refuses a key file path that is taken (before anything is written).
pub(crate) fn check_free(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::Refused(format!(
            "{} already exists; a key file is never overwritten: name another path, or move \
             that file away first",
            path.display()
        )));
    }
    Ok(())
}

/// Writes `file` to `path`, which must not exist: mode 0600, its missing directories 0700,
/// synced before this returns.
pub(crate) fn write_new(path: &Path, file: &KeyFile) -> Result<()> {
    make_parent(path)?;
    let cannot = |e: std::io::Error| Error::Other(format!("cannot write {}: {e}", path.display()));
    let mut out = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return check_free(path),
        Err(e) => return Err(cannot(e)),
    };
    let written = out
        .write_all(file.encode().as_bytes())
        .and_then(|()| out.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(cannot(e));
    }
    Ok(())
}

/// Replaces the key file at `path` with `file`: written beside it, then renamed over it.
pub(crate) fn replace(path: &Path, file: &KeyFile) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let temporary = path.with_file_name(name);
    let _ = std::fs::remove_file(&temporary);
    write_new(&temporary, file)?;
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        Error::Other(format!("cannot replace {}: {e}", path.display()))
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The key file at `path`, decoded; a file that is not there or not a key file says so.
pub(crate) fn read(path: &Path) -> Result<KeyFile> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("no key file at {}", path.display()))
        }
        _ => Error::Other(format!("cannot read {}: {e}", path.display())),
    })?;
    KeyFile::decode(&text).map_err(|e| {
        Error::Usage(format!(
            "{} is not a blockvault key file: {e}",
            path.display()
        ))
    })
}

/// Creates the missing directories above `path`, mode 0700 (a key directory others can list
/// tells them which vaults this host holds keys of).
fn make_parent(path: &Path) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use blockvault_core::{Encryption, Kdf, KeyHome, MasterKey};

    use super::*;

    fn key_file() -> KeyFile {
        let master = MasterKey::generate();
        let kdf = Kdf::argon2id(8 * 1024, 1).expect("kdf");
        let enc = Encryption::new(
            &master,
            b"pw",
            kdf,
            KeyHome::KeyFile,
            jiff::Timestamp::now(),
        )
        .expect("enc");
        KeyFile::new("0123456789abcdef", &enc, enc.slots.clone())
    }

    #[test]
    fn a_new_key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys/v.key");
        let file = key_file();
        write_new(&path, &file).expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("keys")), 0o700);
        assert_eq!(read(&path).expect("read"), file);
        let before = std::fs::read(&path).expect("bytes");
        let err = write_new(&path, &key_file()).expect_err("exists");
        assert_eq!(err.kind(), blockvault_core::ErrorKind::Refused);
        assert_eq!(std::fs::read(&path).expect("bytes"), before);
        let other = key_file();
        replace(&path, &other).expect("replace");
        assert_eq!(read(&path).expect("read"), other);
        assert_eq!(mode(&path), 0o600);
    }
}
