//! The passphrase typed on the terminal: asked on `/dev/tty` (not stdin, which may be a pipe
//! carrying data), with echo off while it is typed and the terminal's settings restored on
//! every path out, also on an error; a newline follows each answer, since the user's Enter
//! was not echoed.
//!
//! A signal that kills the process while it waits (Ctrl-C) leaves echo off, as with `ssh` or
//! `sudo` when killed there: `stty echo` or `reset` gives it back.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Write};

use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use zeroize::Zeroizing;

use super::secret::{MAX_LEN, Passphrase};
use crate::error::{Error, Result};

/// The controlling terminal of this process.
const TTY: &str = "/dev/tty";

/// Whether there is a terminal to ask on: stdin is one (a user is there, not a script or a
/// daemon) and `/dev/tty` can be opened.
pub(super) fn terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && open_tty().is_ok()
}

/// Asks once, for the passphrase of a vault there is.
pub(super) fn ask(prompt: &str) -> Result<Passphrase> {
    ask_tty(&open_tty()?, prompt)
}

/// Asks twice, for a new passphrase: refuses an empty one and two that differ.
pub(super) fn ask_new(prompt: &str, again: &str) -> Result<Passphrase> {
    ask_new_tty(&open_tty()?, prompt, again)
}

fn ask_tty(tty: &File, prompt: &str) -> Result<Passphrase> {
    let _echo = EchoOff::new(tty)?;
    let mut io = tty;
    ask_on(&mut io, prompt)
}

fn ask_new_tty(tty: &File, prompt: &str, again: &str) -> Result<Passphrase> {
    let _echo = EchoOff::new(tty)?;
    let mut io = tty;
    ask_new_on(&mut io, prompt, again)
}

fn open_tty() -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(TTY)
        .map_err(|e| Error::PassphrasePrompt {
            problem: format!("cannot open {TTY}: {e}"),
        })
}

/// The terminal with echo off, restored to what it was when dropped.
struct EchoOff<'a> {
    tty: &'a File,
    saved: Termios,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a File) -> Result<EchoOff<'a>> {
        let problem = |e: rustix::io::Errno| Error::PassphrasePrompt {
            problem: format!("cannot turn echo off on {TTY}: {e}"),
        };
        let saved = termios::tcgetattr(tty).map_err(problem)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        termios::tcsetattr(tty, OptionalActions::Now, &quiet).map_err(problem)?;
        Ok(EchoOff { tty, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.tty, OptionalActions::Now, &self.saved);
    }
}

/// Writes `prompt`, reads one line (echo is the caller's business), then a newline.
fn ask_on(io: &mut (impl Read + Write), prompt: &str) -> Result<Passphrase> {
    let problem = |e: std::io::Error| Error::PassphrasePrompt {
        problem: e.to_string(),
    };
    io.write_all(prompt.as_bytes()).map_err(problem)?;
    io.flush().map_err(problem)?;
    let line = read_line(io);
    let _ = io.write_all(b"\n");
    let passphrase = Passphrase::from_buffer(line?);
    if passphrase.is_empty() {
        return Err(Error::PassphrasePrompt {
            problem: "no passphrase was entered".into(),
        });
    }
    Ok(passphrase)
}

fn ask_new_on(io: &mut (impl Read + Write), prompt: &str, again: &str) -> Result<Passphrase> {
    let refused = |reason: &str| Error::NewPassphraseRefused {
        reason: reason.into(),
    };
    let first = ask_on(io, prompt).map_err(|e| match e {
        Error::PassphrasePrompt { problem } if problem == "no passphrase was entered" => {
            refused("an empty passphrase is refused; nothing was changed")
        }
        e => e,
    })?;
    let second = ask_on(io, again).map_err(|e| match e {
        Error::PassphrasePrompt { problem } if problem == "no passphrase was entered" => {
            refused("the two passphrases differ; nothing was changed")
        }
        e => e,
    })?;
    if first.as_bytes() != second.as_bytes() {
        return Err(refused("the two passphrases differ; nothing was changed"));
    }
    Ok(first)
}

