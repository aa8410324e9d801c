//! The passphrase kept in a file (`BLOCKVAULT_PASSWORD_FILE`): its bytes less one trailing
//! newline. A file other users can open gets a warning, as `ssh` gives for a key; a file
//! that is not a regular one (`<(pass show x)`, a FIFO) is read as it is, without one.
//!
//! Errors name the file and what named it, never what it holds.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::secret::{MAX_LEN, Passphrase};
use crate::error::{Error, Result};

/// Reads the passphrase in `path`; a warning when the file is open to others.
pub(super) fn read(
    path: &Path,
    given_by: &'static str,
    warnings: &mut Vec<String>,
) -> Result<Passphrase> {
    let fail = |problem: String| Error::PassphraseFile {
        path: path.to_owned(),
        given_by,
        problem,
    };
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if meta.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    let mode = meta.permissions().mode();
    if meta.is_file() && mode & 0o077 != 0 {
        warnings.push(format!(
            "the passphrase file {} is open to other users (mode {:03o}); `chmod 600` it",
            path.display(),
            mode & 0o777
        ));
    }
    // One buffer allocated up front: no reallocation leaves a copy of the secret behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_LEN + 1));
    file.take(MAX_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() > MAX_LEN {
        return Err(fail(format!(
            "it is larger than {} KiB: not a passphrase file",
            MAX_LEN / 1024
        )));
    }
    let passphrase = Passphrase::from_output(bytes);
    if passphrase.is_empty() {
        return Err(fail("it is empty".into()));
    }
    Ok(passphrase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockvault_core::ErrorKind;
    use std::fs::{self, Permissions};

    const BY: &str = "BLOCKVAULT_PASSWORD_FILE";

    fn write(dir: &Path, name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, content).expect("write");
        fs::set_permissions(&path, Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn the_content_less_one_newline_is_the_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut warnings = Vec::new();
        for (content, want) in [
            (&b"hunter2\n"[..], &b"hunter2"[..]),
            (b"hunter2\r\n", b"hunter2"),
            (b"hunter2\n\n", b"hunter2\n"),
            (b"  spaced  ", b"  spaced  "),
        ] {
            let path = write(dir.path(), "pw", content, 0o600);
            let got = read(&path, BY, &mut warnings).expect("read");
            assert_eq!(got.as_bytes(), want);
        }
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn an_empty_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for content in [&b""[..], b"\n", b"\r\n"] {
            let path = write(dir.path(), "pw", content, 0o600);
            let err = read(&path, BY, &mut Vec::new()).expect_err("empty");
            assert_eq!(err.kind(), ErrorKind::Locked);
            assert!(err.to_string().contains("it is empty"), "{err}");
        }
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nowhere");
        let err = read(&path, BY, &mut Vec::new()).expect_err("missing");
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(BY), "{text}");
        assert!(text.contains("No such file"), "{text}");
        let err = read(dir.path(), BY, &mut Vec::new()).expect_err("a directory");
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn an_unreadable_file_names_the_path_never_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "pw", &[b'x'; MAX_LEN + 1], 0o600);
        let err = read(&path, BY, &mut Vec::new()).expect_err("too large");
        assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
        assert!(!err.to_string().contains("xxx"), "{err}");
    }

    #[test]
    fn a_file_open_to_others_is_read_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o640, 0o604, 0o620] {
            let path = write(dir.path(), "pw", b"hunter2\n", mode);
            let mut warnings = Vec::new();
            let got = read(&path, BY, &mut warnings).expect("read");
            assert_eq!(got.as_bytes(), b"hunter2");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].contains(&format!("mode {mode:03o}")),
                "{warnings:?}"
            );
            assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
            assert!(!warnings[0].contains("hunter2"), "{warnings:?}");
        }
        let path = write(dir.path(), "pw", b"hunter2\n", 0o400);
        let mut warnings = Vec::new();
        read(&path, BY, &mut warnings).expect("read");
        assert!(warnings.is_empty(), "owner-only: {warnings:?}");
    }
}
