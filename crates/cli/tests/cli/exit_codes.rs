//! The README's exit-code table, row by row: for each code it lists, a command that should exit
//! with it does. The table is read from README.md, so the two cannot drift apart: a row without
//! a command here fails, and so does a command whose code the table lacks.

use std::fs;
use std::path::Path;

use crate::crypt_support::*;
use crate::support::*;

const VM: &str = "web01";

/// The codes of README.md's exit-code table (`| Code | Meaning |`), in order, with their
/// meanings.
fn readme_table() -> Vec<(i32, String)> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = fs::read_to_string(&readme).expect("read README.md");
    let mut lines = text.lines().map(str::trim);
    lines
        .find(|l| l.starts_with("| Code | Meaning |"))
        .expect("README.md has an exit-code table `| Code | Meaning |`");
    lines
        .skip(1) // |------|---------|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').splitn(2, '|').map(str::trim).collect();
            let code = cells[0]
                .parse()
                .unwrap_or_else(|e| panic!("README exit code {:?}: {e}", cells[0]));
            (code, cells.get(1).copied().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A command that exits with `code`, run; `None` for a code no command here makes.
fn exits_with(code: i32, sb: &Sandbox) -> Option<Run> {
    let state = sb.path("state");
    let with_state = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--state-dir", arg(&state)]);
        blockvault(&all)
    };
    Some(match code {
        // A vault made.
        0 => blockvault(["vault", "init", arg(&sb.path("ok-vault"))]),
        // A pre-hook that fails: the snapshot is not taken.
        1 => {
            let vault = sb.path("hook-vault");
            blockvault(["vault", "init", arg(&vault)]).success();
            let disk = small_disk(&sb.path("hook.img"), 1);
            blockvault([
                "backup",
                "--vault",
                arg(&vault),
                "--vm",
                VM,
                "--disk",
                arg(&disk.path),
                "--pre-hook",
                "false",
            ])
        }
        // An unknown flag.
        2 => blockvault(["points", "--no-such-flag"]),
        // A policy file that is not there.
        3 => with_state(&["policy", "apply", arg(&sb.path("no-such-policy.toml"))]),
        // A chunk of the only point damaged in the vault, restored from the vault.
        4 => {
            let vault = sb.path("damaged-vault");
            blockvault(["vault", "init", arg(&vault)]).success();
            let disk = small_disk(&sb.path("damaged.img"), 4);
            backup(&vault, VM, &[&disk.path], None);
            for chunk in chunk_files(&vault) {
                flip_middle(&chunk, 1);
            }
            blockvault([
                "restore",
                "--vault",
                arg(&vault),
                "--vm",
                VM,
                "--from",
                "vault",
                "--to",
                arg(&sb.path("damaged-out")),
            ])
        }
        // A replicated vault whose secondary is lost: the snapshot is taken, the transfer
        // fails.
        5 => {
            let (primary, secondary) = (sb.path("primary"), sb.path("secondary"));
            blockvault([
                "vault",
                "init",
                "--vault",
                arg(&primary),
                "--redundancy",
                "replicated",
                "--secondary",
                arg(&secondary),
            ])
            .success();
            fs::remove_dir_all(&secondary).expect("lose the secondary");
            let disk = small_disk(&sb.path("warned.img"), 5);
            blockvault([
                "backup",
                "--vault",
                arg(&primary),
                "--vm",
                VM,
                "--disk",
                arg(&disk.path),
            ])
        }
        // A policy created twice: the name is taken.
        6 => {
            with_state(&["policy", "create", "twice"]).success();
            with_state(&["policy", "create", "twice"])
        }
        // An encrypted vault opened with a wrong passphrase file.
        7 => {
            let vault = init_encrypted(&sb.path("locked-vault"));
            let wrong = passphrase_file(&sb.path(""), "wrong-passphrase", "not the passphrase");
            let disk = small_disk(&sb.path("locked.img"), 7);
            with_passphrase(
                &wrong,
                [
                    "backup",
                    "--vault",
                    arg(&vault),
                    "--vm",
                    VM,
                    "--disk",
                    arg(&disk.path),
                ],
            )
        }
        _ => return None,
    })
}

#[test]
fn every_row_of_the_readme_exit_code_table_is_what_its_command_exits_with() {
    let table = readme_table();
    let codes: Vec<i32> = table.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, (0..=7).collect::<Vec<_>>(), "README table {table:?}");
    let sb = Sandbox::new();
    for (code, meaning) in &table {
        let run = exits_with(*code, &sb)
            .unwrap_or_else(|| panic!("no command here exits {code} ({meaning})"));
        assert_eq!(run.code, *code, "README says {code}: {meaning}\n{run}");
        match code {
            0 => {
                run.success();
            }
            2 => {
                run.parse_failure();
            }
            5 => assert!(run.stderr.contains("secondary"), "{run}"),
            _ => {
                run.failure(*code);
            }
        }
    }
    // Nothing here exits with a code the table does not list.
    for code in 8..=16 {
        assert!(
            exits_with(code, &sb).is_none(),
            "{code} is not in the table"
        );
    }
}

/// The `--help` exit-code list says the same codes as the table.
#[test]
fn the_help_lists_the_codes_of_the_readme_table() {
    let help = blockvault(["--help"]).success();
    let listed = help
        .stdout
        .split("Exit codes:")
        .nth(1)
        .expect("--help lists the exit codes");
    for (code, meaning) in readme_table() {
        assert!(
            listed
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{code}  "))),
            "--help lacks {code} ({meaning})\n{listed}"
        );
    }
}
