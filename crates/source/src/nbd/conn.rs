//! The transmission phase over one connection, pipelined: any number of threads send requests
//! (one writer mutex; at most `max_in_flight` outstanding) and one reader thread reads every
//! reply, matches it to its request by cookie and hands the result to the waiting caller.
//!
//! Anything the protocol does not allow (a bad magic, a reply for a cookie not in flight, a
//! chunk outside its request or longer than the client could use, a stall longer than the
//! timeout, a close mid-reply) breaks the connection: every waiting and later request gets the
//! same clear reason, and nothing waits forever. An error the server reports for one request
//! fails only that request.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::address::Stream;
use super::proto::*;

/// The most block status descriptors one reply chunk may carry (8 MiB of them; QEMU sends at
/// most 128 Ki): more is a broken or hostile server, not a disk.
const MAX_DESCRIPTORS: u32 = 1 << 20;

/// Why a request failed.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The server answered with an error; the connection still works.
    Server {
        errno: u32,
        message: String,
        offset: u64,
    },
    /// The connection is broken, for this reason.
    Broken(Arc<str>),
}

/// One block status descriptor: the context it belongs to, its length and flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Descriptor {
    pub context: u32,
    pub len: u32,
    pub flags: u32,
}

/// A request sent and not answered yet.
#[derive(Debug)]
pub(crate) struct Ticket(Receiver<Result<Outcome, Failure>>);

/// What a request returns.
#[derive(Debug)]
enum Outcome {
    Data(Vec<u8>),
    Status(Vec<Descriptor>),
}

enum Work {
    Read {
        buf: Vec<u8>,
        covered: Vec<Range<u64>>,
    },
    Status(Vec<Descriptor>),
}

/// A request in flight.
struct Slot {
    offset: u64,
    len: u32,
    work: Work,
    error: Option<Failure>,
    sent: Instant,
    reply: Sender<Result<Outcome, Failure>>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Slot>,
    in_flight: usize,
    next_cookie: u64,
    dead: Option<Arc<str>>,
}

