//! The call log: every request the simulated upstreams answered, in order.
//!
//! Tests and benchmarks read it to measure what the gateway really sent upstream (how many
//! calls, which parameters, which were faulted). It is exposed over HTTP
//! (`GET /_sim/calls`, `DELETE /_sim/calls`) for out-of-process users and through
//! `SimState::calls` / `SimState::clear_calls` for in-process tests.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{lock, SimState};

/// One answered request under a provider prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    /// Provider name: message2give, chat_tonic, xenioo, connectycube or help_scout.
    pub provider: &'static str,
    /// HTTP method, e.g. "GET".
    pub method: String,
    /// Path without the provider prefix, e.g. "/v2/reports/conversations/volume-by-channel".
    pub path: String,
    /// The raw query string, as sent (empty when there was none).
    pub query: String,
    /// The query parameters, percent-decoded, in order (repeated names appear repeatedly).
    pub params: Vec<(String, String)>,
    /// The status the sandbox answered (including statuses injected by faults).
    pub status: u16,
    /// When the call arrived, in microseconds since the sandbox started.
    pub started_us: u64,
    /// When its answer was ready (injected latency included), on the same clock.
    pub ended_us: u64,
}

/// The most calls to `provider` that were being answered at the same moment, from the logged
/// start and end of each: two calls overlap when each started before the other ended.
pub fn most_in_flight(calls: &[Call], provider: &str) -> usize {
    let mut edges: Vec<(u64, i8)> = calls
        .iter()
        .filter(|call| call.provider == provider)
        .flat_map(|call| [(call.started_us, 1), (call.ended_us, -1)])
        .collect();
    // At equal times an end sorts before a start: a call that ends as another starts did not
    // overlap it.
    edges.sort_unstable();
    let (mut now, mut most) = (0usize, 0usize);
    for (_, edge) in edges {
        if edge > 0 {
            now += 1;
            most = most.max(now);
        } else {
            now = now.saturating_sub(1);
        }
    }
    most
}

/// How many calls the log keeps by default: plenty for any test, and a bound on memory when a
/// load benchmark runs for a long time (the per-provider counts stay exact regardless).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The calls so far (the most recent `capacity` of them) and exact per-provider counts,
/// shared by all connections.
///
/// A `std::sync::Mutex` rather than Tokio's: the lock is held for a push or a clone, never
/// across an `.await`.
#[derive(Debug)]
pub struct CallLog {
    capacity: usize,
    inner: Mutex<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    calls: VecDeque<Call>,
    /// Per provider, in the order of its first call since the last clear.
    counts: Vec<(&'static str, u64)>,
}

impl Default for CallLog {
    fn default() -> Self {
        CallLog::with_capacity(DEFAULT_CAPACITY)
    }
}

impl CallLog {
    /// A log that keeps the latest `capacity` calls (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        CallLog {
            capacity: capacity.max(1),
            inner: Mutex::new(LogInner::default()),
        }
    }

    /// Appends a call, dropping the oldest one when the log is full.
    pub fn record(&self, call: Call) {
        let mut inner = lock(&self.inner);
        match inner.counts.iter_mut().find(|(p, _)| *p == call.provider) {
            Some((_, n)) => *n += 1,
            None => inner.counts.push((call.provider, 1)),
        }
        if inner.calls.len() == self.capacity {
            inner.calls.pop_front();
        }
        inner.calls.push_back(call);
    }

    /// A copy of the kept calls, oldest first.
    pub fn snapshot(&self) -> Vec<Call> {
        lock(&self.inner).calls.iter().cloned().collect()
    }

    /// Calls per provider since the last clear (exact even when old calls were dropped),
    /// providers in the order of their first call.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        lock(&self.inner).counts.clone()
    }

    /// Forgets every call and count.
    pub fn clear(&self) {
        let mut inner = lock(&self.inner);
        inner.calls.clear();
        inner.counts.clear();
    }
}

/// The JSON body of `GET /_sim/calls`: `{"calls":[...],"counts":{"help_scout":3,...}}`
/// (providers without calls are absent from `counts`).
pub fn calls_body(calls: &[Call], counts: &[(&'static str, u64)]) -> Value {
    let counts: Map<String, Value> = counts
        .iter()
        .map(|(provider, n)| ((*provider).to_string(), Value::from(*n)))
        .collect();
    json!({ "calls": calls, "counts": counts })
}

/// `GET /_sim/calls`.
pub(crate) async fn list(State(state): State<SimState>) -> Response {
    Json(calls_body(&state.calls(), &state.call_counts())).into_response()
}

/// `DELETE /_sim/calls`.
pub(crate) async fn clear(State(state): State<SimState>) -> Response {
    state.clear_calls();
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(provider: &'static str, status: u16) -> Call {
        Call {
            provider,
            method: "GET".into(),
            path: "/x".into(),
            query: "a=1".into(),
            params: vec![("a".into(), "1".into())],
            status,
            started_us: 0,
            ended_us: 0,
        }
    }

    fn timed(provider: &'static str, started_us: u64, ended_us: u64) -> Call {
        Call {
            started_us,
            ended_us,
            ..call(provider, 200)
        }
    }

    #[test]
    fn the_most_in_flight_counts_only_calls_that_overlap_and_only_for_one_provider() {
        let calls = [
            timed("help_scout", 0, 10),
            timed("help_scout", 5, 15),
            timed("help_scout", 10, 20),
            timed("help_scout", 12, 13),
            timed("xenioo", 6, 7),
            timed("help_scout", 30, 40),
        ];
        // At 12: the calls of 5-15, 10-20 and 12-13; the one of 0-10 ended as 10-20 began.
        assert_eq!(most_in_flight(&calls, "help_scout"), 3);
        assert_eq!(most_in_flight(&calls, "xenioo"), 1);
        assert_eq!(most_in_flight(&calls, "connectycube"), 0);
    }

    #[test]
    fn the_log_counts_calls_per_provider_in_first_seen_order() {
        let log = CallLog::default();
        log.record(call("help_scout", 200));
        log.record(call("connectycube", 200));
        log.record(call("help_scout", 503));
        let body = calls_body(&log.snapshot(), &log.counts());
        assert_eq!(
            body["counts"].to_string(),
            r#"{"help_scout":2,"connectycube":1}"#
        );
        assert_eq!(body["calls"][2]["status"], 503);
        assert_eq!(body["calls"][0]["params"], json!([["a", "1"]]));
    }

    #[test]
    fn a_full_log_keeps_the_latest_calls_and_exact_counts() {
        let log = CallLog::with_capacity(2);
        log.record(call("xenioo", 200));
        log.record(call("xenioo", 429));
        log.record(call("help_scout", 401));
        let statuses: Vec<u16> = log.snapshot().iter().map(|c| c.status).collect();
        assert_eq!(statuses, vec![429, 401]);
        assert_eq!(log.counts(), vec![("xenioo", 2), ("help_scout", 1)]);
    }

    #[test]
    fn clearing_the_log_forgets_every_call() {
        let log = CallLog::default();
        log.record(call("xenioo", 200));
        assert_eq!(log.snapshot().len(), 1);
        log.clear();
        assert!(log.snapshot().is_empty());
        assert!(log.counts().is_empty());
    }
}
