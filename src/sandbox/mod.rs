//! The sandbox: a real HTTP server on loopback that behaves like the five upstream statistics
//! APIs, with deterministic data.
//!
//! It gives the gateway's integration tests, benchmarks and new users real upstreams without
//! credentials, and it is the tests' oracle: expected values come from the pure "truth"
//! functions of each provider module, and the HTTP handlers are thin layers over them.
//!
//! Tour:
//! - [`accounts`]: the static universe (tenants, credentials, users, bots, mailboxes), and the
//!   generated accounts a sandbox may also serve ([`start_with_accounts`]).
//! - [`data`]: the ground-truth primitives every number is derived from.
//! - [`calls`]: the call log (`/_sim/calls`); [`faults`]: fault injection (`/_sim/faults`).
//! - one module per provider, each with `fn router() -> Router<SimState>` (paths relative to
//!   the provider prefix) and pub truth functions: [`message2give`], [`chat_tonic`],
//!   [`xenioo`], [`connectycube`], [`help_scout`].
//! - this file: [`SimState`], the router assembly (every provider router is wrapped by one
//!   middleware that applies faults and logs the call), the shared handler helpers
//!   ([`ApiError`], [`Params`], [`bearer_token`], [`header_str`], [`parse_rfc3339`],
//!   [`check_past_span`], [`lock`]) and the server lifecycle ([`start`], [`run`], [`Sandbox`]).

pub mod accounts;
pub mod calls;
pub mod chat_tonic;
pub mod connectycube;
pub mod data;
pub mod faults;
pub mod help_scout;
pub mod message2give;
pub mod xenioo;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use calls::{Call, CallLog};
use faults::{FaultTable, Outcome};

/// How long `Sandbox::shutdown` waits for in-flight requests before aborting the server task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Tunables of the simulation that tests need to shorten.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Xenioo: window of the per-account throttle (real API: 1 hour)
    pub xenioo_throttle: Duration,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            xenioo_throttle: Duration::from_secs(3600),
        }
    }
}

/// The five simulated providers: their names in the call log and fault specs, and their
/// path prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// message2give, under `/message2give/2019-01-23`.
    Message2give,
    /// Chat-Tonic, under `/chat-tonic`.
    ChatTonic,
    /// Xenioo, under `/xenioo`.
    Xenioo,
    /// ConnectyCube, under `/connectycube`.
    ConnectyCube,
    /// Help Scout, under `/help-scout`.
    HelpScout,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 5] = [
        Provider::Message2give,
        Provider::ChatTonic,
        Provider::Xenioo,
        Provider::ConnectyCube,
        Provider::HelpScout,
    ];

    /// Name used in the call log and in fault specs.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Message2give => "message2give",
            Provider::ChatTonic => "chat_tonic",
            Provider::Xenioo => "xenioo",
            Provider::ConnectyCube => "connectycube",
            Provider::HelpScout => "help_scout",
        }
    }

    /// The provider with this call-log name.
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Path prefix of the provider on the sandbox (the provider's router sees paths without it).
    pub fn prefix(self) -> &'static str {
        match self {
            Provider::Message2give => "/message2give/2019-01-23",
            Provider::ChatTonic => "/chat-tonic",
            Provider::Xenioo => "/xenioo",
            Provider::ConnectyCube => "/connectycube",
            Provider::HelpScout => "/help-scout",
        }
    }
}

