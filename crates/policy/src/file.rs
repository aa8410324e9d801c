//! The written form of a policy: the TOML file `blockvault policy apply` reads, `policy show
//! --toml` prints and the catalog stores.
//!
//! ```toml
//! name = "web-4h"
//! type = "enhanced"              # standard (default) | enhanced
//! timezone = "Europe/Paris"      # IANA name; default UTC
//! instant-restore-days = 7       # Standard 1-5 (default 2), Enhanced 1-30 (default 7)
//!
//! [schedule]
//! frequency = "hourly"           # daily | weekly | hourly (Enhanced only)
//! every-hours = 4                # hourly: 4, 6, 8 or 12 (default 4)
//! start = "08:00"                # hourly: first run of the day (default 08:00)
//! window-hours = 24              # hourly: how long the runs go on (1-24, default 24)
//! # at = "23:00"                 # daily and weekly (default 23:00)
//! # days = ["sun", "wed"]        # weekly
//!
//! [retention]
//! daily-days = 180               # 7-9999; default 30 (Standard) or 180 (Enhanced)
//! weekly = { weeks = 12, on = ["sun"] }                  # 1-5163 weeks
//! monthly = { months = 60, on = "first-sunday" }        # 1-1188 months; 1-28, last, nth-weekday
//! yearly = { years = 10, month = "jan", on = "last" }    # 1-99 years
//! ```
//!
//! Every field but `name` may be left out and takes its type's default. Numbers are read wide
//! so that an out-of-range value gets the policy's message (field, value, allowed range), not
//! a parser's.

use jiff::civil::{Time, Weekday};
use serde::{Deserialize, Serialize};

use crate::calendar::{
    month_key, normalize_weekdays, parse_month, parse_time_of_day, parse_weekday, time_key,
    weekday_key,
};
use crate::{
    DAILY_RETENTION_DAYS, Error, HOURLY_INTERVALS, HOURLY_WINDOW_HOURS, MONTHLY_RETENTION_MONTHS,
    MonthDay, MonthlyRetention, Policy, PolicyError, PolicyName, PolicyType, Retention, Schedule,
    WEEKLY_RETENTION_WEEKS, WeeklyRetention, YEARLY_RETENTION_YEARS, YearlyRetention,
    parse_timezone,
};

