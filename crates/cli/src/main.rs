//! The `blockvault` command. Parsing is in `args`, each command in `commands/` (it asks the
//! host, `blockvault-host`, and words the answer), exit codes in `exit`; this file wires
//! them: parse, run on a tokio runtime, print, exit.

mod args;
mod commands;
mod exit;
mod format;
mod progress;
mod stop;
mod when;

use std::io::Write;
use std::sync::Arc;

use blockvault_host::{Host, StateDir};
use clap::Parser;

use crate::args::{Cli, Command};
use crate::commands::Report;
use crate::progress::Bar;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return argument_error(err),
    };
    let json = cli.json;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            // The command runs on a worker, not on this thread: its futures are then woken
            // where the I/O that completes them runs, instead of across threads.
            let result = runtime.block_on(async {
                match tokio::spawn(run(cli)).await {
                    Ok(result) => result,
                    Err(join) => std::panic::resume_unwind(join.into_panic()),
                }
            });
            // A blocking task still waiting (a cancelled job's lock wait) must not hold the
            // exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            result
        });
    match result {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            let printed = if json {
                writeln!(out, "{}", report.json)
            } else {
                for warning in &report.warnings {
                    eprintln!("warning: {warning}");
                }
                writeln!(out, "{}", report.text)
            };
            // A closed pipe (`| head`) is not a failure of the command.
            let _ = printed.and_then(|()| out.flush());
            match report.exit_code {
                Some(code) => std::process::ExitCode::from(code as u8),
                None => std::process::ExitCode::SUCCESS,
            }
        }
        Err(err) => {
            let code = exit::classify(&err);
            report_error(json, code, &err.to_string())
        }
    }
}

/// Prints a failure as one line (or one JSON object) on stderr and returns its exit code.
fn report_error(json: bool, code: exit::ExitCode, message: &str) -> std::process::ExitCode {
    if json {
        let doc = serde_json::json!({
            "error": { "kind": code.kind(), "code": code as u8, "message": message }
        });
        eprintln!("{doc}");
    } else {
        eprintln!("error: {message}");
    }
    std::process::ExitCode::from(code as u8)
}

/// Help and version go to stdout as clap prints them; a bad argument is a usage error, as
/// JSON when `--json` was given.
fn argument_error(err: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().any(|a| a == "--json");
    if !json
        || matches!(
            err.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        err.exit();
    }
    // The first paragraph, on one line: clap puts what is missing or wrong on the lines after
    // the first ("the following required arguments were not provided:" / "  --disk <PATH>"),
    // then a blank line and the usage.
    let rendered = err.to_string();
    let message = rendered
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    report_error(
        true,
        exit::ExitCode::Usage,
        message.trim_start_matches("error: "),
    )
}

async fn run(cli: Cli) -> anyhow::Result<Report> {
    let bar = Arc::new(Bar::new(cli.quiet));
    let host = Host::open(StateDir::resolve(cli.state_dir).with_snapshot_dir(cli.snapshot_dir));
    match cli.command {
        Command::Vault(command) => commands::vault::run(command, &host, bar).await,
        Command::Backup(args) => commands::backup::run(args, &host, bar).await,
        Command::Points(args) => commands::points::run(args, &host).await,
        Command::Restore(args) => commands::restore::run(args, &host, bar).await,
        Command::Jobs(args) => commands::jobs::run(args, &host).await,
        Command::Policy(command) => commands::policy::run(command, &host).await,
        Command::Protect(args) => commands::protect::protect(args, &host, bar).await,
        Command::Items(args) => commands::protect::items(args, &host).await,
        Command::BackupNow(args) => commands::protect::backup_now(args, &host, bar).await,
        Command::StopProtection(args) => commands::soft_delete::stop(args, &host).await,
        Command::Undelete(args) => commands::soft_delete::undelete(args, &host).await,
        Command::Forget(args) => commands::forget::run(args, &host).await,
        Command::Daemon(args) => commands::daemon::run(args, &host).await,
        Command::Verify(args) => commands::verify::run(args, &host, bar).await,
        Command::Prune(args) => commands::prune::run(args, &host).await,
        Command::Gc(args) => commands::gc::run(args, &host, bar).await,
        Command::Completions(args) => commands::completions::completions(args),
        Command::Man(args) => commands::completions::man(args),
    }
}
