//! Resilience of upstream calls (SPEC §4.7): the retry policy with its backoff and budget,
//! and the circuit breaker of one provider account. [`crate::providers::upstream::Upstream`]
//! is the one user; this module holds the decisions, free of HTTP, so they are unit-tested
//! with a [`ManualClock`] instead of the wall clock.
//!
//! - **Retries** are for idempotent GETs only, on connection errors, 5xx and 429; never for a
//!   call with a side effect (the Chat-Tonic NPS export, the Help Scout token POST) nor for
//!   Xenioo, whose throttle allows one call per interval: a retry would be a second call.
//!   Timeouts are not retried either: the upstream may still be working on the request, and
//!   the timeout already bounds how long a query waits.
//! - **Backoff**: the n-th retry waits `base * 2^n` with "equal jitter" (half fixed, half
//!   random), or the upstream's `Retry-After`; the waits of one call add up to at most
//!   `upstream_retry_max_wait_ms`, and a longer `Retry-After` fails the call at once.
//! - **Budget**: per account, retries over the last [`BUDGET_WINDOW`] may not exceed
//!   `percent` of the calls plus a small floor, so a failing upstream sees at most
//!   `1 + percent/100` times its normal traffic.
//! - **Circuit breaker**: per account; opens after `threshold` consecutive failed calls;
//!   while open, calls fail fast with `UPSTREAM_UNAVAILABLE` and `retryAfter`; after the
//!   cooldown ONE probe call goes through (half-open); its success closes the circuit, its
//!   failure re-opens it. What counts is decided by [`Verdict::of`]: a failure is what a
//!   broken upstream does (timeout, connection error, 5xx after retries, a body chatstats
//!   cannot read); a success is a served request; a 429 or another 4xx (401 included: a
//!   configuration fault no cooldown cures) is neither and leaves the count alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LimitsConfig;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::process_metrics::{CircuitGauge, CircuitState};

/// The window of the retry budget.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Retries always allowed per budget window, so a quiet account can still retry.
pub const BUDGET_FLOOR: u32 = 3;

/// A source of monotonic time; injectable so tests can step it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *lock(&self.offset) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *lock(&self.offset)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The retry settings of `[limits]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub max_wait: Duration,
    pub budget_percent: u32,
}

impl RetryPolicy {
    pub fn from_limits(limits: &LimitsConfig) -> Self {
        Self {
            max_retries: limits.upstream_max_retries,
            backoff_base: Duration::from_millis(limits.upstream_retry_backoff_ms),
            max_wait: Duration::from_millis(limits.upstream_retry_max_wait_ms),
            budget_percent: limits.upstream_retry_budget_percent,
        }
    }

    /// No retries at all (clients built outside [`crate::app::App`], e.g. unit tests).
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            backoff_base: Duration::from_millis(100),
            max_wait: Duration::ZERO,
            budget_percent: 0,
        }
    }

    /// The wait before retry number `retry` (0-based): `base * 2^retry`, half of it random.
    pub fn backoff(&self, retry: u32) -> Duration {
        let full = self
            .backoff_base
            .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX));
        let half = full / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in [0, 1), from a process-wide xorshift: jitter needs spread, not secrecy.
fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Per-account retry budget over a sliding window.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u32,
    clock: Arc<dyn Clock>,
    /// (when, is_retry) of the calls and retries inside the window, oldest first.
    events: Mutex<VecDeque<(Instant, bool)>>,
}

impl RetryBudget {
    pub fn new(percent: u32, clock: Arc<dyn Clock>) -> Self {
        Self {
            percent,
            clock,
            events: Mutex::new(VecDeque::new()),
        }
    }

