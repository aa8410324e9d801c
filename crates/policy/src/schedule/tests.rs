//! Schedules as tables of cases: the helpers here, the cases by concept below.

mod daylight_saving;
mod slots;
mod transfers;

use super::*;
use jiff::SignedDuration;
use jiff::civil::Weekday::{Friday, Monday, Sunday, Wednesday};
use jiff::tz::TimeZone;

/// Expected slots as (scheduled civil time, UTC instant).
type Runs = &'static [(&'static str, &'static str)];

/// (zone, days, at, after, until, the slots).
type WeeklyRow = (
    &'static str,
    &'static [Weekday],
    &'static str,
    &'static str,
    &'static str,
    Runs,
);

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).expect("time zone in the bundled tzdb")
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn civil(s: &str) -> DateTime {
    s.parse().expect("civil datetime")
}

fn day(s: &str) -> Date {
    s.parse().expect("date")
}

fn time(s: &str) -> Time {
    s.parse().expect("time")
}

fn daily(at: &str) -> Schedule {
    Schedule::Daily { at: time(at) }
}

fn weekly(days: &[Weekday], at: &str) -> Schedule {
    Schedule::Weekly {
        days: days.to_vec(),
        at: time(at),
    }
}

fn hourly(every: u8, start: &str, window_hours: u8) -> Schedule {
    Schedule::Hourly {
        every,
        start: time(start),
        window_hours,
    }
}

fn slot(scheduled: &str, at: &str) -> Slot {
    Slot {
        at: ts(at),
        scheduled: civil(scheduled),
    }
}

fn hours_after(t: Timestamp, h: i64) -> Timestamp {
    t + SignedDuration::from_hours(h)
}

/// The instant of local noon on `date` (unambiguous in every zone tested).
fn noon(tz: &TimeZone, date: Date) -> Timestamp {
    date.at(12, 0, 0, 0)
        .to_zoned(tz.clone())
        .expect("noon in range")
        .timestamp()
}
