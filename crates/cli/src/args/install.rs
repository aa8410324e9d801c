//! `blockvault completions` and `blockvault man`: what an installed binary writes about itself
//! (shell completion scripts and man pages, generated from these very clap definitions).

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write blockvault.1 and one page per subcommand (blockvault-backup.1,
    /// blockvault-vault-init.1, ...) into this directory instead of printing blockvault.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}
