use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// Where a vault lives: a local directory, or a bucket and prefix on an S3-compatible store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl FromStr for VaultLocation {
    type Err = Error;

    /// `s3://BUCKET` or `s3://BUCKET/PREFIX` is an S3 vault; anything else a directory.
    fn from_str(s: &str) -> Result<VaultLocation, Error> {
        let Some(rest) = s.strip_prefix("s3://") else {
            return Ok(VaultLocation::Local(PathBuf::from(s)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|reason| Error::InvalidLocation {
            location: s.to_owned(),
            reason,
        })?;
        Ok(VaultLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

/// S3 bucket naming rules (the subset every S3-compatible store accepts).
pub(crate) fn check_bucket(bucket: &str) -> Result<(), String> {
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!("bucket name {bucket:?} must be 3 to 63 characters"));
    }
    let ok = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !ok || bucket.starts_with(['-', '.']) || bucket.ends_with(['-', '.']) {
        return Err(format!(
            "bucket name {bucket:?} may hold only lowercase letters, digits, '-' and '.', \
             and must start and end with a letter or digit"
        ));
    }
    Ok(())
}

impl fmt::Display for VaultLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultLocation::Local(path) => write!(f, "{}", path.display()),
            VaultLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            VaultLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            "s3://backups/site-a/vault"
                .parse::<VaultLocation>()
                .expect("s3"),
            VaultLocation::S3 {
                bucket: "backups".into(),
                prefix: "site-a/vault".into()
            }
        );
        assert_eq!(
            "s3://backups".parse::<VaultLocation>().expect("s3"),
            VaultLocation::S3 {
                bucket: "backups".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            "/srv/vault".parse::<VaultLocation>().expect("dir"),
            VaultLocation::Local("/srv/vault".into())
        );
        for bad in ["s3://", "s3://AB", "s3://Big_Bucket/x", "s3://-x-/y"] {
            let err = bad.parse::<VaultLocation>().expect_err(bad);
            assert!(matches!(err, Error::InvalidLocation { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["s3://backups/site-a", "s3://backups", "/srv/vault"] {
            assert_eq!(text.parse::<VaultLocation>().expect(text).to_string(), text);
        }
    }
}
