//! Fault injection: make a provider slow, failing or garbled on request, deterministically.
//!
//! Tests and benchmarks use it to exercise the gateway's timeouts, retries, error mapping and
//! malformed-body handling against a real HTTP upstream. `POST /_sim/faults` adds or replaces
//! the fault of one provider (or `"*"` for all), `GET` lists, `DELETE` clears. The provider
//! middleware in `mod.rs` asks [`FaultTable::decide`] before each request and acts on the
//! [`Decision`].
//!
//! Selection is deterministic so that tests can assert exact sequences: with rate r, the k-th
//! request under a fault (k = 1, 2, ...) is selected when floor(k·r) > floor((k-1)·r); r = 0.5
//! selects every second request, r = 1 every request.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{lock, ApiError, Provider, SimState};

/// Longest latency a fault may inject: long enough for any timeout test, short enough that a
/// typo cannot hang a test run for hours.
const MAX_LATENCY_MS: u64 = 120_000;

/// A fault as posted to `POST /_sim/faults`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Provider name (message2give, chat_tonic, xenioo, connectycube, help_scout) or "*" for
    /// every provider. A provider's own fault takes precedence over "*".
    pub provider: String,
    /// Delay before answering, in milliseconds (applies to every request under the fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// HTTP status (400..=599) to answer instead of calling the handler, on selected requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Share of requests selected, in [0, 1]; 1.0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Answer selected requests (when no `status` is set) with 200 and an invalid JSON body.
    #[serde(default)]
    pub malformed: bool,
    /// `Retry-After` seconds sent with an injected status; absent: `1` on a 429, none on
    /// other statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Apply to this many requests, then remove the fault; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

impl FaultSpec {
    /// Checks the values serde cannot: a known provider, ranges of status, rate, latency, times.
    fn validate(&self) -> Result<(), String> {
        if self.provider != "*" && Provider::from_name(&self.provider).is_none() {
            return Err(format!(
                "unknown provider `{}`; expected one of message2give, chat_tonic, xenioo, connectycube, help_scout or *",
                self.provider
            ));
        }
        if let Some(status) = self.status {
            if !(400..=599).contains(&status) {
                return Err(format!("`status` must be in 400..=599, got {status}"));
            }
        }
        if let Some(rate) = self.error_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("`error_rate` must be in [0, 1], got {rate}"));
            }
        }
        if let Some(ms) = self.latency_ms {
            if ms > MAX_LATENCY_MS {
                return Err(format!(
                    "`latency_ms` must be at most {MAX_LATENCY_MS}, got {ms}"
                ));
            }
        }
        if self.times == Some(0) {
            return Err("`times` must be at least 1 (omit it for a permanent fault)".into());
        }
        Ok(())
    }
}

/// What the middleware must do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Call the handler normally.
    Pass,
    /// Answer this status (with this `Retry-After`, if any) and a JSON error body instead
    /// of calling the handler.
    Status(u16, Option<u64>),
    /// Answer 200 with an invalid JSON body instead of calling the handler.
    Malformed,
}

/// The fault table's verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Delay to apply before anything else.
    pub latency: Duration,
    /// What to answer after the delay.
    pub outcome: Outcome,
}

impl Decision {
    /// No fault: no delay, call the handler.
    pub const PASS: Decision = Decision {
        latency: Duration::ZERO,
        outcome: Outcome::Pass,
    };
}

#[derive(Debug)]
struct ActiveFault {
    spec: FaultSpec,
    /// Requests seen under this fault so far (the k of the selection rule).
    seen: u64,
}

/// The active faults, at most one per provider name (including "*").
#[derive(Debug, Default)]
pub struct FaultTable {
    faults: Mutex<Vec<ActiveFault>>,
}

impl FaultTable {
    /// Adds the fault, replacing any fault of the same provider (its counter restarts).
    pub fn set(&self, spec: FaultSpec) {
        let mut faults = lock(&self.faults);
        faults.retain(|f| f.spec.provider != spec.provider);
        faults.push(ActiveFault { spec, seen: 0 });
    }

    /// Removes every fault.
    pub fn clear(&self) {
        lock(&self.faults).clear();
    }

    /// The active faults with how many requests each has seen.
    pub fn list(&self) -> Vec<(FaultSpec, u64)> {
        lock(&self.faults)
            .iter()
            .map(|f| (f.spec.clone(), f.seen))
            .collect()
    }

    /// Counts one request to `provider` against its fault (or the "*" fault) and says what to
    /// do with it. A fault with `times` removes itself after its last request.
    pub fn decide(&self, provider: Provider) -> Decision {
        let mut faults = lock(&self.faults);
        let index = faults
            .iter()
            .position(|f| f.spec.provider == provider.name())
            .or_else(|| faults.iter().position(|f| f.spec.provider == "*"));
        let Some(index) = index else {
            return Decision::PASS;
        };
        let fault = &mut faults[index];
        fault.seen += 1;
        let k = fault.seen as f64;
        let rate = fault.spec.error_rate.unwrap_or(1.0);
        let selected = (k * rate).floor() > ((k - 1.0) * rate).floor();
        let outcome = match (selected, fault.spec.status, fault.spec.malformed) {
            (true, Some(status), _) => Outcome::Status(
                status,
                fault
                    .spec
                    .retry_after_secs
                    .or((status == StatusCode::TOO_MANY_REQUESTS.as_u16()).then_some(1)),
            ),
            (true, None, true) => Outcome::Malformed,
            _ => Outcome::Pass,
        };
        let latency = Duration::from_millis(fault.spec.latency_ms.unwrap_or(0));
        if fault.spec.times.is_some_and(|times| fault.seen >= times) {
            faults.remove(index);
        }
        Decision { latency, outcome }
    }
}

