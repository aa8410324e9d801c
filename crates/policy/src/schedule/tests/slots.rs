//! The slots of daily, weekly and hourly schedules, and the properties that tie `slots`,
//! `next` and `slots_on` together.

use super::*;

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
