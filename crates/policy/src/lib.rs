//! Backup policies (SPEC "Policies"): when a VM is backed up, how long its points stay in the
//! snapshot tier, and which vault points retention keeps.
//!
//! A [`Policy`] is always valid: the only ways to build one are [`Policy::from_doc`] (and
//! [`Policy::from_toml`]), which apply the defaults of its type and check every range, and the
//! defaults themselves ([`Policy::standard`], [`Policy::enhanced`]). The [`PolicyDoc`] is its
//! written form: the TOML file a user applies, and what the catalog stores.
//!
//! | | Standard | Enhanced |
//! |---|---|---|
//! | schedule | daily or weekly at HH:MM | hourly (every 4, 6, 8 or 12 h from a start time over a window), daily or weekly |
//! | instant restore | 1-5 days, default 2 | 1-30 days, default 7 |
//! | daily retention | 7-9999 days, default 30 | 7-9999 days, default 180 |
//! | weekly / monthly / yearly retention | optional: 1-5163 weeks, 1-1188 months, 1-99 years | same |
//!
//! A weekly schedule keeps weekly points instead of daily ones (default 12 weeks on the
//! scheduled days).
//!
//! # Pure
//!
//! Everything here is a function of its arguments: no clock, no I/O, no runtime. The jobs
//! crate stores policies in its catalog and runs them; this crate only says what they mean:
//!
//! - **When backups run**: a [`Schedule`] is a pure function of (schedule, time zone,
//!   instants): [`Schedule::slots`], [`Schedule::next`], [`Schedule::slots_on`], and
//!   [`transfers`] (the Enhanced hourly rule: the last backup of each local day goes to the
//!   vault, or the next day's first when that one did not). Daylight saving: a skipped local
//!   time runs once at the transition, a repeated one once, first.
//! - **Which vault points are kept**: [`retention`] gives each point a [`Verdict`] from
//!   (points, policy, now, whether protection is on): every rule that keeps it, until when.
//! - **The policy file**: [`PolicyDoc`], read by [`Policy::from_toml`] / [`Policy::from_doc`]
//!   and written by [`Policy::to_toml`] / [`Policy::to_doc`]. A value out of range is a
//!   [`PolicyError`] naming the field, the value and the range.

mod error;
mod file;
mod retention;
mod schedule;

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

pub use crate::{
    error::{Error, PolicyError, Result},
    file::{PolicyDoc, RetentionDoc, ScheduleDoc},
    retention::{KeepReason, RetainedPoint, Verdict, retention},
    schedule::{HOURLY_INTERVALS, Schedule, Slot, transfers},
};

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

/// A day of a month, as Azure's monthly and yearly retention name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonthDay {
    /// The n-th day, 1 to 28 (every month has it).
    Day(i8),
    /// The last day.
    Last,
    /// The first, second, third, fourth or last `weekday` (`nth` is 1 to 4, or -1 for last).
    Weekday { nth: i8, weekday: Weekday },
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

/// Weekdays as the policy file and the CLI spell them: `mon` ... `sun` (full names accepted).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    let s = s.trim().to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|(short, _)| s == *short || (s.len() > 3 && weekday_name(short).starts_with(&s)))
        .map(|&(_, day)| day)
}

pub fn weekday_key(day: Weekday) -> &'static str {
    WEEKDAYS
        .iter()
        .find(|(_, d)| *d == day)
        .map_or("mon", |(key, _)| key)
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn weekday_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

/// Sorts weekdays Monday first and drops duplicates.
pub(crate) fn normalize_weekdays(days: &mut Vec<Weekday>) {
    days.sort_by_key(|d| d.to_monday_zero_offset());
    days.dedup();
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// A month as the policy file spells it: `jan` ... `dec`, or 1 to 12.
pub fn parse_month(s: &str) -> Option<i8> {
    let s = s.trim().to_ascii_lowercase();
    if let Ok(n) = s.parse::<i8>() {
        return (1..=12).contains(&n).then_some(n);
    }
    MONTHS
        .iter()
        .position(|m| s.len() >= 3 && s.starts_with(m))
        .and_then(|i| i8::try_from(i + 1).ok())
}

pub fn month_key(month: i8) -> &'static str {
    usize::try_from(month - 1)
        .ok()
        .and_then(|i| MONTHS.get(i))
        .copied()
        .unwrap_or("jan")
}

