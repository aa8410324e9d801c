//! What keeps a point whatever the rules say: `retain until`, and the newest point while
//! protection is on.

use super::*;

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
