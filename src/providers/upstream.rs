//! What every provider client shares: one GET/POST with a JSON answer, the mapping of transport
//! failures and HTTP statuses onto [`UpstreamErrorKind`], a cap on body size, the health
//! record behind `Workspace.sources`, the resilience of every call (timeouts, retries with
//! backoff and a budget, the circuit breaker: see [`crate::resilience`]) with its metrics, and
//! the cap on calls in flight towards each provider ([`ConcurrencyCaps`]).
//!
//! Error messages are built from status codes and our own words only: reqwest's own error text
//! contains the request URL, and upstream bodies may echo credentials, so neither is ever shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::config::LimitsConfig;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::process_metrics::Metrics;
use crate::providers::Provider;
use crate::resilience::{CircuitBreaker, Clock, RetryBudget, RetryPolicy, SystemClock, Verdict};
use crate::telemetry::traces::{RequestTrace, UpstreamCall};

/// Bodies larger than this are refused as `UPSTREAM_INVALID` rather than buffered: a
/// misbehaving upstream must not be able to exhaust our memory.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long to wait before retrying when a 429 carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER_SECS: u64 = 60;

/// The last known state of one provider account, shown in `Workspace.sources`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

impl Health {
    /// Healthy until the most recent call failed.
    pub fn healthy(&self) -> bool {
        match (self.last_success_at, self.last_error_at) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(ok), Some(err)) => ok >= err,
        }
    }
}

/// The cap on upstream calls in flight towards each provider (`[limits] upstream_concurrency`
/// and its per-provider overrides): one semaphore per provider, shared by the [`Upstream`] of
/// every account on that provider, so a query that fans out over a thousand accounts keeps at
/// most the cap in flight towards the provider and queues the rest (first come, first served).
/// Built once per [`crate::app::App`].
#[derive(Debug)]
pub struct ConcurrencyCaps {
    limits: LimitsConfig,
    // A std mutex: held only while [`crate::app::App::build`] installs accounts.
    by_provider: Mutex<HashMap<Provider, Arc<Semaphore>>>,
}

impl ConcurrencyCaps {
    pub fn from_limits(limits: &LimitsConfig) -> Self {
        Self {
            limits: limits.clone(),
            by_provider: Mutex::new(HashMap::new()),
        }
    }

    /// The semaphore of `provider`, the same one for every account.
    pub fn of(&self, provider: Provider) -> Arc<Semaphore> {
        let mut caps = self
            .by_provider
            .lock()
            .expect("the caps lock is never poisoned");
        caps.entry(provider)
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.limits.upstream_concurrency_of(provider),
                ))
            })
            .clone()
    }
}

/// How an account's calls are made resilient: installed once by [`crate::app::App::build`]
/// (see [`Upstream::install`]); a client built elsewhere (unit tests) makes single attempts,
/// with no breaker and throwaway metrics.
#[derive(Debug)]
pub struct Resilience {
    /// The workspace id, for metric labels and logs (never a credential).
    pub workspace: String,
    pub retry: RetryPolicy,
    /// This provider's request timeout, overriding the HTTP client's.
    pub timeout: Option<Duration>,
    pub budget: RetryBudget,
    pub breaker: Option<Arc<CircuitBreaker>>,
    pub metrics: Arc<Metrics>,
    /// The provider's cap on calls in flight ([`ConcurrencyCaps`]); none: uncapped.
    pub concurrency: Option<Arc<Semaphore>>,
}

impl Resilience {
    /// The policy `[limits]` describes for `provider` of `workspace`, reporting to `metrics`,
    /// its calls counted against the provider's cap in `caps`.
    pub fn from_limits(
        limits: &LimitsConfig,
        provider: Provider,
        workspace: &str,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        caps: &ConcurrencyCaps,
    ) -> Self {
        let gauge = metrics.register_circuit(provider, workspace);
        Self {
            workspace: workspace.to_string(),
            retry: RetryPolicy::from_limits(limits),
            timeout: Some(limits.upstream_timeout_of(provider)),
            budget: RetryBudget::new(limits.upstream_retry_budget_percent, clock.clone()),
            breaker: Some(CircuitBreaker::new(
                limits.circuit_failure_threshold,
                Duration::from_millis(limits.circuit_cooldown_ms),
                clock,
                gauge,
            )),
            metrics,
            concurrency: Some(caps.of(provider)),
        }
    }