const NTH: [(&str, i8); 5] = [
    ("first", 1),
    ("second", 2),
    ("third", 3),
    ("fourth", 4),
    ("last", -1),
];

impl FromStr for MonthDay {
    type Err = PolicyError;

    /// `1` to `28`, `last`, or `first-sunday` ... `fourth-sunday`, `last-friday`.
    fn from_str(s: &str) -> Result<MonthDay, PolicyError> {
        let t = s.trim().to_ascii_lowercase();
        let parsed = if let Ok(day) = t.parse::<i8>() {
            (1..=28).contains(&day).then_some(MonthDay::Day(day))
        } else if t == "last" {
            Some(MonthDay::Last)
        } else {
            t.split_once('-').and_then(|(nth, day)| {
                let nth = NTH.iter().find(|(k, _)| *k == nth)?.1;
                Some(MonthDay::Weekday {
                    nth,
                    weekday: parse_weekday(day)?,
                })
            })
        };
        parsed.ok_or_else(|| {
            PolicyError::new(
                "on",
                format!("{s:?}"),
                "a day of the month 1-28, \"last\", or first|second|third|fourth|last-WEEKDAY \
                 (for example \"first-sunday\")",
            )
        })
    }
}

impl fmt::Display for MonthDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MonthDay::Day(day) => write!(f, "{day}"),
            MonthDay::Last => f.write_str("last"),
            MonthDay::Weekday { nth, weekday } => {
                let nth = NTH
                    .iter()
                    .find(|(_, n)| *n == nth)
                    .map_or("first", |(k, _)| k);
                write!(f, "{nth}-{}", weekday_name(weekday_key(weekday)))
            }
        }
    }
}

/// `HH:MM` (24-hour clock).
pub fn parse_time_of_day(field: &str, s: &str) -> Result<Time, PolicyError> {
    let parsed = s.trim().split_once(':').and_then(|(h, m)| {
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
    });
    parsed.ok_or_else(|| PolicyError::new(field, format!("{s:?}"), "a time HH:MM, 00:00-23:59"))
}

/// A time of day as the policy file writes it.
pub fn time_key(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// An IANA time zone by name (`Europe/Paris`, `America/New_York`, `UTC`).
pub fn parse_timezone(s: &str) -> Result<TimeZone, PolicyError> {
    TimeZone::get(s.trim()).map_err(|_| {
        PolicyError::new(
            "timezone",
            format!("{s:?}"),
            "an IANA time zone name, for example Europe/Paris, America/New_York or UTC",
        )
    })
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

    #[test]
    fn month_days_round_trip_through_their_text() {
        for text in [
            "1",
            "28",
            "last",
            "first-sunday",
            "fourth-monday",
            "last-friday",
        ] {
            let day: MonthDay = text.parse().expect(text);
            assert_eq!(day.to_string(), text);
        }
        for bad in ["0", "29", "31", "fifth-monday", "last-funday", "x"] {
            assert!(bad.parse::<MonthDay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn weekdays_months_and_times_parse() {
        assert_eq!(parse_weekday("Sun"), Some(Weekday::Sunday));
        assert_eq!(parse_weekday("wednesday"), Some(Weekday::Wednesday));
        assert_eq!(parse_weekday("x"), None);
        assert_eq!(parse_month("Mar"), Some(3));
        assert_eq!(parse_month("12"), Some(12));
        assert_eq!(parse_month("13"), None);
        assert_eq!(month_key(12), "dec");
        let t = parse_time_of_day("at", "8:05").expect("time");
        assert_eq!(time_key(t), "08:05");
        for bad in ["24:00", "12:60", "1200", "12:5", ""] {
            let err = parse_time_of_day("at", bad).expect_err(bad);
            assert_eq!(err.field, "at");
        }
    }

    #[test]
    fn timezones_are_iana_names() {
        assert!(parse_timezone("America/New_York").is_ok());
        let err = parse_timezone("Mars/Olympus").expect_err("no such zone");
        assert_eq!(err.field, "timezone");
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }
}
