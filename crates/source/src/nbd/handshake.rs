//! The fixed newstyle handshake: structured replies, meta contexts, then `NBD_OPT_GO` for the
//! export with its size, transmission flags and block size limits; or the oldstyle greeting,
//! which says the one export's size and flags unasked.

use std::io::{self, Read, Write};
use std::time::Duration;

use super::proto::*;

/// What the handshake settled.
#[derive(Clone, Debug)]
pub(crate) struct Negotiated {
    pub size: u64,
    pub flags: u16,
    pub min_block: u32,
    pub preferred_block: u32,
    pub max_payload: u32,
    pub structured: bool,
    /// The meta contexts the server agreed to, by the id it gave them.
    pub contexts: Vec<(u32, String)>,
}

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The server does not have the export.
    NoExport,
    /// Anything else, said for the user.
    Other(String),
}

/// One option reply: its type and payload.
struct OptionReply {
    kind: u32,
    data: Vec<u8>,
}

/// Runs the handshake for `export`, asking for the meta contexts `queries` (when the server
/// agrees to structured replies, which they need).
pub(crate) fn negotiate<S: Read + Write>(
    stream: &mut S,
    export: &str,
    queries: &[String],
    timeout: Duration,
) -> Result<Negotiated, Refused> {
    let io =
        |during: &'static str| move |e: io::Error| Refused::Other(io_reason(&e, during, timeout));
    let magic = read_u64(stream).map_err(io("the greeting"))?;
    if magic != INIT_MAGIC {
        return Err(Refused::Other(format!(
            "not an NBD server: the greeting starts with {magic:#018x}, not NBDMAGIC"
        )));
    }
    let style = read_u64(stream).map_err(io("the greeting"))?;
    if style == OLDSTYLE_MAGIC {
        return oldstyle(stream, export, timeout);
    }
    if style != OPTS_MAGIC {
        return Err(Refused::Other(format!(
            "the server's greeting goes on with {style:#018x}, neither newstyle (IHAVEOPT) nor \
             oldstyle"
        )));
    }
    let server_flags = read_u16(stream).map_err(io("the greeting"))?;
    if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(Refused::Other(
            "the server offers only the unfixed newstyle negotiation (no \
             NBD_FLAG_FIXED_NEWSTYLE), which this client does not speak"
                .to_owned(),
        ));
    }
    let mut client_flags = FLAG_C_FIXED_NEWSTYLE;
    if server_flags & FLAG_NO_ZEROES != 0 {
        client_flags |= FLAG_C_NO_ZEROES;
    }
    stream
        .write_all(&client_flags.to_be_bytes())
        .map_err(io("the greeting"))?;

    send_option(stream, OPT_STRUCTURED_REPLY, &[]).map_err(io("option negotiation"))?;
    let reply = read_option_reply(stream, OPT_STRUCTURED_REPLY, timeout)?;
    let structured = reply.kind == REP_ACK;
    if !structured && reply.kind & REP_FLAG_ERROR == 0 {
        return Err(unexpected(OPT_STRUCTURED_REPLY, reply.kind));
    }

    let mut contexts = Vec::new();
    if structured && !queries.is_empty() {
        let mut data = name_field(export);
        data.extend_from_slice(&len_u32(queries.len())?.to_be_bytes());
        for q in queries {
            data.extend_from_slice(&name_field(q));
        }
        send_option(stream, OPT_SET_META_CONTEXT, &data).map_err(io("option negotiation"))?;
        loop {
            let reply = read_option_reply(stream, OPT_SET_META_CONTEXT, timeout)?;
            match reply.kind {
                REP_ACK => break,
                REP_META_CONTEXT if reply.data.len() >= 4 => {
                    let id = u32::from_be_bytes([
                        reply.data[0],
                        reply.data[1],
                        reply.data[2],
                        reply.data[3],
                    ]);
                    let name = String::from_utf8_lossy(&reply.data[4..]).into_owned();
                    contexts.push((id, name));
                }
                // The server has no meta contexts: the source reads everything as data.
                kind if kind & REP_FLAG_ERROR != 0 => {
                    contexts.clear();
                    break;
                }
                kind => return Err(unexpected(OPT_SET_META_CONTEXT, kind)),
            }
        }
    }

    let mut data = name_field(export);
    data.extend_from_slice(&1u16.to_be_bytes());
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(stream, OPT_GO, &data).map_err(io("option negotiation"))?;
    let mut export_info = None;
    let (mut min_block, mut preferred_block, mut max_payload) = (1, 4096, DEFAULT_MAX_PAYLOAD);
    loop {
        let reply = read_option_reply(stream, OPT_GO, timeout)?;
        let d = &reply.data;
        match reply.kind {
            REP_ACK => break,
            REP_INFO if d.len() >= 2 => match u16::from_be_bytes([d[0], d[1]]) {
                INFO_EXPORT if d.len() >= 12 => {
                    let size = u64::from_be_bytes(field(d, 2));
                    let flags = u16::from_be_bytes(field(d, 10));
                    export_info = Some((size, flags));
                }
                INFO_BLOCK_SIZE if d.len() >= 14 => {
                    min_block = u32::from_be_bytes(field(d, 2)).max(1);
                    preferred_block = u32::from_be_bytes(field(d, 6));
                    max_payload = u32::from_be_bytes(field(d, 10));
                }
                INFO_EXPORT | INFO_BLOCK_SIZE => {
                    return Err(Refused::Other(format!(
                        "the server sent a {}-byte information reply, too short for its type",
                        d.len()
                    )));
                }
                _ => {}
            },
            // A server from before NBD_OPT_GO: the protocol asks clients to fall back to
            // NBD_OPT_EXPORT_NAME, which says the size and flags and nothing more.
            REP_ERR_UNSUP if export_info.is_none() => {
                let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
                export_info = Some(export_name(stream, export, no_zeroes, timeout)?);
                break;
            }
            REP_ERR_UNKNOWN => {
                // A polite goodbye; the answer to it does not matter.
                let _ = send_option(stream, OPT_ABORT, &[]);
                return Err(Refused::NoExport);
            }
            kind if kind & REP_FLAG_ERROR != 0 => {
                let message = String::from_utf8_lossy(d);
                return Err(Refused::Other(format!(
                    "the server refused the export: {}{}",
                    refusal(kind),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                )));
            }
            kind => return Err(unexpected(OPT_GO, kind)),
        }
    }
    let (size, flags) = export_info.ok_or_else(|| {
        Refused::Other("the server accepted the export without saying its size".to_owned())
    })?;
    if max_payload == 0 || max_payload < min_block {
        max_payload = DEFAULT_MAX_PAYLOAD;
    }
    Ok(Negotiated {
        size,
        flags,
        min_block,
        preferred_block,
        max_payload: max_payload.min(DEFAULT_MAX_PAYLOAD),
        structured,
        contexts,
    })
}

