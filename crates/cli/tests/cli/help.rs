//! Help texts teach: examples for each command, and the exit codes.

use crate::support::*;

const EXIT_CODES: [&str; 8] = [
    "Exit codes:",
    "0  success",
    "1  the operation failed",
    "2  invalid arguments",
    "3  not found",
    "4  integrity failure",
    "5  backup completed with warning",
    "6  refused",
];

const QUICK_START: [&str; 5] = [
    "Quick start:",
    "blockvault vault init /srv/vault",
    "blockvault backup  --vault /srv/vault --vm web01 --disk",
    "blockvault points  --vault /srv/vault --vm web01",
    "blockvault restore --vault /srv/vault --vm web01 --at",
];

fn help(args: &[&str]) -> String {
    let run = blockvault(args).success();
    assert!(!run.stdout.is_empty(), "{run}");
    run.stdout
}

#[test]
fn long_help_lists_the_commands_and_the_exit_codes() {
    let text = help(&["--help"]);
    for needle in ["--json", "--quiet", "--state-dir", "--snapshot-dir"]
        .iter()
        .chain(&EXIT_CODES)
    {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    for command in ["vault", "backup", "points", "restore", "jobs"] {
        assert!(text.contains(command), "{command}\n{text}");
    }
}

#[test]
fn short_help_shows_the_quick_start() {
    let text = help(&["-h"]);
    for needle in QUICK_START {
        assert!(text.contains(needle), "-h lacks {needle:?}:\n{text}");
    }
}

/// Regression: `after_long_help` (the exit codes) replaces `after_help` (the quick start) in
/// `--help`, so the long help has no example at all.
#[test]
fn long_help_shows_the_quick_start_too() {
    let text = help(&["--help"]);
    for needle in QUICK_START {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
}

#[test]
fn command_help_shows_examples() {
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["help", "backup"],
            &[
                "Examples:",
                "blockvault backup --vault /srv/vault --vm db01",
                "--pre-hook 'virsh domfsfreeze db01' --post-hook 'virsh domfsthaw db01'",
                "--instant-restore-days 5",
                "--block-size",
                "power of two from 64KiB to 16MiB",
                "Snapshot:",
                "Transfer data to vault:",
                "Completed with warning",
            ],
        ),
        (
            &["backup", "--help"],
            &[
                "Examples:",
                "blockvault backup --vault /srv/vault --vm db01",
            ],
        ),
        (
            &["restore", "--help"],
            &[
                "Examples:",
                "--at 2026-11-23T09:00:00Z --to /tmp/web01",
                "--point 20261123-0815",
                "--to /var/lib/vms --in-place",
                "--force",
                "--from <TIER>",
                "snapshot tier",
            ],
        ),
        (
            &["help", "points"],
            &[
                "Example:",
                "blockvault points --vault /srv/vault --vm web01 --json",
            ],
        ),
        (
            &["jobs", "--help"],
            &[
                "Examples:",
                "blockvault jobs --status failed --since 2026-11-20",
                "blockvault jobs --vm web01 --operation backup --json",
                "blockvault jobs show 42",
            ],
        ),
        (
            &["vault", "init", "--help"],
            &[
                "Examples:",
                "blockvault vault init /srv/vault",
                "blockvault vault init s3://backups/site-a",
            ],
        ),
    ];
    for (args, needles) in cases {
        let text = help(args);
        for needle in needles {
            assert!(text.contains(needle), "{args:?} lacks {needle:?}:\n{text}");
        }
    }
}

#[test]
fn command_help_lists_the_exit_codes() {
    for args in [
        &["help", "backup"][..],
        &["restore", "--help"][..],
        &["jobs", "--help"][..],
    ] {
        let text = help(args);
        for needle in EXIT_CODES {
            assert!(text.contains(needle), "{args:?} lacks {needle:?}:\n{text}");
        }
    }
}

#[test]
fn version_and_no_command() {
    let run = blockvault(["--version"]).success();
    assert_eq!(
        run.stdout.trim(),
        format!("blockvault {}", env!("CARGO_PKG_VERSION"))
    );
    let run = blockvault::<[&str; 0], &str>([]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    assert!(run.stderr.contains("Usage:"), "{run}");
}
