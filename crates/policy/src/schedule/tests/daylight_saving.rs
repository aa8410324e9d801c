//! Slots across daylight-saving changes: gaps run at the transition, folds once, first.

use super::*;

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
