//! The passphrase itself: bytes wiped from memory when dropped, never printed.

use std::fmt;

use zeroize::Zeroizing;

/// The longest passphrase taken from a file, a command or a prompt (64 KiB): anything longer
/// is not a passphrase but the wrong file.
pub(super) const MAX_LEN: usize = 64 * 1024;

/// A passphrase: the secret bytes as given (a file's or a command's output less one trailing
/// newline, or what was typed), wiped from memory when dropped.
///
/// It has no `Display` and its `Debug` prints `Passphrase(<redacted>)`, so it cannot end up in
/// a log line or an error message by accident; [`Passphrase::as_bytes`] is the only way to the
/// secret. It is not `Clone`: each copy would be one more to wipe.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// A passphrase of these bytes (for callers holding one already, and tests); `bytes` is
    /// wiped with the passphrase.
    pub fn new(bytes: Vec<u8>) -> Passphrase {
        Passphrase(Zeroizing::new(bytes))
    }

    /// Takes a buffer already wiped on drop, without a copy.
    pub(super) fn from_buffer(bytes: Zeroizing<Vec<u8>>) -> Passphrase {
        Passphrase(bytes)
    }

    /// The secret bytes, for the key derivation.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes the passphrase has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no bytes (every source refuses an empty passphrase).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes the bytes read from a file or a command: drops one trailing `\n` or `\r\n` (an
    /// editor's or `echo`'s, not more: a passphrase may end in white space). The buffer is
    /// shortened in place, so the secret is never copied.
    pub(super) fn from_output(mut bytes: Zeroizing<Vec<u8>>) -> Passphrase {
        if bytes.ends_with(b"\r\n") {
            zero_tail(&mut bytes, 2);
        } else if bytes.ends_with(b"\n") {
            zero_tail(&mut bytes, 1);
        }
        Passphrase(bytes)
    }
}

/// Wipes and drops the last `n` bytes (`truncate` alone would leave them in the spare
/// capacity, which `Zeroizing` wipes too, but only at the end).
fn zero_tail(bytes: &mut Vec<u8>, n: usize) {
    let keep = bytes.len() - n;
    bytes[keep..].fill(0);
    bytes.truncate(keep);
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(bytes: &[u8]) -> Vec<u8> {
        Passphrase::from_output(Zeroizing::new(bytes.to_vec()))
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn one_trailing_newline_is_dropped_and_only_one() {
        assert_eq!(output(b"hunter2\n"), b"hunter2");
        assert_eq!(output(b"hunter2\r\n"), b"hunter2");
        assert_eq!(output(b"hunter2\n\n"), b"hunter2\n");
        assert_eq!(output(b"hunter2 \n"), b"hunter2 ");
        assert_eq!(output(b"hunter2"), b"hunter2");
        assert_eq!(output(b"\n"), b"");
        assert_eq!(output(b"a\rb\r"), b"a\rb\r");
    }

    #[test]
    fn debug_is_redacted() {
        let secret = Passphrase::new(b"correct horse".to_vec());
        let shown = format!("{secret:?} {:#?}", Some(&secret));
        assert!(!shown.contains("correct"), "{shown}");
        assert!(shown.contains("Passphrase(<redacted>)"), "{shown}");
        assert_eq!(secret.as_bytes(), b"correct horse");
        assert_eq!(secret.len(), 13);
    }
}
