//! The catalog's SQLite errors with their cause named when it is a full file system: SQLite
//! says SQLITE_FULL, or only "disk I/O error" when the write that ran out of space was its
//! journal's or its shared memory's, so an I/O error on a file system with (almost) nothing
//! left available is taken for the same cause.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::Error;

/// Below this much available space an I/O error of the catalog is put down to the space.
const LOW: u64 = 1 << 20;

/// The error of the catalog at `path` failing with `source`.
pub(super) fn sqlite_error(path: PathBuf, source: rusqlite::Error) -> Error {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let free = available(&dir);
    let full = match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => true,
        Some(ErrorCode::SystemIoFailure) => free.is_some_and(|f| f < LOW),
        _ => false,
    };
    if full {
        Error::StateDirFull {
            path,
            dir,
            free: free.unwrap_or(0),
            source: Box::new(source),
        }
    } else {
        Error::Sqlite { path, source }
    }
}

/// The bytes available to unprivileged writers on the file system holding `dir` (as `df`
/// says), when it can be asked.
fn available(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_full_names_the_state_directory_and_its_free_space() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.db");
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let err = sqlite_error(path.clone(), full);
        let text = err.to_string();
        assert!(
            matches!(&err, Error::StateDirFull { dir: d, .. } if d == dir.path()),
            "{err:?}"
        );
        assert!(text.contains("no space left"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains(" free"), "{text}");
        // Another error is left as it was.
        let other = sqlite_error(path, rusqlite::Error::InvalidQuery);
        assert!(matches!(other, Error::Sqlite { .. }), "{other:?}");
    }
}