/// Reads up to a newline, byte by byte (no buffer that would keep a copy), into a buffer
/// allocated once; a trailing `\r` is dropped. The end of input before any newline refuses.
fn read_line(io: &mut impl Read) -> Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_LEN));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        match io.read(&mut byte[..]) {
            Ok(0) => {
                return Err(Error::PassphrasePrompt {
                    problem: "the input ended before a passphrase was entered".into(),
                });
            }
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() < MAX_LEN => line.push(byte[0]),
            Ok(_) => {
                return Err(Error::PassphrasePrompt {
                    problem: format!("longer than {} KiB: not a passphrase", MAX_LEN / 1024),
                });
            }
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => {
                return Err(Error::PassphrasePrompt {
                    problem: e.to_string(),
                });
            }
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
        // The popped byte is a `\r`, not secret; the rest is wiped on drop.
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockvault_core::ErrorKind;
    use std::io::Cursor;
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    /// A terminal's two directions: what the user types, what is shown.
    struct Typed {
        input: Cursor<Vec<u8>>,
        shown: Vec<u8>,
    }

    impl Typed {
        fn new(input: &[u8]) -> Typed {
            Typed {
                input: Cursor::new(input.to_vec()),
                shown: Vec::new(),
            }
        }
        fn shown(&self) -> String {
            String::from_utf8_lossy(&self.shown).into_owned()
        }
    }

    impl Read for Typed {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Typed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.shown.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn asks_once_and_takes_the_line() {
        let mut tty = Typed::new(b"pass word\r\nleft over\n");
        let got = ask_on(&mut tty, "Passphrase for vault v1 at /v: ").expect("asked");
        assert_eq!(got.as_bytes(), b"pass word");
        assert_eq!(tty.shown(), "Passphrase for vault v1 at /v: \n");
    }

    #[test]
    fn nothing_typed_is_refused_and_says_so() {
        let mut tty = Typed::new(b"\n");
        let err = ask_on(&mut tty, "P: ").expect_err("empty");
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(
            err.to_string().contains("no passphrase was entered"),
            "{err}"
        );
        let mut tty = Typed::new(b"half");
        let err = ask_on(&mut tty, "P: ").expect_err("end of input");
        assert!(err.to_string().contains("input ended"), "{err}");
        assert_eq!(tty.shown(), "P: \n", "a newline on the error path too");
    }

    #[test]
    fn a_new_passphrase_is_asked_twice() {
        let mut tty = Typed::new(b"new one\nnew one\n");
        let got = ask_new_on(&mut tty, "New: ", "Again: ").expect("same twice");
        assert_eq!(got.as_bytes(), b"new one");
        assert_eq!(tty.shown(), "New: \nAgain: \n");
    }

    #[test]
    fn a_new_passphrase_that_differs_or_is_empty_is_refused() {
        for (typed, why) in [
            (&b"new one\nnew two\n"[..], "differ"),
            (b"new one\n\n", "differ"),
            (b"\nnew one\n", "empty"),
        ] {
            let mut tty = Typed::new(typed);
            let err = ask_new_on(&mut tty, "New: ", "Again: ").expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::Usage);
            assert!(err.to_string().contains(why), "{err}");
            assert!(!err.to_string().contains("new one"), "{err}");
        }
    }

    /// A pseudo-terminal: the user's side (what is typed in, what is shown) and the
    /// program's (the tty asked on).
    struct Pty {
        user: File,
        tty: File,
        shown: mpsc::Receiver<u8>,
    }

    impl Pty {
        fn open() -> Pty {
            use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
            let user = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
            grantpt(&user).expect("grantpt");
            unlockpt(&user).expect("unlockpt");
            let name = ptsname(&user, Vec::new()).expect("ptsname");
            let tty = OpenOptions::new()
                .read(true)
                .write(true)
                .open(name.to_str().expect("utf-8 name"))
                .expect("open the tty");
            let user = File::from(user);
            // What the terminal shows, read on a thread that ends when the tty is closed.
            let (sender, shown) = mpsc::channel();
            let mut reader = user.try_clone().expect("clone");
            thread::spawn(move || {
                let mut byte = [0u8; 1];
                while let Ok(1) = reader.read(&mut byte) {
                    if sender.send(byte[0]).is_err() {
                        break;
                    }
                }
            });
            Pty { user, tty, shown }
        }

        /// What is shown up to and with `end`, waiting at most a few seconds.
        fn shown_until(&self, end: &str) -> String {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut text = Vec::new();
            while !text.ends_with(end.as_bytes()) {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.shown.recv_timeout(left) {
                    Ok(byte) => text.push(byte),
                    Err(_) => panic!(
                        "{end:?} not shown; shown {:?}",
                        String::from_utf8_lossy(&text)
                    ),
                }
            }
            String::from_utf8_lossy(&text).into_owned()
        }

        fn echoes(&self) -> bool {
            let modes = termios::tcgetattr(&self.tty)
                .expect("tcgetattr")
                .local_modes;
            modes.contains(LocalModes::ECHO)
        }
    }

    #[test]
    fn the_terminal_is_asked_with_echo_off_then_restored() {
        let mut pty = Pty::open();
        assert!(pty.echoes());
        thread::scope(|scope| {
            let asked = scope.spawn(|| ask_tty(&pty.tty, "Passphrase for vault v1 at /v: "));
            // The prompt is shown once echo is off: what is typed now is not shown.
            pty.shown_until("at /v: ");
            pty.user.write_all(b"typed secret\n").expect("type");
            let after = pty.shown_until("\n");
            assert!(!after.contains("secret"), "echoed: {after:?}");
            let got = asked.join().expect("no panic").expect("asked");
            assert_eq!(got.as_bytes(), b"typed secret");
        });
        assert!(pty.echoes(), "echo restored");
    }

    #[test]
    fn echo_is_restored_when_the_input_ends_too() {
        let mut pty = Pty::open();
        thread::scope(|scope| {
            let asked = scope.spawn(|| ask_new_tty(&pty.tty, "New: ", "Again: "));
            pty.shown_until("New: ");
            pty.user.write_all(b"one\n").expect("type");
            pty.shown_until("Again: ");
            // Ctrl-D on an empty line: the end of input.
            pty.user.write_all(&[4]).expect("type");
            let err = asked.join().expect("no panic").expect_err("ended");
            assert!(err.to_string().contains("input ended"), "{err}");
        });
        assert!(pty.echoes(), "echo restored");
    }

    #[test]
    fn echo_off_refuses_what_is_not_a_terminal() {
        let file = tempfile::tempfile().expect("file");
        let err = EchoOff::new(&file).err().expect("not a terminal");
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(err.to_string().contains("cannot turn echo off"), "{err}");
    }
}
