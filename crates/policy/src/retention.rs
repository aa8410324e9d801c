//! Which vault points a policy keeps (SPEC "Policies", "Vault tier"): retention as a pure
//! function of (points, policy, now). Nothing here reads a clock.
//!
//! [`retention`] gives each point a [`Verdict`]: every rule that keeps it, with the instant
//! until which that rule keeps it. A point no rule keeps has expired.
//!
//! # Local days
//!
//! Every rule works on **local calendar dates in the policy's time zone**
//! ([`Policy::timezone`]): a point belongs to the local date of its `time` in that zone (a
//! point at 2026-11-02T03:00Z is on 2026-11-01 in America/New_York, 22:00 EST). The **last
//! point of a date** is the point of that date with the greatest `time`; points with equal
//! times are ordered by id, then by position in the input, the later one being last. Only the
//! last point of a date can be kept by the daily, weekly, monthly and yearly rules; the other
//! points of that date are kept only by `retain until` or as the newest point. (For hourly
//! Enhanced schedules only the last backup of a day reaches the vault anyway; when it fails,
//! the first backup of the next day is transferred instead, and is that day's daily point
//! unless a later backup of that day reaches the vault too.)
//!
//! # Durations
//!
//! A rule keeps a point from its `time` for a number of days, weeks, months or years counted
//! in **civil (calendar) arithmetic in the policy's time zone**: the point's time is read as a
//! local date and time, the days (weeks = 7 days, months, years) are added to that date, and
//! the result, at the same local time of day, is the `until` instant. So "kept 7 days" ends
//! at the same wall-clock time 7 local days later, even across a daylight-saving change (where
//! the span is then an hour shorter or longer than 7 × 24 hours); adding months or years
//! clamps to the end of the month (a point of January 31 kept 1 month is kept until February
//! 28 or 29, a point of February 29 kept 1 year until February 28). A local time that the
//! target date skips or repeats is resolved as jiff's `compatible` disambiguation does (the
//! later instant of a gap, the earlier of a fold). An `until` beyond the end of jiff's range
//! (year 9999) is [`Timestamp::MAX`].
//!
//! # Rules
//!
//! - **Daily** (`daily_days = Some(d)`): the last point of every local date is that date's
//!   daily point, kept until its time + `d` days.
//! - **Weekly** (`weekly = Some { weeks, on }`): the last point of every local date whose
//!   weekday is one of `on` is a weekly point, kept until its time + 7 × `weeks` days. A week
//!   with no point on the day(s) `on` names keeps nothing by this rule: no point of another
//!   day stands in for it (Azure behaves the same).
//! - **Monthly** (`monthly = Some { months, on }`): the last point of the local date that `on`
//!   designates in its month ([`MonthDay::Day`]`(n)`: the n-th; [`MonthDay::Last`]: the last
//!   day of the month; [`MonthDay::Weekday`]`{ nth, weekday }`: the nth `weekday` of the month,
//!   `nth` = -1 being the last one) is the month's monthly point, kept until its time +
//!   `months` months. A month with no point on that date keeps nothing by this rule.
//! - **Yearly** (`yearly = Some { years, month, on }`): the same for the date `on` designates in
//!   `month` (1 = January) of each year, kept until its time + `years` years.
//! - **Retain until** (an on-demand backup's `retain_until = Some(t)`): the point is kept until
//!   `t`, whatever the rules above say.
//! - **Newest**: while protection is on, the newest point (the last of all, by the order
//!   above) is kept until [`Timestamp::MAX`], so a VM whose backups stopped never loses its
//!   last point. When protection is stopped it gets no such reason.
//!
//! A rule keeps a point only while its `until` is after `now`: a [`Verdict`] lists only the
//! reasons whose `until > now`, so a point whose `until` equals `now` has expired. A point is
//! kept while at least one reason remains, until the latest of them.
//!
//! The work is O(n log n) in the number of points (one pass to find the last point of each
//! local date through a hash map, then constant work per point).

use std::collections::HashMap;
use std::fmt;

use blockvault_core::PointId;
use jiff::civil::Date;
use jiff::{Span, Timestamp, Zoned};

use super::{MonthDay, Policy};

/// A vault point as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedPoint {
    pub id: PointId,
    /// When the point was made (its snapshot instant).
    pub time: Timestamp,
    /// The `retain until` of an on-demand backup; `None` for scheduled backups.
    pub retain_until: Option<Timestamp>,
}

/// Why a point is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeepReason {
    /// The newest point is always kept while protection is on.
    Newest,
    /// The last point of its local date, kept by the daily rule.
    Daily,
    /// The last point of a weekday the weekly rule names.
    Weekly,
    /// The last point of the day the monthly rule designates in its month.
    Monthly,
    /// The last point of the day the yearly rule designates in its year.
    Yearly,
    /// The `retain until` of an on-demand backup.
    RetainUntil,
}

