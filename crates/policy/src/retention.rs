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

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use blockvault_core::{PointId, RecoveryPoint};
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

impl From<&RecoveryPoint> for RetainedPoint {
    fn from(point: &RecoveryPoint) -> RetainedPoint {
        RetainedPoint {
            id: point.id.clone(),
            time: point.time,
            retain_until: point.retain_until,
        }
    }
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
