//! The weekly, monthly and yearly rules: the last point of a designated day, kept for weeks,
//! months or years.

use super::*;

#[test]
fn weekly_on_sunday_keeps_sundays_beyond_the_daily_window() {
    let retention_rules = Retention {
        daily_days: Some(7),
        weekly: Some(WeeklyRetention {
            weeks: 4,
            on: vec![Weekday::Sunday],
        }),
        ..Retention::default()
    };
    let policy = policy("UTC", retention_rules);
    let at = Time::constant(23, 0, 0, 0);
    let now = ts("2026-03-01T23:00Z"); // a Sunday
    // (missing dates, kept by daily, kept by weekly)
    let week = |d: &str| ts(&format!("{d}T23:00Z"));
    type Row = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    );
    let table: [Row; 2] = [
        (
            &[],
            &[
                "2026-02-23",
                "2026-02-24",
                "2026-02-25",
                "2026-02-26",
                "2026-02-27",
                "2026-02-28",
                "2026-03-01",
            ],
            // 2026-02-01 is kept until exactly now: expired.
            &[
                ("2026-02-08", "2026-03-08"),
                ("2026-02-15", "2026-03-15"),
                ("2026-02-22", "2026-03-22"),
                ("2026-03-01", "2026-03-29"),
            ],
        ),
        // No point on Sunday 2026-02-15: nothing of that week is kept weekly (neither the
        // Saturday before nor the Monday after stands in).
        (
            &["2026-02-15", "2026-02-26"],
            &[
                "2026-02-23",
                "2026-02-24",
                "2026-02-25",
                "2026-02-27",
                "2026-02-28",
                "2026-03-01",
            ],
            &[
                ("2026-02-08", "2026-03-08"),
                ("2026-02-22", "2026-03-22"),
                ("2026-03-01", "2026-03-29"),
            ],
        ),
    ];
    for (missing, by_daily, by_weekly) in table {
        let points = daily_points("2026-01-01", "2026-03-01", at, missing);
        let verdicts = retention(&points, &policy, now, false);
        assert_eq!(verdict_ids(&verdicts), ids(&points), "{missing:?}");
        let daily_expected: Vec<(String, Timestamp)> = by_daily
            .iter()
            .map(|d| {
                let until = day(d).checked_add(Span::new().days(7)).expect("date");
                (d.to_string(), week(&until.to_string()))
            })
            .collect();
        assert_eq!(kept_for(&verdicts, KeepReason::Daily), daily_expected);
        let weekly_expected: Vec<(String, Timestamp)> = by_weekly
            .iter()
            .map(|(d, until)| (d.to_string(), week(until)))
            .collect();
        assert_eq!(kept_for(&verdicts, KeepReason::Weekly), weekly_expected);
        let kept = verdicts.iter().filter(|v| v.keep()).count();
        let both = by_daily
            .iter()
            .filter(|d| by_weekly.iter().any(|(w, _)| w == *d))
            .count();
        assert_eq!(kept, by_daily.len() + by_weekly.len() - both, "{missing:?}");
    }
    // The Sunday in both windows lists both reasons and is kept until the later one.
    let points = daily_points("2026-01-01", "2026-03-01", at, &[]);
    let verdicts = retention(&points, &policy, now, false);
    let last = verdicts.last().expect("points");
    assert_eq!(
        last.kept_by,
        vec![
            (KeepReason::Daily, ts("2026-03-08T23:00Z")),
            (KeepReason::Weekly, ts("2026-03-29T23:00Z")),
        ]
    );
    assert_eq!(last.until(), Some(ts("2026-03-29T23:00Z")));
}

