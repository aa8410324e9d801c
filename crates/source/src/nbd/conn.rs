//! The transmission phase over one connection, pipelined: any number of threads send requests
//! (one writer mutex; at most `max_in_flight` outstanding) and one reader thread reads every
//! reply, matches it to its request by cookie and hands the result to the waiting caller.
//!
//! Anything the protocol does not allow (a bad magic, a reply for a cookie not in flight, a
//! chunk outside its request or longer than the client could use, a stall longer than the
//! timeout, a close mid-reply) breaks the connection: every waiting and later request gets the
//! same clear reason, and nothing waits forever. An error the server reports for one request
//! fails only that request.

use std::io::{self, BufReader, Write};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::address::Stream;
use super::proto::*;
use super::reply::{Patient, read_replies};
pub(crate) use super::table::{Descriptor, Failure};
use super::table::{Outcome, Shared, Slot, State, Work};

/// A request sent and not answered yet.
#[derive(Debug)]
pub(crate) struct Ticket(Receiver<Result<Outcome, Failure>>);

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
                let _ends = Ends(Arc::clone(&reader_shared));
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
            got: 0,
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
                    errors: 0,
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

/// Whatever way the reader stops (the server closed an idle connection, a broken reply
/// already said why, or a bug panicked it), no request is left waiting for it.
struct Ends(Arc<Shared>);

impl Drop for Ends {
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            "the NBD client's reader thread failed (a bug)"
        } else {
            "the server closed the connection"
        };
        // The first reason given wins: this one only when nothing said more.
        self.0.break_with(reason.to_owned());
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
