use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest VM or disk name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a name that becomes one segment of an object key: ASCII letters, digits, `.`, `_`,
/// `-`, not starting with `.` or `-`, at most [`MAX_NAME_LEN`] bytes.
fn check_name(what: &'static str, value: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(invalid("must be at most 128 characters"));
    }
    if value.starts_with(['.', '-']) {
        return Err(invalid("must not start with '.' or '-'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "may contain only ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                check_name($what, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

name_type!(
    /// The name of a protected VM, unique within a vault.
    VmName,
    "VM name"
);

name_type!(
    /// The name of one disk of a VM (by default the image's file name), unique within the VM.
    /// A restore writes the disk to a file of this name.
    DiskName,
    "disk name"
);

/// The id of a recovery point: its UTC creation time plus a 16-bit suffix whose high 10 bits
/// are the milliseconds and low 6 bits random, `YYYYMMDD-HHMMSS-xxxx`. Ids sort by time to the
/// millisecond, read well in a table, and two points made in the same millisecond still differ
/// (with odds of 63 in 64; one VM's backups never overlap that closely).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PointId(String);

impl PointId {
    /// A new id for a point made at `time`; `salt` feeds the random bits (callers pass anything
    /// that differs between concurrent writers, e.g. VM name and pid).
    pub fn generate(time: Timestamp, salt: &[u8]) -> PointId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&time.as_nanosecond().to_le_bytes());
        hasher.update(salt);
        let random = u16::from(hasher.finalize().as_bytes()[0] & 0x3f);
        let millis = time.subsec_millisecond() as u16;
        let suffix = millis << 6 | random;
        PointId(format!("{}-{suffix:04x}", time.strftime("%Y%m%d-%H%M%S")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UTC time the id was made at, to the second (what is known of a point whose record
    /// cannot be read).
    pub fn time(&self) -> Option<Timestamp> {
        jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S", self.0.get(..15)?)
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    }
}

impl FromStr for PointId {
    type Err = Error;

    fn from_str(s: &str) -> Result<PointId> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let well_formed = b.len() == 20
            && digits(0..8)
            && b[8] == b'-'
            && digits(9..15)
            && b[15] == b'-'
            && b[16..]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if well_formed {
            Ok(PointId(s.to_owned()))
        } else {
            Err(Error::InvalidName {
                what: "point id",
                value: s.to_owned(),
                reason: "expected YYYYMMDD-HHMMSS-xxxx",
            })
        }
    }
}

impl TryFrom<String> for PointId {
    type Error = Error;
    fn try_from(s: String) -> Result<PointId> {
        s.parse()
    }
}

impl From<PointId> for String {
    fn from(id: PointId) -> String {
        id.0
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PointId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_ordinary_vm_and_disk_names() {
        for ok in ["web01", "db.prod", "disk0.raw", "a_b-c", "X"] {
            assert!(VmName::new(ok).is_ok(), "{ok}");
            assert!(DiskName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_refuse_what_would_break_an_object_key() {
        for bad in [
            "",
            ".hidden",
            "-flag",
            "a/b",
            "a b",
            "naïve",
            "..",
            &"x".repeat(129),
        ] {
            let err = VmName::new(bad).expect_err(bad);
            assert!(
                matches!(
                    err,
                    Error::InvalidName {
                        what: "VM name",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn point_ids_sort_by_time_and_parse_back() {
        let t1: Timestamp = "2026-11-23T10:15:03Z".parse().expect("ts");
        let t2: Timestamp = "2026-11-23T10:15:04Z".parse().expect("ts");
        let a = PointId::generate(t1, b"x");
        let b = PointId::generate(t2, b"x");
        let later_in_same_second: Timestamp = "2026-11-23T10:15:03.001Z".parse().expect("ts");
        for salt in [&b"a"[..], b"b", b"c", b"d"] {
            assert!(PointId::generate(t1, b"zzz") < PointId::generate(later_in_same_second, salt));
        }
        assert!(a.as_str().starts_with("20261123-101503-"), "{a}");
        assert!(a < b);
        assert_eq!(a.as_str().parse::<PointId>().expect("parse"), a);
        assert_ne!(PointId::generate(t1, b"x"), PointId::generate(t1, b"y"));
    }

    #[test]
    fn point_id_parse_rejects_garbage() {
        for bad in [
            "",
            "20261123-101503",
            "20261123-101503-zzzz",
            "2026112x-101503-0000",
        ] {
            assert!(bad.parse::<PointId>().is_err(), "{bad}");
        }
    }
}
