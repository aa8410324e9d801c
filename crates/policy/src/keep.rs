//! Ad-hoc keep rules, as `blockvault forget --keep-*` gives them (restic's `forget`): which of
//! a VM's points a user keeps by count, not by a policy's durations. Pure, like [`retention`]:
//! a function of (points, rules, time zone, now).
//!
//! The points are taken newest first (by time, then by id: the later id first).
//!
//! - **last N**: the N newest points.
//! - **daily N**: the newest point of each of the N newest local dates that have points;
//!   **weekly N** likewise per ISO week, **monthly N** per month, **yearly N** per year. A
//!   period with no point is not counted: `--keep-daily 7` keeps seven points of seven days
//!   even when backups skipped days.
//! - **retain until**: a point made with a `retain until` later than `now` is kept whatever
//!   the counts say (its maker asked for it; `forget --point` still forgets it).
//!
//! Every count is at least 1, so any rule keeps the newest point: keep rules never remove
//! every point.
//!
//! [`retention`]: crate::retention

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::RetainedPoint;

/// How many points of each kind to keep; `None` is no such rule. Counts are at least 1 (see
/// [`KeepRules::check`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeepRules {
    pub last: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

/// Why a keep rule keeps a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepRule {
    Last,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    RetainUntil,
}

impl KeepRule {
    /// The rule as `forget` shows it: `last`, `daily`, ..., `retain until`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepRule::Last => "last",
            KeepRule::Daily => "daily",
            KeepRule::Weekly => "weekly",
            KeepRule::Monthly => "monthly",
            KeepRule::Yearly => "yearly",
            KeepRule::RetainUntil => "retain until",
        }
    }
}

impl fmt::Display for KeepRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the keep rules decide for one point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepVerdict {
    pub point: RetainedPoint,
    /// Every rule that keeps it, in the order of [`KeepRule`]. Empty: forget it.
    pub kept_by: Vec<KeepRule>,
}

impl KeepVerdict {
    pub fn keep(&self) -> bool {
        !self.kept_by.is_empty()
    }
}

impl KeepRules {
    /// Why these rules cannot be applied, if they cannot: no rule at all, or a count of 0
    /// (`--keep-daily 0` would keep nothing by it: leave the rule out instead).
    pub fn check(&self) -> Result<(), String> {
        let counts = [
            ("last", self.last),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ];
        if counts.iter().all(|(_, n)| n.is_none()) {
            return Err(
                "no keep rule given (--keep-last, --keep-daily, --keep-weekly, \
                        --keep-monthly or --keep-yearly)"
                    .to_owned(),
            );
        }
        match counts.iter().find(|(_, n)| *n == Some(0)) {
            Some((name, _)) => Err(format!(
                "--keep-{name} 0 keeps nothing by that rule: give at least 1, or leave it out"
            )),
            None => Ok(()),
        }
    }
}

/// The period of a local date a rule counts in (year and day, week or month).
type Period = fn(Date) -> (i16, i16);