impl KeepReason {
    /// The reason as `points` shows it: `newest`, `daily`, `weekly`, `monthly`, `yearly`,
    /// `retain until`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Newest => "newest",
            KeepReason::Daily => "daily",
            KeepReason::Weekly => "weekly",
            KeepReason::Monthly => "monthly",
            KeepReason::Yearly => "yearly",
            KeepReason::RetainUntil => "retain until",
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What retention decides for one point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub id: PointId,
    pub time: Timestamp,
    /// Every rule that keeps the point, with until when, in the order of [`KeepReason`]
    /// (newest, daily, weekly, monthly, yearly, retain until). Empty: the point has expired.
    pub kept_by: Vec<(KeepReason, Timestamp)>,
}

impl Verdict {
    /// Whether the point is kept.
    pub fn keep(&self) -> bool {
        !self.kept_by.is_empty()
    }

    /// The latest `until` of its reasons: when the point expires if nothing else changes
    /// ([`Timestamp::MAX`] for the newest point while protection is on). `None` when it has
    /// expired.
    pub fn until(&self) -> Option<Timestamp> {
        self.kept_by.iter().map(|&(_, until)| until).max()
    }
}

/// The verdict of each of `points` under `policy` at `now`, in the order of `points` (see the
/// module doc for the rules). `protection_on` says whether the VM is still protected (its
/// newest point is then always kept).
pub fn retention(
    points: &[RetainedPoint],
    policy: &Policy,
    now: Timestamp,
    protection_on: bool,
) -> Vec<Verdict> {
    let tz = &policy.timezone;
    let rules = &policy.retention;

    // The last point of each local date, and the newest point of all.
    let mut last_of_day: HashMap<Date, usize> = HashMap::with_capacity(points.len());
    let mut newest: Option<usize> = None;
    for (i, point) in points.iter().enumerate() {
        let date = tz.to_datetime(point.time).date();
        last_of_day
            .entry(date)
            .and_modify(|last| {
                if is_after(point, &points[*last]) {
                    *last = i;
                }
            })
            .or_insert(i);
        if newest.is_none_or(|n| is_after(point, &points[n])) {
            newest = Some(i);
        }
    }

    let mut kept_by: Vec<Vec<(KeepReason, Timestamp)>> = vec![Vec::new(); points.len()];
    let mut keep = |i: usize, reason: KeepReason, until: Timestamp| {
        if until > now {
            kept_by[i].push((reason, until));
        }
    };

    if protection_on && let Some(i) = newest {
        keep(i, KeepReason::Newest, Timestamp::MAX);
    }
    for (&date, &i) in &last_of_day {
        let start = points[i].time.to_zoned(tz.clone());
        if let Some(days) = rules.daily_days {
            keep(
                i,
                KeepReason::Daily,
                later_by(&start, Span::new().try_days(days)),
            );
        }
        if let Some(weekly) = &rules.weekly
            && weekly.on.contains(&date.weekday())
        {
            let span = Span::new().try_weeks(weekly.weeks);
            keep(i, KeepReason::Weekly, later_by(&start, span));
        }
        if let Some(monthly) = &rules.monthly
            && designates(monthly.on, date)
        {
            let span = Span::new().try_months(monthly.months);
            keep(i, KeepReason::Monthly, later_by(&start, span));
        }
        if let Some(yearly) = &rules.yearly
            && date.month() == yearly.month
            && designates(yearly.on, date)
        {
            let span = Span::new().try_years(yearly.years);
            keep(i, KeepReason::Yearly, later_by(&start, span));
        }
    }
    for (i, point) in points.iter().enumerate() {
        if let Some(until) = point.retain_until {
            keep(i, KeepReason::RetainUntil, until);
        }
    }

    points
        .iter()
        .zip(kept_by)
        .map(|(point, kept_by)| Verdict {
            id: point.id.clone(),
            time: point.time,
            kept_by,
        })
        .collect()
}

/// Whether `a` comes after `b` in the order that picks the last point of a day: by time, then
/// by id (equal keys: `a`, met later in the input, comes after).
fn is_after(a: &RetainedPoint, b: &RetainedPoint) -> bool {
    (a.time, &a.id) >= (b.time, &b.id)
}

/// The instant `span` (days, weeks, months or years) after `start`, in civil arithmetic in
/// `start`'s time zone; [`Timestamp::MAX`] when that is out of jiff's range.
fn later_by(start: &Zoned, span: Result<Span, jiff::Error>) -> Timestamp {
    span.and_then(|span| start.checked_add(span))
        .map_or(Timestamp::MAX, |until| until.timestamp())
}

