//! `blockvault policy ...`: backup policies in the host's catalog. Flags and policy files both
//! become a [`PolicyDoc`], which the policy crate checks and completes with defaults.

use anyhow::Result;
use blockvault_host::Host;
use blockvault_jobs::{PolicyEntry, Put};
use blockvault_policy::{Policy, PolicyDoc, PolicyName, RetentionDoc, Schedule, ScheduleDoc};
use jiff::Timestamp;
use serde_json::json;

use super::Report;
use crate::args::{PolicyCommand, PolicySettings};
use crate::exit::UsageError;
use crate::format;

pub async fn run(command: PolicyCommand, host: &Host) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let catalog = engine.catalog();
    let now = Timestamp::now();
    let mut report = match command {
        PolicyCommand::Create {
            name,
            kind,
            settings,
        } => {
            let mut doc = PolicyDoc {
                name: Some(name),
                kind: Some(kind),
                timezone: Some(blockvault_host::host_timezone()),
                ..PolicyDoc::default()
            };
            apply(&mut doc, &settings)?;
            let policy = Policy::from_doc(&doc)?;
            let created = policy.clone();
            catalog
                .call(move |c| c.create_policy(&created, now))
                .await?;
            saved(&policy, "created")
        }
        PolicyCommand::Edit { name, settings } => {
            let name: PolicyName = name.parse()?;
            let mut doc = catalog.call(move |c| c.policy(&name)).await?.to_doc();
            apply(&mut doc, &settings)?;
            let policy = Policy::from_doc(&doc)?;
            let updated = policy.clone();
            catalog.call(move |c| c.put_policy(&updated, now)).await?;
            saved(&policy, "updated")
        }
        PolicyCommand::Show { name, toml } => {
            let name: PolicyName = name.parse()?;
            let entry = catalog
                .call(|c| c.policies())
                .await?
                .into_iter()
                .find(|p| p.policy.name == name)
                .ok_or(blockvault_jobs::Error::UnknownPolicy { name })?;
            let text = if toml {
                entry.policy.to_toml().trim_end().to_owned()
            } else {
                describe(&entry)
            };
            Report {
                text,
                json: entry_json(&entry),
                warnings: Vec::new(),
                exit_code: None,
            }
        }
        PolicyCommand::List => list(catalog.call(|c| c.policies()).await?),
        PolicyCommand::Delete { name } => {
            let name: PolicyName = name.parse()?;
            let deleted = name.clone();
            catalog.call(move |c| c.delete_policy(&deleted)).await?;
            Report {
                text: format!("deleted policy {name}"),
                json: json!({ "deleted": name }),
                warnings: Vec::new(),
                exit_code: None,
            }
        }
        PolicyCommand::Apply { files } => {
            // Every file is read and checked, then all are applied in one transaction: all
            // or nothing.
            let policies = blockvault_host::policy_files(&files)?;
            let applied = policies.clone();
            let puts = catalog.call(move |c| c.put_policies(&applied, now)).await?;
            let mut lines = Vec::new();
            let mut applied = Vec::new();
            for (policy, put) in policies.iter().zip(puts) {
                let verb = match put {
                    Put::Created => "created",
                    Put::Updated => "updated",
                };
                lines.push(format!("{verb} policy {}", policy.name));
                applied.push(json!({ "name": policy.name, "result": verb }));
            }
            Report {
                text: lines.join("\n"),
                json: json!({ "applied": applied }),
                warnings: Vec::new(),
                exit_code: None,
            }
        }
    };
    report.warnings.extend(warnings);
    Ok(report)
}

fn saved(policy: &Policy, verb: &str) -> Report {
    Report {
        text: format!("{verb} policy {}: {}", policy.name, summary(policy)),
        json: json!({ "policy": policy.to_doc(), "result": verb }),
        warnings: Vec::new(),
        exit_code: None,
    }
}

fn list(entries: Vec<PolicyEntry>) -> Report {
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            let p = &e.policy;
            [
                p.name.to_string(),
                p.kind.to_string(),
                schedule(p),
                format!("{} d", p.instant_restore_days),
                retention(p),
                e.protects.join(","),
            ]
        })
        .collect();
    Report {
        text: format::table(
            &[
                "NAME",
                "TYPE",
                "SCHEDULE",
                "INSTANT RESTORE",
                "RETENTION",
                "PROTECTS",
            ],
            &rows,
        ),
        json: json!({ "policies": entries.iter().map(entry_json).collect::<Vec<_>>() }),
        warnings: Vec::new(),
        exit_code: None,
    }
}

fn entry_json(entry: &PolicyEntry) -> serde_json::Value {
    json!({
        "policy": entry.policy.to_doc(),
        "created": entry.created,
        "updated": entry.updated,
        "protects": entry.protects,
    })
}

fn describe(entry: &PolicyEntry) -> String {
    let p = &entry.policy;
    format!(
        "policy {} ({})\n  schedule:         {}\n  instant restore:  {} days\n  \
         retention:        {}\n  to the vault:     {}\n  protects:         {}",
        p.name,
        p.kind,
        schedule(p),
        p.instant_restore_days,
        retention(p),
        match p.schedule {
            Schedule::Hourly { .. } =>
                "the last backup of each day (the next day's first if it failed)",
            _ => "every backup",
        },
        if entry.protects.is_empty() {
            "no VM".to_owned()
        } else {
            entry.protects.join(", ")
        }
    )
}

fn summary(p: &Policy) -> String {
    format!(
        "{}, {}; instant restore {} days; keeps {}",
        p.kind,
        schedule(p),
        p.instant_restore_days,
        retention(p)
    )
}

