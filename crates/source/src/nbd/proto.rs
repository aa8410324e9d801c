//! The NBD wire protocol's numbers (the fixed newstyle handshake and the transmission phase,
//! as the NBD protocol document `proto.md` defines them) and the big-endian reads and writes
//! both phases use.

use std::io::{self, Read};
use std::time::Duration;

/// `NBDMAGIC`: the first 8 bytes a server sends.
pub const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle negotiation, and the prefix of every option the client sends.
pub const OPTS_MAGIC: u64 = 0x4948_4156_454f_5054;
/// The oldstyle handshake's second 8 bytes (`cliserv_magic`): size and flags follow at once.
pub const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
/// The prefix of every option reply.
pub const REP_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply types; errors have bit 31 set.
pub const REP_ACK: u32 = 1;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
pub const REP_FLAG_ERROR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;
pub const REP_ERR_UNKNOWN: u32 = REP_FLAG_ERROR | 6;

/// `NBD_OPT_GO` information types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const FLAG_READ_ONLY: u16 = 1 << 1;
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;

/// Requests.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const CMD_READ: u16 = 0;
pub const CMD_DISC: u16 = 2;
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Replies.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) | 2;
/// Bit 15 of a chunk type: an error chunk, even of a type this client does not know.
pub const REPLY_TYPE_IS_ERROR: u16 = 1 << 15;

/// `base:allocation` flags.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;
/// `qemu:dirty-bitmap:NAME` flag.
pub const STATE_DIRTY: u32 = 1 << 0;

/// The meta context that reports holes and zeros.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// The prefix of QEMU's dirty bitmap meta contexts.
pub const DIRTY_BITMAP_PREFIX: &str = "qemu:dirty-bitmap:";

/// The largest read payload when the server does not say (the protocol's recommendation).
pub const DEFAULT_MAX_PAYLOAD: u32 = 32 << 20;
/// The largest option reply this client accepts: the replies it asks for are a few bytes and
/// a context name of at most 4 KiB, so anything longer is a broken or hostile server.
pub const MAX_OPTION_REPLY: u32 = 64 << 10;

/// The name of an NBD error number, for messages.
pub fn errno_name(errno: u32) -> &'static str {
    match errno {
        1 => "EPERM",
        5 => "EIO",
        12 => "ENOMEM",
        22 => "EINVAL",
        28 => "ENOSPC",
        75 => "EOVERFLOW",
        95 => "ENOTSUP",
        108 => "ESHUTDOWN",
        _ => "an unknown error",
    }
}

/// What an I/O error on the socket means for the user, `during` what.
pub fn io_reason(e: &io::Error, during: &str, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => format!("the server closed the connection during {during}"),
        // A server killed with requests unread resets the connection rather than closing it.
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => {
            format!("the server dropped the connection during {during} ({e})")
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "the server sent nothing for {}s during {during} (stalled? the timeout is configurable)",
            timeout.as_secs_f64()
        ),
        _ => format!("{during} failed: {e}"),
    }
}

pub fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

pub fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

pub fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// Reads and drops `len` bytes without buffering them all.
pub fn skip(r: &mut impl Read, len: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(len), &mut io::sink())?;
    if copied < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A request header: 28 bytes.
pub fn request(command: u16, cookie: u64, offset: u64, length: u32) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    // Command flags (bytes 4..6) stay 0.
    b[6..8].copy_from_slice(&command.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..24].copy_from_slice(&offset.to_be_bytes());
    b[24..28].copy_from_slice(&length.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_header_is_big_endian_in_the_documented_layout() {
        let b = request(CMD_READ, 0x0102, 0x0a0b, 4096);
        assert_eq!(&b[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(&b[6..8], &[0, 0]);
        assert_eq!(&b[14..16], &[0x01, 0x02]);
        assert_eq!(&b[22..24], &[0x0a, 0x0b]);
        assert_eq!(&b[24..28], &[0, 0, 0x10, 0]);
    }

    #[test]
    fn skip_reports_a_short_stream() {
        let mut r: &[u8] = &[1, 2, 3];
        assert!(skip(&mut r, 3).is_ok());
        let mut r: &[u8] = &[1, 2, 3];
        let e = skip(&mut r, 4).expect_err("short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
