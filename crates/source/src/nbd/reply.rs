//! The reader thread's side of a connection: it reads every reply, checks it against its
//! request before reading or allocating anything the server claims, and hands the result to
//! the waiting caller. Anything the protocol does not allow ends the loop with the reason.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::address::Stream;
use super::proto::*;
use super::table::{Descriptor, Failure, Outcome, Shared, Slot, Work};

/// The most block status descriptors one reply chunk may carry (8 MiB of them; QEMU sends at
/// most 128 Ki): more is a broken or hostile server, not a disk.
const MAX_DESCRIPTORS: u32 = 1 << 20;

/// The most error chunks one reply may carry: a server that sends more is not finishing.
const MAX_ERRORS: u32 = 64;

/// The socket as the reader sees it: a read that times out is retried while no request waits
/// (an idle connection is fine) and fails once requests have waited the whole timeout.
pub(super) struct Patient {
    pub(super) inner: Stream,
    pub(super) shared: Arc<Shared>,
    pub(super) last_progress: Instant,
    /// Inside a reply: its request is out of the table while it is read, and a server that
    /// stops here has stalled whatever else waits.
    pub(super) mid_reply: bool,
}

impl Read for Patient {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.last_progress = Instant::now();
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.shared.state().dead.is_some() {
                        return Ok(0);
                    }
                    let quiet = self.last_progress.elapsed() >= self.shared.timeout;
                    if (self.mid_reply && quiet) || self.shared.stalled(self.last_progress) {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads replies until the connection ends; `Err` is the reason it broke.
pub(super) fn read_replies(input: &mut BufReader<Patient>, shared: &Shared) -> Result<(), String> {
    let timeout = shared.timeout;
    loop {
        // Between replies: the end of the stream is a clean close only if nothing waits.
        input.get_mut().mid_reply = false;
        let at_end = match input.fill_buf() {
            Ok(buf) => buf.is_empty(),
            Err(e) => return Err(io_reason(&e, "waiting for a reply", timeout)),
        };
        if at_end {
            let state = shared.state();
            if state.dead.is_some() || state.pending.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "the server closed the connection with {} request(s) unanswered",
                state.pending.len()
            ));
        }
        input.get_mut().mid_reply = true;
        let io = |e: io::Error| io_reason(&e, "a reply", timeout);
        let magic = read_u32(input).map_err(io)?;
        match magic {
            SIMPLE_REPLY_MAGIC => {
                let errno = read_u32(input).map_err(io)?;
                let cookie = read_u64(input).map_err(io)?;
                let mut slot = take(shared, cookie)?;
                if errno != 0 {
                    slot.error = Some(Failure::Server {
                        errno,
                        message: String::new(),
                        offset: slot.offset,
                        length: u64::from(slot.len),
                    });
                } else {
                    match &mut slot.work {
                        Work::Read { buf, covered, .. } => {
                            input.read_exact(buf).map_err(io)?;
                            covered.push(slot.offset..slot.offset + u64::from(slot.len));
                        }
                        Work::Status(_) => {
                            return Err(
                                "a simple reply without an error to a block status request"
                                    .to_owned(),
                            );
                        }
                    }
                }
                finish(shared, slot)?;
            }
            STRUCTURED_REPLY_MAGIC if shared.structured => {
                let flags = read_u16(input).map_err(io)?;
                let kind = read_u16(input).map_err(io)?;
                let cookie = read_u64(input).map_err(io)?;
                let length = read_u32(input).map_err(io)?;
                let mut slot = take(shared, cookie)?;
                let done = flags & REPLY_FLAG_DONE != 0;
                chunk(input, &mut slot, kind, length, done, timeout)?;
                if done {
                    finish(shared, slot)?;
                } else {
                    shared.state().pending.insert(cookie, slot);
                }
            }
            STRUCTURED_REPLY_MAGIC => {
                return Err(
                    "a structured reply, which this connection did not negotiate".to_owned(),
                );
            }
            other => return Err(format!("bad magic {other:#010x} at the start of a reply")),
        }
    }
}

/// Takes the request `cookie` out of the table for its reply.
fn take(shared: &Shared, cookie: u64) -> Result<Slot, String> {
    shared
        .state()
        .pending
        .remove(&cookie)
        .ok_or_else(|| format!("the server replied to request {cookie:#x}, which is not in flight"))
}

