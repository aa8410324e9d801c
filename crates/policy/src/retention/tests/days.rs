//! Daily points: the last point of each local date, kept for calendar days in the policy's
//! time zone.

use super::*;

#[test]
fn a_30_day_daily_policy_keeps_the_last_30_days_and_expires_at_exactly_30() {
    // 60 points, 2026-01-01 .. 2026-03-01 at 23:00 UTC; point i is kept until
    // 2026-01-01T23:00Z + (i + 30) days.
    let points = daily_points("2026-01-01", "2026-03-01", Time::constant(23, 0, 0, 0), &[]);
    assert_eq!(points.len(), 60);
    let policy = policy("UTC", daily(30));
    // (now, index of the first kept point): all later ones are kept, none before.
    let table = [
        // Point 29 (2026-01-30) is kept until exactly now: expired.
        ("2026-03-01T23:00Z", 30),
        ("2026-03-01T22:59:59.999999999Z", 29),
        ("2026-03-01T23:00:00.000000001Z", 30),
        // A day without new backups: one more expires.
        ("2026-03-02T23:00Z", 31),
        ("2026-03-30T23:00Z", 59),
        ("2026-03-31T23:00Z", 60),
        ("2025-12-01T00:00Z", 0),
    ];
    for (now, first_kept) in table {
        let verdicts = retention(&points, &policy, ts(now), false);
        assert_eq!(verdict_ids(&verdicts), ids(&points), "{now}");
        for (i, (v, p)) in verdicts.iter().zip(&points).enumerate() {
            assert_eq!(v.time, p.time, "{now} #{i}");
            if i >= first_kept {
                let until = p
                    .time
                    .checked_add(jiff::SignedDuration::from_hours(24 * 30))
                    .expect("in range");
                assert_eq!(v.kept_by, vec![(KeepReason::Daily, until)], "{now} #{i}");
                assert!(v.keep(), "{now} #{i}");
                assert_eq!(v.until(), Some(until), "{now} #{i}");
            } else {
                assert!(v.kept_by.is_empty(), "{now} #{i}: {:?}", v.kept_by);
                assert!(!v.keep(), "{now} #{i}");
                assert_eq!(v.until(), None, "{now} #{i}");
            }
        }
    }
}

#[test]
fn only_the_last_point_of_a_day_is_its_daily_point() {
    let table: [(&[&str], &[bool]); 4] = [
        (&["2026-05-10T10:00Z", "2026-05-10T22:00Z"], &[false, true]),
        // Input order does not matter: the later time wins.
        (&["2026-05-10T22:00Z", "2026-05-10T10:00Z"], &[true, false]),
        // The first instant of the day and the last.
        (
            &[
                "2026-05-10T00:00Z",
                "2026-05-10T23:59:59.999Z",
                "2026-05-11T00:00Z",
            ],
            &[false, true, true],
        ),
        (
            &[
                "2026-05-09T23:00Z",
                "2026-05-10T01:00Z",
                "2026-05-10T02:00Z",
            ],
            &[true, false, true],
        ),
    ];
    let policy = policy("UTC", daily(30));
    for (times, expected) in table {
        let points: Vec<RetainedPoint> = times.iter().map(|t| point(t)).collect();
        let verdicts = retention(&points, &policy, ts("2026-05-12T00:00Z"), false);
        assert_eq!(verdict_ids(&verdicts), ids(&points), "{times:?}");
        let kept: Vec<bool> = verdicts
            .iter()
            .map(|v| v.kept_by.iter().any(|(r, _)| *r == KeepReason::Daily))
            .collect();
        assert_eq!(kept, expected, "{times:?}");
        let kept_any: Vec<bool> = verdicts.iter().map(Verdict::keep).collect();
        assert_eq!(kept_any, expected, "{times:?}");
    }
}

#[test]
fn days_follow_the_policy_time_zone() {
    // 2026-11-01T20:00Z is 15:00 EST, 2026-11-02T03:00Z is 22:00 EST on 2026-11-01 (DST
    // ended at 06:00Z that day), 2026-11-02T05:00Z is 00:00 EST on 2026-11-02.
    let times = [
        "2026-11-01T20:00Z",
        "2026-11-02T03:00Z",
        "2026-11-02T05:00Z",
    ];
    let points: Vec<RetainedPoint> = times.iter().map(|t| point(t)).collect();
    let now = ts("2026-11-03T00:00Z");
    // (zone, until of each point's daily reason, if any)
    let table: [(&str, [Option<&str>; 3]); 3] = [
        (
            "America/New_York",
            [
                None,
                // 2026-11-08 22:00 EST
                Some("2026-11-09T03:00Z"),
                // 2026-11-09 00:00 EST
                Some("2026-11-09T05:00Z"),
            ],
        ),
        (
            "UTC",
            [Some("2026-11-08T20:00Z"), None, Some("2026-11-09T05:00Z")],
        ),
        // 2026-11-02 05:00, 12:00 and 14:00 JST: all one day.
        ("Asia/Tokyo", [None, None, Some("2026-11-09T05:00Z")]),
    ];
    for (tz, expected) in table {
        let verdicts = retention(&points, &policy(tz, daily(7)), now, false);
        assert_eq!(verdict_ids(&verdicts), ids(&points), "{tz}");
        for (v, until) in verdicts.iter().zip(expected) {
            let expected: Vec<(KeepReason, Timestamp)> = until
                .map(|u| (KeepReason::Daily, ts(u)))
                .into_iter()
                .collect();
            assert_eq!(v.kept_by, expected, "{tz} {}", v.time);
        }
    }
}

#[test]
fn days_are_calendar_days_across_a_daylight_saving_change() {
    // 2026-10-31 22:00 EDT; 7 days later is 2026-11-07 22:00 EST, 7 × 24 h + 1 h later.
    let points = vec![point("2026-11-01T02:00Z")];
    let policy = policy("America/New_York", daily(7));
    let table = [
        (
            "2026-11-08T02:30Z",
            vec![(KeepReason::Daily, ts("2026-11-08T03:00Z"))],
        ),
        ("2026-11-08T03:00Z", vec![]),
    ];
    for (now, expected) in table {
        let verdicts = retention(&points, &policy, ts(now), false);
        assert_eq!(verdicts[0].kept_by, expected, "{now}");
    }
}
