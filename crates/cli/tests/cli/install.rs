//! What an install uses: `blockvault completions SHELL`, `blockvault man`, and the systemd
//! unit in `packaging/systemd`. The subcommands are read from the binary's own `--help` (what
//! clap knows), never from a list kept here, so a command added later is checked too.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Every subcommand path (`["backup"]`, `["vault", "init"]`, ...), from the `Commands:`
/// sections of `blockvault --help` and of each command's own `--help`.
fn subcommands() -> Vec<Vec<String>> {
    fn walk(prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
        args.push("--help");
        let help = blockvault(&args).success().stdout;
        for name in commands_section(&help) {
            let mut path = prefix.to_vec();
            path.push(name);
            walk(&path, out);
            out.push(path);
        }
    }
    let mut out = Vec::new();
    walk(&[], &mut out);
    assert!(out.len() > 10, "too few subcommands found: {out:?}");
    out
}

/// The names in a clap help's `Commands:` section (without clap's own `help`).
fn commands_section(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A name is indented by two spaces; its description's continuation lines by more.
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// What bash's completion of `blockvault WORDS... ""` offers, with the generated script
/// sourced into a plain `bash` (no bash-completion package needed).
fn bash_offers(script: &Path, words: &[String]) -> Vec<String> {
    let mut line = vec!["blockvault".to_owned()];
    line.extend(words.iter().cloned());
    line.push(String::new());
    let quoted: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}' && COMP_WORDS=({}) && COMP_CWORD={} && COMP_LINE=\"${{COMP_WORDS[*]}}\" \
         && COMP_POINT=${{#COMP_LINE}} && _blockvault blockvault '' '{}' \
         && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        line.len() - 1,
        line[line.len() - 2],
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_offers_every_subcommand() {
    let sandbox = Sandbox::new();
    let run = blockvault(["completions", "bash"]).success();
    let script = sandbox.path("blockvault.bash");
    std::fs::write(&script, &run.stdout).expect("write the script");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    for path in subcommands() {
        let (name, parent) = path.split_last().expect("a path has a name");
        assert!(
            run.stdout.contains(name.as_str()),
            "the bash script never names {path:?}"
        );
        let offered = bash_offers(&script, parent);
        assert!(
            offered.iter().any(|o| o == name),
            "`blockvault {} <TAB>` does not offer {name:?}: {offered:?}",
            parent.join(" ")
        );
    }
}

#[test]
fn every_shell_gets_a_script_naming_every_top_level_command() {
    let top: Vec<String> = subcommands()
        .into_iter()
        .filter(|p| p.len() == 1)
        .map(|p| p.concat())
        .collect();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = blockvault(["completions", shell]).success();
        for name in &top {
            assert!(run.stdout.contains(name.as_str()), "{shell} lacks {name}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_shells() {
    let run = blockvault(["completions", "tcsh"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    assert!(
        run.stderr.starts_with("error: invalid value 'tcsh'"),
        "{run}"
    );
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        assert!(run.stderr.contains(shell), "{run}");
    }
}

/// Renders a man page with groff and returns what it said on stderr (its warnings).
fn groff_warnings(page: &Path) -> String {
    let output = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("groff is needed to check the man pages (apt-get install groff-base)");
    assert!(
        output.status.success(),
        "groff failed on {}",
        page.display()
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A page as text, the way `man` shows it.
fn rendered(page: &Path) -> String {
    let output = Command::new("groff")
        .args(["-man", "-Tutf8", "-P-c", "-P-b", "-P-u"])
        .arg(page)
        .output()
        .expect("groff");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_man_page_renders_without_warnings_and_names_every_command() {
    let sandbox = Sandbox::new();
    let run = blockvault(["man"]).success();
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.starts_with(".TH"),
        "{run}"
    );
    assert!(run.stdout.contains(".TH blockvault 1"), "{run}");
    let page = sandbox.path("blockvault.1");
    std::fs::write(&page, &run.stdout).expect("write the page");
    let warnings = groff_warnings(&page);
    assert!(warnings.is_empty(), "groff warned:\n{warnings}");
    let text = rendered(&page);
    for path in subcommands().iter().filter(|p| p.len() == 1) {
        let entry = format!("blockvault-{}(1)", path[0]);
        assert!(text.contains(&entry), "the page lacks {entry}:\n{text}");
    }
    for needle in ["--state-dir", "--json", "Exit codes:", "Quick start:"] {
        assert!(text.contains(needle), "the page lacks {needle:?}:\n{text}");
    }
}

#[test]
fn man_out_dir_writes_a_page_for_every_subcommand() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("man/man1");
    let run = blockvault(["man", "--out-dir", arg(&dir), "--json"]).success();
    let written = run.json()["pages"].as_array().map(Vec::len);
    let paths = subcommands();
    assert_eq!(written, Some(paths.len() + 1), "{run}");
    for path in paths.iter().map(|p| p.join("-")).chain([String::new()]) {
        let name = match path.as_str() {
            "" => "blockvault.1".to_owned(),
            path => format!("blockvault-{path}.1"),
        };
        let page = dir.join(&name);
        assert!(page.is_file(), "{name} was not written: {run}");
        let warnings = groff_warnings(&page);
        assert!(warnings.is_empty(), "groff warned on {name}:\n{warnings}");
    }
    // `man -l` (man-db) reads it as an installed page would be read.
    let page = dir.join("blockvault-vault-init.1");
    let man = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output();
    if let Ok(man) = man {
        assert!(man.status.success(), "man -l failed: {man:?}");
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(text.contains("blockvault vault init"), "{text}");
    }
}

#[test]
fn the_systemd_units_command_line_is_accepted_by_this_binary() {
    let unit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd/blockvault.service");
    let text = std::fs::read_to_string(&unit).expect("read the unit");
    let exec: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart")
        .split_whitespace()
        .collect();
    assert_eq!(exec[0], "/usr/local/bin/blockvault", "{exec:?}");
    // Its flags as this binary parses them: `--help` after them prints the daemon's help only
    // when everything before it is accepted.
    let mut args = exec[1..].to_vec();
    args.push("--help");
    let run = blockvault(&args).success();
    assert!(run.stdout.contains("--grace"), "{run}");
}

#[test]
fn man_out_dir_that_cannot_be_made_fails_naming_it_and_writes_nothing() {
    let sandbox = Sandbox::new();
    let file = sandbox.path("not-a-dir");
    std::fs::write(&file, b"keep me").expect("write");
    let dir = file.join("man1");
    let run = blockvault(["man", "--out-dir", arg(&dir)]);
    let line = run.failure(1);
    assert!(line.contains(arg(&dir)), "{run}");
    assert_eq!(std::fs::read(&file).expect("read"), b"keep me", "{run}");
}