    fn prune(&self, events: &mut VecDeque<(Instant, bool)>, now: Instant) {
        while events
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > BUDGET_WINDOW)
        {
            events.pop_front();
        }
    }

    /// Count one call (a first attempt).
    pub fn record_call(&self) {
        let now = self.clock.now();
        let mut events = lock(&self.events);
        self.prune(&mut events, now);
        events.push_back((now, false));
    }

    /// Take one retry from the budget; false when it is spent.
    pub fn try_retry(&self) -> bool {
        let now = self.clock.now();
        let mut events = lock(&self.events);
        self.prune(&mut events, now);
        let calls = events.iter().filter(|(_, retry)| !retry).count() as u64;
        let retries = events.iter().filter(|(_, retry)| *retry).count() as u64;
        let allowed = u64::from(BUDGET_FLOOR) + calls * u64::from(self.percent) / 100;
        if retries < allowed {
            events.push_back((now, true));
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, failures: u32 },
    HalfOpen { failures: u32 },
}

/// What one finished call says about its upstream's availability, for the breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request was served: the circuit closes and the count of failures restarts.
    Served,
    /// The upstream failed as a broken one does; the description (credential-free words,
    /// shown to clients while the circuit is open) says how.
    Failed(String),
    /// The upstream answered, but the answer says nothing about whether it serves requests:
    /// a 429 (it is up and asks us to slow down; the client gets `UPSTREAM_THROTTLED` with the
    /// upstream's own `retryAfter`) or another 4xx (a refused credential or plan, an unknown
    /// account or a request it rejects). The count of consecutive failures is left as it was,
    /// so a 4xx can neither open a circuit (one client's bad request must not cut every
    /// client off) nor close one; an inconclusive probe lets the next call probe.
    Inconclusive,
}

impl Verdict {
    /// The verdict on a call's final result (after its retries).
    pub fn of<T>(result: &Result<T, UpstreamError>) -> Verdict {
        let Err(error) = result else {
            return Verdict::Served;
        };
        match &error.kind {
            UpstreamErrorKind::Unavailable(what) => Verdict::Failed(what.clone()),
            // Garbage with a 200 (an error page, a truncated or oversized body) is a broken
            // upstream: every caller of the account would get the same.
            UpstreamErrorKind::Invalid(what) => Verdict::Failed(format!("an unreadable body: {what}")),
            UpstreamErrorKind::Throttled { .. }
            | UpstreamErrorKind::Rejected { .. }
            | UpstreamErrorKind::OutOfRetention(_)
            // Not made by a permitted call; listed so a new kind must be classified here.
            | UpstreamErrorKind::CircuitOpen { .. }
            | UpstreamErrorKind::WaitingForNextCall { .. }
            | UpstreamErrorKind::NotConfigured => Verdict::Inconclusive,
        }
    }
}

/// Why the breaker refused a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The consecutive failures that opened the circuit.
    pub failures: u32,
    /// What the latest of them was, e.g. "HTTP 503 on all 3 attempts (2 retries)".
    pub last: String,
    /// Until the next probe may go (whole seconds, at least 1).
    pub retry_after_secs: u64,
}

/// Permission to make one call; report its outcome with [`CircuitBreaker::record`]. A permit
/// dropped unreported (a cancelled probe) frees the probe slot for the next caller.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    reported: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            let mut state = lock(&self.breaker.state);
            if let State::HalfOpen { failures } = *state {
                // Let the next caller probe at once.
                *state = State::Open {
                    until: self.breaker.clock.now(),
                    failures,
                };
                self.breaker.gauge.set(CircuitState::Open);
            }
        }
    }
}

/// The circuit breaker of one provider account.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// The latest failure's description, for the fail-fast message.
    last: Mutex<String>,
    gauge: Arc<CircuitGauge>,
}

impl CircuitBreaker {
    pub fn new(
        threshold: u32,
        cooldown: Duration,
        clock: Arc<dyn Clock>,
        gauge: Arc<CircuitGauge>,
    ) -> Arc<Self> {
        gauge.set(CircuitState::Closed);
        Arc::new(Self {
            threshold: threshold.max(1),
            cooldown,
            clock,
            state: Mutex::new(State::Closed { failures: 0 }),
            last: Mutex::new(String::new()),
            gauge,
        })
    }

