//! The policy file: defaults by type, round trips, and every refusal naming its field.

use jiff::civil::Weekday;

use super::PolicyDoc;
use super::read::{DEFAULT_AT, DEFAULT_START};
use crate::{DEFAULT_POLICY, Policy, PolicyType, Schedule, WeeklyRetention};

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
            DEFAULT_POLICY.parse().expect("name"),
            jiff::tz::TimeZone::UTC
        )
        .to_doc()
    );
}

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