/// The response for an injected status: a JSON error body, and `Retry-After` when the fault
/// gives one (by default `1` on a 429, so the gateway's rate-limit path has something to
/// honour).
pub fn status_response(status: u16, retry_after_secs: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = json!({ "error": "injected fault", "status": code.as_u16() });
    let mut response = (code, Json(body)).into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The response for an injected malformed body: 200, JSON content type, truncated JSON.
pub fn malformed_response() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"injected":"malformed","data":[{"date":"2024-01-0"#,
    )
        .into_response()
}

/// `POST /_sim/faults`: body is a [`FaultSpec`]; 400 with a message when it is not valid.
pub(crate) async fn set(State(state): State<SimState>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return ApiError::bad_request(format!("invalid fault JSON: {e}")).into_response(),
    };
    if let Err(message) = spec.validate() {
        return ApiError::bad_request(message).into_response();
    }
    let listed = json!({ "fault": spec });
    state.faults().set(spec);
    (StatusCode::CREATED, Json(listed)).into_response()
}

/// `GET /_sim/faults`: `{"faults":[{...spec, "seen": n}]}`.
pub(crate) async fn list(State(state): State<SimState>) -> Response {
    let faults: Vec<_> = state
        .faults()
        .list()
        .into_iter()
        .map(|(spec, seen)| {
            let mut value = json!(spec);
            if let Some(object) = value.as_object_mut() {
                object.insert("seen".into(), seen.into());
            }
            value
        })
        .collect();
    Json(json!({ "faults": faults })).into_response()
}

/// `DELETE /_sim/faults`.
pub(crate) async fn clear(State(state): State<SimState>) -> Response {
    state.faults().clear();
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FaultSpec {
        serde_json::from_str(json).expect("valid test spec")
    }

    #[test]
    fn a_rate_of_one_half_selects_every_second_request() {
        let table = FaultTable::default();
        table.set(spec(
            r#"{"provider":"help_scout","status":503,"error_rate":0.5}"#,
        ));
        let outcomes: Vec<_> = (0..6)
            .map(|_| table.decide(Provider::HelpScout).outcome)
            .collect();
        let s = Outcome::Status(503, None);
        let p = Outcome::Pass;
        assert_eq!(outcomes, vec![p, s, p, s, p, s]);
    }

    #[test]
    fn a_fault_with_times_removes_itself_after_that_many_requests() {
        let table = FaultTable::default();
        table.set(spec(r#"{"provider":"xenioo","status":500,"times":2}"#));
        assert_eq!(
            table.decide(Provider::Xenioo).outcome,
            Outcome::Status(500, None)
        );
        assert_eq!(
            table.decide(Provider::Xenioo).outcome,
            Outcome::Status(500, None)
        );
        assert_eq!(table.decide(Provider::Xenioo).outcome, Outcome::Pass);
        assert!(table.list().is_empty());
    }

    #[test]
    fn a_provider_fault_wins_over_the_wildcard_and_others_are_untouched() {
        let table = FaultTable::default();
        table.set(spec(r#"{"provider":"*","latency_ms":5}"#));
        table.set(spec(r#"{"provider":"connectycube","malformed":true}"#));
        let cc = table.decide(Provider::ConnectyCube);
        assert_eq!(cc.outcome, Outcome::Malformed);
        assert_eq!(cc.latency, Duration::ZERO);
        let hs = table.decide(Provider::HelpScout);
        assert_eq!(
            hs,
            Decision {
                latency: Duration::from_millis(5),
                outcome: Outcome::Pass
            }
        );
    }

    #[test]
    fn setting_a_fault_again_replaces_it() {
        let table = FaultTable::default();
        table.set(spec(r#"{"provider":"xenioo","status":500}"#));
        table.set(spec(r#"{"provider":"xenioo","status":502}"#));
        assert_eq!(table.list().len(), 1);
        assert_eq!(
            table.decide(Provider::Xenioo).outcome,
            Outcome::Status(502, None)
        );
    }

    #[test]
    fn a_status_fault_carries_its_retry_after_and_a_429_defaults_to_one_second() {
        let table = FaultTable::default();
        table.set(spec(
            r#"{"provider":"help_scout","status":503,"retry_after_secs":7}"#,
        ));
        table.set(spec(r#"{"provider":"xenioo","status":429}"#));
        assert_eq!(
            table.decide(Provider::HelpScout).outcome,
            Outcome::Status(503, Some(7))
        );
        assert_eq!(
            table.decide(Provider::Xenioo).outcome,
            Outcome::Status(429, Some(1))
        );
        let response = status_response(503, Some(7));
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn invalid_specs_are_rejected_with_a_reason() {
        for (json, needle) in [
            (r#"{"provider":"nope"}"#, "unknown provider"),
            (r#"{"provider":"xenioo","status":200}"#, "status"),
            (r#"{"provider":"xenioo","error_rate":1.5}"#, "error_rate"),
            (r#"{"provider":"xenioo","times":0}"#, "times"),
        ] {
            let err = spec(json).validate().expect_err(json);
            assert!(err.contains(needle), "{err}");
        }
        assert!(serde_json::from_str::<FaultSpec>(r#"{"provider":"x","oops":1}"#).is_err());
    }
}