    fn single_attempt() -> Self {
        Self {
            workspace: String::new(),
            retry: RetryPolicy::none(),
            timeout: None,
            budget: RetryBudget::new(0, Arc::new(SystemClock)),
            breaker: None,
            metrics: Arc::new(Metrics::new()),
            concurrency: None,
        }
    }
}

/// Whether a call may be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// An idempotent GET: retried on connection errors, 5xx and 429.
    Idempotent,
    /// A call with a side effect, or one a throttle counts (Xenioo): exactly one attempt.
    Never,
}

/// One failed attempt.
struct Failure {
    kind: UpstreamErrorKind,
    /// Short and credential-free, for the final message: "HTTP 503", "could not connect".
    what: String,
    /// Worth another attempt (connection error, 5xx, 429).
    retryable: bool,
    /// The upstream's `Retry-After`, when it sent one.
    retry_after: Option<Duration>,
    /// The metrics outcome label.
    outcome: &'static str,
}

/// The HTTP side of one provider account.
#[derive(Debug)]
pub struct Upstream {
    provider: Provider,
    http: reqwest::Client,
    // A std mutex: held for a field copy, never across an await.
    health: Mutex<Health>,
    resilience: OnceLock<Arc<Resilience>>,
}

impl Upstream {
    pub fn new(provider: Provider, http: reqwest::Client) -> Self {
        Self {
            provider,
            http,
            health: Mutex::new(Health::default()),
            resilience: OnceLock::new(),
        }
    }

    /// Install the account's retry policy, breaker and metrics; once, before the first call
    /// (a second install is ignored: the breaker's state must not be reset behind callers).
    pub fn install(&self, resilience: Resilience) {
        let _ = self.resilience.set(Arc::new(resilience));
    }

    fn resilience(&self) -> &Arc<Resilience> {
        self.resilience
            .get_or_init(|| Arc::new(Resilience::single_attempt()))
    }

