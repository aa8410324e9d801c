//! How long requests to an S3 store keep being retried: a time budget, not a count.
//!
//! A server restart refuses connections, drops the requests in flight and may answer 503 for
//! anything from a second to a minute or two. A retry *count* says nothing about how long that
//! covers (ten retries of a backoff starting at 250 ms gave up after 4 s), so each request is
//! retried until it succeeds, fails for good (a 4xx answer: wrong credentials, no such bucket
//! or object), or the budget of time since it was first sent runs out; `max-retries` stays as
//! an optional cap on the count, for quick probes.
//!
//! Two layers share the budget:
//!
//! - `object_store` retries each HTTP request ([`RetryBudget::object_store_config`]): connection
//!   errors (a refused connection during a restart), 5xx, 429 and 408 answers, timeouts and
//!   dropped connections of idempotent requests (GET, HEAD, PUT, part uploads), and a GET body
//!   cut off mid-stream. Its backoff is exponential with decorrelated jitter (each delay drawn
//!   between [`FIRST_DELAY`] and [`GROWTH`] times the previous one), capped at [`MAX_DELAY`].
//!   The budget is its `retry_timeout`, and its `max_retries` is a count that cannot be
//!   reached within the budget (every delay is at least [`FIRST_DELAY`]), so time is what
//!   stops it.
//! - [`crate::retrying::Retrying`] retries whole operations that failed in transit where
//!   `object_store` does not retry: a delete (a `POST ?delete` on S3, which `object_store`
//!   does not retry once sent) or a multipart upload's creation that timed out or lost its
//!   connection, a listing whose body was cut off (resumed after the last key it returned).
//!   It retries only operations that are safe to repeat, within the same budget, counted from
//!   the start of the operation, and marks an error that came after the budget ran out as
//!   such ([`OutOfBudget`]).
//!
//! The default budget, [`DEFAULT_BUDGET`], rides out a restart or a failover of the server; a
//! longer one helps a backup little, since a writer whose lease could not be rewritten for
//! 150 s refuses to commit (see `blockvault_vault`'s leases).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use object_store::client::{HttpError, HttpErrorKind};
use object_store::{BackoffConfig, RetryConfig};

/// The default time a request is retried for.
pub(crate) const DEFAULT_BUDGET: Duration = Duration::from_secs(90);

/// The first delay before a retry.
pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(100);

/// The longest delay between two tries of a request: once the server is back, a request goes
/// through within this time.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5);

/// Each delay is drawn between [`FIRST_DELAY`] and this many times the previous delay.
pub(crate) const GROWTH: f64 = 3.0;

/// How long, and how often, failed requests to an S3 store are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryBudget {
    /// How long after its first try a request is last retried.
    pub total: Duration,
    /// At most this many retries of a request, whatever the time left (none by default).
    pub max_retries: Option<usize>,
}

impl Default for RetryBudget {
    fn default() -> RetryBudget {
        RetryBudget {
            total: DEFAULT_BUDGET,
            max_retries: None,
        }
    }
}

impl RetryBudget {
    /// The retry settings of `object_store`'s HTTP client for this budget.
    pub(crate) fn object_store_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: FIRST_DELAY,
                max_backoff: self.max_delay(),
                base: GROWTH,
            },
            max_retries: self.max_retries.unwrap_or_else(|| self.unreachable_count()),
            retry_timeout: self.total,
        }
    }

    /// The cap on one delay: [`MAX_DELAY`], or a quarter of a short budget, so that a budget
    /// of a few seconds still tries several times.
    pub(crate) fn max_delay(&self) -> Duration {
        MAX_DELAY.min(self.total / 4).max(FIRST_DELAY)
    }

    /// More retries than fit in the budget: every delay is at least [`FIRST_DELAY`].
    fn unreachable_count(&self) -> usize {
        let count = self.total.as_millis() / FIRST_DELAY.as_millis() + 2;
        usize::try_from(count).unwrap_or(usize::MAX)
    }

    /// The delay before one more retry, `elapsed` since the operation began and `retries`
    /// made so far; none once the budget is spent (or the count reached). The last retry
    /// comes when the budget ends, however long the next delay would have been.
    pub(crate) fn next_delay(
        &self,
        backoff: &mut Backoff,
        elapsed: Duration,
        retries: usize,
    ) -> Option<Duration> {
        if elapsed >= self.total || self.max_retries.is_some_and(|max| retries >= max) {
            return None;
        }
        Some(backoff.next().min(self.total - elapsed))
    }

    /// `error`, marked as the last of a run of retries that used up the budget when it came
    /// `elapsed` after the operation began. Other errors (a 404, a 403) are returned as they
    /// are, so that callers still tell "missing" from "refused".
    pub(crate) fn give_up(
        &self,
        error: object_store::Error,
        elapsed: Duration,
    ) -> object_store::Error {
        match error {
            object_store::Error::Generic { store, source } if elapsed >= self.total => {
                object_store::Error::Generic {
                    store,
                    source: Box::new(OutOfBudget {
                        budget: self.total,
                        elapsed,
                        cause: root_cause(source.as_ref()),
                        source,
                    }),
                }
            }
            error => error,
        }
    }
}

