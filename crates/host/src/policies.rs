//! Policies as a host reads them: policy files from disk, and this host's time zone for a new
//! policy.

use std::path::PathBuf;

use blockvault_jobs::Policy;

use crate::{Error, Result};

/// The policies in `files`, one each, every file read and checked before any is returned: a
/// caller applies all or nothing. A file that is not there is not found, one that cannot be
/// read a failure; one that is not a valid policy is a usage error naming the file.
pub fn policy_files(files: &[PathBuf]) -> Result<Vec<Policy>> {
    let mut policies = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            let message = format!("cannot read policy file {}: {e}", file.display());
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(message)
            } else {
                Error::Other(message)
            }
        })?;
        let policy = Policy::from_toml(&text).map_err(|e| {
            let message = match e {
                blockvault_policy::Error::File { message } => message,
                blockvault_policy::Error::Invalid(invalid) => invalid.to_string(),
                other => other.to_string(),
            };
            blockvault_jobs::Error::Policy(blockvault_policy::Error::File {
                message: format!("{}: {message}", file.display()),
            })
        })?;
        policies.push(policy);
    }
    Ok(policies)
}

/// This host's IANA zone, or UTC when it has none: the zone of a new policy not given one.
pub fn host_timezone() -> String {
    jiff::tz::TimeZone::system()
        .iana_name()
        .unwrap_or("UTC")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_policy_file_is_a_usage_error_naming_the_file_a_missing_one_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "name = \"x\"\nno-such-field = 1\n").expect("write");
        let err = policy_files(std::slice::from_ref(&bad)).expect_err("bad");
        assert_eq!(err.kind(), blockvault_core::ErrorKind::Usage);
        assert!(err.to_string().contains("bad.toml"), "{err}");
        let missing = policy_files(&[dir.path().join("none.toml")]).expect_err("missing");
        assert_eq!(missing.kind(), blockvault_core::ErrorKind::NotFound);
        assert!(missing.to_string().contains("none.toml"), "{missing}");
    }
}
