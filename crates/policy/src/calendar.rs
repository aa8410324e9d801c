//! How policies spell the calendar: weekdays, months, days of a month, times of day and time
//! zones, as the policy file and the CLI flags write them.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

use crate::PolicyError;

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