/// `NBD_OPT_EXPORT_NAME`: the export's size and transmission flags (then 124 zero bytes
/// unless both sides dropped them). The option has no error reply: a server without the
/// export, or unwilling to serve this client, closes the connection.
fn export_name(
    stream: &mut (impl Read + Write),
    export: &str,
    no_zeroes: bool,
    timeout: Duration,
) -> Result<(u64, u16), Refused> {
    let io = |e: io::Error| {
        Refused::Other(if e.kind() == io::ErrorKind::UnexpectedEof {
            format!(
                "the server has no NBD_OPT_GO, and closed the connection when NBD_OPT_EXPORT_NAME \
                 asked for export {export:?}: it has no such export, or refuses this client"
            )
        } else {
            io_reason(&e, "NBD_OPT_EXPORT_NAME", timeout)
        })
    };
    send_option(stream, OPT_EXPORT_NAME, export.as_bytes()).map_err(io)?;
    let size = read_u64(stream).map_err(io)?;
    let flags = read_u16(stream).map_err(io)?;
    if !no_zeroes {
        skip(stream, 124).map_err(io)?;
    }
    Ok((size, flags))
}

/// What an option error reply means, for the user: nbdkit `--tls=require` answers
/// `NBD_REP_ERR_TLS_REQD` to everything, and a bare number said nothing about it.
fn refusal(kind: u32) -> String {
    let what = match kind & !REP_FLAG_ERROR {
        1 => "it does not support the option (NBD_REP_ERR_UNSUP)",
        2 => "its policy forbids this client (NBD_REP_ERR_POLICY)",
        3 => "it found the request invalid (NBD_REP_ERR_INVALID)",
        4 => "its platform does not support it (NBD_REP_ERR_PLATFORM)",
        5 => "it requires TLS, which this client does not speak (NBD_REP_ERR_TLS_REQD)",
        7 => "it is shutting down (NBD_REP_ERR_SHUTDOWN)",
        8 => "it requires block size negotiation (NBD_REP_ERR_BLOCK_SIZE_REQD)",
        9 => "the request is too big for it (NBD_REP_ERR_TOO_BIG)",
        _ => return format!("error reply {kind:#x}"),
    };
    what.to_owned()
}

