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

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};

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

/// The instant a civil time `dt` in `tz` runs at (see the module doc): the only instant when
/// unambiguous; the earlier of the two in a fold; the instant of the transition in a gap.
/// `None` only when the instant is outside jiff's range.
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        // `before` is the offset in force before the transition: the larger one when the
        // clocks go back, so this is the first occurrence.
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { before, after } => {
            // The gap is the civil interval [G, G + (after - before)); the transition instant
            // T is G read with `before` (equivalently G + (after - before) read with `after`).
            // `dt` read with `after` lies strictly before T and `dt` read with `before` (what
            // jiff's `compatible()` gives, e.g. 03:30 for 02:30) lies at or after it, so T is
            // the first transition after the former.
            let earliest = after.to_timestamp(dt).ok()?;
            let latest = before.to_timestamp(dt).ok()?;
            match tz.following(earliest).next() {
                Some(transition) if transition.timestamp() <= latest => {
                    Some(transition.timestamp())
                }
                // Unreachable with a consistent time zone; the latest candidate is still a
                // valid instant after the gap.
                _ => Some(latest),
            }
        }
    }
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

    /// Every slot of the days `first` to `last` (inclusive) started, resolved, in time order,
    /// with the slots that resolve to an instant already taken by an earlier civil time removed.
    fn resolved(&self, tz: &TimeZone, first: Date, last: Date) -> Vec<Slot> {
        let mut slots = Vec::new();
        let mut date = first;
        while date <= last {
            slots.extend(
                self.civil_runs(date).into_iter().filter_map(|scheduled| {
                    resolve(tz, scheduled).map(|at| Slot { at, scheduled })
                }),
            );
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        // Slots order by instant, then by civil time: of the slots sharing an instant the
        // first kept is the earliest civil time.
        slots.sort_unstable();
        slots.dedup_by_key(|slot| slot.at);
        slots
    }

    /// The slots whose instant is in (`after`, `until`], in time order, without duplicates
    /// (two civil times resolving to one instant give the slot of the earlier one).
    ///
    /// Empty when `until` <= `after`. The work is proportional to the number of local days
    /// between the two instants.
    pub fn slots(&self, tz: &TimeZone, after: Timestamp, until: Timestamp) -> Vec<Slot> {
        if until <= after {
            return Vec::new();
        }
        // A slot whose instant is after `after` is scheduled no earlier than the day before
        // the local date of `after` (a gap moves a run forward, never back) and is started by
        // that day or the one before it (hourly runs roll over midnight). One more day either
        // way covers a gap of up to a day (Pacific/Apia skipped 2011-12-30).
        let first = add_days(tz.to_datetime(after).date(), -2);
        let last = add_days(tz.to_datetime(until).date(), 1);
        let mut slots = self.resolved(tz, first, last);
        slots.retain(|slot| after < slot.at && slot.at <= until);
        slots
    }

    /// The first slot strictly after `after`: the first of
    /// [`slots`](Self::slots)`(tz, after, until)` for any `until` far enough ahead.
    ///
    /// # Panics
    ///
    /// If there is no slot in the 16 days after `after`: only for a weekly schedule without
    /// days, which policy validation refuses, or within 16 days of the end of jiff's range
    /// (year 9999).
    pub fn next(&self, tz: &TimeZone, after: Timestamp) -> Slot {
        // A weekly schedule with one day has a slot at most 7 days (plus a gap or a fold) on.
        for days in [9, 16] {
            let until = after
                .saturating_add(jiff::SignedDuration::from_hours(24 * days))
                .unwrap_or(Timestamp::MAX);
            if let Some(slot) = self.slots(tz, after, until).first() {
                return *slot;
            }
        }
        panic!("schedule {self:?} has no slot in the 16 days after {after}")
    }

    /// The slots scheduled on the local date `date` (`Slot::scheduled.date() == date`), in
    /// order.
    ///
    /// For an hourly schedule this includes the runs of the previous day's window that roll
    /// over midnight onto `date`, and excludes the runs of this day's window that roll onto
    /// the next day. A slot removed as a duplicate (its instant taken by an earlier civil
    /// time, possibly of the previous day) is not included.
    pub fn slots_on(&self, tz: &TimeZone, date: Date) -> Vec<Slot> {
        let mut slots = self.resolved(tz, add_days(date, -2), date);
        slots.retain(|slot| slot.scheduled.date() == date);
        slots
    }
}