#[test]
fn monthly_rules_pick_the_designated_day_of_each_month() {
    let noon = Time::constant(12, 0, 0, 0);
    let first_sunday = MonthDay::Weekday {
        nth: 1,
        weekday: Weekday::Sunday,
    };
    let last_friday = MonthDay::Weekday {
        nth: -1,
        weekday: Weekday::Friday,
    };
    let second_monday = MonthDay::Weekday {
        nth: 2,
        weekday: Weekday::Monday,
    };
    type Row = (
        MonthDay,
        u32,
        &'static [&'static str],
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    // (on, months, missing dates, last point date, now, kept (date, until at 12:00Z))
    let table: [Row; 8] = [
        (
            first_sunday,
            12,
            &[],
            "2026-06-30",
            "2026-07-01T00:00Z",
            &[
                ("2026-01-04", "2027-01-04"),
                ("2026-02-01", "2027-02-01"),
                ("2026-03-01", "2027-03-01"),
                ("2026-04-05", "2027-04-05"),
                ("2026-05-03", "2027-05-03"),
                ("2026-06-07", "2027-06-07"),
            ],
        ),
        // No point on the first Sunday of March: March keeps nothing (not March 8).
        (
            first_sunday,
            12,
            &["2026-03-01"],
            "2026-06-30",
            "2026-07-01T00:00Z",
            &[
                ("2026-01-04", "2027-01-04"),
                ("2026-02-01", "2027-02-01"),
                ("2026-04-05", "2027-04-05"),
                ("2026-05-03", "2027-05-03"),
                ("2026-06-07", "2027-06-07"),
            ],
        ),
        (
            MonthDay::Last,
            12,
            &["2026-04-30"],
            "2026-06-30",
            "2026-07-01T00:00Z",
            &[
                ("2026-01-31", "2027-01-31"),
                ("2026-02-28", "2027-02-28"),
                ("2026-03-31", "2027-03-31"),
                ("2026-05-31", "2027-05-31"),
                ("2026-06-30", "2027-06-30"),
            ],
        ),
        // One month after January 31 is February 28 (clamped): kept until then, and
        // expired when that instant is now.
        (
            MonthDay::Last,
            1,
            &[],
            "2026-02-27",
            "2026-02-28T11:59:59Z",
            &[("2026-01-31", "2026-02-28")],
        ),
        (
            MonthDay::Last,
            1,
            &[],
            "2026-02-27",
            "2026-02-28T12:00Z",
            &[],
        ),
        (
            MonthDay::Day(1),
            3,
            &["2026-05-01"],
            "2026-06-30",
            "2026-07-01T00:00Z",
            // January-March expired, May has no point.
            &[("2026-04-01", "2026-07-01"), ("2026-06-01", "2026-09-01")],
        ),
        (
            last_friday,
            12,
            &[],
            "2026-06-30",
            "2026-07-01T00:00Z",
            &[
                ("2026-01-30", "2027-01-30"),
                ("2026-02-27", "2027-02-27"),
                ("2026-03-27", "2027-03-27"),
                ("2026-04-24", "2027-04-24"),
                ("2026-05-29", "2027-05-29"),
                ("2026-06-26", "2027-06-26"),
            ],
        ),
        (
            second_monday,
            2,
            &[],
            "2026-06-30",
            "2026-07-01T00:00Z",
            &[("2026-05-11", "2026-07-11"), ("2026-06-08", "2026-08-08")],
        ),
    ];
    for (on, months, missing, last, now, expected) in table {
        let points = daily_points("2026-01-01", last, noon, missing);
        let rules = Retention {
            monthly: Some(MonthlyRetention { months, on }),
            ..Retention::default()
        };
        let verdicts = retention(&points, &policy("UTC", rules), ts(now), false);
        assert_eq!(verdict_ids(&verdicts), ids(&points), "{on} {months} {now}");
        let expected: Vec<(String, Timestamp)> = expected
            .iter()
            .map(|(d, until)| (d.to_string(), ts(&format!("{until}T12:00Z"))))
            .collect();
        assert_eq!(
            kept_for(&verdicts, KeepReason::Monthly),
            expected,
            "{on} {months} {now}"
        );
        // Nothing else keeps anything.
        let kept = verdicts.iter().filter(|v| v.keep()).count();
        assert_eq!(kept, expected.len(), "{on} {months} {now}");
    }
}

#[test]
fn yearly_rules_pick_the_designated_day_of_the_month_each_year() {
    let noon = Time::constant(12, 0, 0, 0);
    let first_sunday = MonthDay::Weekday {
        nth: 1,
        weekday: Weekday::Sunday,
    };
    type Row = (
        i8,
        MonthDay,
        u32,
        &'static [&'static str],
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    // (month, on, years, missing dates, now, kept (date, until at 12:00Z)); points every
    // day of 2024-2026.
    let table: [Row; 6] = [
        (
            2,
            MonthDay::Last,
            5,
            &[],
            "2027-01-01T00:00Z",
            &[
                ("2024-02-29", "2029-02-28"),
                ("2025-02-28", "2030-02-28"),
                ("2026-02-28", "2031-02-28"),
            ],
        ),
        // A year after February 29 is February 28 (clamped): expired at that instant.
        (
            2,
            MonthDay::Last,
            1,
            &[],
            "2025-02-28T12:00Z",
            &[("2025-02-28", "2026-02-28"), ("2026-02-28", "2027-02-28")],
        ),
        (
            2,
            MonthDay::Last,
            1,
            &[],
            "2025-02-28T11:00Z",
            &[
                ("2024-02-29", "2025-02-28"),
                ("2025-02-28", "2026-02-28"),
                ("2026-02-28", "2027-02-28"),
            ],
        ),
        (
            3,
            first_sunday,
            10,
            &[],
            "2027-01-01T00:00Z",
            &[
                ("2024-03-03", "2034-03-03"),
                ("2025-03-02", "2035-03-02"),
                ("2026-03-01", "2036-03-01"),
            ],
        ),
        // No point on 2025's designated day: 2025 keeps nothing (not March 9).
        (
            3,
            first_sunday,
            10,
            &["2025-03-02"],
            "2027-01-01T00:00Z",
            &[("2024-03-03", "2034-03-03"), ("2026-03-01", "2036-03-01")],
        ),
        (
            6,
            MonthDay::Day(15),
            2,
            &["2026-06-15"],
            "2027-01-01T00:00Z",
            // 2024's expired (2026-06-15), 2026 has no point.
            &[("2025-06-15", "2027-06-15")],
        ),
    ];
    for (month, on, years, missing, now, expected) in table {
        let points = daily_points("2024-01-01", "2026-12-31", noon, missing);
        let rules = Retention {
            yearly: Some(YearlyRetention { years, month, on }),
            ..Retention::default()
        };
        let verdicts = retention(&points, &policy("UTC", rules), ts(now), false);
        assert_eq!(verdict_ids(&verdicts), ids(&points), "{month} {on} {now}");
        let expected: Vec<(String, Timestamp)> = expected
            .iter()
            .map(|(d, until)| (d.to_string(), ts(&format!("{until}T12:00Z"))))
            .collect();
        assert_eq!(
            kept_for(&verdicts, KeepReason::Yearly),
            expected,
            "{month} {on} {now}"
        );
        let kept = verdicts.iter().filter(|v| v.keep()).count();
        assert_eq!(kept, expected.len(), "{month} {on} {now}");
    }
}