/// Shared state of a running sandbox: options, call log, faults and the little mutable state
/// some providers need. Cheap to clone (one `Arc`); every handler gets it via
/// `State<SimState>`.
///
/// The data itself is not here: it is computed on demand by [`data`] and the providers' truth
/// functions, so there is nothing to seed or reset.
///
/// A provider handler is normally `async fn(State<SimState>?, HeaderMap, Params, Path?) ->
/// Result<Json<Value>, ApiError>` that, in order:
/// 1. authenticates with [`bearer_token`] / [`header_str`] and an `accounts::by_*` lookup,
///    answering the provider's own 401 shape via [`ApiError::new`];
/// 2. validates parameters with the [`Params`] helpers (400s naming the parameter) and
///    [`check_past_span`] for client-chosen ranges;
/// 3. builds the body from the module's pub truth functions only.
///
/// Faults and the call log are applied around every provider route by the router, so handlers
/// never deal with them.
#[derive(Clone, Debug)]
pub struct SimState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: SandboxOptions,
    /// How many generated accounts (`gen-00001`, ...) this sandbox serves besides the static ones.
    generated: usize,
    /// The origin of the call log's `started_us` and `ended_us`.
    started: Instant,
    calls: CallLog,
    faults: FaultTable,
    help_scout_tokens: help_scout::TokenStore,
    /// A std `Mutex` like the rest of the state: it is never held across an `.await`.
    xenioo_last_ok: Mutex<HashMap<String, Instant>>,
}

impl SimState {
    /// A fresh state: empty call log, no faults, no issued tokens, no generated accounts.
    pub fn new(options: SandboxOptions) -> Self {
        SimState::with_accounts(options, 0)
    }