    /// May a call go now? While open: no, until the cooldown has passed; then exactly one
    /// caller gets a probe permit and the others are refused until its outcome is known.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Refused> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let permit = |probe| Permit {
            breaker: Arc::clone(self),
            probe,
            reported: false,
        };
        match *state {
            State::Closed { .. } => Ok(permit(false)),
            State::Open { until, failures } if now >= until => {
                *state = State::HalfOpen { failures };
                self.gauge.set(CircuitState::HalfOpen);
                Ok(permit(true))
            }
            State::Open { until, failures } => Err(Refused {
                failures,
                last: lock(&self.last).clone(),
                retry_after_secs: whole_secs(until.saturating_duration_since(now)),
            }),
            State::HalfOpen { failures } => Err(Refused {
                failures,
                last: lock(&self.last).clone(),
                retry_after_secs: whole_secs(self.cooldown),
            }),
        }
    }

    /// The outcome of a permitted call (see [`Verdict`]).
    pub fn record(&self, mut permit: Permit, verdict: Verdict) {
        permit.reported = true;
        let failed = match verdict {
            Verdict::Served => false,
            Verdict::Failed(what) => {
                *lock(&self.last) = what;
                true
            }
            Verdict::Inconclusive => {
                let mut state = lock(&self.state);
                if let (State::HalfOpen { failures }, true) = (*state, permit.probe) {
                    // As for a dropped probe: the next caller probes at once.
                    *state = State::Open {
                        until: self.clock.now(),
                        failures,
                    };
                    self.gauge.set(CircuitState::Open);
                }
                return;
            }
        };
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let next = match (*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (State::Closed { failures }, true) => State::Open {
                until: now + self.cooldown,
                failures: failures + 1,
            },
            (State::HalfOpen { failures } | State::Open { failures, .. }, true) => State::Open {
                until: now + self.cooldown,
                failures: failures + 1,
            },
        };
        *state = next;
        self.gauge.set(match next {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        });
    }

    /// The current state, for the gauge and tests.
    pub fn state(&self) -> CircuitState {
        match *lock(&self.state) {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// Whole seconds, rounded up, at least 1 (a client retrying after it must find the state moved).
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cooldown: Duration) -> (Arc<CircuitBreaker>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let breaker = CircuitBreaker::new(
            threshold,
            cooldown,
            clock.clone(),
            Arc::new(CircuitGauge::default()),
        );
        (breaker, clock)
    }

    fn fail(breaker: &Arc<CircuitBreaker>) {
        let permit = breaker.admit().expect("admitted");
        breaker.record(permit, Verdict::Failed("HTTP 503".into()));
    }

    fn finish(breaker: &Arc<CircuitBreaker>, kind: UpstreamErrorKind) {
        let permit = breaker.admit().expect("admitted");
        let result: Result<(), UpstreamError> = Err(UpstreamError::new(
            crate::providers::Provider::HelpScout,
            kind,
        ));
        breaker.record(permit, Verdict::of(&result));
    }

    fn rejected(status: u16) -> UpstreamErrorKind {
        UpstreamErrorKind::Rejected {
            status,
            reason: "refused".into(),
        }
    }

    #[test]
    fn the_circuit_opens_after_the_threshold_and_refuses_until_the_cooldown() {
        let (breaker, clock) = breaker(3, Duration::from_secs(30));
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Closed);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        let refused = breaker.admit().expect_err("open");
        assert_eq!(
            refused,
            Refused {
                failures: 3,
                last: "HTTP 503".into(),
                retry_after_secs: 30
            }
        );
        clock.advance(Duration::from_millis(29_500));
        assert_eq!(breaker.admit().expect_err("still open").retry_after_secs, 1);
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let (breaker, _) = breaker(2, Duration::from_secs(1));
        fail(&breaker);
        let permit = breaker.admit().expect("admitted");
        breaker.record(permit, Verdict::Served);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn an_unreadable_body_is_a_failed_call() {
        let (breaker, _) = breaker(2, Duration::from_secs(30));
        finish(
            &breaker,
            UpstreamErrorKind::Invalid("malformed JSON".into()),
        );
        assert_eq!(breaker.state(), CircuitState::Closed);
        finish(
            &breaker,
            UpstreamErrorKind::Invalid("malformed JSON".into()),
        );
        assert_eq!(breaker.state(), CircuitState::Open);
        let refused = breaker.admit().expect_err("open");
        assert_eq!(refused.failures, 2);
        assert!(refused.last.contains("unreadable body"), "{}", refused.last);
    }

    #[test]
    fn a_429_or_another_4xx_neither_counts_as_a_failure_nor_resets_the_count() {
        let (breaker, _) = breaker(2, Duration::from_secs(30));
        fail(&breaker);
        for kind in [
            UpstreamErrorKind::Throttled {
                retry_after_secs: 60,
            },
            rejected(401),
            rejected(403),
            rejected(404),
            rejected(400),
        ] {
            finish(&breaker, kind.clone());
            assert_eq!(breaker.state(), CircuitState::Closed, "{kind:?}");
        }
        fail(&breaker);
        assert_eq!(
            breaker.state(),
            CircuitState::Open,
            "the failure before the 4xx answers still counted"
        );
    }

    #[test]
    fn an_inconclusive_probe_lets_the_next_call_probe_without_closing() {
        let (breaker, clock) = breaker(1, Duration::from_secs(10));
        fail(&breaker);
        clock.advance(Duration::from_secs(10));
        finish(&breaker, rejected(401));
        assert_eq!(breaker.state(), CircuitState::Open, "not closed by a 401");
        let probe = breaker.admit().expect("the next call probes at once");
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        breaker.record(probe, Verdict::Served);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_and_its_outcome_decides() {
        let (breaker, clock) = breaker(1, Duration::from_secs(10));
        fail(&breaker);
        clock.advance(Duration::from_secs(10));
        let probe = breaker.admit().expect("the probe");
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(breaker.admit().is_err(), "only one probe at a time");
        breaker.record(probe, Verdict::Failed("HTTP 503".into()));
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(breaker.admit().is_err(), "re-opened for a new cooldown");
        clock.advance(Duration::from_secs(10));
        let probe = breaker.admit().expect("the next probe");
        breaker.record(probe, Verdict::Served);
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn a_dropped_probe_lets_the_next_caller_probe() {
        let (breaker, clock) = breaker(1, Duration::from_secs(10));
        fail(&breaker);
        clock.advance(Duration::from_secs(10));
        drop(breaker.admit().expect("the probe"));
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn the_budget_allows_a_floor_plus_a_share_of_calls_over_a_sliding_window() {
        let clock = Arc::new(ManualClock::default());
        let budget = RetryBudget::new(20, clock.clone());
        for _ in 0..10 {
            budget.record_call();
        }
        // 3 (floor) + 20% of 10 = 5.
        let granted = (0..10).filter(|_| budget.try_retry()).count();
        assert_eq!(granted, 5);
        clock.advance(BUDGET_WINDOW + Duration::from_millis(1));
        budget.record_call();
        assert_eq!((0..10).filter(|_| budget.try_retry()).count(), 3);
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_in_the_upper_half() {
        let policy = RetryPolicy {
            max_retries: 2,
            backoff_base: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
            budget_percent: 20,
        };
        for retry in 0..4 {
            let full = Duration::from_millis(100 << retry);
            for _ in 0..50 {
                let wait = policy.backoff(retry);
                assert!(
                    wait >= full / 2 && wait <= full,
                    "{wait:?} for retry {retry}"
                );
            }
        }
    }
}
