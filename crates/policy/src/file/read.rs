//! Reading a policy document: its type's defaults for what it leaves out, every value
//! checked against its range, each refusal a [`PolicyError`] naming the field.

use jiff::civil::{Time, Weekday};

use super::{PolicyDoc, RetentionDoc, ScheduleDoc};
use crate::calendar::{
    normalize_weekdays, parse_month, parse_time_of_day, parse_weekday, weekday_key,
};
use crate::{
    DAILY_RETENTION_DAYS, Error, HOURLY_INTERVALS, HOURLY_WINDOW_HOURS, MONTHLY_RETENTION_MONTHS,
    MonthDay, MonthlyRetention, Policy, PolicyError, PolicyName, PolicyType, Retention, Schedule,
    WEEKLY_RETENTION_WEEKS, WeeklyRetention, YEARLY_RETENTION_YEARS, YearlyRetention,
    parse_timezone,
};

pub(super) const DEFAULT_AT: Time = Time::constant(23, 0, 0, 0);
pub(super) const DEFAULT_START: Time = Time::constant(8, 0, 0, 0);
const DEFAULT_WEEKS: i64 = 12;
const DEFAULT_MONTH_DAY: MonthDay = MonthDay::Weekday {
    nth: 1,
    weekday: Weekday::Sunday,
};

impl Policy {
    /// Reads a policy file.
    pub fn from_toml(text: &str) -> crate::Result<Policy> {
        let doc: PolicyDoc = toml::from_str(text).map_err(|e| Error::File {
            message: e.to_string().trim().to_owned(),
        })?;
        Ok(Policy::from_doc(&doc)?)
    }

    /// The policy a document describes: its type's defaults for what it leaves out, every
    /// value checked.
    pub fn from_doc(doc: &PolicyDoc) -> Result<Policy, PolicyError> {
        let name: PolicyName = match &doc.name {
            Some(name) => name.parse()?,
            None => return Err(PolicyError::new("name", "(missing)", "a policy name")),
        };
        let kind = match &doc.kind {
            None => PolicyType::Standard,
            Some(kind) => kind.parse().map_err(|_| {
                PolicyError::new("type", format!("{kind:?}"), "standard or enhanced")
            })?,
        };
        let timezone = parse_timezone(doc.timezone.as_deref().unwrap_or("UTC"))?;
        let schedule = schedule(kind, &doc.schedule.clone().unwrap_or_default())?;
        let range = Policy::instant_restore_range(kind);
        let instant_restore_days = match doc.instant_restore_days {
            None => *Policy::instant_restore_range(kind).start() + default_extra_days(kind),
            Some(days) => u32::try_from(days)
                .ok()
                .filter(|d| range.contains(d))
                .ok_or_else(|| {
                    PolicyError::new(
                        "instant-restore-days",
                        days,
                        format!(
                            "{kind} policies keep snapshots {}-{} days",
                            range.start(),
                            range.end()
                        ),
                    )
                })?,
        };
        let retention = retention(kind, &schedule, &doc.retention.clone().unwrap_or_default())?;
        Ok(Policy {
            name,
            kind,
            schedule,
            timezone,
            instant_restore_days,
            retention,
        })
    }
}

/// Standard defaults to 2 days of instant restore, Enhanced to 7 (both ranges start at 1).
fn default_extra_days(kind: PolicyType) -> u32 {
    match kind {
        PolicyType::Standard => 1,
        PolicyType::Enhanced => 6,
    }
}

fn schedule(kind: PolicyType, doc: &ScheduleDoc) -> Result<Schedule, PolicyError> {
    let frequency = doc.frequency.as_deref().unwrap_or(match kind {
        PolicyType::Standard => "daily",
        PolicyType::Enhanced => "hourly",
    });
    let only = |field: &str, present: bool, applies: &str| {
        if present {
            Err(PolicyError::new(
                format!("schedule.{field}"),
                format!("(set for a {frequency} schedule)"),
                format!("only {applies} schedules have it"),
            ))
        } else {
            Ok(())
        }
    };
    let at = |doc: &ScheduleDoc| {
        doc.at
            .as_deref()
            .map_or(Ok(DEFAULT_AT), |at| parse_time_of_day("schedule.at", at))
    };
    match frequency.to_ascii_lowercase().as_str() {
        "daily" => {
            only("days", doc.days.is_some(), "weekly")?;
            hourly_fields_absent(doc, &only)?;
            Ok(Schedule::Daily { at: at(doc)? })
        }
        "weekly" => {
            hourly_fields_absent(doc, &only)?;
            let days = weekdays("schedule.days", doc.days.as_deref().unwrap_or(&[]))?;
            Ok(Schedule::Weekly { days, at: at(doc)? })
        }
        "hourly" => {
            if kind == PolicyType::Standard {
                return Err(PolicyError::new(
                    "schedule.frequency",
                    "\"hourly\"",
                    "a Standard policy runs daily or weekly; hourly schedules need an Enhanced \
                     policy",
                ));
            }
            only("at", doc.at.is_some(), "daily and weekly")?;
            only("days", doc.days.is_some(), "weekly")?;
            let every = doc.every_hours.unwrap_or(4);
            let every = u8::try_from(every)
                .ok()
                .filter(|e| HOURLY_INTERVALS.contains(e))
                .ok_or_else(|| PolicyError::new("schedule.every-hours", every, "4, 6, 8 or 12"))?;
            let start = doc.start.as_deref().map_or(Ok(DEFAULT_START), |s| {
                parse_time_of_day("schedule.start", s)
            })?;
            let window = doc.window_hours.unwrap_or(24);
            let window_hours = u8::try_from(window)
                .ok()
                .filter(|w| HOURLY_WINDOW_HOURS.contains(w))
                .ok_or_else(|| {
                    PolicyError::new(
                        "schedule.window-hours",
                        window,
                        format!(
                            "{}-{} hours",
                            HOURLY_WINDOW_HOURS.start(),
                            HOURLY_WINDOW_HOURS.end()
                        ),
                    )
                })?;
            Ok(Schedule::Hourly {
                every,
                start,
                window_hours,
            })
        }
        other => Err(PolicyError::new(
            "schedule.frequency",
            format!("{other:?}"),
            match kind {
                PolicyType::Standard => "daily or weekly",
                PolicyType::Enhanced => "hourly, daily or weekly",
            },
        )),
    }
}