    /// As [`SimState::new`], serving the first `generated` generated accounts too (at most
    /// [`accounts::MAX_GENERATED`]).
    pub fn with_accounts(options: SandboxOptions, generated: usize) -> Self {
        SimState {
            inner: Arc::new(Inner {
                options,
                generated: generated.min(accounts::MAX_GENERATED),
                started: Instant::now(),
                calls: CallLog::default(),
                faults: FaultTable::default(),
                help_scout_tokens: help_scout::TokenStore::default(),
                xenioo_last_ok: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The options the sandbox was started with (e.g. `options().xenioo_throttle`).
    pub fn options(&self) -> &SandboxOptions {
        &self.inner.options
    }

    /// How many generated accounts this sandbox serves.
    pub fn generated_accounts(&self) -> usize {
        self.inner.generated
    }

    /// Microseconds since the sandbox started, for the call log.
    fn micros(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The calls answered under a provider prefix since the last clear, oldest first (the
    /// latest [`calls::DEFAULT_CAPACITY`] of them).
    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.snapshot()
    }

    /// Calls per provider name since the last clear, in the order of each provider's first
    /// call (exact even after the log dropped old calls; see [`calls::DEFAULT_CAPACITY`]).
    pub fn call_counts(&self) -> Vec<(&'static str, u64)> {
        self.inner.calls.counts()
    }

    /// Forgets the logged calls (as `DELETE /_sim/calls`).
    pub fn clear_calls(&self) {
        self.inner.calls.clear();
    }

    /// The active faults (as `/_sim/faults`), e.g. to set one from an in-process test.
    pub fn faults(&self) -> &FaultTable {
        &self.inner.faults
    }

    /// Help Scout OAuth tokens issued by this sandbox.
    pub(crate) fn help_scout_tokens(&self) -> &help_scout::TokenStore {
        &self.inner.help_scout_tokens
    }

    /// Xenioo throttle state: per account id, when the last call answered 200 was made.
    ///
    /// Check and update it under one [`lock`] so that two concurrent calls cannot both pass
    /// the throttle.
    pub fn xenioo_last_ok(&self) -> &Mutex<HashMap<String, Instant>> {
        &self.inner.xenioo_last_ok
    }

    fn record(&self, call: Call) {
        self.inner.calls.record(call);
    }
}

/// Locks a mutex, recovering the data if a previous holder panicked: the sandbox's shared
/// state (logs, counters, maps) stays usable, and a sandbox must never go down on one bad
/// request. Use this rather than `.lock().unwrap()`.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An error answer of a simulated upstream: a status, a JSON body and optional headers.
///
/// Handlers return `Result<_, ApiError>`. Providers whose real API has a specific error shape
/// build it with [`ApiError::new`] (e.g. Help Scout's `{"error":"invalid_token"}`); generic
/// validation errors use [`ApiError::bad_request`], whose body is
/// `{"error":"bad_request","message":"..."}`. The [`Params`] helpers return the generic shape;
/// remap with [`ApiError::message`] if a provider needs another (e.g.
/// `.map_err(|e| ApiError::new(e.status(), json!({"status":"ERROR","message": e.message()})))`).
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with this exact status and body.
    pub fn new(status: StatusCode, body: Value) -> Self {
        ApiError {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// 400 `{"error":"bad_request","message": message}`; the message should name the parameter,
    /// what was wrong and what is allowed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            json!({ "error": "bad_request", "message": message.into() }),
        )
    }

    /// 404 `{"error":"not_found","message": message}`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            json!({ "error": "not_found", "message": message.into() }),
        )
    }

    /// Adds a response header (e.g. `Retry-After` on a 429).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The status to answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human message of the body (`message`, else `error`, else the whole body as text).
    pub fn message(&self) -> String {
        match (self.body.get("message"), self.body.get("error")) {
            (Some(Value::String(m)), _) | (None, Some(Value::String(m))) => m.clone(),
            _ => self.body.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The value of a request header as text, if present and valid ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = header_str(headers, header::AUTHORIZATION.as_str())?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Parses an RFC 3339 instant (with or without fractional seconds, any offset) given as
/// parameter `name`; 400 naming the parameter otherwise.
pub fn parse_rfc3339(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "parameter `{name}` must be an RFC 3339 instant like 2024-01-01T00:00:00Z, got `{value}`"
            ))
        })
}

/// Longest stretch of the past one request may make the sandbox sum (10 years): far beyond
/// any dashboard, and it keeps a typo like `start=0001-01-01` from summing millions of hours
/// per series. The future costs nothing (it has no data), so it is not limited.
pub const MAX_PAST_DAYS: i64 = 3660;

/// 400 when the part of [from, to) before the current hour is longer than [`MAX_PAST_DAYS`].
/// Call it in every handler that sums hours over a client-chosen range.
pub fn check_past_span(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), ApiError> {
    let past_end = to.min(data::current_hour());
    if past_end - from > chrono::Duration::days(MAX_PAST_DAYS) {
        return Err(ApiError::bad_request(format!(
            "the range covers more than {MAX_PAST_DAYS} days of the past, the sandbox's limit"
        )));
    }
    Ok(())
}

/// Percent-decodes a query component (`+` is a space, as in HTML forms); invalid escapes are
/// kept as they are and invalid UTF-8 is replaced, so decoding never fails.
pub fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string as ordered, percent-decoded `(name, value)` pairs, with helpers that turn
/// missing or malformed parameters into 400s naming the parameter.
///
/// Use it as an extractor (`params: Params`) instead of axum's `Query`: `Query` rejects with a
/// plain-text 400 that names nothing, and it cannot keep repeated names like `types[]` in order.
/// Extraction never fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a raw query string (without the `?`).
    pub fn parse(query: &str) -> Self {
        let pairs = query
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (name, value) = part.split_once('=').unwrap_or((part, ""));
                (percent_decode(name), percent_decode(value))
            })
            .collect();
        Params { pairs }
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The first value of `name`, even if empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or `None` when absent or empty (empty means "not given" for
    /// every optional parameter the sandbox knows).
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every value of `name`, in order (for repeated parameters like `types[]`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a required parameter; 400 "missing required parameter `name`" when absent
    /// or empty.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::bad_request(format!("missing required parameter `{name}`")))
    }

    /// A required parameter parsed with `FromStr`; `expected` describes what is allowed (e.g.
    /// "an integer in 1..=100") and goes into the 400 message.
    pub fn required_as<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<T, ApiError> {
        let value = self.required(name)?;
        value
            .trim()
            .parse()
            .map_err(|_| invalid_param(name, expected, value))
    }

    /// An optional parameter parsed with `FromStr` (`None` when absent or empty).
    pub fn optional_as<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ApiError> {
        self.optional(name)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|_| invalid_param(name, expected, value))
            })
            .transpose()
    }

    /// A required RFC 3339 instant (see [`parse_rfc3339`]).
    pub fn required_instant(&self, name: &str) -> Result<DateTime<Utc>, ApiError> {
        parse_rfc3339(name, self.required(name)?)
    }

    /// An optional RFC 3339 instant (`None` when absent or empty).
    pub fn optional_instant(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.optional(name)
            .map(|value| parse_rfc3339(name, value))
            .transpose()
    }
}

