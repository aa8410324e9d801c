//! The passphrase printed by a command (`BLOCKVAULT_PASSWORD_COMMAND`, e.g. a secret
//! manager's `pass show backup/vault`): `sh -c COMMAND`, stdin from nothing, stderr to the
//! user, stdout taken as the passphrase less one trailing newline.
//!
//! The command is told which vault it is asked for (`BLOCKVAULT_VAULT_ID`,
//! `BLOCKVAULT_VAULT_LOCATION`), so one command can serve several vaults. It has a bound
//! ([`COMMAND_TIMEOUT`]): past it the command is killed and the read fails. It stays in this
//! process's group, so a command that asks on the terminal (a pinentry) still can, and Ctrl-C
//! reaches it; a process it leaves behind in the background is its own (the shell is killed,
//! and the read stops waiting for the output).
//!
//! Errors name the command and how it ended, never what it printed.

use std::io::{ErrorKind as IoKind, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::secret::{MAX_LEN, Passphrase};
use crate::error::{Error, Result};

/// How long a passphrase command may run before it is killed.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the command is told of the vault it is asked for.
pub(super) struct Asked<'a> {
    pub(super) vault_id: &'a str,
    pub(super) location: &'a str,
}

/// Runs `command` and takes its output as the passphrase, killing it after `bound`.
pub(super) fn run(
    command: &str,
    given_by: &'static str,
    asked: &Asked<'_>,
    bound: Duration,
) -> Result<Passphrase> {
    let fail = |problem: String| Error::PassphraseCommand {
        command: command.to_owned(),
        given_by,
        problem,
    };
    let deadline = Instant::now() + bound;
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("BLOCKVAULT_VAULT_ID", asked.vault_id)
        .env("BLOCKVAULT_VAULT_LOCATION", asked.location)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(format!("could not be started: {e}")))?;
    let mut running = Running(Some(child));
    let stdout = running
        .child()
        .and_then(|c| c.stdout.take())
        .ok_or_else(|| fail("could not be started: no pipe for its output".into()))?;
    // The output is read on a thread of its own, so the wait for it has a bound.
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        // The receiver is gone when the bound passed: the output is dropped (and wiped).
        let _ = sender.send(read_output(stdout));
    });
    let killed = || fail(format!("did not finish within {bound:?} and was killed"));
    let output = match receiver.recv_timeout(bound) {
        Ok(read) => read.map_err(|e| fail(format!("could not be read: {e}")))?,
        Err(RecvTimeoutError::Timeout) => return Err(killed()),
        Err(RecvTimeoutError::Disconnected) => {
            return Err(fail("could not be read: its reader stopped".into()));
        }
    };
    let status = loop {
        let child = running
            .child()
            .ok_or_else(|| fail("could not be waited for".into()))?;
        match child.try_wait() {
            Ok(Some(status)) => {
                running.0 = None;
                break status;
            }
            Ok(None) if Instant::now() >= deadline => return Err(killed()),
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(fail(format!("could not be waited for: {e}"))),
        }
    };
    if !status.success() {
        return Err(fail(format!("failed ({status})")));
    }
    let Output { bytes, too_long } = output;
    if too_long {
        return Err(fail(format!(
            "printed more than {} KiB: not a passphrase",
            MAX_LEN / 1024
        )));
    }
    let passphrase = Passphrase::from_output(bytes);
    if passphrase.is_empty() {
        return Err(fail("printed nothing".into()));
    }
    Ok(passphrase)
}

/// The command while it runs: killed and reaped when dropped before it ended (a bound
/// passed, an error), so no path leaves it behind.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the command printed, up to [`MAX_LEN`] bytes.
struct Output {
    bytes: Zeroizing<Vec<u8>>,
    /// It printed more (read and dropped, so the command does not block on a full pipe).
    too_long: bool,
}

/// Reads the output into one buffer allocated up front, so no reallocation leaves a copy of
/// the secret behind unwiped.
fn read_output(mut stdout: ChildStdout) -> std::io::Result<Output> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_LEN));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    let mut too_long = false;
    loop {
        let n = match stdout.read(&mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == IoKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !too_long && bytes.len() + n <= MAX_LEN {
            bytes.extend_from_slice(&chunk[..n]);
        } else {
            too_long = true;
        }
    }
    Ok(Output { bytes, too_long })
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockvault_core::ErrorKind;

    const ASKED: Asked<'static> = Asked {
        vault_id: "v-1234",
        location: "s3://bucket/vaults/a",
    };
    const BY: &str = "BLOCKVAULT_PASSWORD_COMMAND";

    fn run_briefly(command: &str) -> Result<Passphrase> {
        run(command, BY, &ASKED, Duration::from_secs(20))
    }

    #[test]
    fn the_output_less_one_newline_is_the_passphrase() {
        let got = run_briefly("printf 'hunter2\\n\\n'").expect("runs");
        assert_eq!(got.as_bytes(), b"hunter2\n");
        let got = run_briefly("printf 'pass word\\r\\n'").expect("runs");
        assert_eq!(got.as_bytes(), b"pass word");
    }

    #[test]
    fn the_command_is_told_which_vault() {
        let got =
            run_briefly("printf '%s|%s' \"$BLOCKVAULT_VAULT_ID\" \"$BLOCKVAULT_VAULT_LOCATION\"")
                .expect("runs");
        assert_eq!(got.as_bytes(), b"v-1234|s3://bucket/vaults/a");
    }

    #[test]
    fn stdin_is_empty() {
        // A command that reads stdin meets its end at once rather than waiting on the user's.
        let got = run_briefly("cat; printf x").expect("runs");
        assert_eq!(got.as_bytes(), b"x");
    }

    #[test]
    fn a_failing_command_names_its_status_not_its_output() {
        let err = run_briefly("printf 'sec%s' ret-out; exit 3").expect_err("fails");
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("exit 3"), "names the command: {text}");
        assert!(text.contains(BY), "{text}");
        assert!(!text.contains("secret-out"), "{text}");
        assert!(!format!("{err:?}").contains("secret-out"));
    }

    #[test]
    fn a_command_printing_nothing_is_refused() {
        for command in ["true", "printf '\\n'"] {
            let err = run_briefly(command).expect_err("nothing printed");
            assert!(err.to_string().contains("printed nothing"), "{err}");
            assert_eq!(err.kind(), ErrorKind::Locked);
        }
    }

    #[test]
    fn a_command_printing_too_much_is_refused() {
        let err = run_briefly("head -c 70000 /dev/zero | tr '\\0' a").expect_err("too long");
        assert!(err.to_string().contains("more than 64 KiB"), "{err}");
    }

    #[test]
    fn a_hanging_command_is_killed_at_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let command = format!("echo $$ > '{}'; exec sleep 30", pid_file.display());
        let started = Instant::now();
        let err = run(&command, BY, &ASKED, Duration::from_millis(300)).expect_err("hangs");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.to_string().contains("did not finish within 300ms"),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Locked);
        let pid = std::fs::read_to_string(&pid_file).expect("pid written");
        // Killed and reaped: no such process any more.
        let proc = std::path::Path::new("/proc").join(pid.trim());
        assert!(!proc.exists(), "process {} still there", pid.trim());
    }

    #[test]
    fn a_command_that_closes_its_output_and_hangs_is_killed_too() {
        let started = Instant::now();
        let err = run(
            "printf pw; exec >&-; exec sleep 30",
            BY,
            &ASKED,
            Duration::from_millis(300),
        )
        .expect_err("hangs");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("killed"), "{err}");
    }
}
