//! `blockvault completions SHELL` and `blockvault man`: shell completion scripts and man pages,
//! generated from the clap definitions in `args` (so they always name the commands and flags
//! this binary has). Neither touches the state directory: the script or the page is the
//! report's text, printed on stdout; `man --out-dir` writes its pages and lists them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use serde_json::json;

use super::Report;
use crate::args::{Cli, CompletionsArgs, ManArgs};

/// The name the scripts complete and the pages are titled with.
const BIN: &str = "blockvault";

pub fn completions(args: CompletionsArgs) -> Result<Report> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN, &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    Ok(Report {
        json: json!({ "shell": args.shell.to_string(), "script": script }),
        text: without_final_newline(script),
        warnings: Vec::new(),
        exit_code: None,
    })
}

pub fn man(args: ManArgs) -> Result<Report> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let Some(dir) = args.out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .context("rendering the man page")?;
        let page = String::from_utf8(page).context("the man page is not UTF-8")?;
        return Ok(Report {
            json: json!({ "page": page }),
            text: without_final_newline(page),
            warnings: Vec::new(),
            exit_code: None,
        });
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pages = Vec::new();
    write_pages(command, &dir, &mut pages)?;
    Ok(Report {
        text: format!("wrote {} man pages to {}", pages.len(), dir.display()),
        json: json!({ "dir": dir, "pages": pages }),
        warnings: Vec::new(),
        exit_code: None,
    })
}

/// Writes the page of `command` and, first, those of its subcommands (hidden ones excepted),
/// each named after its display name (`blockvault-vault-init.1`).
fn write_pages(command: clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, pages)?;
    }
    let man = clap_mangen::Man::new(command);
    let path = man
        .generate_to(dir)
        .with_context(|| format!("cannot write {}", dir.join(man.get_filename()).display()))?;
    pages.push(path);
    Ok(())
}

/// The report's text is printed with a newline of its own.
fn without_final_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
    }
    text
}