/// 400 "parameter `name` must be {expected}, got `value`".
pub fn invalid_param(name: &str, expected: &str, value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "parameter `{name}` must be {expected}, got `{value}`"
    ))
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query().unwrap_or("")))
    }
}

/// Wraps a provider's routes: JSON 404/405 for unknown paths and methods under the prefix, and
/// the middleware that applies faults and logs every answered call.
fn provider_routes(
    state: &SimState,
    provider: Provider,
    routes: Router<SimState>,
) -> Router<SimState> {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            (state.clone(), provider),
            apply_faults_and_log,
        ))
}

/// The provider middleware: sleep the fault's latency, answer the injected status or malformed
/// body if this request is selected (else call the handler, as the sandbox that serves its
/// generated accounts), then log the call with the status actually answered and when it
/// started and ended. It sits inside the nest, so it sees the path without the prefix.
async fn apply_faults_and_log(
    State((state, provider)): State<(SimState, Provider)>,
    request: Request,
    next: Next,
) -> Response {
    let started_us = state.micros();
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let decision = state.faults().decide(provider);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let response = match decision.outcome {
        Outcome::Pass => accounts::serving(state.generated_accounts(), next.run(request)).await,
        Outcome::Status(status, retry_after) => faults::status_response(status, retry_after),
        Outcome::Malformed => faults::malformed_response(),
    };
    state.record(Call {
        provider: provider.name(),
        method,
        params: Params::parse(&query).pairs,
        path,
        query,
        status: response.status().as_u16(),
        started_us,
        ended_us: state.micros(),
    });
    response
}

async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({
            "error": "method_not_allowed",
            "message": format!("{method} is not allowed on {}", uri.path()),
        }),
    )
}

/// The whole sandbox as an axum router (for embedding; [`start`] serves exactly this).
pub fn router(state: SimState) -> Router {
    Router::new()
        .route("/_sim/calls", get(calls::list).delete(calls::clear))
        .route(
            "/_sim/faults",
            get(faults::list).post(faults::set).delete(faults::clear),
        )
        // One `.nest` per provider, all wrapped by `provider_routes` (faults + call log):
        // message2give, chat_tonic and xenioo are wired the same way by their module's owner.
        .nest(
            Provider::HelpScout.prefix(),
            provider_routes(&state, Provider::HelpScout, help_scout::router()),
        )
        .nest(
            Provider::ConnectyCube.prefix(),
            provider_routes(&state, Provider::ConnectyCube, connectycube::router()),
        )
        .nest(
            Provider::Message2give.prefix(),
            provider_routes(&state, Provider::Message2give, message2give::router()),
        )
        .nest(
            Provider::ChatTonic.prefix(),
            provider_routes(&state, Provider::ChatTonic, chat_tonic::router()),
        )
        .nest(
            Provider::Xenioo.prefix(),
            provider_routes(&state, Provider::Xenioo, xenioo::router()),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A running sandbox server. Dropping it stops the server task.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    state: SimState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Bind `listen` (127.0.0.1:0 must work), spawn the server, return once it accepts connections.
pub async fn start(listen: SocketAddr, options: SandboxOptions) -> std::io::Result<Sandbox> {
    start_with_accounts(listen, options, 0).await
}

/// As [`start`], serving the first `generated` generated accounts (`gen-00001`, ...; at most
/// [`accounts::MAX_GENERATED`]) besides acme and globex; [`Sandbox::generated_config_toml`] is
/// the matching config.
pub async fn start_with_accounts(
    listen: SocketAddr,
    options: SandboxOptions,
    generated: usize,
) -> std::io::Result<Sandbox> {
    // Once bound, the kernel queues incoming connections, so callers may connect right away.
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let state = SimState::with_accounts(options, generated);
    let app = router(state.clone());
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // Either a send or a dropped sender means "stop".
                let _ = signal.await;
            })
            .await
    });
    Ok(Sandbox {
        addr,
        state,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}

impl Sandbox {
    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` of the server.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A chatstats config whose workspaces point at this sandbox (see [`config_toml`]).
    pub fn config_toml(&self) -> String {
        config_toml(&self.base_url())
    }

    /// A chatstats config with one workspace per generated account this sandbox serves (see
    /// [`generated_config_toml`]).
    pub fn generated_config_toml(&self) -> String {
        generated_config_toml(&self.base_url(), self.state.generated_accounts())
    }

    /// The server's state, for in-process tests (call log, faults).
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Graceful stop: stop accepting, let in-flight requests finish (for a few seconds at
    /// most), then end the task.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Drop cannot wait for a graceful stop; abort so that no server outlives its handle.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serve until ctrl-c (the `chatstats sandbox` command), with `generated` generated accounts.
/// Writes the matching chatstats config to `config_out` when given (the generated accounts'
/// workspaces, or acme and globex when there are none), then prints
/// `sandbox listening on http://ADDR`, so a script that waits for that line can read the file.
pub async fn run(
    listen: SocketAddr,
    options: SandboxOptions,
    generated: usize,
    config_out: Option<&Path>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let state = SimState::with_accounts(options, generated);
    if let Some(path) = config_out {
        let base = format!("http://{addr}");
        let config = if generated == 0 {
            config_toml(&base)
        } else {
            generated_config_toml(&base, state.generated_accounts())
        };
        std::fs::write(path, config)?;
    }
    println!("sandbox listening on http://{addr}");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for ctrl-c, stopping the sandbox: {e}");
            }
        })
        .await
}

