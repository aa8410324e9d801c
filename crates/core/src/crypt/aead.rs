//! The primitives every encrypted object uses: a one-object AES-256-GCM key derived from a
//! purpose key and the object's random salt, sealing and opening in place, random bytes.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

/// Bytes of the random salt each encrypted object carries (192 bits: a salt repeats, by the
/// birthday bound, after about 2^96 objects, so no two objects share a key in any vault).
pub(crate) const SALT_LEN: usize = 24;

/// Bytes of the GCM tag after each sealed message.
pub(crate) const TAG_LEN: usize = 16;

/// The key that seals one object: BLAKE3 keyed with `purpose` (a key derived from the master
/// key for one kind of object) over the object's random `salt`. Each such key seals one object
/// (a chunk, or the segments of one metadata object, told apart by their nonce), so the nonce
/// can be a counter: no nonce is ever used twice under one key, whatever the vault's size.
pub(crate) fn object_key(purpose: &[u8; 32], salt: &[u8]) -> LessSafeKey {
    let key = blake3::keyed_hash(purpose, salt);
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_bytes()).expect("a 32-byte key"))
}

/// The nonce of message `index` of one object; `last` marks the object's final message, so a
/// sealed object cut at a message boundary fails to open.
pub(crate) fn nonce(index: u64, last: bool) -> Nonce {
    let mut bytes = [0u8; NONCE_LEN];
    bytes[..8].copy_from_slice(&index.to_be_bytes());
    bytes[NONCE_LEN - 1] = u8::from(last);
    Nonce::assume_unique_for_key(bytes)
}

/// Encrypts `buf[from..]` in place and appends the tag.
pub(crate) fn seal(key: &LessSafeKey, nonce: Nonce, aad: &[u8], buf: &mut Vec<u8>, from: usize) {
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut buf[from..])
        .expect("GCM seals messages of up to 64 GiB; ours are at most 16 MiB");
    buf.extend_from_slice(tag.as_ref());
}

/// Decrypts `buf` (ciphertext and tag) in place; on success `buf` holds the plaintext.
/// [`Error::AuthenticationFailed`] naming `what` when the message was altered, cut, moved or
/// sealed under another key.
pub(crate) fn open(
    key: &LessSafeKey,
    nonce: Nonce,
    aad: &[u8],
    buf: &mut Vec<u8>,
    what: &'static str,
) -> Result<()> {
    let len = key
        .open_in_place(nonce, Aad::from(aad), buf)
        .map_err(|_| Error::AuthenticationFailed { what })?
        .len();
    buf.truncate(len);
    Ok(())
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source");
    bytes
}