/// A policy as written: every field optional, defaults and checks applied by
/// [`Policy::from_doc`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyDoc {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub timezone: Option<String>,
    pub instant_restore_days: Option<i64>,
    pub schedule: Option<ScheduleDoc>,
    pub retention: Option<RetentionDoc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScheduleDoc {
    pub frequency: Option<String>,
    pub at: Option<String>,
    pub days: Option<Vec<String>>,
    pub every_hours: Option<i64>,
    pub start: Option<String>,
    pub window_hours: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionDoc {
    pub daily_days: Option<i64>,
    pub weekly: Option<WeeklyDoc>,
    pub monthly: Option<MonthlyDoc>,
    pub yearly: Option<YearlyDoc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WeeklyDoc {
    pub weeks: Option<i64>,
    pub on: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MonthlyDoc {
    pub months: Option<i64>,
    pub on: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct YearlyDoc {
    pub years: Option<i64>,
    pub month: Option<String>,
    pub on: Option<String>,
}

const DEFAULT_AT: Time = Time::constant(23, 0, 0, 0);
const DEFAULT_START: Time = Time::constant(8, 0, 0, 0);
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

    /// The policy as a file that [`Policy::from_toml`] reads back to the same policy.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_doc()).unwrap_or_default()
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

    /// The full document of this policy (every default written out).
    pub fn to_doc(&self) -> PolicyDoc {
        let schedule = match &self.schedule {
            Schedule::Daily { at } => ScheduleDoc {
                frequency: Some("daily".into()),
                at: Some(time_key(*at)),
                ..ScheduleDoc::default()
            },
            Schedule::Weekly { days, at } => ScheduleDoc {
                frequency: Some("weekly".into()),
                at: Some(time_key(*at)),
                days: Some(days.iter().map(|d| weekday_key(*d).to_owned()).collect()),
                ..ScheduleDoc::default()
            },
            Schedule::Hourly {
                every,
                start,
                window_hours,
            } => ScheduleDoc {
                frequency: Some("hourly".into()),
                every_hours: Some(i64::from(*every)),
                start: Some(time_key(*start)),
                window_hours: Some(i64::from(*window_hours)),
                ..ScheduleDoc::default()
            },
        };
        let r = &self.retention;
        PolicyDoc {
            name: Some(self.name.to_string()),
            kind: Some(self.kind.key().to_owned()),
            timezone: Some(self.timezone_name().to_owned()),
            instant_restore_days: Some(i64::from(self.instant_restore_days)),
            schedule: Some(schedule),
            retention: Some(RetentionDoc {
                daily_days: r.daily_days.map(i64::from),
                weekly: r.weekly.as_ref().map(|w| WeeklyDoc {
                    weeks: Some(i64::from(w.weeks)),
                    on: Some(w.on.iter().map(|d| weekday_key(*d).to_owned()).collect()),
                }),
                monthly: r.monthly.as_ref().map(|m| MonthlyDoc {
                    months: Some(i64::from(m.months)),
                    on: Some(m.on.to_string()),
                }),
                yearly: r.yearly.as_ref().map(|y| YearlyDoc {
                    years: Some(i64::from(y.years)),
                    month: Some(month_key(y.month).to_owned()),
                    on: Some(y.on.to_string()),
                }),
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> PolicyDoc {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn defaults_follow_the_type() {
        let standard = Policy::from_doc(&doc("name = 's'")).expect("standard");
        assert_eq!(standard.kind, PolicyType::Standard);
        assert_eq!(standard.instant_restore_days, 2);
        assert_eq!(standard.retention.daily_days, Some(30));
        assert_eq!(standard.schedule, Schedule::Daily { at: DEFAULT_AT });
        assert_eq!(standard.timezone_name(), "UTC");

        let enhanced = Policy::from_doc(&doc("name = 'e'\ntype = 'enhanced'")).expect("enhanced");
        assert_eq!(enhanced.instant_restore_days, 7);
        assert_eq!(enhanced.retention.daily_days, Some(180));
        assert_eq!(
            enhanced.schedule,
            Schedule::Hourly {
                every: 4,
                start: DEFAULT_START,
                window_hours: 24
            }
        );
        assert_eq!(
            Policy::default_policy().to_doc(),
            Policy::standard(
                DEFAULT_POLICY_NAME.parse().expect("name"),
                jiff::tz::TimeZone::UTC
            )
            .to_doc()
        );
    }

    const DEFAULT_POLICY_NAME: &str = super::super::DEFAULT_POLICY;

    #[test]
    fn a_full_document_round_trips() {
        let text = "
            name = 'web-4h'
            type = 'enhanced'
            timezone = 'Europe/Paris'
            instant-restore-days = 30
            [schedule]
            frequency = 'hourly'
            every-hours = 6
            start = '01:30'
            window-hours = 12
            [retention]
            daily-days = 9999
            weekly = { weeks = 5163, on = ['sun', 'wed', 'sun'] }
            monthly = { months = 1188, on = 'last-friday' }
            yearly = { years = 99, month = 'dec', on = 'last' }
        ";
        let policy = Policy::from_toml(text).expect("valid");
        assert_eq!(
            policy.retention.weekly.as_ref().map(|w| w.on.clone()),
            Some(vec![Weekday::Wednesday, Weekday::Sunday])
        );
        let again = Policy::from_toml(&policy.to_toml()).expect("round trip");
        assert_eq!(again, policy);
        assert_eq!(again.timezone_name(), "Europe/Paris");
    }

    #[test]
    fn a_weekly_schedule_keeps_weekly_points_on_its_days() {
        let policy = Policy::from_toml(
            "name = 'w'\n[schedule]\nfrequency = 'weekly'\ndays = ['sat', 'tue']\nat = '02:30'",
        )
        .expect("weekly");
        assert_eq!(policy.retention.daily_days, None);
        assert_eq!(
            policy.retention.weekly,
            Some(WeeklyRetention {
                weeks: 12,
                on: vec![Weekday::Tuesday, Weekday::Saturday]
            })
        );
    }

    /// Every refusal names the field, the value and what is allowed.
    #[test]
    fn out_of_range_values_are_refused_naming_field_value_and_range() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (document body after the name, field, value, part of the allowed text)
            (
                "instant-restore-days = 6",
                "instant-restore-days",
                "6",
                "Standard policies keep snapshots 1-5",
            ),
            (
                "instant-restore-days = 0",
                "instant-restore-days",
                "0",
                "1-5",
            ),
            (
                "type = 'enhanced'\ninstant-restore-days = 31",
                "instant-restore-days",
                "31",
                "1-30",
            ),
            (
                "type = 'enhanced'\ninstant-restore-days = -1",
                "instant-restore-days",
                "-1",
                "1-30",
            ),
            (
                "type = 'premium'",
                "type",
                "\"premium\"",
                "standard or enhanced",
            ),
            (
                "timezone = 'Europe/Atlantis'",
                "timezone",
                "\"Europe/Atlantis\"",
                "IANA",
            ),
            (
                "[schedule]\nfrequency = 'hourly'",
                "schedule.frequency",
                "\"hourly\"",
                "Enhanced",
            ),
            (
                "[schedule]\nfrequency = 'monthly'",
                "schedule.frequency",
                "\"monthly\"",
                "daily or weekly",
            ),
            (
                "type = 'enhanced'\n[schedule]\nevery-hours = 5",
                "schedule.every-hours",
                "5",
                "4, 6, 8 or 12",
            ),
            (
                "type = 'enhanced'\n[schedule]\nevery-hours = 3",
                "schedule.every-hours",
                "3",
                "4, 6, 8 or 12",
            ),
            (
                "type = 'enhanced'\n[schedule]\nwindow-hours = 25",
                "schedule.window-hours",
                "25",
                "1-24",
            ),
            (
                "type = 'enhanced'\n[schedule]\nwindow-hours = 0",
                "schedule.window-hours",
                "0",
                "1-24",
            ),
            (
                "type = 'enhanced'\n[schedule]\nstart = '24:00'",
                "schedule.start",
                "\"24:00\"",
                "HH:MM",
            ),
            (
                "type = 'enhanced'\n[schedule]\nat = '10:00'",
                "schedule.at",
                "set for a hourly",
                "daily and weekly",
            ),
            ("[schedule]\nat = '7pm'", "schedule.at", "\"7pm\"", "HH:MM"),
            (
                "[schedule]\nevery-hours = 4",
                "schedule.every-hours",
                "daily",
                "hourly",
            ),
            (
                "[schedule]\nfrequency = 'weekly'",
                "schedule.days",
                "[]",
                "one or more",
            ),
            (
                "[schedule]\nfrequency = 'weekly'\ndays = ['caturday']",
                "schedule.days",
                "\"caturday\"",
                "mon",
            ),
            (
                "[retention]\ndaily-days = 6",
                "retention.daily-days",
                "6",
                "7-9999",
            ),
            (
                "[retention]\ndaily-days = 10000",
                "retention.daily-days",
                "10000",
                "7-9999",
            ),
            (
                "[schedule]\nfrequency = 'weekly'\ndays = ['sun']\n[retention]\ndaily-days = 30",
                "retention.daily-days",
                "30",
                "weekly",
            ),
            (
                "[schedule]\nfrequency = 'weekly'\ndays = ['sun']\n[retention]\nweekly = { weeks = 4, on = ['mon'] }",
                "retention.weekly.on",
                "mon",
                "weekly schedule runs on",
            ),
            (
                "[retention]\nweekly = { weeks = 0 }",
                "retention.weekly.weeks",
                "0",
                "1-5163",
            ),
            (
                "[retention]\nweekly = { weeks = 5164 }",
                "retention.weekly.weeks",
                "5164",
                "1-5163",
            ),
            (
                "[retention]\nmonthly = { months = 1189 }",
                "retention.monthly.months",
                "1189",
                "1-1188",
            ),
            (
                "[retention]\nmonthly = { on = 'first-sunday' }",
                "retention.monthly.months",
                "0",
                "1-1188",
            ),
            (
                "[retention]\nmonthly = { months = 3, on = '31' }",
                "retention.monthly.on",
                "\"31\"",
                "1-28",
            ),
            (
                "[retention]\nyearly = { years = 100 }",
                "retention.yearly.years",
                "100",
                "1-99",
            ),
            (
                "[retention]\nyearly = { years = 1, month = 'smarch' }",
                "retention.yearly.month",
                "\"smarch\"",
                "jan-dec",
            ),
        ];
        for (body, field, value, allowed) in cases {
            let err = Policy::from_doc(&doc(&format!("name = 'p'\n{body}"))).expect_err(body);
            assert_eq!(err.field, *field, "{body}: {err}");
            assert!(err.value.contains(value), "{body}: value {:?}", err.value);
            assert!(
                err.allowed.contains(allowed),
                "{body}: allowed {:?}",
                err.allowed
            );
            let message = err.to_string();
            assert!(
                message.contains(field) && message.contains(&err.value),
                "{message}"
            );
        }
    }

    #[test]
    fn the_edges_of_every_range_are_accepted() {
        for body in [
            "instant-restore-days = 1",
            "instant-restore-days = 5",
            "type = 'enhanced'\ninstant-restore-days = 30",
            "[retention]\ndaily-days = 7",
            "[retention]\nweekly = { weeks = 1 }\nmonthly = { months = 1, on = '28' }\nyearly = { years = 99, month = '12' }",
            "type = 'enhanced'\n[schedule]\nevery-hours = 12\nwindow-hours = 1\nstart = '23:59'",
            "type = 'enhanced'\n[schedule]\nfrequency = 'daily'\nat = '00:00'",
        ] {
            Policy::from_doc(&doc(&format!("name = 'p'\n{body}"))).expect(body);
        }
    }

    #[test]
    fn unknown_keys_and_a_missing_name_are_refused() {
        let err = Policy::from_toml("name = 'p'\ninstant_restore_days = 3").expect_err("typo");
        assert!(err.to_string().contains("instant_restore_days"), "{err}");
        let err = Policy::from_doc(&PolicyDoc::default()).expect_err("no name");
        assert_eq!(err.field, "name");
    }
}