/// The config template; `{base}` is replaced by the sandbox's base URL.
const CONFIG_TEMPLATE: &str = r#"[server]
listen = "127.0.0.1:8080"
[[workspaces]]
id = "acme"
name = "Acme Support"
time_zone = "Australia/Sydney"
[workspaces.message2give]
base_url = "{base}/message2give/2019-01-23"
organisation = "self"
token = "m2g-acme-token"
mfa = "m2g-acme-mfa"
[workspaces.chat_tonic]
base_url = "{base}/chat-tonic"
codename = "acme"
access_token = "ct-acme-token"
[workspaces.xenioo]
base_url = "{base}/xenioo"
account_token = "xen-acme-token"
min_call_interval_secs = 3600
[workspaces.connectycube]
base_url = "{base}/connectycube"
admin_api_key = "cc-acme-key"
[workspaces.help_scout]
base_url = "{base}/help-scout"
access_token = "hs-acme-token"
[[workspaces]]
id = "globex"
name = "Globex Helpdesk"
time_zone = "Europe/Madrid"
[workspaces.message2give]
base_url = "{base}/message2give/2019-01-23"
organisation = "org-globex"
token = "m2g-globex-token"
[workspaces.connectycube]
base_url = "{base}/connectycube"
admin_api_key = "cc-globex-key"
[workspaces.help_scout]
base_url = "{base}/help-scout"
client_id = "hs-globex-client"
client_secret = "hs-globex-secret"
"#;

/// A complete chatstats config (TOML) whose workspaces point at a sandbox at `base_url`.
pub fn config_toml(base_url: &str) -> String {
    CONFIG_TEMPLATE.replace("{base}", base_url.trim_end_matches('/'))
}

/// One workspace of the generated config; `{id}` is the account id, `{mfa}` its MFA line.
const GENERATED_WORKSPACE: &str = r#"[[workspaces]]
id = "{id}"
[workspaces.message2give]
base_url = "{base}/message2give/2019-01-23"
token = "m2g-{id}-token"
{mfa}[workspaces.chat_tonic]
base_url = "{base}/chat-tonic"
codename = "{id}"
access_token = "ct-{id}-token"
[workspaces.xenioo]
base_url = "{base}/xenioo"
account_token = "xen-{id}-token"
[workspaces.connectycube]
base_url = "{base}/connectycube"
admin_api_key = "cc-{id}-key"
[workspaces.help_scout]
base_url = "{base}/help-scout"
access_token = "hs-{id}-token"
"#;

