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
//!
//! This file holds the written form and writes it ([`Policy::to_doc`], [`Policy::to_toml`]);
//! `read` reads it back ([`Policy::from_toml`], [`Policy::from_doc`]: defaults and checks).

mod read;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::calendar::{month_key, time_key, weekday_key};
use crate::{Policy, Schedule};

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

impl Policy {
    /// The policy as a file that [`Policy::from_toml`] reads back to the same policy.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_doc()).unwrap_or_default()
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