/// Whether `on` designates `date` in its month.
fn designates(on: MonthDay, date: Date) -> bool {
    match on {
        MonthDay::Day(day) => date.day() == day,
        MonthDay::Last => date.day() == date.days_in_month(),
        MonthDay::Weekday { nth, weekday } => date
            .nth_weekday_of_month(nth, weekday)
            .is_ok_and(|designated| designated == date),
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn retain_until_overrides_the_rules_while_it_is_in_the_future() {
        let now = ts("2026-03-01T00:00Z");
        // (retain until, kept by)
        let table = [
            (
                Some("2027-01-01T00:00Z"),
                vec![(KeepReason::RetainUntil, ts("2027-01-01T00:00Z"))],
            ),
            (
                Some("2026-03-01T00:00:00.000000001Z"),
                vec![(
                    KeepReason::RetainUntil,
                    ts("2026-03-01T00:00:00.000000001Z"),
                )],
            ),
            (Some("2026-03-01T00:00Z"), vec![]),
            (Some("2026-01-01T00:00Z"), vec![]),
            (None, vec![]),
        ];
        let policy = policy("UTC", daily(30));
        for (retain_until, expected) in table {
            // An old on-demand point (out of the daily window) and a recent daily one.
            let mut old = point("2025-01-01T10:00Z");
            old.retain_until = retain_until.map(ts);
            let recent = point("2026-02-28T23:00Z");
            let points = vec![old, recent];
            let verdicts = retention(&points, &policy, now, false);
            assert_eq!(verdict_ids(&verdicts), ids(&points), "{retain_until:?}");
            assert_eq!(verdicts[0].kept_by, expected, "{retain_until:?}");
            assert_eq!(
                verdicts[1].kept_by,
                vec![(KeepReason::Daily, ts("2026-03-30T23:00Z"))],
                "{retain_until:?}"
            );
        }
        // A retain-until point that the daily rule keeps too lists both, and is kept until
        // the later.
        let mut both = point("2026-02-28T23:00Z");
        both.retain_until = Some(ts("2026-03-05T00:00Z"));
        let verdicts = retention(&[both], &policy, now, false);
        assert_eq!(
            verdicts[0].kept_by,
            vec![
                (KeepReason::Daily, ts("2026-03-30T23:00Z")),
                (KeepReason::RetainUntil, ts("2026-03-05T00:00Z")),
            ]
        );
        assert_eq!(verdicts[0].until(), Some(ts("2026-03-30T23:00Z")));
    }

    #[test]
    fn the_newest_point_is_kept_only_while_protection_is_on() {
        // Backups stopped long ago: every rule has expired. The newest is not last in input.
        let points = vec![
            point("2025-01-02T23:00Z"),
            point("2025-01-03T23:00Z"),
            point("2025-01-01T23:00Z"),
        ];
        let rules = Retention {
            daily_days: Some(7),
            weekly: Some(WeeklyRetention {
                weeks: 1,
                on: vec![Weekday::Friday],
            }),
            ..Retention::default()
        };
        let policy = policy("UTC", rules);
        let now = ts("2026-06-01T00:00Z");
        // (protection on, kept by of each point)
        let table = [
            (
                true,
                [vec![], vec![(KeepReason::Newest, Timestamp::MAX)], vec![]],
            ),
            (false, [vec![], vec![], vec![]]),
        ];
        for (protection_on, expected) in table {
            let verdicts = retention(&points, &policy, now, protection_on);
            assert_eq!(verdict_ids(&verdicts), ids(&points), "{protection_on}");
            for (v, expected) in verdicts.iter().zip(expected) {
                assert_eq!(v.kept_by, expected, "{protection_on} {}", v.time);
            }
        }
        // While the rules still keep it, the newest lists them after `Newest`.
        let verdicts = retention(&points, &policy, ts("2025-01-05T00:00Z"), true);
        assert_eq!(
            verdicts[1].kept_by,
            vec![
                (KeepReason::Newest, Timestamp::MAX),
                (KeepReason::Daily, ts("2025-01-10T23:00Z")),
                (KeepReason::Weekly, ts("2025-01-10T23:00Z")),
            ]
        );
        assert_eq!(verdicts[1].until(), Some(Timestamp::MAX));
        // Exactly one newest, even when two points share its time.
        let tied = vec![point("2025-01-03T23:00Z"), point("2025-01-03T23:00Z")];
        let verdicts = retention(&tied, &policy, now, true);
        assert_eq!(verdicts.iter().filter(|v| v.keep()).count(), 1);
        assert!(retention(&[], &policy, now, true).is_empty());
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
}