fn schedule(p: &Policy) -> String {
    let doc = p.to_doc().schedule.unwrap_or_default();
    let zone = p.timezone_name();
    match &p.schedule {
        Schedule::Daily { .. } => format!("daily {} {zone}", doc.at.unwrap_or_default()),
        Schedule::Weekly { .. } => format!(
            "weekly {} {} {zone}",
            doc.days.unwrap_or_default().join(","),
            doc.at.unwrap_or_default()
        ),
        Schedule::Hourly {
            every,
            window_hours,
            ..
        } => format!(
            "every {every} h from {} for {window_hours} h {zone}",
            doc.start.unwrap_or_default()
        ),
    }
}

fn retention(p: &Policy) -> String {
    let r = p.to_doc().retention.unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(days) = r.daily_days {
        parts.push(format!("daily {days} d"));
    }
    if let Some(w) = r.weekly {
        parts.push(format!(
            "weekly {} w on {}",
            w.weeks.unwrap_or_default(),
            w.on.unwrap_or_default().join(",")
        ));
    }
    if let Some(m) = r.monthly {
        parts.push(format!(
            "monthly {} mo on {}",
            m.months.unwrap_or_default(),
            m.on.unwrap_or_default()
        ));
    }
    if let Some(y) = r.yearly {
        parts.push(format!(
            "yearly {} y on {} {}",
            y.years.unwrap_or_default(),
            y.month.unwrap_or_default(),
            y.on.unwrap_or_default()
        ));
    }
    parts.join("; ")
}

/// Writes the flags given into `doc` (what is not given stays as it is).
fn apply(doc: &mut PolicyDoc, s: &PolicySettings) -> Result<(), UsageError> {
    if let Some(zone) = &s.timezone {
        doc.timezone = Some(zone.clone());
    }
    if let Some(days) = s.instant_restore_days {
        doc.instant_restore_days = Some(days);
    }
    let old = doc.schedule.clone().unwrap_or_default();
    let was = old.frequency.clone().unwrap_or_default();
    let schedule = if let Some(every) = s.hourly {
        let keep = was == "hourly";
        Some(ScheduleDoc {
            frequency: Some("hourly".into()),
            every_hours: Some(every),
            start: s.start.clone().or(if keep { old.start } else { None }),
            window_hours: s.window.or(if keep { old.window_hours } else { None }),
            ..ScheduleDoc::default()
        })
    } else if let Some(days) = &s.weekly {
        Some(ScheduleDoc {
            frequency: Some("weekly".into()),
            days: Some(days.clone()),
            at: s.at.clone().or(if was == "hourly" { None } else { old.at }),
            ..ScheduleDoc::default()
        })
    } else if let Some(at) = &s.at {
        Some(ScheduleDoc {
            frequency: Some(if was == "weekly" { "weekly" } else { "daily" }.into()),
            days: if was == "weekly" { old.days } else { None },
            at: Some(at.clone()),
            ..ScheduleDoc::default()
        })
    } else {
        None
    };
    let mut retention = doc.retention.clone().unwrap_or_default();
    if let Some(new) = schedule {
        let to_weekly = new.frequency.as_deref() == Some("weekly");
        if to_weekly != (was == "weekly") {
            // Daily points come with daily and hourly schedules, weekly ones with weekly
            // schedules: switching kinds resets them to the new kind's defaults.
            retention.daily_days = None;
            retention.weekly = None;
        }
        doc.schedule = Some(new);
    }
    apply_retention(&mut retention, s)?;
    doc.retention = Some(retention);
    Ok(())
}

fn apply_retention(r: &mut RetentionDoc, s: &PolicySettings) -> Result<(), UsageError> {
    if let Some(days) = s.daily_retention {
        r.daily_days = Some(days);
    }
    match count("--weekly-retention", s.weekly_retention.as_deref())? {
        Some(None) => r.weekly = None,
        Some(Some(weeks)) => r.weekly.get_or_insert_with(Default::default).weeks = Some(weeks),
        None => {}
    }
    if let Some(on) = &s.weekly_on {
        r.weekly.get_or_insert_with(Default::default).on = Some(on.clone());
    }
    match count("--monthly-retention", s.monthly_retention.as_deref())? {
        Some(None) => r.monthly = None,
        Some(Some(months)) => {
            r.monthly.get_or_insert_with(Default::default).months = Some(months);
        }
        None => {}
    }
    if let Some(on) = &s.monthly_on {
        r.monthly.get_or_insert_with(Default::default).on = Some(on.clone());
    }
    match count("--yearly-retention", s.yearly_retention.as_deref())? {
        Some(None) => r.yearly = None,
        Some(Some(years)) => r.yearly.get_or_insert_with(Default::default).years = Some(years),
        None => {}
    }
    if let Some(on) = &s.yearly_on {
        let (month, day) = on.split_once('-').ok_or_else(|| {
            UsageError(format!(
                "--yearly-on {on:?}: expected MONTH-DAY, for example jan-1, dec-last or \
                 mar-first-sunday"
            ))
        })?;
        let yearly = r.yearly.get_or_insert_with(Default::default);
        yearly.month = Some(month.to_owned());
        yearly.on = Some(day.to_owned());
    }
    Ok(())
}

/// A retention count flag: absent, `off` (`Some(None)`), or a number.
fn count(flag: &str, value: Option<&str>) -> Result<Option<Option<i64>>, UsageError> {
    match value {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(Some(None)),
        Some(v) => v
            .trim()
            .parse()
            .map(|n| Some(Some(n)))
            .map_err(|_| UsageError(format!("{flag} {v:?}: expected a number or `off`"))),
    }
}
