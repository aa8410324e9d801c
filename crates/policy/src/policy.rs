//! A backup policy: its type, name, schedule, time zone, instant-restore days and retention
//! rules, the ranges they must be in, and the defaults of each type.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::{Error, MonthDay, PolicyError, Schedule};

blockvault_core::vocabulary!(
    /// The two kinds of backup policy (SPEC "Policies"). Enhanced adds hourly schedules, up to
    /// 30 days of instant restore and multi-disk crash consistency; a VM can move from Standard
    /// to Enhanced, never back.
    PolicyType, "policy type", Error::InvalidValue {
        Standard => "standard", "Standard";
        Enhanced => "enhanced", "Enhanced";
    }
);

/// The policy every catalog starts with, and `vault init` makes sure exists (Azure's
/// `DefaultPolicy`): Standard, daily, daily points kept 30 days, instant restore 2 days.
pub const DEFAULT_POLICY: &str = "DefaultPolicy";

/// Instant-restore days a Standard policy allows.
pub const STANDARD_INSTANT_RESTORE_DAYS: RangeInclusive<u32> = 1..=5;
/// Instant-restore days an Enhanced policy allows.
pub const ENHANCED_INSTANT_RESTORE_DAYS: RangeInclusive<u32> = 1..=30;
/// Days a daily point may be kept.
pub const DAILY_RETENTION_DAYS: RangeInclusive<u32> = 7..=9999;
/// Weeks a weekly point may be kept.
pub const WEEKLY_RETENTION_WEEKS: RangeInclusive<u32> = 1..=5163;
/// Months a monthly point may be kept.
pub const MONTHLY_RETENTION_MONTHS: RangeInclusive<u32> = 1..=1188;
/// Years a yearly point may be kept.
pub const YEARLY_RETENTION_YEARS: RangeInclusive<u32> = 1..=99;
/// Hours an hourly schedule's window may last.
pub const HOURLY_WINDOW_HOURS: RangeInclusive<u8> = 1..=24;

/// A policy's name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PolicyName(String);

impl PolicyName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PolicyName {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<PolicyName, PolicyError> {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(PolicyName(s.to_owned()))
        } else {
            Err(PolicyError::new(
                "name",
                format!("{s:?}"),
                "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            ))
        }
    }
}

impl TryFrom<String> for PolicyName {
    type Error = PolicyError;

    fn try_from(s: String) -> Result<PolicyName, PolicyError> {
        s.parse()
    }
}

impl From<PolicyName> for String {
    fn from(name: PolicyName) -> String {
        name.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backup policy: when backups run, and how long their points are kept in each tier.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: PolicyName,
    pub kind: PolicyType,
    pub schedule: Schedule,
    /// The IANA time zone the schedule's times are in.
    pub timezone: TimeZone,
    /// Days each point stays in the snapshot tier (instant restore).
    pub instant_restore_days: u32,
    pub retention: Retention,
}

/// Which vault points retention keeps, and for how long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Days a daily point is kept (daily and hourly schedules).
    pub daily_days: Option<u32>,
    pub weekly: Option<WeeklyRetention>,
    pub monthly: Option<MonthlyRetention>,
    pub yearly: Option<YearlyRetention>,
}

/// Keep the point of each of `on` for `weeks` weeks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeeklyRetention {
    pub weeks: u32,
    /// Sorted Monday first, no duplicates, not empty.
    pub on: Vec<Weekday>,
}

/// Keep the point of one day of each month for `months` months.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthlyRetention {
    pub months: u32,
    pub on: MonthDay,
}

/// Keep the point of one day of `month` each year for `years` years.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YearlyRetention {
    pub years: u32,
    /// 1 (January) to 12.
    pub month: i8,
    pub on: MonthDay,
}

impl Policy {
    /// The default Standard policy named `name`: daily at 23:00 in `timezone`, instant restore
    /// 2 days, daily points kept 30 days.
    pub fn standard(name: PolicyName, timezone: TimeZone) -> Policy {
        Policy {
            name,
            kind: PolicyType::Standard,
            schedule: Schedule::Daily {
                at: Time::constant(23, 0, 0, 0),
            },
            timezone,
            instant_restore_days: 2,
            retention: Retention {
                daily_days: Some(30),
                ..Retention::default()
            },
        }
    }

    /// The default Enhanced policy named `name`: every 4 hours from 08:00 over 24 hours in
    /// `timezone`, instant restore 7 days, daily points kept 180 days.
    pub fn enhanced(name: PolicyName, timezone: TimeZone) -> Policy {
        Policy {
            name,
            kind: PolicyType::Enhanced,
            schedule: Schedule::Hourly {
                every: 4,
                start: Time::constant(8, 0, 0, 0),
                window_hours: 24,
            },
            timezone,
            instant_restore_days: 7,
            retention: Retention {
                daily_days: Some(180),
                ..Retention::default()
            },
        }
    }

    /// The policy every catalog starts with ([`DEFAULT_POLICY`], Standard, in UTC: a host's
    /// zone is not known when the catalog is created; edit it to move the schedule).
    pub fn default_policy() -> Policy {
        Policy::standard(PolicyName(DEFAULT_POLICY.to_owned()), TimeZone::UTC)
    }

    /// The IANA name of the policy's time zone.
    pub fn timezone_name(&self) -> &str {
        self.timezone.iana_name().unwrap_or("UTC")
    }

    /// The instant-restore days this policy's type allows.
    pub fn instant_restore_range(kind: PolicyType) -> RangeInclusive<u32> {
        match kind {
            PolicyType::Standard => STANDARD_INSTANT_RESTORE_DAYS,
            PolicyType::Enhanced => ENHANCED_INSTANT_RESTORE_DAYS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet_only() {
        for ok in ["DefaultPolicy", "web-4h", "a", "v1.2_x"] {
            assert!(ok.parse::<PolicyName>().is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "é", &"x".repeat(65)] {
            let err = bad.parse::<PolicyName>().expect_err(bad);
            assert_eq!(err.field, "name", "{bad}");
        }
    }
}
