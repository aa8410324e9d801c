//! Retention as tables of cases: the helpers, the order and scale of the verdicts here, the
//! rules by concept below.

mod calendar;
mod days;
mod overrides;

use super::*;
use crate::{MonthlyRetention, Retention, WeeklyRetention, YearlyRetention};
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn day(s: &str) -> Date {
    s.parse().expect("date")
}

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).expect("time zone in the bundled tzdb")
}

fn policy(timezone: &str, retention: Retention) -> Policy {
    let mut policy = Policy::standard("test".parse().expect("name"), zone(timezone));
    policy.retention = retention;
    policy
}

fn daily(days: u32) -> Retention {
    Retention {
        daily_days: Some(days),
        ..Retention::default()
    }
}

fn point_at(time: Timestamp) -> RetainedPoint {
    RetainedPoint {
        id: PointId::generate(time, b"test"),
        time,
        retain_until: None,
    }
}

fn point(time: &str) -> RetainedPoint {
    point_at(ts(time))
}

/// A point at `at` UTC on every date from `first` to `last`, except `missing`.
fn daily_points(first: &str, last: &str, at: Time, missing: &[&str]) -> Vec<RetainedPoint> {
    let missing: Vec<Date> = missing.iter().map(|d| day(d)).collect();
    let (mut date, last) = (day(first), day(last));
    let mut points = Vec::new();
    while date <= last {
        if !missing.contains(&date) {
            let time = date
                .to_datetime(at)
                .to_zoned(TimeZone::UTC)
                .expect("in range")
                .timestamp();
            points.push(point_at(time));
        }
        date = date.tomorrow().expect("in range");
    }
    points
}

/// The UTC dates of the points `reason` keeps, with until when.
fn kept_for(verdicts: &[Verdict], reason: KeepReason) -> Vec<(String, Timestamp)> {
    verdicts
        .iter()
        .filter_map(|v| {
            let &(_, until) = v.kept_by.iter().find(|(r, _)| *r == reason)?;
            Some((v.time.strftime("%Y-%m-%d").to_string(), until))
        })
        .collect()
}

fn ids(points: &[RetainedPoint]) -> Vec<PointId> {
    points.iter().map(|p| p.id.clone()).collect()
}

fn verdict_ids(verdicts: &[Verdict]) -> Vec<PointId> {
    verdicts.iter().map(|v| v.id.clone()).collect()
}

#[test]
fn verdicts_come_in_input_order() {
    let times = [
        "2026-01-05T23:00Z",
        "2026-01-01T23:00Z",
        "2026-01-09T23:00Z",
        "2026-01-03T23:00Z",
        "2026-01-03T10:00Z",
    ];
    let points: Vec<RetainedPoint> = times.iter().map(|t| point(t)).collect();
    let verdicts = retention(
        &points,
        &policy("UTC", daily(7)),
        ts("2026-01-10T00:00Z"),
        true,
    );
    assert_eq!(verdict_ids(&verdicts), ids(&points));
    let kept: Vec<bool> = verdicts.iter().map(Verdict::keep).collect();
    assert_eq!(kept, [true, false, true, true, false]);
    let times_out: Vec<Timestamp> = verdicts.iter().map(|v| v.time).collect();
    let times_in: Vec<Timestamp> = points.iter().map(|p| p.time).collect();
    assert_eq!(times_out, times_in);
}

#[test]
fn a_hundred_thousand_points_are_handled() {
    // Four points a day (05:00, 11:00, 17:00, 23:00 UTC) for 25,000 days.
    let start = ts("2000-01-01T05:00Z");
    let points: Vec<RetainedPoint> = (0..100_000)
        .map(|i| {
            let time = start
                .checked_add(jiff::SignedDuration::from_hours(6 * i))
                .expect("in range");
            point_at(time)
        })
        .collect();
    let now = points.last().expect("points").time;
    let verdicts = retention(&points, &policy("UTC", daily(30)), now, true);
    assert_eq!(verdicts.len(), points.len());
    let kept: Vec<&Verdict> = verdicts.iter().filter(|v| v.keep()).collect();
    assert_eq!(kept.len(), 30);
    for v in &kept {
        assert_eq!(v.time.to_zoned(TimeZone::UTC).hour(), 23, "{}", v.time);
    }
    assert_eq!(kept[0].time, ts("2068-05-13T23:00Z"));
}
