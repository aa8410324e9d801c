//! Where the engine and the scheduler get the time from: the system clock, or a simulated
//! clock that runs a month of schedule in seconds.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;
use tokio::sync::watch;

/// A boxed future, as [`Clock::sleep_until`] returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The time, and waiting for a time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;

    /// Resolves at `deadline`. `busy` says whether work the caller started is still running
    /// (the caller waits on that work too): the system clock ignores it; a simulated clock, in
    /// which work takes no time, does not move while work runs.
    fn sleep_until(&self, deadline: Timestamp, busy: bool) -> Sleep<'_>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, deadline: Timestamp, _busy: bool) -> Sleep<'_> {
        // A wall-clock jump (NTP) shifts the wake-up; callers re-read the time when they wake.
        let wait = Timestamp::now()
            .duration_until(deadline)
            .max(jiff::SignedDuration::ZERO)
            .unsigned_abs();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that stands still until it is waited on, then jumps straight to the deadline: a
/// scheduler driven by it runs through days of schedule as fast as its jobs run. It never
/// moves while the caller's work is running (`busy`), so every job sees the instant it was
/// started at, and it never goes past `end`: a wait beyond it sets the time to `end` and sends
/// `true` on the stop channel, so the scheduler shuts down there.
pub struct SimulatedClock {
    now: Mutex<Timestamp>,
    end: Timestamp,
    stop: watch::Sender<bool>,
    on_advance: Box<dyn Fn(Timestamp) + Send + Sync>,
}

impl SimulatedClock {
    /// A clock at `start` that stops at `end`, and the stop signal it sends there.
    /// `on_advance` runs after each jump with the new time (to change the world between jobs:
    /// write to a disk, break something).
    pub fn new(
        start: Timestamp,
        end: Timestamp,
        on_advance: impl Fn(Timestamp) + Send + Sync + 'static,
    ) -> (SimulatedClock, watch::Receiver<bool>) {
        let (stop, stopped) = watch::channel(false);
        let clock = SimulatedClock {
            now: Mutex::new(start),
            end,
            stop,
            on_advance: Box::new(on_advance),
        };
        (clock, stopped)
    }

    fn set(&self, t: Timestamp) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = (*now).max(t);
    }
}

impl fmt::Debug for SimulatedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedClock")
            .field("now", &self.now())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep_until(&self, deadline: Timestamp, busy: bool) -> Sleep<'_> {
        if busy {
            return Box::pin(std::future::pending());
        }
        if deadline >= self.end {
            self.set(self.end);
            self.stop.send_replace(true);
        } else if deadline > self.now() {
            self.set(deadline);
            (self.on_advance)(deadline);
        }
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[tokio::test]
    async fn a_simulated_clock_jumps_when_idle_and_stops_at_its_end() {
        let jumps = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&jumps);
        let (clock, stop) = SimulatedClock::new(
            at("2026-11-01T00:00:00Z"),
            at("2026-11-02T00:00:00Z"),
            move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        );
        clock.sleep_until(at("2026-11-01T04:00:00Z"), false).await;
        assert_eq!(clock.now(), at("2026-11-01T04:00:00Z"));
        // Never backwards.
        clock.sleep_until(at("2026-11-01T01:00:00Z"), false).await;
        assert_eq!(clock.now(), at("2026-11-01T04:00:00Z"));
        // Busy: the wait does not end and the time does not move.
        let busy = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            clock.sleep_until(at("2026-11-01T08:00:00Z"), true),
        )
        .await;
        assert!(busy.is_err());
        assert_eq!(clock.now(), at("2026-11-01T04:00:00Z"));
        assert!(!*stop.borrow());
        clock.sleep_until(at("2026-11-05T00:00:00Z"), false).await;
        assert_eq!(clock.now(), at("2026-11-02T00:00:00Z"));
        assert!(*stop.borrow());
        assert_eq!(jumps.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_until_the_deadline() {
        let clock = SystemClock;
        let start = std::time::Instant::now();
        let deadline = clock.now() + jiff::SignedDuration::from_millis(30);
        clock.sleep_until(deadline, true).await;
        assert!(start.elapsed() >= std::time::Duration::from_millis(25));
        // A deadline in the past returns at once.
        clock.sleep_until(at("2000-01-01T00:00:00Z"), false).await;
    }
}