    /// The circuit breaker, when installed (tests and the gauge).
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.resilience().breaker.as_ref()
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The shared client, for building requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .expect("health lock is never poisoned")
            .clone()
    }

    /// Send the idempotent GET `request` to `endpoint` (a fixed name for metrics, e.g.
    /// `volume-by-channel`) and decode its JSON body as `T`, retrying per the policy.
    pub async fn json<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<T, UpstreamError> {
        let result = self.run(endpoint, request, Retry::Idempotent).await;
        self.record(&result);
        result
    }

    /// As [`Upstream::json`], but exactly one attempt: for calls with a side effect (the
    /// Chat-Tonic NPS export, a token POST) and for Xenioo, whose throttle counts every call.
    pub async fn json_once<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<T, UpstreamError> {
        let result = self.run(endpoint, request, Retry::Never).await;
        self.record(&result);
        result
    }

    async fn run<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
        retry: Retry,
    ) -> Result<T, UpstreamError> {
        let policy = Arc::clone(self.resilience());
        // The call's span when the request is traced; its context goes upstream.
        let call = RequestTrace::current()
            .map(|trace| trace.upstream_call(self.provider.slug(), endpoint));
        let request = match &call {
            Some(call) => request.headers(call.headers()),
            None => request,
        };
        let permit = match policy.breaker.as_ref().map(|b| b.admit()).transpose() {
            Ok(permit) => permit,
            Err(refused) => {
                if let Some(call) = &call {
                    call.finish(0, false);
                }
                policy
                    .metrics
                    .circuit_rejection(self.provider, &policy.workspace);
                return Err(self.error(UpstreamErrorKind::CircuitOpen {
                    failures: refused.failures,
                    last: refused.last,
                    retry_after_secs: refused.retry_after_secs,
                }));
            }
        };
        policy.budget.record_call();
        let mut next = Some(request);
        let mut seen: Vec<String> = Vec::new();
        let mut waited = Duration::ZERO;
        let mut stopped: Option<&'static str> = None;
        let mut attempts: u32 = 0;
        let outcome = loop {
            let request = next.take().expect("a request for every attempt");
            if retry == Retry::Idempotent {
                // None for a streaming body; then this attempt is the last.
                next = request.try_clone();
            }
            let request = match policy.timeout {
                Some(timeout) => request.timeout(timeout),
                None => request,
            };
            // The place under the provider's cap is held for one attempt (send and body),
            // never across the backoff below, so a retrying call does not hold others back.
            let place = match &policy.concurrency {
                Some(cap) => {
                    let queued = Instant::now();
                    let place = cap
                        .acquire()
                        .await
                        .expect("a cap's semaphore is never closed");
                    policy
                        .metrics
                        .upstream_queue_wait(self.provider, queued.elapsed());
                    Some(place)
                }
                None => None,
            };
            let started = Instant::now();
            attempts += 1;
            let attempt = self.attempt::<T>(request, call.as_ref()).await;
            drop(place);
            let outcome = attempt.as_ref().map_or_else(|f| f.outcome, |_| "ok");
            policy
                .metrics
                .upstream_request(self.provider, endpoint, outcome, started.elapsed());
            let failure = match attempt {
                Ok(value) => break Ok(value),
                Err(failure) => failure,
            };
            let retries = seen.len() as u32;
            seen.push(failure.what.clone());
            if retry == Retry::Never
                || !failure.retryable
                || next.is_none()
                || retries >= policy.retry.max_retries
            {
                break Err(failure);
            }
            let wait = failure
                .retry_after
                .unwrap_or_else(|| policy.retry.backoff(retries));
            if waited + wait > policy.retry.max_wait {
                stopped = Some(if failure.retry_after.is_some() {
                    "the upstream asked to wait longer than chatstats waits"
                } else {
                    "the retry wait limit was reached"
                });
                break Err(failure);
            }
            if !policy.budget.try_retry() {
                policy
                    .metrics
                    .retry_budget_exhausted(self.provider, &policy.workspace);
                stopped = Some("the retry budget is spent");
                break Err(failure);
            }
            policy.metrics.upstream_retry(self.provider, endpoint);
            tracing::debug!(
                provider = self.provider.slug(),
                workspace = %policy.workspace,
                endpoint,
                failed = %failure.what,
                retry = retries + 1,
                wait_ms = wait.as_millis() as u64,
                "retrying an upstream call"
            );
            tokio::time::sleep(wait).await;
            waited += wait;
        };
        let result = outcome.map_err(|failure| self.error(summarize(failure, &seen, stopped)));
        if let Some(call) = &call {
            call.finish(attempts.saturating_sub(1), result.is_ok());
        }
        if let (Some(breaker), Some(permit)) = (&policy.breaker, permit) {
            breaker.record(permit, Verdict::of(&result));
        }
        result
    }

    /// One attempt: send, check the status, read the body within the size limit, decode.
    /// The status goes on the call's span, when it is traced.
    async fn attempt<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        call: Option<&UpstreamCall>,
    ) -> Result<T, Failure> {
        let response = request.send().await.map_err(|e| transport_failure(&e))?;
        let status = response.status();
        if let Some(call) = call {
            call.status(status.as_u16());
        }
        if !status.is_success() {
            return Err(status_failure(self.provider, status, &response));
        }
        let body = read_limited(response).await?;
        serde_json::from_slice::<T>(&body).map_err(|e| Failure {
            kind: UpstreamErrorKind::Invalid(format!("malformed JSON: {e}")),
            what: "a malformed body".into(),
            retryable: false,
            retry_after: None,
            outcome: "invalid",
        })
    }

    fn error(&self, kind: UpstreamErrorKind) -> UpstreamError {
        UpstreamError::new(self.provider, kind)
    }

    fn record<T>(&self, result: &Result<T, UpstreamError>) {
        let mut health = self.health.lock().expect("health lock is never poisoned");
        let now = Utc::now();
        match result {
            Ok(_) => health.last_success_at = Some(now),
            Err(e) => {
                health.last_error = Some(e.message());
                health.last_error_at = Some(now);
            }
        }
    }
}