/// Whether the backup of `slot` is transferred to the vault (the Enhanced hourly rule of
/// SPEC.md "Policies").
///
/// For daily and weekly schedules every backup is. For an hourly schedule the last slot of each
/// local day (the last of [`Schedule::slots_on`] the date of `slot.scheduled`) is, and so is
/// the first slot of a day when the previous day's last backup did not reach the vault: when
/// `newest_vault_point` (the time of the VM's newest vault point, `None` if it has none) is
/// before the instant of the previous day's last slot. When the previous day has no slot, the
/// first slot is transferred. Any other slot, including one that is not a slot of `schedule`
/// on its date, is not transferred.
pub fn transfers(
    schedule: &Schedule,
    tz: &TimeZone,
    slot: &Slot,
    newest_vault_point: Option<Timestamp>,
) -> bool {
    if !matches!(schedule, Schedule::Hourly { .. }) {
        return true;
    }
    let date = slot.scheduled.date();
    let day = schedule.slots_on(tz, date);
    if day.last() == Some(slot) {
        return true;
    }
    if day.first() != Some(slot) {
        return false;
    }
    let previous_last = date
        .yesterday()
        .ok()
        .and_then(|yesterday| schedule.slots_on(tz, yesterday).last().copied());
    match (previous_last, newest_vault_point) {
        (Some(previous), Some(newest)) => newest < previous.at,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use jiff::civil::Weekday::{Friday, Monday, Sunday, Wednesday};

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

    #[test]
    fn daily_in_a_spring_forward_gap_runs_once_at_the_transition() {
        // (zone, daily at, scheduled civil time, the UTC instant it runs, its local display)
        let table = [
            // 02:00 EST -> 03:00 EDT
            (
                "America/New_York",
                "02:30",
                "2026-03-08T02:30",
                "2026-03-08T07:00Z",
                "2026-03-08T03:00",
            ),
            (
                "America/New_York",
                "02:00",
                "2026-03-08T02:00",
                "2026-03-08T07:00Z",
                "2026-03-08T03:00",
            ),
            (
                "America/New_York",
                "02:59",
                "2026-03-08T02:59",
                "2026-03-08T07:00Z",
                "2026-03-08T03:00",
            ),
            // the edges of the gap are ordinary times
            (
                "America/New_York",
                "01:59",
                "2026-03-08T01:59",
                "2026-03-08T06:59Z",
                "2026-03-08T01:59",
            ),
            (
                "America/New_York",
                "03:00",
                "2026-03-08T03:00",
                "2026-03-08T07:00Z",
                "2026-03-08T03:00",
            ),
            // 02:00 CET -> 03:00 CEST
            (
                "Europe/Berlin",
                "02:30",
                "2026-03-29T02:30",
                "2026-03-29T01:00Z",
                "2026-03-29T03:00",
            ),
            // southern hemisphere: 02:00 AEST -> 03:00 AEDT in October
            (
                "Australia/Sydney",
                "02:30",
                "2026-10-04T02:30",
                "2026-10-03T16:00Z",
                "2026-10-04T03:00",
            ),
            // a 30-minute shift: 02:00 +10:30 -> 02:30 +11
            (
                "Australia/Lord_Howe",
                "02:15",
                "2026-10-04T02:15",
                "2026-10-03T15:30Z",
                "2026-10-04T02:30",
            ),
            (
                "Australia/Lord_Howe",
                "02:30",
                "2026-10-04T02:30",
                "2026-10-03T15:30Z",
                "2026-10-04T02:30",
            ),
            (
                "Australia/Lord_Howe",
                "01:59",
                "2026-10-04T01:59",
                "2026-10-03T15:29Z",
                "2026-10-04T01:59",
            ),
            // gaps at midnight: 00:00 -> 01:00
            (
                "America/Santiago",
                "00:30",
                "2026-09-06T00:30",
                "2026-09-06T04:00Z",
                "2026-09-06T01:00",
            ),
            (
                "America/Santiago",
                "00:00",
                "2026-09-06T00:00",
                "2026-09-06T04:00Z",
                "2026-09-06T01:00",
            ),
            (
                "America/Havana",
                "00:30",
                "2026-03-08T00:30",
                "2026-03-08T05:00Z",
                "2026-03-08T01:00",
            ),
            // Samoa skipped all of 2011-12-30
            (
                "Pacific/Apia",
                "10:00",
                "2011-12-30T10:00",
                "2011-12-30T10:00Z",
                "2011-12-31T00:00",
            ),
        ];
        for (name, at, scheduled, runs_at, displays) in table {
            let tz = zone(name);
            let expected = slot(scheduled, runs_at);
            let found = daily(at).slots(
                &tz,
                hours_after(expected.at, -6),
                hours_after(expected.at, 6),
            );
            assert_eq!(found, vec![expected], "{name} daily {at}");
            assert_eq!(
                tz.to_datetime(expected.at),
                civil(displays),
                "{name} daily {at} local display"
            );
        }
    }

    #[test]
    fn daily_in_a_fall_back_fold_runs_once_at_the_first_occurrence() {
        // (zone, daily at, scheduled civil time, the UTC instant of its first occurrence)
        let table = [
            // 02:00 EDT -> 01:00 EST: 01:30 happens at 05:30Z and 06:30Z
            (
                "America/New_York",
                "01:30",
                "2026-11-01T01:30",
                "2026-11-01T05:30Z",
            ),
            (
                "America/New_York",
                "01:00",
                "2026-11-01T01:00",
                "2026-11-01T05:00Z",
            ),
            (
                "America/New_York",
                "02:00",
                "2026-11-01T02:00",
                "2026-11-01T07:00Z",
            ),
            // 03:00 CEST -> 02:00 CET
            (
                "Europe/Berlin",
                "02:30",
                "2026-10-25T02:30",
                "2026-10-25T00:30Z",
            ),
            // southern hemisphere: 03:00 AEDT -> 02:00 AEST in April
            (
                "Australia/Sydney",
                "02:30",
                "2026-04-05T02:30",
                "2026-04-04T15:30Z",
            ),
            // a 30-minute shift: 02:00 +11 -> 01:30 +10:30
            (
                "Australia/Lord_Howe",
                "01:45",
                "2026-04-05T01:45",
                "2026-04-04T14:45Z",
            ),
            // folds at midnight: 24:00 -> 23:00 (Santiago), 01:00 -> 00:00 (Havana)
            (
                "America/Santiago",
                "23:30",
                "2026-04-04T23:30",
                "2026-04-05T02:30Z",
            ),
            (
                "America/Havana",
                "00:30",
                "2026-11-01T00:30",
                "2026-11-01T04:30Z",
            ),
        ];
        for (name, at, scheduled, runs_at) in table {
            let tz = zone(name);
            let expected = slot(scheduled, runs_at);
            // 20 h either way covers both occurrences and no other day's run.
            let found = daily(at).slots(
                &tz,
                hours_after(expected.at, -20),
                hours_after(expected.at, 20),
            );
            assert_eq!(found, vec![expected], "{name} daily {at}");
        }
    }

    #[test]
    fn a_daily_schedule_runs_once_a_day_over_a_month() {
        // (zone, daily at, the month's first day, its number of days)
        let table = [
            ("America/New_York", "02:30", "2026-03-01", 31),
            ("America/New_York", "01:30", "2026-11-01", 30),
            ("Europe/Berlin", "02:30", "2026-03-01", 31),
            ("Europe/Berlin", "02:30", "2026-10-01", 31),
            ("Australia/Sydney", "02:30", "2026-04-01", 30),
            ("Australia/Sydney", "02:30", "2026-10-01", 31),
            ("Australia/Lord_Howe", "01:45", "2026-04-01", 30),
            ("Australia/Lord_Howe", "02:15", "2026-10-01", 31),
            ("America/Santiago", "00:30", "2026-09-01", 30),
            ("America/Santiago", "23:30", "2026-04-01", 30),
            ("America/Havana", "00:30", "2026-03-01", 31),
            ("America/Havana", "00:30", "2026-11-01", 30),
            ("UTC", "00:00", "2026-02-01", 28),
            ("Pacific/Apia", "10:00", "2011-12-01", 31),
        ];
        for (name, at, first, days) in table {
            let tz = zone(name);
            let first = day(first);
            let last = add_days(first, days - 1);
            // From the noon before the month's first run to the noon after its last.
            let (from, to) = if time(at) < time("12:00") {
                (add_days(first, -1), last)
            } else {
                (first, add_days(last, 1))
            };
            let found = daily(at).slots(&tz, noon(&tz, from), noon(&tz, to));
            assert_eq!(
                found.len(),
                usize::try_from(days).expect("days"),
                "{name} {first}"
            );
            for (i, found) in found.iter().enumerate() {
                let i = i64::try_from(i).expect("index");
                assert_eq!(
                    found.scheduled,
                    add_days(first, i).to_datetime(time(at)),
                    "{name} {first} run {i}"
                );
            }
            assert!(
                found.windows(2).all(|pair| pair[0].at < pair[1].at),
                "{name} {first}: instants in order"
            );
        }
    }

    #[test]
    fn hourly_runs_across_transitions() {
        // (zone, every, start, window, date, the date's slots as (scheduled, UTC instant))
        let table: [(&str, u8, &str, u8, &str, Runs); 11] = [
            (
                "America/New_York",
                4,
                "00:00",
                24,
                "2026-03-08",
                &[
                    ("2026-03-08T00:00", "2026-03-08T05:00Z"),
                    ("2026-03-08T04:00", "2026-03-08T08:00Z"),
                    ("2026-03-08T08:00", "2026-03-08T12:00Z"),
                    ("2026-03-08T12:00", "2026-03-08T16:00Z"),
                    ("2026-03-08T16:00", "2026-03-08T20:00Z"),
                    ("2026-03-08T20:00", "2026-03-09T00:00Z"),
                ],
            ),
            (
                "America/New_York",
                4,
                "02:00",
                24,
                "2026-03-08",
                &[
                    ("2026-03-08T02:00", "2026-03-08T07:00Z"),
                    ("2026-03-08T06:00", "2026-03-08T10:00Z"),
                    ("2026-03-08T10:00", "2026-03-08T14:00Z"),
                    ("2026-03-08T14:00", "2026-03-08T18:00Z"),
                    ("2026-03-08T18:00", "2026-03-08T22:00Z"),
                    ("2026-03-08T22:00", "2026-03-09T02:00Z"),
                ],
            ),
            // 01:00 happens twice: the first (EDT) only, then 5 real hours to 05:00 EST
            (
                "America/New_York",
                4,
                "01:00",
                24,
                "2026-11-01",
                &[
                    ("2026-11-01T01:00", "2026-11-01T05:00Z"),
                    ("2026-11-01T05:00", "2026-11-01T10:00Z"),
                    ("2026-11-01T09:00", "2026-11-01T14:00Z"),
                    ("2026-11-01T13:00", "2026-11-01T18:00Z"),
                    ("2026-11-01T17:00", "2026-11-01T22:00Z"),
                    ("2026-11-01T21:00", "2026-11-02T02:00Z"),
                ],
            ),
            (
                "Europe/Berlin",
                4,
                "02:00",
                24,
                "2026-03-29",
                &[
                    ("2026-03-29T02:00", "2026-03-29T01:00Z"),
                    ("2026-03-29T06:00", "2026-03-29T04:00Z"),
                    ("2026-03-29T10:00", "2026-03-29T08:00Z"),
                    ("2026-03-29T14:00", "2026-03-29T12:00Z"),
                    ("2026-03-29T18:00", "2026-03-29T16:00Z"),
                    ("2026-03-29T22:00", "2026-03-29T20:00Z"),
                ],
            ),
            // the previous day's window (from 22:00) rolls into the fold at 02:00
            (
                "Europe/Berlin",
                4,
                "22:00",
                24,
                "2026-10-25",
                &[
                    ("2026-10-25T02:00", "2026-10-25T00:00Z"),
                    ("2026-10-25T06:00", "2026-10-25T05:00Z"),
                    ("2026-10-25T10:00", "2026-10-25T09:00Z"),
                    ("2026-10-25T14:00", "2026-10-25T13:00Z"),
                    ("2026-10-25T18:00", "2026-10-25T17:00Z"),
                    ("2026-10-25T22:00", "2026-10-25T21:00Z"),
                ],
            ),
            (
                "Australia/Sydney",
                4,
                "02:00",
                24,
                "2026-10-04",
                &[
                    ("2026-10-04T02:00", "2026-10-03T16:00Z"),
                    ("2026-10-04T06:00", "2026-10-03T19:00Z"),
                    ("2026-10-04T10:00", "2026-10-03T23:00Z"),
                    ("2026-10-04T14:00", "2026-10-04T03:00Z"),
                    ("2026-10-04T18:00", "2026-10-04T07:00Z"),
                    ("2026-10-04T22:00", "2026-10-04T11:00Z"),
                ],
            ),
            (
                "Australia/Sydney",
                8,
                "02:00",
                24,
                "2026-04-05",
                &[
                    ("2026-04-05T02:00", "2026-04-04T15:00Z"),
                    ("2026-04-05T10:00", "2026-04-05T00:00Z"),
                    ("2026-04-05T18:00", "2026-04-05T08:00Z"),
                ],
            ),
            (
                "Australia/Lord_Howe",
                6,
                "02:00",
                24,
                "2026-10-04",
                &[
                    ("2026-10-04T02:00", "2026-10-03T15:30Z"),
                    ("2026-10-04T08:00", "2026-10-03T21:00Z"),
                    ("2026-10-04T14:00", "2026-10-04T03:00Z"),
                    ("2026-10-04T20:00", "2026-10-04T09:00Z"),
                ],
            ),
            (
                "America/Havana",
                4,
                "00:00",
                24,
                "2026-03-08",
                &[
                    ("2026-03-08T00:00", "2026-03-08T05:00Z"),
                    ("2026-03-08T04:00", "2026-03-08T08:00Z"),
                    ("2026-03-08T08:00", "2026-03-08T12:00Z"),
                    ("2026-03-08T12:00", "2026-03-08T16:00Z"),
                    ("2026-03-08T16:00", "2026-03-08T20:00Z"),
                    ("2026-03-08T20:00", "2026-03-09T00:00Z"),
                ],
            ),
            // Samoa skipped 2011-12-30: its six runs all resolve to the transition instant,
            // which is also 2011-12-31T00:00's; only the first civil time is kept.
            (
                "Pacific/Apia",
                4,
                "00:00",
                24,
                "2011-12-30",
                &[("2011-12-30T00:00", "2011-12-30T10:00Z")],
            ),
            (
                "Pacific/Apia",
                4,
                "00:00",
                24,
                "2011-12-31",
                &[
                    ("2011-12-31T04:00", "2011-12-30T14:00Z"),
                    ("2011-12-31T08:00", "2011-12-30T18:00Z"),
                    ("2011-12-31T12:00", "2011-12-30T22:00Z"),
                    ("2011-12-31T16:00", "2011-12-31T02:00Z"),
                    ("2011-12-31T20:00", "2011-12-31T06:00Z"),
                ],
            ),
        ];
        for (name, every, start, window, date, expected) in table {
            let tz = zone(name);
            let schedule = hourly(every, start, window);
            let expected: Vec<Slot> = expected.iter().map(|(s, at)| slot(s, at)).collect();
            let date = day(date);
            assert_eq!(
                schedule.slots_on(&tz, date),
                expected,
                "{name} {schedule:?} on {date}"
            );
            // The same slots come out of `slots` over the local day.
            let from = date.to_zoned(tz.clone()).expect("day start").timestamp();
            let to = add_days(date, 1)
                .to_zoned(tz.clone())
                .expect("next day start")
                .timestamp();
            let from_slots: Vec<Slot> = schedule
                .slots(&tz, hours_after(from, -24), hours_after(to, 24))
                .into_iter()
                .filter(|slot| slot.scheduled.date() == date)
                .collect();
            assert_eq!(
                from_slots, expected,
                "{name} {schedule:?} slots() on {date}"
            );
        }
    }

    #[test]
    fn weekly_runs_on_its_weekdays() {
        // (zone, days, at, after, until, the slots as (scheduled, UTC instant))
        let table: [WeeklyRow; 4] = [
            (
                "America/New_York",
                &[Monday, Wednesday, Friday],
                "02:30",
                "2026-03-01T00:00Z",
                "2026-03-14T00:00Z",
                &[
                    ("2026-03-02T02:30", "2026-03-02T07:30Z"),
                    ("2026-03-04T02:30", "2026-03-04T07:30Z"),
                    ("2026-03-06T02:30", "2026-03-06T07:30Z"),
                    ("2026-03-09T02:30", "2026-03-09T06:30Z"),
                    ("2026-03-11T02:30", "2026-03-11T06:30Z"),
                    ("2026-03-13T02:30", "2026-03-13T06:30Z"),
                ],
            ),
            // Sundays across the spring-forward Sunday: the gap run at the transition
            (
                "America/New_York",
                &[Sunday],
                "02:30",
                "2026-02-28T00:00Z",
                "2026-03-21T00:00Z",
                &[
                    ("2026-03-01T02:30", "2026-03-01T07:30Z"),
                    ("2026-03-08T02:30", "2026-03-08T07:00Z"),
                    ("2026-03-15T02:30", "2026-03-15T06:30Z"),
                ],
            ),
            // Sundays across the fall-back Sunday: once, at the first 02:30
            (
                "Australia/Sydney",
                &[Sunday],
                "02:30",
                "2026-03-28T00:00Z",
                "2026-04-18T00:00Z",
                &[
                    ("2026-03-29T02:30", "2026-03-28T15:30Z"),
                    ("2026-04-05T02:30", "2026-04-04T15:30Z"),
                    ("2026-04-12T02:30", "2026-04-11T16:30Z"),
                ],
            ),
            (
                "Europe/Berlin",
                &[Sunday],
                "02:30",
                "2026-10-20T00:00Z",
                "2026-11-03T00:00Z",
                &[
                    ("2026-10-25T02:30", "2026-10-25T00:30Z"),
                    ("2026-11-01T02:30", "2026-11-01T01:30Z"),
                ],
            ),
        ];
        for (name, days, at, after, until, expected) in table {
            let tz = zone(name);
            let schedule = weekly(days, at);
            let expected: Vec<Slot> = expected.iter().map(|(s, at)| slot(s, at)).collect();
            let found = schedule.slots(&tz, ts(after), ts(until));
            assert_eq!(found, expected, "{name} {schedule:?}");
            for slot in &found {
                assert!(days.contains(&slot.scheduled.weekday()), "{name}: {slot:?}");
            }
        }
    }

    /// Schedules and zones for the properties below, with an instant near a transition.
    fn property_cases() -> Vec<(&'static str, Schedule, Timestamp)> {
        vec![
            ("America/New_York", daily("02:30"), ts("2026-03-06T00:00Z")),
            ("America/New_York", daily("01:30"), ts("2026-10-30T00:00Z")),
            (
                "America/New_York",
                hourly(4, "08:00", 24),
                ts("2026-03-06T00:00Z"),
            ),
            (
                "America/New_York",
                hourly(4, "01:00", 24),
                ts("2026-10-30T00:00Z"),
            ),
            (
                "Europe/Berlin",
                weekly(&[Sunday], "02:30"),
                ts("2026-03-20T00:00Z"),
            ),
            (
                "Europe/Berlin",
                hourly(6, "02:00", 12),
                ts("2026-10-23T00:00Z"),
            ),
            (
                "Australia/Sydney",
                weekly(&[Monday, Sunday], "02:30"),
                ts("2026-10-01T00:00Z"),
            ),
            (
                "Australia/Sydney",
                hourly(12, "02:30", 24),
                ts("2026-04-03T00:00Z"),
            ),
            (
                "Australia/Lord_Howe",
                hourly(8, "01:45", 24),
                ts("2026-04-03T00:00Z"),
            ),
            ("America/Santiago", daily("00:30"), ts("2026-09-04T00:00Z")),
            (
                "America/Havana",
                hourly(4, "00:00", 4),
                ts("2026-03-06T00:00Z"),
            ),
            (
                "Pacific/Apia",
                hourly(4, "00:00", 24),
                ts("2011-12-28T00:00Z"),
            ),
            (
                "UTC",
                weekly(&[Wednesday], "23:59"),
                ts("2026-01-01T00:00Z"),
            ),
        ]
    }

    #[test]
    fn next_agrees_with_slots() {
        for (name, schedule, start) in property_cases() {
            let tz = zone(name);
            // Every 37 minutes over four days around the transition.
            for step in 0..(4 * 24 * 60 / 37) {
                let after = start + SignedDuration::from_mins(37 * step);
                let next = schedule.next(&tz, after);
                let first = schedule
                    .slots(&tz, after, hours_after(after, 9 * 24))
                    .first()
                    .copied();
                assert_eq!(Some(next), first, "{name} {schedule:?} after {after}");
                assert!(next.at > after, "{name} {schedule:?} after {after}");
            }
        }
    }

    #[test]
    fn following_next_visits_every_slot() {
        for (name, schedule, start) in property_cases() {
            let tz = zone(name);
            let until = hours_after(start, 10 * 24);
            let mut chain = Vec::new();
            let mut cursor = start;
            loop {
                let next = schedule.next(&tz, cursor);
                if next.at > until {
                    break;
                }
                chain.push(next);
                cursor = next.at;
            }
            let slots = schedule.slots(&tz, start, until);
            assert!(!slots.is_empty(), "{name} {schedule:?}");
            assert_eq!(chain, slots, "{name} {schedule:?}");
            // slots_on partitions them by scheduled date.
            let first_date = slots
                .first()
                .map(|slot| slot.scheduled.date())
                .expect("first");
            let last_date = slots
                .last()
                .map(|slot| slot.scheduled.date())
                .expect("last");
            let mut by_date = Vec::new();
            let mut date = first_date;
            while date <= last_date {
                by_date.extend(
                    schedule
                        .slots_on(&tz, date)
                        .into_iter()
                        .filter(|slot| start < slot.at && slot.at <= until),
                );
                date = add_days(date, 1);
            }
            assert_eq!(by_date, slots, "{name} {schedule:?} by date");
            // In time order, without duplicate instants.
            assert!(
                slots.windows(2).all(|pair| pair[0].at < pair[1].at),
                "{name} {schedule:?} order"
            );
        }
    }

    #[test]
    fn slots_on_for_hourly_windows() {
        // (every, start, window, the civil times of the slots on the day); the zone is UTC and
        // America/New_York on an ordinary day.
        let table: [(u8, &str, u8, &[&str]); 8] = [
            // the default: 00:00 and 04:00 roll over from the day before
            (
                4,
                "08:00",
                24,
                &["00:00", "04:00", "08:00", "12:00", "16:00", "20:00"],
            ),
            (6, "08:00", 24, &["02:00", "08:00", "14:00", "20:00"]),
            (8, "22:00", 24, &["06:00", "14:00", "22:00"]),
            (12, "20:00", 24, &["08:00", "20:00"]),
            (4, "08:00", 12, &["08:00", "12:00", "16:00"]),
            (4, "08:00", 13, &["08:00", "12:00", "16:00", "20:00"]),
            (4, "08:00", 4, &["08:00"]),
            (4, "22:00", 8, &["02:00", "22:00"]),
        ];
        for name in ["UTC", "America/New_York"] {
            let tz = zone(name);
            let date = day("2026-05-13");
            for (every, start, window, expected) in table {
                let schedule = hourly(every, start, window);
                let found: Vec<Time> = schedule
                    .slots_on(&tz, date)
                    .iter()
                    .map(|slot| {
                        assert_eq!(slot.scheduled.date(), date, "{name} {schedule:?}");
                        slot.scheduled.time()
                    })
                    .collect();
                let expected: Vec<Time> = expected.iter().map(|t| time(t)).collect();
                assert_eq!(found, expected, "{name} {schedule:?}");
            }
        }
    }

    #[test]
    fn transfers_follow_the_enhanced_hourly_rule() {
        let utc = TimeZone::UTC;
        let default_hourly = hourly(4, "08:00", 24);
        // The default hourly schedule's slots on 2026-05-13 are 00:00 ... 20:00 and its last
        // slot of 2026-05-12 is 2026-05-12T20:00Z.
        let at = |s: &str| slot(s, &format!("{s}Z"));
        // (schedule, slot, newest vault point, transferred)
        let table: Vec<(Schedule, Slot, Option<&str>, bool)> = vec![
            (daily("02:30"), at("2026-05-13T02:30"), None, true),
            (
                daily("02:30"),
                at("2026-05-13T02:30"),
                Some("2026-05-13T02:30Z"),
                true,
            ),
            (
                weekly(&[Wednesday], "02:30"),
                at("2026-05-13T02:30"),
                Some("2026-05-13T01:00Z"),
                true,
            ),
            // the last slot of the day
            (default_hourly.clone(), at("2026-05-13T20:00"), None, true),
            (
                default_hourly.clone(),
                at("2026-05-13T20:00"),
                Some("2026-05-13T16:00Z"),
                true,
            ),
            // middle slots
            (default_hourly.clone(), at("2026-05-13T04:00"), None, false),
            (default_hourly.clone(), at("2026-05-13T08:00"), None, false),
            (
                default_hourly.clone(),
                at("2026-05-13T16:00"),
                Some("2026-05-10T00:00Z"),
                false,
            ),
            // the first slot: transferred iff the previous day's last (05-12 20:00) missed
            (default_hourly.clone(), at("2026-05-13T00:00"), None, true),
            (
                default_hourly.clone(),
                at("2026-05-13T00:00"),
                Some("2026-05-12T16:05Z"),
                true,
            ),
            (
                default_hourly.clone(),
                at("2026-05-13T00:00"),
                Some("2026-05-12T19:59Z"),
                true,
            ),
            (
                default_hourly.clone(),
                at("2026-05-13T00:00"),
                Some("2026-05-12T20:00Z"),
                false,
            ),
            (
                default_hourly.clone(),
                at("2026-05-13T00:00"),
                Some("2026-05-12T20:07Z"),
                false,
            ),
            // one run a day: it is the last, so always transferred
            (
                hourly(4, "08:00", 4),
                at("2026-05-13T08:00"),
                Some("2026-05-12T08:10Z"),
                true,
            ),
            (hourly(4, "08:00", 4), at("2026-05-13T08:00"), None, true),
            // two a day: 08:00 (from the day before) and 20:00
            (
                hourly(12, "20:00", 24),
                at("2026-05-13T08:00"),
                Some("2026-05-12T20:01Z"),
                false,
            ),
            (
                hourly(12, "20:00", 24),
                at("2026-05-13T08:00"),
                Some("2026-05-12T08:01Z"),
                true,
            ),
            (
                hourly(12, "20:00", 24),
                at("2026-05-13T20:00"),
                Some("2026-05-13T08:01Z"),
                true,
            ),
            // not a slot of the schedule
            (default_hourly.clone(), at("2026-05-13T09:00"), None, false),
        ];
        for (schedule, slot, newest, expected) in table {
            let newest = newest.map(ts);
            assert_eq!(
                transfers(&schedule, &utc, &slot, newest),
                expected,
                "{schedule:?} {slot:?} newest vault point {newest:?}"
            );
        }
    }

    #[test]
    fn transfers_across_a_transition_use_the_local_day() {
        let tz = zone("America/New_York");
        let schedule = hourly(4, "01:00", 24);
        let day_slots = schedule.slots_on(&tz, day("2026-11-01"));
        let first = *day_slots.first().expect("first slot");
        let last = *day_slots.last().expect("last slot");
        let previous_last = *schedule
            .slots_on(&tz, day("2026-10-31"))
            .last()
            .expect("previous day's last slot");
        assert_eq!(previous_last, slot("2026-10-31T21:00", "2026-11-01T01:00Z"));
        // (slot, newest vault point, transferred)
        let table = [
            (first, Some(hours_after(previous_last.at, -4)), true),
            (first, Some(previous_last.at), false),
            (first, None, true),
            (day_slots[1], None, false),
            (last, Some(last.at), true),
        ];
        for (slot, newest, expected) in table {
            assert_eq!(
                transfers(&schedule, &tz, &slot, newest),
                expected,
                "{slot:?} {newest:?}"
            );
        }
    }

    #[test]
    fn utc_slots_are_their_civil_times() {
        let utc = TimeZone::UTC;
        // (schedule, after, until, the civil times, which are also the UTC instants)
        let table: [(Schedule, &str, &str, &[&str]); 5] = [
            (
                daily("02:30"),
                "2026-01-01T00:00Z",
                "2026-01-03T23:00Z",
                &["2026-01-01T02:30", "2026-01-02T02:30", "2026-01-03T02:30"],
            ),
            // (after, until]: a slot at `after` is excluded, one at `until` included
            (
                daily("02:30"),
                "2026-01-01T02:30Z",
                "2026-01-02T02:30Z",
                &["2026-01-02T02:30"],
            ),
            (
                hourly(6, "00:00", 24),
                "2026-06-30T21:00Z",
                "2026-07-01T12:00Z",
                &["2026-07-01T00:00", "2026-07-01T06:00", "2026-07-01T12:00"],
            ),
            (
                weekly(&[Monday, Friday], "23:00"),
                "2026-01-01T00:00Z",
                "2026-01-06T00:00Z",
                &["2026-01-02T23:00", "2026-01-05T23:00"],
            ),
            // an empty or reversed range
            (
                daily("02:30"),
                "2026-01-02T00:00Z",
                "2026-01-01T00:00Z",
                &[],
            ),
        ];
        for (schedule, after, until, expected) in table {
            let expected: Vec<Slot> = expected.iter().map(|s| slot(s, &format!("{s}Z"))).collect();
            assert_eq!(
                schedule.slots(&utc, ts(after), ts(until)),
                expected,
                "{schedule:?}"
            );
        }
        assert_eq!(
            daily("00:00").next(&utc, ts("2026-12-31T00:00Z")),
            slot("2027-01-01T00:00", "2027-01-01T00:00Z")
        );
    }
}
