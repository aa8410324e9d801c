//! Where the passphrase of an encrypted vault comes from, as restic and borg take theirs:
//! a file (`BLOCKVAULT_PASSWORD_FILE`), a command such as a secret manager's
//! (`BLOCKVAULT_PASSWORD_COMMAND`), or a prompt on the terminal; never a command-line
//! argument, which `ps` would show. A new passphrase (changing one, adding a key slot) comes
//! from `BLOCKVAULT_NEW_PASSWORD_FILE`, `BLOCKVAULT_NEW_PASSWORD_COMMAND` or the prompt, which
//! then asks twice.
//!
//! This knows nothing of vault formats: the caller picks a [`PassphraseSource`]
//! ([`PassphraseSource::current`], [`PassphraseSource::new_one`]), reads a [`Passphrase`] from
//! it, told which vault it is for ([`VaultAbout`]: what the prompt shows and the command is
//! given), and derives its keys. The passphrase is wiped from memory when dropped, and no
//! message, log line or error carries it: errors name the file or the command, and how it
//! failed ([`ErrorKind::Locked`](blockvault_core::ErrorKind::Locked)); no source at all is
//! [`Error::NoPassphrase`].
//!
//! An environment variable set to the empty string counts as not set, so a script can unset
//! one by emptying it.

mod command;
mod file;
mod prompt;
mod secret;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use self::secret::Passphrase;
use crate::error::{Error, Result};

/// The vault a passphrase is asked for: the prompt shows it, and a command gets it as
/// `BLOCKVAULT_VAULT_ID` and `BLOCKVAULT_VAULT_LOCATION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultAbout {
    /// The vault's id.
    pub id: String,
    /// Where it is, as the user names it (`/srv/vault`, `s3://bucket/prefix`).
    pub location: String,
}

/// Where a passphrase comes from. `given_by` names what chose the source (an environment
/// variable, a front end's option), so an error can say where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// A file holding the passphrase, less one trailing newline.
    File {
        path: PathBuf,
        given_by: &'static str,
    },
    /// A shell command printing the passphrase, run with `sh -c`, bounded in time.
    Command {
        command: String,
        given_by: &'static str,
    },
    /// Asked on the terminal (`/dev/tty`), echo off.
    Prompt,
}

/// The environment variables naming a source.
struct Variables {
    file: &'static str,
    command: &'static str,
}

/// For the passphrase of a vault there is.
const CURRENT: Variables = Variables {
    file: "BLOCKVAULT_PASSWORD_FILE",
    command: "BLOCKVAULT_PASSWORD_COMMAND",
};

/// For a new passphrase.
const NEW: Variables = Variables {
    file: "BLOCKVAULT_NEW_PASSWORD_FILE",
    command: "BLOCKVAULT_NEW_PASSWORD_COMMAND",
};

impl PassphraseSource {
    /// The source of the passphrase that opens a vault: `BLOCKVAULT_PASSWORD_FILE`, else
    /// `BLOCKVAULT_PASSWORD_COMMAND` (both set is a usage error), else the prompt when a
    /// user is at a terminal (stdin is one and `/dev/tty` opens), else none: the caller says
    /// [`Error::NoPassphrase`].
    pub fn current() -> Result<Option<PassphraseSource>> {
        choose(&CURRENT, |name| std::env::var_os(name), prompt::terminal)
    }

    /// The source of a new passphrase: `BLOCKVAULT_NEW_PASSWORD_FILE`, else
    /// `BLOCKVAULT_NEW_PASSWORD_COMMAND`, else the prompt, else none (the caller says
    /// [`Error::NoNewPassphrase`]); read it with [`PassphraseSource::read_new`].
    pub fn new_one() -> Result<Option<PassphraseSource>> {
        choose(&NEW, |name| std::env::var_os(name), prompt::terminal)
    }

    /// Reads the passphrase of the vault `about`. A file open to other users is read, with a
    /// warning in `warnings` for the front end to show.
    pub fn read(&self, about: &VaultAbout, warnings: &mut Vec<String>) -> Result<Passphrase> {
        self.read_bounded(about, warnings, Wanted::Current, command::COMMAND_TIMEOUT)
    }

    /// Reads a new passphrase for the vault `about`: the prompt asks twice and refuses two
    /// entries that differ or an empty one ([`Error::NewPassphraseRefused`]); a file or a
    /// command as for [`PassphraseSource::read`].
    pub fn read_new(&self, about: &VaultAbout, warnings: &mut Vec<String>) -> Result<Passphrase> {
        self.read_bounded(about, warnings, Wanted::New, command::COMMAND_TIMEOUT)
    }

    /// Reads, with the command's bound given (tests use a short one).
    fn read_bounded(
        &self,
        about: &VaultAbout,
        warnings: &mut Vec<String>,
        wanted: Wanted,
        bound: Duration,
    ) -> Result<Passphrase> {
        match (self, wanted) {
            (PassphraseSource::File { path, given_by }, _) => file::read(path, given_by, warnings),
            (PassphraseSource::Command { command, given_by }, _) => {
                let asked = command::Asked {
                    vault_id: &about.id,
                    location: &about.location,
                };
                command::run(command, given_by, &asked, bound)
            }
            (PassphraseSource::Prompt, Wanted::Current) => prompt::ask(&format!(
                "Passphrase for vault {} at {}: ",
                about.id, about.location
            )),
            (PassphraseSource::Prompt, Wanted::New) => prompt::ask_new(
                &format!(
                    "New passphrase for vault {} at {}: ",
                    about.id, about.location
                ),
                "Repeat the new passphrase: ",
            ),
        }
    }
}