/// The verdict of each of `points` under `rules`, local dates read in `tz`, at `now`; in the
/// order of `points` (see the module doc).
pub fn keep(
    points: &[RetainedPoint],
    rules: &KeepRules,
    tz: &TimeZone,
    now: Timestamp,
) -> Vec<KeepVerdict> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| (points[b].time, &points[b].id).cmp(&(points[a].time, &points[a].id)));
    let mut kept_by: Vec<Vec<KeepRule>> = vec![Vec::new(); points.len()];
    let buckets: [(KeepRule, Option<u32>, Period); 5] = [
        (KeepRule::Last, rules.last, |_| (0, 0)),
        (KeepRule::Daily, rules.daily, |d| {
            (d.year(), d.day_of_year())
        }),
        (KeepRule::Weekly, rules.weekly, |d| {
            let week = d.iso_week_date();
            (week.year(), i16::from(week.week()))
        }),
        (KeepRule::Monthly, rules.monthly, |d| {
            (d.year(), i16::from(d.month()))
        }),
        (KeepRule::Yearly, rules.yearly, |d| (d.year(), 0)),
    ];
    for (rule, count, bucket_of) in buckets {
        let Some(count) = count else { continue };
        let mut left = count;
        let mut last: Option<(i16, i16)> = None;
        for &i in &order {
            if left == 0 {
                break;
            }
            // keep-last counts points, the others periods.
            let bucket = bucket_of(tz.to_datetime(points[i].time).date());
            if rule != KeepRule::Last && last == Some(bucket) {
                continue;
            }
            last = Some(bucket);
            kept_by[i].push(rule);
            left -= 1;
        }
    }
    for (i, point) in points.iter().enumerate() {
        if point.retain_until.is_some_and(|until| until > now) {
            kept_by[i].push(KeepRule::RetainUntil);
        }
    }
    points
        .iter()
        .zip(kept_by)
        .map(|(point, kept_by)| KeepVerdict {
            point: point.clone(),
            kept_by,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use blockvault_core::PointId;

    use super::*;

    fn point(at: &str) -> RetainedPoint {
        let time: Timestamp = at.parse().expect("time");
        RetainedPoint {
            id: PointId::generate(time, at.as_bytes()),
            time,
            retain_until: None,
        }
    }

    /// The times of the points kept, newest first as given.
    fn kept(points: &[RetainedPoint], rules: KeepRules, tz: &str) -> Vec<String> {
        let tz = TimeZone::get(tz).expect("tz");
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().expect("now");
        keep(points, &rules, &tz, now)
            .into_iter()
            .filter(KeepVerdict::keep)
            .map(|v| v.point.time.to_string())
            .collect()
    }

    fn points() -> Vec<RetainedPoint> {
        [
            "2026-11-02T08:00:00Z",
            "2026-11-02T20:00:00Z",
            "2026-11-03T08:00:00Z",
            "2026-11-05T08:00:00Z",
            "2026-11-05T09:00:00Z",
            "2026-11-16T08:00:00Z",
            "2026-12-01T08:00:00Z",
        ]
        .into_iter()
        .map(point)
        .collect()
    }

    #[test]
    fn each_rule_keeps_the_newest_point_of_its_newest_periods() {
        let cases: [(KeepRules, &[&str]); 5] = [
            (
                KeepRules {
                    last: Some(2),
                    ..KeepRules::default()
                },
                &["2026-11-16T08:00:00Z", "2026-12-01T08:00:00Z"],
            ),
            // Days without points are not counted.
            (
                KeepRules {
                    daily: Some(3),
                    ..KeepRules::default()
                },
                &[
                    "2026-11-05T09:00:00Z",
                    "2026-11-16T08:00:00Z",
                    "2026-12-01T08:00:00Z",
                ],
            ),
            // ISO weeks: Nov 2-8 (Mon-Sun), Nov 16-22, Nov 30-Dec 6.
            (
                KeepRules {
                    weekly: Some(5),
                    ..KeepRules::default()
                },
                &[
                    "2026-11-05T09:00:00Z",
                    "2026-11-16T08:00:00Z",
                    "2026-12-01T08:00:00Z",
                ],
            ),
            (
                KeepRules {
                    monthly: Some(1),
                    last: Some(1),
                    ..KeepRules::default()
                },
                &["2026-12-01T08:00:00Z"],
            ),
            (
                KeepRules {
                    monthly: Some(2),
                    yearly: Some(1),
                    ..KeepRules::default()
                },
                &["2026-11-16T08:00:00Z", "2026-12-01T08:00:00Z"],
            ),
        ];
        for (rules, expected) in cases {
            assert_eq!(kept(&points(), rules, "UTC"), expected, "{rules:?}");
        }
    }

    #[test]
    fn days_are_local_to_the_zone() {
        // 20:00 UTC on Nov 2 is Nov 3 in Tokyo: then Nov 3 has two points and Nov 2 one.
        let rules = KeepRules {
            daily: Some(5),
            ..KeepRules::default()
        };
        let points = &points()[..3];
        assert_eq!(
            kept(points, rules, "UTC"),
            ["2026-11-02T20:00:00Z", "2026-11-03T08:00:00Z"]
        );
        assert_eq!(
            kept(points, rules, "Asia/Tokyo"),
            ["2026-11-02T08:00:00Z", "2026-11-03T08:00:00Z"]
        );
    }

    #[test]
    fn a_retain_until_in_the_future_keeps_a_point() {
        let mut points = points();
        points[0].retain_until = Some("2027-06-01T00:00:00Z".parse().expect("ts"));
        points[1].retain_until = Some("2026-12-01T00:00:00Z".parse().expect("ts"));
        let tz = TimeZone::UTC;
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().expect("now");
        let rules = KeepRules {
            last: Some(1),
            ..KeepRules::default()
        };
        let verdicts = keep(&points, &rules, &tz, now);
        assert_eq!(verdicts[0].kept_by, [KeepRule::RetainUntil]);
        assert!(!verdicts[1].keep(), "its retain-until is over");
        assert_eq!(verdicts[6].kept_by, [KeepRule::Last]);
        assert_eq!(verdicts.iter().filter(|v| v.keep()).count(), 2);
    }

    #[test]
    fn no_rule_or_a_zero_count_is_refused() {
        assert!(KeepRules::default().check().is_err());
        let zero = KeepRules {
            daily: Some(0),
            weekly: Some(2),
            ..KeepRules::default()
        };
        let err = zero.check().expect_err("zero");
        assert!(err.contains("--keep-daily 0"), "{err}");
        let fine = KeepRules {
            yearly: Some(1),
            ..KeepRules::default()
        };
        assert_eq!(fine.check(), Ok(()));
    }
}
