//! The `blockvault` command. Parsing is in `args`, each command in `commands/`, exit codes in
//! `exit`; this file wires them: parse, run on a tokio runtime, print, exit.

mod args;
mod commands;
mod exit;
mod format;
mod progress;

use std::io::Write;
use std::sync::Arc;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::commands::Report;
use crate::progress::Bar;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            let printed = if json {
                writeln!(out, "{}", report.json)
            } else {
                writeln!(out, "{}", report.text)
            };
            // A closed pipe (`| head`) is not a failure of the command.
            let _ = printed.and_then(|()| out.flush());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            let code = exit::classify(&err);
            if json {
                let doc = serde_json::json!({
                    "error": { "kind": code.kind(), "code": code as u8, "message": err.to_string() }
                });
                eprintln!("{doc}");
            } else {
                eprintln!("error: {err}");
            }
            std::process::ExitCode::from(code as u8)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Report> {
    let bar = Arc::new(Bar::new(cli.quiet));
    match cli.command {
        Command::Vault(command) => commands::vault::run(command).await,
        Command::Backup(args) => commands::backup::run(args, bar).await,
        Command::Points(args) => commands::points::run(args).await,
        Command::Restore(args) => commands::restore::run(args, bar).await,
    }
}
