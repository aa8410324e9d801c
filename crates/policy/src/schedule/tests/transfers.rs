//! The Enhanced hourly rule: which slots are transferred to the vault.

use super::*;
use crate::transfers;

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