fn hourly_fields_absent(
    doc: &ScheduleDoc,
    only: &impl Fn(&str, bool, &str) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    only("every-hours", doc.every_hours.is_some(), "hourly")?;
    only("start", doc.start.is_some(), "hourly")?;
    only("window-hours", doc.window_hours.is_some(), "hourly")
}

fn weekdays(field: &str, names: &[String]) -> Result<Vec<Weekday>, PolicyError> {
    if names.is_empty() {
        return Err(PolicyError::new(
            field,
            "[]",
            "one or more of mon, tue, wed, thu, fri, sat, sun",
        ));
    }
    let mut days = names
        .iter()
        .map(|n| {
            parse_weekday(n).ok_or_else(|| {
                PolicyError::new(
                    field,
                    format!("{n:?}"),
                    "mon, tue, wed, thu, fri, sat or sun",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    normalize_weekdays(&mut days);
    Ok(days)
}

/// A count in `range` (read wide, so -1 and 10^12 get this message too).
fn count(
    field: &str,
    value: i64,
    range: &std::ops::RangeInclusive<u32>,
    unit: &str,
) -> Result<u32, PolicyError> {
    u32::try_from(value)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            PolicyError::new(
                field,
                value,
                format!("{}-{} {unit}", range.start(), range.end()),
            )
        })
}

fn month_day(field: &str, on: Option<&str>) -> Result<MonthDay, PolicyError> {
    on.map_or(Ok(DEFAULT_MONTH_DAY), |on| {
        on.parse().map_err(|e: PolicyError| PolicyError {
            field: field.to_owned(),
            ..e
        })
    })
}

fn retention(
    kind: PolicyType,
    schedule: &Schedule,
    doc: &RetentionDoc,
) -> Result<Retention, PolicyError> {
    let weekly_schedule = match schedule {
        Schedule::Weekly { days, .. } => Some(days),
        _ => None,
    };
    let daily_days = match (weekly_schedule, doc.daily_days) {
        (Some(_), Some(days)) => {
            return Err(PolicyError::new(
                "retention.daily-days",
                days,
                "a weekly schedule keeps weekly points: set retention.weekly instead",
            ));
        }
        (Some(_), None) => None,
        (None, days) => Some(count(
            "retention.daily-days",
            days.unwrap_or(match kind {
                PolicyType::Standard => 30,
                PolicyType::Enhanced => 180,
            }),
            &DAILY_RETENTION_DAYS,
            "days",
        )?),
    };
    let weekly = match (&doc.weekly, weekly_schedule) {
        (None, None) => None,
        (given, scheduled) => {
            let given = given.clone().unwrap_or_default();
            let weeks = count(
                "retention.weekly.weeks",
                given.weeks.unwrap_or(DEFAULT_WEEKS),
                &WEEKLY_RETENTION_WEEKS,
                "weeks",
            )?;
            let on = match (&given.on, scheduled) {
                (Some(on), _) => weekdays("retention.weekly.on", on)?,
                (None, Some(days)) => days.clone(),
                (None, None) => vec![Weekday::Sunday],
            };
            if let Some(days) = scheduled
                && let Some(day) = on.iter().find(|d| !days.contains(d))
            {
                return Err(PolicyError::new(
                    "retention.weekly.on",
                    weekday_key(*day),
                    "a day the weekly schedule runs on (no backup is taken on other days)",
                ));
            }
            Some(WeeklyRetention { weeks, on })
        }
    };
    let monthly = doc
        .monthly
        .as_ref()
        .map(|m| {
            Ok::<_, PolicyError>(MonthlyRetention {
                months: count(
                    "retention.monthly.months",
                    m.months.unwrap_or(0),
                    &MONTHLY_RETENTION_MONTHS,
                    "months",
                )?,
                on: month_day("retention.monthly.on", m.on.as_deref())?,
            })
        })
        .transpose()?;
    let yearly = doc
        .yearly
        .as_ref()
        .map(|y| {
            let month = match &y.month {
                None => 1,
                Some(m) => parse_month(m).ok_or_else(|| {
                    PolicyError::new(
                        "retention.yearly.month",
                        format!("{m:?}"),
                        "jan-dec or 1-12",
                    )
                })?,
            };
            Ok::<_, PolicyError>(YearlyRetention {
                years: count(
                    "retention.yearly.years",
                    y.years.unwrap_or(0),
                    &YEARLY_RETENTION_YEARS,
                    "years",
                )?,
                month,
                on: month_day("retention.yearly.on", y.on.as_deref())?,
            })
        })
        .transpose()?;
    Ok(Retention {
        daily_days,
        weekly,
        monthly,
        yearly,
    })
}