/// The last error of a request retried for the whole budget.
#[derive(Debug, thiserror::Error)]
#[error(
    "no successful answer from the S3 server in {elapsed:.1?} of retries ({cause}; the retry \
     budget is {budget:?}: retry-budget-secs in s3.toml, or BLOCKVAULT_S3_RETRY_BUDGET_SECS); \
     last error: {source}"
)]
pub(crate) struct OutOfBudget {
    pub(crate) budget: Duration,
    pub(crate) elapsed: Duration,
    /// What the last try met, in the plainest words the chain has ("Connection refused").
    cause: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The message of the innermost error of `error`'s chain: "Connection refused (os error
/// 111)" where the outer ones say "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

/// Whether `error` is a failure in transit that the same request may not meet again: no
/// connection, a timeout, a connection dropped mid-request or mid-answer. Not a 4xx answer,
/// nor a TLS or other error of unknown kind.
pub(crate) fn in_transit(error: &object_store::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Decode
            );
        }
        current = e.source();
    }
    false
}

/// Exponential backoff with decorrelated jitter, as `object_store`'s: the first delay is
/// [`FIRST_DELAY`], each next one drawn between it and [`GROWTH`] times the previous one,
/// capped.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    state: u64,
}

impl Backoff {
    pub(crate) fn new(budget: &RetryBudget) -> Backoff {
        // A seed that differs between processes and calls, so that clients that failed
        // together do not retry in step.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Backoff {
            next: FIRST_DELAY,
            max: budget.max_delay(),
            state: seed | 1,
        }
    }

    /// The delay before the next try.
    pub(crate) fn next(&mut self) -> Duration {
        let delay = self.next;
        let low = FIRST_DELAY.as_secs_f64();
        let high = (delay.as_secs_f64() * GROWTH).max(low);
        let drawn = low + (high - low) * self.uniform();
        self.next = Duration::from_secs_f64(drawn).min(self.max);
        delay
    }

    /// A number in [0, 1) (xorshift64).
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(kind: HttpErrorKind) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                kind,
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            )),
        }
    }

    #[test]
    fn the_budget_not_the_count_stops_object_stores_retries() {
        let budget = RetryBudget::default();
        let config = budget.object_store_config();
        assert_eq!(config.retry_timeout, DEFAULT_BUDGET);
        // Even back to back at the shortest delay, the retries of 90 s outnumber no cap.
        let shortest_run = FIRST_DELAY * u32::try_from(config.max_retries).expect("count");
        assert!(shortest_run > DEFAULT_BUDGET, "{}", config.max_retries);
        assert_eq!(config.backoff.max_backoff, MAX_DELAY);
        let capped = RetryBudget {
            max_retries: Some(1),
            ..budget
        };
        assert_eq!(capped.object_store_config().max_retries, 1);
        let short = RetryBudget {
            total: Duration::from_secs(2),
            max_retries: None,
        };
        assert_eq!(short.max_delay(), Duration::from_millis(500));
    }

    #[test]
    fn delays_grow_with_jitter_up_to_the_cap() {
        let budget = RetryBudget::default();
        let mut backoff = Backoff::new(&budget);
        let delays: Vec<Duration> = (0..40).map(|_| backoff.next()).collect();
        assert_eq!(delays[0], FIRST_DELAY);
        assert!(delays.iter().all(|d| *d >= FIRST_DELAY && *d <= MAX_DELAY));
        let total: Duration = delays.iter().sum();
        // 40 delays of a 5 s cap: most of them near it, so far more than 40 short ones.
        assert!(total > Duration::from_secs(40), "{total:?}");
        let mut other = Backoff::new(&budget);
        let others: Vec<Duration> = (0..40).map(|_| other.next()).collect();
        assert_ne!(delays, others, "two clients do not retry in step");
    }

    #[test]
    fn only_failures_in_transit_are_retried() {
        for kind in [
            HttpErrorKind::Connect,
            HttpErrorKind::Request,
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
            HttpErrorKind::Decode,
        ] {
            assert!(in_transit(&transient(kind)), "{kind:?}");
        }
        assert!(!in_transit(&transient(HttpErrorKind::Unknown)));
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: "404".into(),
        };
        assert!(!in_transit(&missing));
    }

    #[test]
    fn an_error_after_the_budget_says_so_and_a_missing_object_stays_missing() {
        let budget = RetryBudget {
            total: Duration::from_secs(3),
            max_retries: None,
        };
        let early = budget.give_up(transient(HttpErrorKind::Connect), Duration::from_secs(1));
        assert!(!early.to_string().contains("retry budget"), "{early}");
        let late = budget.give_up(transient(HttpErrorKind::Connect), Duration::from_secs(3));
        let text = late.to_string();
        assert!(
            text.contains("(connection refused; the retry budget"),
            "{text}"
        );
        assert!(
            text.contains("retry budget is 3s") && text.contains("BLOCKVAULT_S3_RETRY_BUDGET_SECS"),
            "{text}"
        );
        assert!(in_transit(&late), "the cause stays in the chain");
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: "404".into(),
        };
        assert!(matches!(
            budget.give_up(missing, Duration::from_secs(9)),
            object_store::Error::NotFound { .. }
        ));
        let mut backoff = Backoff::new(&budget);
        let last = budget.next_delay(&mut backoff, Duration::from_millis(2950), 100);
        assert_eq!(
            last,
            Some(Duration::from_millis(50)),
            "the last try at the end"
        );
        assert_eq!(budget.next_delay(&mut backoff, budget.total, 0), None);
        let counted = RetryBudget {
            max_retries: Some(2),
            ..budget
        };
        assert!(
            counted
                .next_delay(&mut backoff, Duration::ZERO, 1)
                .is_some()
        );
        assert_eq!(counted.next_delay(&mut backoff, Duration::ZERO, 2), None);
    }
}