/// The estimated cost (see `crate::limits`) allowed per workspace in the generated config: a
/// query over every workspace with a few series each stays admitted however many there are.
const GENERATED_COST_PER_WORKSPACE: u64 = 200;

/// A complete chatstats config (TOML) for the first `n` generated accounts of a sandbox at
/// `base_url` (at most [`accounts::MAX_GENERATED`]): one UTC workspace per account, its id the
/// account id, each with the account's own credentials on all five providers, and a
/// `max_cost` that admits a query over every workspace (`200` a workspace, at least the
/// default).
pub fn generated_config_toml(base_url: &str, n: usize) -> String {
    let base = base_url.trim_end_matches('/');
    let n = n.min(accounts::MAX_GENERATED);
    let max_cost = (n as u64 * GENERATED_COST_PER_WORKSPACE).max(20_000);
    let mut config =
        format!("[server]\nlisten = \"127.0.0.1:8080\"\n[limits]\nmax_cost = {max_cost}\n");
    for account in (1..=n).filter_map(accounts::generated) {
        let mfa = account
            .message2give
            .mfa
            .map(|mfa| format!("mfa = \"{mfa}\"\n"))
            .unwrap_or_default();
        config.push_str(
            &GENERATED_WORKSPACE
                .replace("{base}", base)
                .replace("{mfa}", &mfa)
                .replace("{id}", account.id),
        );
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const CC_TOTAL: &str =
        "/connectycube/admin/stats/messages/sent-total?start_date=1704067200&end_date=1704153600";

    async fn sandbox() -> (Sandbox, reqwest::Client) {
        let sandbox = start(
            "127.0.0.1:0".parse().expect("addr"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts");
        (sandbox, reqwest::Client::new())
    }

    async fn cc_get(sandbox: &Sandbox, client: &reqwest::Client) -> reqwest::Response {
        client
            .get(format!("{}{CC_TOTAL}", sandbox.base_url()))
            .header("CB-Administration-API-Key", "cc-acme-key")
            .send()
            .await
            .expect("request")
    }

    async fn set_fault(sandbox: &Sandbox, client: &reqwest::Client, fault: Value) -> u16 {
        client
            .post(format!("{}/_sim/faults", sandbox.base_url()))
            .json(&fault)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    #[test]
    fn params_are_decoded_in_order_with_repeats() {
        let p = Params::parse("types%5B%5D=2&types[]=3&q=a+b%2Fc&empty=&flag");
        assert_eq!(p.all("types[]"), vec!["2", "3"]);
        assert_eq!(p.get("q"), Some("a b/c"));
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.optional("empty"), None);
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.pairs().len(), 5);
    }

    #[test]
    fn percent_decoding_never_fails_on_bad_escapes() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn param_helpers_name_the_parameter_and_what_is_allowed() {
        let p = Params::parse("limit=abc&start=2024-13-01");
        let err = p.required("end").expect_err("missing");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("`end`"), "{}", err.message());
        let err = p
            .required_as::<u32>("limit", "an integer in 1..=100")
            .expect_err("not a number");
        assert!(err.message().contains("1..=100"), "{}", err.message());
        let err = p.required_instant("start").expect_err("bad date");
        assert!(err.message().contains("RFC 3339"), "{}", err.message());
        assert_eq!(p.optional_as::<u32>("offset", "x").ok(), Some(None));
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn the_config_points_every_provider_at_the_base_url() {
        let toml = config_toml("http://127.0.0.1:9/");
        assert!(toml.starts_with("[server]\nlisten = \"127.0.0.1:8080\"\n[[workspaces]]\n"));
        assert!(toml.contains("base_url = \"http://127.0.0.1:9/message2give/2019-01-23\""));
        assert!(toml.contains("base_url = \"http://127.0.0.1:9/help-scout\""));
        assert!(!toml.contains("{base}"));
        assert_eq!(toml.matches("[[workspaces]]").count(), 2);
    }

    #[test]
    fn the_generated_config_gives_every_account_its_own_credentials_on_every_provider() {
        let toml = generated_config_toml("http://127.0.0.1:9/", 3);
        let config = crate::config::Config::from_toml_str(&toml, &|_| None).expect("valid");
        assert_eq!(config.workspaces.len(), 3);
        assert_eq!(config.limits.max_cost, 20_000);
        for (number, workspace) in (1..=3).zip(&config.workspaces) {
            let account = accounts::generated(number).expect("in range");
            assert_eq!(workspace.id, account.id);
            let m2g = workspace.message2give.as_ref().expect("message2give");
            assert_eq!(m2g.token.expose(), account.message2give.token);
            assert_eq!(
                m2g.mfa.as_ref().map(|m| m.expose()),
                account.message2give.mfa
            );
            let cc = workspace.connectycube.as_ref().expect("connectycube");
            assert_eq!(
                cc.admin_api_key.expose(),
                account.connectycube.admin_api_key
            );
            assert_eq!(cc.base_url.as_str(), "http://127.0.0.1:9/connectycube");
            let ct = workspace.chat_tonic.as_ref().expect("chat_tonic");
            let tenant = account.chat_tonic.as_ref().expect("generated tenant");
            assert_eq!(
                (ct.codename.as_str(), ct.access_token.expose()),
                (tenant.codename, tenant.token)
            );
            let xen = workspace.xenioo.as_ref().expect("xenioo");
            let bots = account.xenioo.as_ref().expect("generated bots");
            assert_eq!(xen.account_token.expose(), bots.token);
            assert!(workspace.help_scout.is_some());
        }
        let big = generated_config_toml("http://127.0.0.1:9", 1000);
        assert!(big.contains("max_cost = 200000\n"));
        assert_eq!(big.matches("[[workspaces]]").count(), 1000);
    }

    #[tokio::test]
    async fn a_sandbox_with_generated_accounts_answers_them_and_logs_when_each_call_ran() {
        let sandbox = start_with_accounts(
            "127.0.0.1:0".parse().expect("addr"),
            SandboxOptions::default(),
            2,
        )
        .await
        .expect("sandbox starts");
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for key in ["cc-gen-00002-key", "cc-gen-00003-key"] {
            let response = client
                .get(format!("{}{CC_TOTAL}", sandbox.base_url()))
                .header("CB-Administration-API-Key", key)
                .send()
                .await
                .expect("request");
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, vec![200, 401], "only the first two are served");
        let calls = sandbox.state().calls();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.started_us <= c.ended_us));
        assert!(
            calls[0].ended_us <= calls[1].started_us,
            "one after the other"
        );
        sandbox.shutdown().await;
    }

    #[test]
    fn every_provider_has_a_distinct_name_and_prefix() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_name(p.name()), Some(p));
            let same_prefix = Provider::ALL.iter().filter(|q| q.prefix() == p.prefix());
            assert_eq!(same_prefix.count(), 1);
        }
    }

    #[tokio::test]
    async fn calls_are_logged_without_the_prefix_with_decoded_params_and_cleared() {
        let (sandbox, client) = sandbox().await;
        assert_eq!(cc_get(&sandbox, &client).await.status(), 200);
        let url = format!(
            "{}/help-scout/v2/reports/conversations/volume-by-channel?start=2024-01-01T00%3A00%3A00Z",
            sandbox.base_url()
        );
        assert_eq!(client.get(url).send().await.expect("request").status(), 401);
        let log: Value = client
            .get(format!("{}/_sim/calls", sandbox.base_url()))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(log["counts"], json!({"connectycube": 1, "help_scout": 1}));
        let hs = &log["calls"][1];
        assert_eq!(hs["provider"], "help_scout");
        assert_eq!(hs["method"], "GET");
        assert_eq!(hs["path"], "/v2/reports/conversations/volume-by-channel");
        assert_eq!(hs["query"], "start=2024-01-01T00%3A00%3A00Z");
        assert_eq!(hs["params"], json!([["start", "2024-01-01T00:00:00Z"]]));
        assert_eq!(hs["status"], 401);
        let cleared = client
            .delete(format!("{}/_sim/calls", sandbox.base_url()))
            .send()
            .await
            .expect("request");
        assert!(cleared.status().is_success());
        assert!(sandbox.state().calls().is_empty());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_paths_are_json_404s_and_wrong_methods_405s() {
        let (sandbox, client) = sandbox().await;
        let base = sandbox.base_url();
        for path in ["/nowhere", "/connectycube/admin/nope"] {
            let response = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 404, "{path}");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"], "not_found", "{path}");
            assert!(body["message"].as_str().is_some_and(|m| m.contains(path)));
        }
        let response = client
            .post(format!("{base}{CC_TOTAL}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 405);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "method_not_allowed");
        let statuses: Vec<u16> = sandbox.state().calls().iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            vec![404, 405],
            "only calls under a prefix are logged"
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_status_fault_at_rate_one_half_fails_every_second_call_for_its_times() {
        let (sandbox, client) = sandbox().await;
        let fault = json!({"provider":"connectycube","status":503,"error_rate":0.5,"times":4});
        assert_eq!(set_fault(&sandbox, &client, fault).await, 201);
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(cc_get(&sandbox, &client).await.status().as_u16());
        }
        assert_eq!(statuses, vec![200, 503, 200, 503, 200, 200]);
        let logged: Vec<u16> = sandbox.state().calls().iter().map(|c| c.status).collect();
        assert_eq!(logged, statuses);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_429_fault_carries_retry_after_and_other_providers_are_unaffected() {
        let (sandbox, client) = sandbox().await;
        let fault = json!({"provider":"connectycube","status":429});
        assert_eq!(set_fault(&sandbox, &client, fault).await, 201);
        let response = cc_get(&sandbox, &client).await;
        assert_eq!(response.status(), 429);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let hs = client
            .get(format!(
                "{}/help-scout/v2/reports/conversations/volume-by-channel",
                sandbox.base_url()
            ))
            .send()
            .await
            .expect("request");
        assert_eq!(hs.status(), 401, "help_scout reaches its handler");
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn latency_and_malformed_faults_delay_and_garble_the_answer() {
        let (sandbox, client) = sandbox().await;
        let fault = json!({"provider":"*","latency_ms":150,"malformed":true,"times":1});
        assert_eq!(set_fault(&sandbox, &client, fault).await, 201);
        let started = Instant::now();
        let response = cc_get(&sandbox, &client).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        let next = cc_get(&sandbox, &client).await;
        assert!(next.json::<Value>().await.is_ok(), "the fault was used up");
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn bad_fault_json_is_a_400_and_faults_can_be_listed_and_cleared() {
        let (sandbox, client) = sandbox().await;
        let base = sandbox.base_url();
        let bad = client
            .post(format!("{base}/_sim/faults"))
            .body("{\"provider\":")
            .send()
            .await
            .expect("request");
        assert_eq!(bad.status(), 400);
        let body: Value = bad.json().await.expect("json");
        assert!(body["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid fault JSON")));
        let fault = json!({"provider":"xenioo","status":500});
        assert_eq!(set_fault(&sandbox, &client, fault).await, 201);
        let listed: Value = client
            .get(format!("{base}/_sim/faults"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(listed["faults"][0]["provider"], "xenioo");
        assert_eq!(listed["faults"][0]["seen"], 0);
        client
            .delete(format!("{base}/_sim/faults"))
            .send()
            .await
            .expect("request");
        assert!(sandbox.state().faults().list().is_empty());
        sandbox.shutdown().await;
    }
}