/// Hands a finished request its result and frees its place.
fn finish(shared: &Shared, slot: Slot) -> Result<(), String> {
    let result = match (slot.error, slot.work) {
        (Some(failure), _) => Err(failure),
        (
            None,
            Work::Read {
                buf, mut covered, ..
            },
        ) => {
            covered.sort_by_key(|r| r.start);
            let mut at = slot.offset;
            for r in &covered {
                if r.start != at {
                    return Err(format!(
                        "the reply to a {}-byte read at {} left byte {at} unanswered or overlapping",
                        slot.len, slot.offset
                    ));
                }
                at = r.end;
            }
            if at != slot.offset + u64::from(slot.len) {
                return Err(format!(
                    "the reply to a {}-byte read at {} ended at byte {at}",
                    slot.len, slot.offset
                ));
            }
            Ok(Outcome::Data(buf))
        }
        (None, Work::Status(d)) => Ok(Outcome::Status(d)),
    };
    {
        let mut state = shared.state();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
    shared.room.notify_all();
    // A caller that gave up waiting is not an error.
    let _ = slot.reply.send(result);
    Ok(())
}

/// Reads one structured reply chunk's payload into its request.
fn chunk(
    input: &mut impl Read,
    slot: &mut Slot,
    kind: u16,
    length: u32,
    done: bool,
    timeout: Duration,
) -> Result<(), String> {
    let io = |e: io::Error| io_reason(&e, "a reply", timeout);
    let end = slot.offset + u64::from(slot.len);
    match (kind, &mut slot.work) {
        (REPLY_TYPE_NONE, _) if length == 0 && done => {}
        (REPLY_TYPE_OFFSET_DATA, Work::Read { buf, covered, got }) if length > 8 => {
            let data = u64::from(length - 8);
            let at = read_u64(input).map_err(io)?;
            if at < slot.offset || at.saturating_add(data) > end {
                return Err(format!(
                    "a {data}-byte data chunk at {at}, outside the {}-byte read at {}",
                    slot.len, slot.offset
                ));
            }
            let from = (at - slot.offset) as usize;
            *got += data;
            if *got > u64::from(slot.len) {
                return Err(format!(
                    "chunks that overlap in the reply to the {}-byte read at {}",
                    slot.len, slot.offset
                ));
            }
            input
                .read_exact(&mut buf[from..from + data as usize])
                .map_err(io)?;
            covered.push(at..at + data);
        }
        (REPLY_TYPE_OFFSET_HOLE, Work::Read { buf, covered, got }) if length == 12 => {
            let at = read_u64(input).map_err(io)?;
            let hole = u64::from(read_u32(input).map_err(io)?);
            *got += hole;
            if hole == 0 || *got > u64::from(slot.len) {
                return Err(format!(
                    "an empty or overlapping hole chunk in the reply to the {}-byte read at {}",
                    slot.len, slot.offset
                ));
            }
            if at < slot.offset || at.saturating_add(hole) > end {
                return Err(format!(
                    "a {hole}-byte hole at {at}, outside the {}-byte read at {}",
                    slot.len, slot.offset
                ));
            }
            let from = (at - slot.offset) as usize;
            buf[from..from + hole as usize].fill(0);
            covered.push(at..at + hole);
        }
        (REPLY_TYPE_BLOCK_STATUS, Work::Status(descriptors))
            if length >= 12 && (length - 4).is_multiple_of(8) =>
        {
            let count = (length - 4) / 8;
            if count as usize + descriptors.len() > MAX_DESCRIPTORS as usize {
                return Err(format!(
                    "a block status chunk of {count} extents, {} before it (at most {MAX_DESCRIPTORS} \
                     expected)",
                    descriptors.len()
                ));
            }
            let context = read_u32(input).map_err(io)?;
            for _ in 0..count {
                let len = read_u32(input).map_err(io)?;
                let flags = read_u32(input).map_err(io)?;
                if len == 0 {
                    return Err("a block status extent of length 0".to_owned());
                }
                descriptors.push(Descriptor {
                    context,
                    len,
                    flags,
                });
            }
        }
        (kind, _) if kind & REPLY_TYPE_IS_ERROR != 0 && length >= 6 => {
            slot.errors += 1;
            if slot.errors > MAX_ERRORS {
                return Err(format!(
                    "more than {MAX_ERRORS} error chunks in the reply to one request"
                ));
            }
            let errno = read_u32(input).map_err(io)?;
            let message_len = u32::from(read_u16(input).map_err(io)?);
            if message_len > length - 6 {
                return Err(format!(
                    "an error chunk whose {message_len}-byte message overruns its {length} bytes"
                ));
            }
            let mut message = vec![0u8; message_len as usize];
            input.read_exact(&mut message).map_err(io)?;
            let mut rest = length - 6 - message_len;
            let mut offset = slot.offset;
            if kind == REPLY_TYPE_ERROR_OFFSET && rest >= 8 {
                // Only a byte inside the request names where it failed.
                let at = read_u64(input).map_err(io)?;
                if (slot.offset..end).contains(&at) {
                    offset = at;
                }
                rest -= 8;
            }
            skip(input, u64::from(rest)).map_err(io)?;
            if errno == 0 {
                return Err("an error chunk with error number 0".to_owned());
            }
            if slot.error.is_none() {
                slot.error = Some(Failure::Server {
                    errno,
                    message: String::from_utf8_lossy(&message).into_owned(),
                    offset,
                    length: end.saturating_sub(offset),
                });
            }
        }
        (kind, _) => {
            return Err(format!(
                "a reply chunk of type {kind} and {length} bytes that does not fit a {} request \
                 of {} bytes at {}",
                match slot.work {
                    Work::Read { .. } => "read",
                    Work::Status(_) => "block status",
                },
                slot.len,
                slot.offset
            ));
        }
    }
    Ok(())
}