struct Shared {
    state: Mutex<State>,
    room: Condvar,
    writer: Mutex<Stream>,
    /// A handle to shut the socket down with, from any thread.
    control: Stream,
    structured: bool,
    timeout: Duration,
    max_in_flight: usize,
    /// Read buffers to reuse, at most one per request in flight.
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Breaks the connection: every request waiting or to come fails with `reason` (the
    /// first reason wins), and the socket is shut so the reader stops.
    fn break_with(&self, reason: String) {
        let drained: Vec<Slot> = {
            let mut state = self.state();
            if state.dead.is_none() {
                state.dead = Some(reason.into());
            }
            state.in_flight = 0;
            state.pending.drain().map(|(_, slot)| slot).collect()
        };
        let reason = self.dead_reason();
        for slot in drained {
            // A caller that gave up waiting is not an error.
            let _ = slot.reply.send(Err(Failure::Broken(reason.clone())));
        }
        self.room.notify_all();
        self.control.shutdown();
    }

    fn dead_reason(&self) -> Arc<str> {
        self.state()
            .dead
            .clone()
            .unwrap_or_else(|| "the connection is closed".into())
    }

    /// True when requests are outstanding and nothing has come for the timeout since the
    /// later of the last byte received and the oldest request's sending.
    fn stalled(&self, last_progress: Instant) -> bool {
        let state = self.state();
        match state.pending.values().map(|s| s.sent).min() {
            None => false,
            Some(oldest) => last_progress.max(oldest).elapsed() >= self.timeout,
        }
    }
}

/// One open connection in its transmission phase.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("structured", &self.shared.structured)
            .field("max_in_flight", &self.shared.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts the reader thread on a socket whose handshake is done.
    pub fn start(
        stream: Stream,
        structured: bool,
        timeout: Duration,
        max_in_flight: usize,
    ) -> io::Result<Connection> {
        let poll = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let read_side = stream.try_clone()?;
        read_side.set_read_timeout(Some(poll))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            room: Condvar::new(),
            control: stream.try_clone()?,
            writer: Mutex::new(stream),
            structured,
            timeout,
            max_in_flight: max_in_flight.max(1),
            buffers: Mutex::new(Vec::new()),
        });
        let reader_shared = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("nbd-reader".to_owned())
            .spawn(move || {
                let patient = Patient {
                    inner: read_side,
                    shared: Arc::clone(&reader_shared),
                    last_progress: Instant::now(),
                    mid_reply: false,
                };
                let mut input = BufReader::with_capacity(256 << 10, patient);
                if let Err(reason) = read_replies(&mut input, &reader_shared) {
                    reader_shared.break_with(reason);
                }
            })?;
        Ok(Connection {
            shared,
            reader: Some(reader),
        })
    }

    /// Sends a read of `len` bytes at `offset` (the caller keeps requests within the export
    /// and the server's largest payload); [`Connection::finish_read`] waits for it. A caller
    /// can send several before it waits, so one large read is several requests in flight.
    ///
    /// The reader fills a buffer from a small pool, so a read costs no fresh allocation (a
    /// fresh megabyte is a page fault per page) and the caller's buffer need not cross
    /// threads; every byte of it is written by a data or hole chunk before it is used.
    pub fn send_read(&self, offset: u64, len: u32) -> Result<Ticket, Failure> {
        let mut buf = self
            .shared
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        buf.resize(len as usize, 0);
        let work = Work::Read {
            buf,
            covered: Vec::new(),
        };
        self.send(CMD_READ, offset, len, work)
    }

    /// Waits for a read and copies its bytes from `skip` on into `out` (no longer than what
    /// the read returns after `skip`).
    pub fn finish_read(&self, ticket: Ticket, skip: usize, out: &mut [u8]) -> Result<(), Failure> {
        let buf = match self.wait(ticket)? {
            Outcome::Data(buf) => buf,
            Outcome::Status(_) => {
                return Err(Failure::Broken("a read came back as block status".into()));
            }
        };
        let end = skip + out.len();
        let Some(bytes) = buf.get(skip..end) else {
            return Err(Failure::Broken("a read shorter than asked".into()));
        };
        out.copy_from_slice(bytes);
        let mut pool = self
            .shared
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pool.len() < self.shared.max_in_flight {
            pool.push(buf);
        }
        Ok(())
    }

    /// The block status descriptors for `len` bytes from `offset`, for every negotiated
    /// context (each context's descriptors start at `offset`, in order).
    pub fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Descriptor>, Failure> {
        match self.submit(CMD_BLOCK_STATUS, offset, len, Work::Status(Vec::new()))? {
            Outcome::Status(d) => Ok(d),
            Outcome::Data(_) => Err(Failure::Broken("block status came back as data".into())),
        }
    }

    fn submit(&self, command: u16, offset: u64, len: u32, work: Work) -> Result<Outcome, Failure> {
        let ticket = self.send(command, offset, len, work)?;
        self.wait(ticket)
    }

    /// Sends a request once there is room for it in flight.
    fn send(&self, command: u16, offset: u64, len: u32, work: Work) -> Result<Ticket, Failure> {
        let shared = &self.shared;
        let (reply, answer) = mpsc::channel();
        let cookie = {
            let mut state = shared.state();
            loop {
                if let Some(reason) = &state.dead {
                    return Err(Failure::Broken(reason.clone()));
                }
                if state.in_flight < shared.max_in_flight {
                    break;
                }
                state = shared
                    .room
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let cookie = state.next_cookie;
            state.next_cookie = state.next_cookie.wrapping_add(1);
            state.in_flight += 1;
            state.pending.insert(
                cookie,
                Slot {
                    offset,
                    len,
                    work,
                    error: None,
                    sent: Instant::now(),
                    reply,
                },
            );
            cookie
        };
        let sent = {
            let mut writer = shared.writer.lock().unwrap_or_else(PoisonError::into_inner);
            writer.write_all(&request(command, cookie, offset, len))
        };
        if let Err(e) = sent {
            shared.break_with(io_reason(&e, "sending a request", shared.timeout));
        }
        Ok(Ticket(answer))
    }

    /// Waits for a request's answer.
    fn wait(&self, ticket: Ticket) -> Result<Outcome, Failure> {
        let shared = &self.shared;
        match ticket.0.recv() {
            Ok(outcome) => outcome,
            // The reader dropped the request as the connection broke; it is about to say why.
            Err(_) => {
                let state = shared.state();
                let (state, _) = shared
                    .room
                    .wait_timeout_while(state, shared.timeout, |s| s.dead.is_none())
                    .unwrap_or_else(PoisonError::into_inner);
                drop(state);
                Err(Failure::Broken(shared.dead_reason()))
            }
        }
    }
}