/// The error a caller sees after the last attempt: what happened on each attempt when there
/// were several ("HTTP 503 on all 3 attempts (2 retries)"), and why retrying stopped early.
fn summarize(
    failure: Failure,
    seen: &[String],
    stopped: Option<&'static str>,
) -> UpstreamErrorKind {
    let UpstreamErrorKind::Unavailable(_) = failure.kind else {
        return failure.kind;
    };
    let retries = seen.len().saturating_sub(1);
    let mut what = match seen {
        [] | [_] => failure.what,
        [first, rest @ ..] if rest.iter().all(|w| w == first) => format!(
            "{first} on all {} attempts ({retries} {})",
            seen.len(),
            plural(retries, "retry", "retries")
        ),
        _ => format!(
            "{} ({retries} {})",
            seen.join(", then "),
            plural(retries, "retry", "retries")
        ),
    };
    if let Some(stopped) = stopped {
        what.push_str(&format!("; not retried further: {stopped}"));
    }
    UpstreamErrorKind::Unavailable(what)
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn transport_failure(error: &reqwest::Error) -> Failure {
    let kind = transport_kind(error);
    let what = match &kind {
        UpstreamErrorKind::Unavailable(what) => what.clone(),
        _ => "the request failed".into(),
    };
    Failure {
        kind,
        what,
        // A timed-out request may still be running upstream, and the timeout already bounds
        // the wait: only failures to connect or to complete the exchange are retried.
        retryable: !error.is_timeout(),
        retry_after: None,
        outcome: if error.is_timeout() {
            "timeout"
        } else {
            "unavailable"
        },
    }
}

fn status_failure(provider: Provider, status: StatusCode, response: &Response) -> Failure {
    let kind = status_kind(provider, status, response);
    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    let outcome = match kind {
        UpstreamErrorKind::Throttled { .. } => "throttled",
        UpstreamErrorKind::Unavailable(_) => "unavailable",
        _ => "rejected",
    };
    Failure {
        kind,
        what: format!("HTTP {}", status.as_u16()),
        retryable,
        retry_after: retry_after(response).map(Duration::from_secs),
        outcome,
    }
}

fn transport_kind(error: &reqwest::Error) -> UpstreamErrorKind {
    let what = if error.is_timeout() {
        "the request timed out"
    } else if error.is_connect() {
        COULD_NOT_CONNECT
    } else if error.is_body() || error.is_decode() {
        "the response body was cut off"
    } else {
        "the request failed"
    };
    UpstreamErrorKind::Unavailable(what.to_string())
}

fn status_kind(provider: Provider, status: StatusCode, response: &Response) -> UpstreamErrorKind {
    let code = status.as_u16();
    match status {
        StatusCode::TOO_MANY_REQUESTS => UpstreamErrorKind::Throttled {
            retry_after_secs: retry_after(response).unwrap_or(DEFAULT_RETRY_AFTER_SECS),
        },
        s if s.is_server_error() => UpstreamErrorKind::Unavailable(format!("HTTP {code}")),
        _ => UpstreamErrorKind::Rejected {
            status: code,
            reason: match status {
                StatusCode::UNAUTHORIZED => "the credentials were refused",
                StatusCode::FORBIDDEN if provider == Provider::HelpScout => {
                    "Help Scout reports need a Plus or Pro plan"
                }
                StatusCode::FORBIDDEN => "access forbidden",
                StatusCode::NOT_FOUND => "account or resource not found",
                _ => "the request was refused",
            }
            .to_string(),
        },
    }
}

/// `Retry-After` in seconds (the delta-seconds form; an HTTP date is treated as absent).
pub fn retry_after(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn read_limited(mut response: Response) -> Result<Vec<u8>, Failure> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_failure(&e)),
        }
    }
}

