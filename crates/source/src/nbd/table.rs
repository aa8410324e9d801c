//! The table of requests in flight on one connection, shared by the threads that send them
//! and the reader thread that answers them: what each request waits for, the room left in
//! flight, and why the connection broke, once it has.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::address::Stream;

/// Why a request failed.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The server answered with an error; the connection still works.
    Server {
        errno: u32,
        message: String,
        /// Where the failure is: the request's offset, or the byte an error chunk names.
        offset: u64,
        /// The bytes of the request from `offset` on.
        length: u64,
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

/// What a request returns.
#[derive(Debug)]
pub(super) enum Outcome {
    Data(Vec<u8>),
    Status(Vec<Descriptor>),
}

pub(super) enum Work {
    Read {
        buf: Vec<u8>,
        covered: Vec<Range<u64>>,
        /// Bytes the chunks so far covered: more than asked means chunks overlap.
        got: u64,
    },
    Status(Vec<Descriptor>),
}

/// A request in flight.
pub(super) struct Slot {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) work: Work,
    pub(super) error: Option<Failure>,
    /// Error chunks seen so far.
    pub(super) errors: u32,
    pub(super) sent: Instant,
    pub(super) reply: Sender<Result<Outcome, Failure>>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) pending: HashMap<u64, Slot>,
    pub(super) in_flight: usize,
    pub(super) next_cookie: u64,
    pub(super) dead: Option<Arc<str>>,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) room: Condvar,
    pub(super) writer: Mutex<Stream>,
    /// A handle to shut the socket down with, from any thread.
    pub(super) control: Stream,
    pub(super) structured: bool,
    pub(super) timeout: Duration,
    pub(super) max_in_flight: usize,
    /// Read buffers to reuse, at most one per request in flight.
    pub(super) buffers: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Breaks the connection: every request waiting or to come fails with `reason` (the
    /// first reason wins), and the socket is shut so the reader stops.
    pub(super) fn break_with(&self, reason: String) {
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

    pub(super) fn dead_reason(&self) -> Arc<str> {
        self.state()
            .dead
            .clone()
            .unwrap_or_else(|| "the connection is closed".into())
    }

    /// True when requests are outstanding and nothing has come for the timeout since the
    /// later of the last byte received and the oldest request's sending.
    pub(super) fn stalled(&self, last_progress: Instant) -> bool {
        let state = self.state();
        match state.pending.values().map(|s| s.sent).min() {
            None => false,
            Some(oldest) => last_progress.max(oldest).elapsed() >= self.timeout,
        }
    }
}
