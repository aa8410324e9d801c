//! When a policy's backups run: schedules as pure functions of (schedule, time zone, now).
//!
//! A schedule names local (civil) times in the policy's IANA time zone. Each civil time is
//! resolved to one instant:
//!
//! - a civil time that a daylight-saving change skips (02:30 on a spring-forward night) runs
//!   once, at the first valid instant after the gap (the instant of the transition);
//! - a civil time that happens twice (01:30 on a fall-back night) runs once, at its first
//!   occurrence;
//! - two civil times that resolve to the same instant run once.
//!
//! Every function takes the instants it needs as arguments: nothing here reads a clock.
//!
//! This file holds the schedule kinds and the civil times of each day's runs; `slots` resolves
//! them to instants ([`Schedule::slots`], [`Schedule::next`], [`Schedule::slots_on`]) and
//! `transfers` says which runs go to the vault ([`transfers`](crate::transfers)).

mod slots;
#[cfg(test)]
mod tests;
pub(crate) mod transfers;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};

/// Hours between the backups of an hourly schedule (Enhanced policies only).
pub const HOURLY_INTERVALS: [u8; 4] = [4, 6, 8, 12];

/// When backups run, in the policy's time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every day at `at`.
    Daily { at: Time },
    /// On each of `days` (sorted Monday first, no duplicates) at `at`.
    Weekly { days: Vec<Weekday>, at: Time },
    /// Every day, at `start` and every `every` hours after it for as long as the window lasts:
    /// the runs of date D are at D `start` + k·`every` hours (civil arithmetic, so a run can
    /// fall on D+1) for every k with k·`every` < `window_hours`. `every` is one of
    /// `HOURLY_INTERVALS` (4, 6, 8 or 12); `window_hours` is 1 to 24.
    Hourly {
        every: u8,
        start: Time,
        window_hours: u8,
    },
}

/// One scheduled backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    /// The instant it runs.
    pub at: Timestamp,
    /// The local date and time it was scheduled for (which `at` differs from only in a
    /// daylight-saving gap). Its date is the day the run belongs to.
    pub scheduled: DateTime,
}

/// The span of `hours` hours, for civil arithmetic.
fn hours(hours: i64) -> jiff::Span {
    jiff::Span::new().hours(hours)
}

/// `date` moved by `days` days, saturating at the ends of jiff's range.
fn add_days(date: Date, days: i64) -> Date {
    date.saturating_add(jiff::Span::new().days(days))
}

impl Schedule {
    /// The civil times of the runs that the schedule's day `date` starts, in order. For an
    /// hourly schedule some of them fall on `date` + 1; for the others they are all on `date`.
    fn civil_runs(&self, date: Date) -> Vec<DateTime> {
        match self {
            Schedule::Daily { at } => vec![date.to_datetime(*at)],
            Schedule::Weekly { days, at } => {
                if days.contains(&date.weekday()) {
                    vec![date.to_datetime(*at)]
                } else {
                    Vec::new()
                }
            }
            Schedule::Hourly {
                every,
                start,
                window_hours,
            } => {
                let first = date.to_datetime(*start);
                let every = i64::from((*every).max(1));
                let window = i64::from(*window_hours);
                (0..)
                    .map(|k| k * every)
                    .take_while(|offset| *offset < window)
                    .filter_map(|offset| first.checked_add(hours(offset)).ok())
                    .collect()
            }
        }
    }
}
