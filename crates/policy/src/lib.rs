//! Backup policies (SPEC "Policies"): when a VM is backed up, how long its points stay in the
//! snapshot tier, and which vault points retention keeps.
//!
//! A [`Policy`] is always valid: the only ways to build one are [`Policy::from_doc`] (and
//! [`Policy::from_toml`]), which apply the defaults of its type and check every range, and the
//! defaults themselves ([`Policy::standard`], [`Policy::enhanced`]). The [`PolicyDoc`] is its
//! written form: the TOML file a user applies, and what the catalog stores.
//!
//! | | Standard | Enhanced |
//! |---|---|---|
//! | schedule | daily or weekly at HH:MM | hourly (every 4, 6, 8 or 12 h from a start time over a window), daily or weekly |
//! | instant restore | 1-5 days, default 2 | 1-30 days, default 7 |
//! | daily retention | 7-9999 days, default 30 | 7-9999 days, default 180 |
//! | weekly / monthly / yearly retention | optional: 1-5163 weeks, 1-1188 months, 1-99 years | same |
//!
//! A weekly schedule keeps weekly points instead of daily ones (default 12 weeks on the
//! scheduled days).
//!
//! # Pure
//!
//! Everything here is a function of its arguments: no clock, no I/O, no runtime. The jobs
//! crate stores policies in its catalog and runs them; this crate only says what they mean:
//!
//! - **When backups run**: a [`Schedule`] is a pure function of (schedule, time zone,
//!   instants): [`Schedule::slots`], [`Schedule::next`], [`Schedule::slots_on`], and
//!   [`transfers`] (the Enhanced hourly rule: the last backup of each local day goes to the
//!   vault, or the next day's first when that one did not). Daylight saving: a skipped local
//!   time runs once at the transition, a repeated one once, first.
//! - **Which vault points are kept**: [`retention`] gives each point a [`Verdict`] from
//!   (points, policy, now, whether protection is on): every rule that keeps it, until when.
//! - **Ad-hoc keep rules** (`forget --keep-*`, restic-like counts): [`keep`] gives each point
//!   the [`KeepRule`]s that keep it from (points, [`KeepRules`], time zone, now).
//! - **The policy file**: [`PolicyDoc`], read by [`Policy::from_toml`] / [`Policy::from_doc`]
//!   and written by [`Policy::to_toml`] / [`Policy::to_doc`]. A value out of range is a
//!   [`PolicyError`] naming the field, the value and the range.

mod calendar;
mod error;
mod file;
mod keep;
mod policy;
mod retention;
mod schedule;

pub use crate::{
    calendar::{MonthDay, parse_timezone},
    error::{Error, PolicyError, Result},
    file::{PolicyDoc, RetentionDoc, ScheduleDoc},
    keep::{KeepRule, KeepRules, KeepVerdict, keep},
    policy::{
        DAILY_RETENTION_DAYS, DEFAULT_POLICY, ENHANCED_INSTANT_RESTORE_DAYS, HOURLY_WINDOW_HOURS,
        MONTHLY_RETENTION_MONTHS, MonthlyRetention, Policy, PolicyName, PolicyType, Retention,
        STANDARD_INSTANT_RESTORE_DAYS, WEEKLY_RETENTION_WEEKS, WeeklyRetention,
        YEARLY_RETENTION_YEARS, YearlyRetention,
    },
    retention::{KeepReason, RetainedPoint, Verdict, retention},
    schedule::{HOURLY_INTERVALS, Schedule, Slot, transfers::transfers},
};