fn too_large() -> Failure {
    Failure {
        kind: UpstreamErrorKind::Invalid(format!(
            "body larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        )),
        what: "an oversized body".into(),
        retryable: false,
        retry_after: None,
        outcome: "invalid",
    }
}

/// The failure of a single attempt that could not connect (DNS, TCP or the TLS handshake):
/// the request never left this process. Xenioo tells it apart from failures after sending,
/// which may have counted against its throttle.
pub const COULD_NOT_CONNECT: &str = "could not connect";

/// Default per-request timeout for upstream calls.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;
    use axum::Router;
    use serde_json::Value;

    /// A loopback server that answers every GET after `latency`, counting the requests
    /// inside a handler at once (`now`) and the most seen at once (`most`); `/flaky` answers
    /// its first request with a 503.
    #[derive(Default)]
    struct Counters {
        now: AtomicUsize,
        most: AtomicUsize,
        flaky_seen: AtomicUsize,
        flaky_failed: tokio::sync::Notify,
    }

    async fn serve(latency: Duration) -> (String, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let in_handler = counters.clone();
        let ok = move || {
            let counters = in_handler.clone();
            async move {
                let now = counters.now.fetch_add(1, Ordering::SeqCst) + 1;
                counters.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(latency).await;
                counters.now.fetch_sub(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({ "ok": true }))
            }
        };
        let flaky_counters = counters.clone();
        let flaky = move || {
            let counters = flaky_counters.clone();
            async move {
                if counters.flaky_seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    counters.flaky_failed.notify_one();
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                Ok(axum::Json(serde_json::json!({ "ok": true })))
            }
        };
        let app = Router::new()
            .route("/ok", get(ok))
            .route("/flaky", get(flaky));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), counters)
    }

    /// An account's upstream under `cap`, retrying once after a backoff of `backoff_base`
    /// (half of it jitter), reporting to its own metrics.
    fn account(cap: &Arc<Semaphore>, backoff_base: Duration) -> Upstream {
        account_with_metrics(cap, backoff_base, Arc::new(Metrics::new()))
    }

    fn account_with_metrics(
        cap: &Arc<Semaphore>,
        backoff_base: Duration,
        metrics: Arc<Metrics>,
    ) -> Upstream {
        let upstream = Upstream::new(Provider::ConnectyCube, reqwest::Client::new());
        upstream.install(Resilience {
            workspace: "w".into(),
            retry: RetryPolicy {
                max_retries: 1,
                backoff_base,
                max_wait: Duration::from_secs(60),
                budget_percent: 100,
            },
            timeout: Some(Duration::from_secs(10)),
            budget: RetryBudget::new(100, Arc::new(SystemClock)),
            breaker: None,
            metrics,
            concurrency: Some(cap.clone()),
        });
        upstream
    }

    #[tokio::test]
    async fn accounts_of_one_provider_share_its_cap_on_calls_in_flight() {
        let (base, counters) = serve(Duration::from_millis(30)).await;
        let cap = Arc::new(Semaphore::new(3));
        let metrics = Arc::new(Metrics::new());
        let accounts: Vec<Upstream> = (0..4)
            .map(|_| account_with_metrics(&cap, Duration::from_millis(1), metrics.clone()))
            .collect();
        let calls = (0..40).map(|i| {
            let upstream = &accounts[i % accounts.len()];
            let request = upstream.http().get(format!("{base}/ok"));
            upstream.json::<Value>("ok", request)
        });
        let answers = futures::future::join_all(calls).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        let most = counters.most.load(Ordering::SeqCst);
        assert!(most <= 3, "{most} calls were in flight under a cap of 3");
        let exposition = metrics.render(Default::default());
        assert!(
            exposition
                .contains("chatstats_upstream_queue_seconds_count{provider=\"connectycube\"} 40"),
            "every call's wait for its place is observed"
        );
        assert!(
            most >= 2,
            "the calls never overlapped under the cap: at most {most} at once"
        );
    }

    #[tokio::test]
    async fn a_call_waiting_to_retry_does_not_hold_its_place_under_the_cap() {
        let (base, counters) = serve(Duration::ZERO).await;
        let cap = Arc::new(Semaphore::new(1));
        // The retry waits 5 to 10 s; the other account's call must not wait for it.
        let retrying = Arc::new(account(&cap, Duration::from_secs(10)));
        let other = account(&cap, Duration::from_millis(1));
        let flaky = {
            let retrying = retrying.clone();
            let request = retrying.http().get(format!("{base}/flaky"));
            tokio::spawn(async move { retrying.json::<Value>("flaky", request).await })
        };
        counters.flaky_failed.notified().await;
        let request = other.http().get(format!("{base}/ok"));
        let answer =
            tokio::time::timeout(Duration::from_secs(4), other.json::<Value>("ok", request))
                .await
                .expect("the other call ran while the first waited to retry");
        assert!(answer.is_ok(), "{answer:?}");
        assert!(
            !flaky.is_finished(),
            "the first call was still waiting to retry"
        );
        assert_eq!(counters.flaky_seen.load(Ordering::SeqCst), 1);
        flaky.abort();
    }
}