impl Drop for Connection {
    /// Says goodbye (`NBD_CMD_DISC`), closes the socket and waits for the reader to stop.
    fn drop(&mut self) {
        {
            let mut state = self.shared.state();
            if state.dead.is_none() {
                state.dead = Some("the connection is closed".into());
                drop(state);
                let mut writer = self
                    .shared
                    .writer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // The server may be gone already; closing is all that is left either way.
                let _ = writer.write_all(&request(CMD_DISC, u64::MAX, 0, 0));
            }
        }
        self.shared.control.shutdown();
        if let Some(reader) = self.reader.take() {
            // A reader that panicked has nothing left to clean up.
            let _ = reader.join();
        }
    }
}

/// The socket as the reader sees it: a read that times out is retried while no request waits
/// (an idle connection is fine) and fails once requests have waited the whole timeout.
struct Patient {
    inner: Stream,
    shared: Arc<Shared>,
    last_progress: Instant,
    /// Inside a reply: its request is out of the table while it is read, and a server that
    /// stops here has stalled whatever else waits.
    mid_reply: bool,
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
fn read_replies(input: &mut BufReader<Patient>, shared: &Shared) -> Result<(), String> {
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
                    });
                } else {
                    match &mut slot.work {
                        Work::Read { buf, covered } => {
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
                chunk(input, &mut slot, kind, length, timeout)?;
                if flags & REPLY_FLAG_DONE != 0 {
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
        (None, Work::Read { buf, mut covered }) => {
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
    timeout: Duration,
) -> Result<(), String> {
    let io = |e: io::Error| io_reason(&e, "a reply", timeout);
    let end = slot.offset + u64::from(slot.len);
    match (kind, &mut slot.work) {
        (REPLY_TYPE_NONE, _) if length == 0 => {}
        (REPLY_TYPE_OFFSET_DATA, Work::Read { buf, covered }) if length >= 8 => {
            let data = u64::from(length - 8);
            let at = read_u64(input).map_err(io)?;
            if at < slot.offset || at.saturating_add(data) > end {
                return Err(format!(
                    "a {data}-byte data chunk at {at}, outside the {}-byte read at {}",
                    slot.len, slot.offset
                ));
            }
            let from = (at - slot.offset) as usize;
            input
                .read_exact(&mut buf[from..from + data as usize])
                .map_err(io)?;
            covered.push(at..at + data);
        }
        (REPLY_TYPE_OFFSET_HOLE, Work::Read { buf, covered }) if length == 12 => {
            let at = read_u64(input).map_err(io)?;
            let hole = u64::from(read_u32(input).map_err(io)?);
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
            if count > MAX_DESCRIPTORS {
                return Err(format!(
                    "a block status chunk of {count} extents (at most {MAX_DESCRIPTORS} expected)"
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
                offset = read_u64(input).map_err(io)?;
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