/// The rest of an oldstyle greeting: the size and the flags, at once, for the one export the
/// server has. Such servers still exist (`nbdkit --oldstyle`, old nbd-server setups) and
/// read fine with simple replies; what they lack (export names, holes, block status) the
/// source already does without.
fn oldstyle(
    stream: &mut impl Read,
    export: &str,
    timeout: Duration,
) -> Result<Negotiated, Refused> {
    if !export.is_empty() {
        return Err(Refused::Other(format!(
            "the server speaks the oldstyle protocol, which has no export names: connect \
             without one, not {export:?}"
        )));
    }
    let io = |e: io::Error| Refused::Other(io_reason(&e, "the oldstyle greeting", timeout));
    let size = read_u64(stream).map_err(io)?;
    // Handshake flags in the high half, transmission flags in the low.
    let flags = read_u32(stream).map_err(io)? as u16;
    skip(stream, 124).map_err(io)?;
    Ok(Negotiated {
        size,
        flags,
        min_block: 1,
        preferred_block: 4096,
        max_payload: DEFAULT_MAX_PAYLOAD,
        structured: false,
        contexts: Vec::new(),
    })
}

/// Four bytes of `d` from `at` (the caller checked the length).
fn field<const N: usize>(d: &[u8], at: usize) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(&d[at..at + N]);
    b
}

fn len_u32(n: usize) -> Result<u32, Refused> {
    u32::try_from(n).map_err(|_| Refused::Other("a name too long for the protocol".to_owned()))
}

/// A 32-bit length and the bytes of `name`.
fn name_field(name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + name.len());
    v.extend_from_slice(&(name.len() as u32).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v
}

fn send_option(stream: &mut impl Write, option: u32, data: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(16 + data.len());
    msg.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    stream.write_all(&msg)?;
    stream.flush()
}

fn read_option_reply(
    stream: &mut impl Read,
    option: u32,
    timeout: Duration,
) -> Result<OptionReply, Refused> {
    let io = |e: io::Error| Refused::Other(io_reason(&e, "option negotiation", timeout));
    let magic = read_u64(stream).map_err(io)?;
    if magic != REP_MAGIC {
        return Err(Refused::Other(format!(
            "bad magic {magic:#018x} in an option reply"
        )));
    }
    let answered = read_u32(stream).map_err(io)?;
    if answered != option {
        return Err(Refused::Other(format!(
            "the server answered option {answered} to option {option}"
        )));
    }
    let kind = read_u32(stream).map_err(io)?;
    let len = read_u32(stream).map_err(io)?;
    if len > MAX_OPTION_REPLY {
        return Err(Refused::Other(format!(
            "an option reply of {len} bytes (more than {MAX_OPTION_REPLY}): a broken server"
        )));
    }
    let mut data = vec![0u8; len as usize];
    stream.read_exact(&mut data).map_err(io)?;
    Ok(OptionReply { kind, data })
}

fn unexpected(option: u32, kind: u32) -> Refused {
    Refused::Other(format!(
        "the server sent reply type {kind:#x} to option {option}"
    ))
}