/// Which passphrase is read: the prompt asks a new one twice.
#[derive(Clone, Copy)]
enum Wanted {
    Current,
    New,
}

/// Picks the source named by `vars` as `lookup` finds them, else the prompt when `terminal`
/// says a user is there.
fn choose(
    vars: &Variables,
    lookup: impl Fn(&str) -> Option<OsString>,
    terminal: impl FnOnce() -> bool,
) -> Result<Option<PassphraseSource>> {
    let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
    match (set(vars.file), set(vars.command)) {
        (Some(_), Some(_)) => Err(Error::Usage(format!(
            "both {} and {} are set; set only one of them",
            vars.file, vars.command
        ))),
        (Some(path), None) => Ok(Some(PassphraseSource::File {
            path: PathBuf::from(path),
            given_by: vars.file,
        })),
        (None, Some(command)) => {
            let command = command
                .into_string()
                .map_err(|_| Error::Usage(format!("{} is not valid UTF-8", vars.command)))?;
            Ok(Some(PassphraseSource::Command {
                command,
                given_by: vars.command,
            }))
        }
        (None, None) if terminal() => Ok(Some(PassphraseSource::Prompt)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockvault_core::ErrorKind;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_file_or_a_command_else_the_terminal_else_nothing() {
        let file = choose(
            &CURRENT,
            env(&[("BLOCKVAULT_PASSWORD_FILE", "/k/pw")]),
            || true,
        );
        assert_eq!(
            file.expect("chosen"),
            Some(PassphraseSource::File {
                path: "/k/pw".into(),
                given_by: "BLOCKVAULT_PASSWORD_FILE"
            })
        );
        let command = choose(
            &CURRENT,
            env(&[("BLOCKVAULT_PASSWORD_COMMAND", "pass x")]),
            || true,
        );
        assert_eq!(
            command.expect("chosen"),
            Some(PassphraseSource::Command {
                command: "pass x".into(),
                given_by: "BLOCKVAULT_PASSWORD_COMMAND"
            })
        );
        let prompt = choose(&CURRENT, env(&[]), || true).expect("chosen");
        assert_eq!(prompt, Some(PassphraseSource::Prompt));
        let none = choose(&CURRENT, env(&[("BLOCKVAULT_PASSWORD_FILE", "")]), || false);
        assert_eq!(none.expect("chosen"), None, "an empty variable is not set");
    }

    #[test]
    fn a_new_passphrase_has_variables_of_its_own() {
        let old = env(&[("BLOCKVAULT_PASSWORD_FILE", "/k/old")]);
        assert_eq!(choose(&NEW, old, || false).expect("chosen"), None);
        let new = env(&[
            ("BLOCKVAULT_PASSWORD_FILE", "/k/old"),
            ("BLOCKVAULT_NEW_PASSWORD_COMMAND", "pass new"),
        ]);
        assert_eq!(
            choose(&NEW, new, || true).expect("chosen"),
            Some(PassphraseSource::Command {
                command: "pass new".into(),
                given_by: "BLOCKVAULT_NEW_PASSWORD_COMMAND"
            })
        );
    }

    #[test]
    fn both_variables_set_is_a_usage_error_naming_both() {
        for vars in [&CURRENT, &NEW] {
            let both = env(&[(vars.file, "/k/pw"), (vars.command, "pass x")]);
            let err = choose(vars, both, || true).expect_err("both");
            assert_eq!(err.kind(), ErrorKind::Usage);
            let text = err.to_string();
            assert!(
                text.contains(vars.file) && text.contains(vars.command),
                "{text}"
            );
        }
    }

    #[test]
    fn no_source_says_how_to_give_one() {
        assert_eq!(Error::NoPassphrase.kind(), ErrorKind::Locked);
        let text = Error::NoPassphrase.to_string();
        assert!(text.contains("BLOCKVAULT_PASSWORD_FILE"), "{text}");
        assert!(text.contains("BLOCKVAULT_PASSWORD_COMMAND"), "{text}");
        assert!(text.contains("terminal"), "{text}");
        assert!(
            Error::NoNewPassphrase
                .to_string()
                .contains("BLOCKVAULT_NEW_PASSWORD_FILE")
        );
    }

    #[test]
    fn read_takes_a_file_or_runs_a_command_for_the_vault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, b"from file\n").expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let about = VaultAbout {
            id: "v9".into(),
            location: "/srv/vault".into(),
        };
        let file = PassphraseSource::File {
            path,
            given_by: "BLOCKVAULT_PASSWORD_FILE",
        };
        let mut warnings = Vec::new();
        let got = file.read(&about, &mut warnings).expect("read");
        assert_eq!(got.as_bytes(), b"from file");
        let got = file.read_new(&about, &mut warnings).expect("read");
        assert_eq!(got.as_bytes(), b"from file");
        assert!(warnings.is_empty(), "{warnings:?}");
        let command = PassphraseSource::Command {
            command: "printf 'for %s' \"$BLOCKVAULT_VAULT_ID\"".into(),
            given_by: "BLOCKVAULT_PASSWORD_COMMAND",
        };
        let got = command.read(&about, &mut warnings).expect("run");
        assert_eq!(got.as_bytes(), b"for v9");
        let hangs = PassphraseSource::Command {
            command: "exec sleep 30".into(),
            given_by: "BLOCKVAULT_PASSWORD_COMMAND",
        };
        let err = hangs
            .read_bounded(
                &about,
                &mut warnings,
                Wanted::Current,
                Duration::from_millis(200),
            )
            .expect_err("bounded");
        assert_eq!(err.kind(), ErrorKind::Locked);
    }
}
