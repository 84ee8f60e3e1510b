//! The HTTP surface: `/graphql` (GraphQL over HTTP, POST and GET), GraphiQL at `/` (see
//! [`crate::graphiql`]), `/healthz`, `/readyz` and `/metrics` (Prometheus text).
//!
//! A GET with `Upgrade: websocket` on `/graphql` is a graphql-transport-ws connection
//! (subscriptions), handed to [`crate::ws`].
//!
//! The GraphQL handler is our own rather than `async_graphql_axum::GraphQL` because the stock
//! one always answers `application/graphql-response+json`, even to clients that accept only
//! `application/json` (a MUST of the GraphQL-over-HTTP spec), and does not use status codes
//! for requests that fail before execution.
//!
//! The router's state is [`Served`], the [`HttpState`] in force; a configuration reload
//! swaps it whole. Each request takes one [`Snapshot`] of it and runs on that to the end.
//!
//! Every `/graphql` request first passes `gate`: the API key (401 `UNAUTHENTICATED`) and the
//! per-client rate limit (429 `RATE_LIMITED`); the [`Caller`] it yields goes into the GraphQL
//! request data and into the response's extensions (for the request log). CORS, when
//! `[server] cors_origins` is set, is a tower-http layer around every route.
//!
//! Every refusal of `/graphql` is a GraphQL error with `extensions.code` (`BAD_USER_INPUT`
//! unless said otherwise): 400 (no query, bad JSON, a broken WebSocket handshake), 405 (a
//! method other than GET and POST, with `Allow`; a mutation over GET), 406 (no acceptable
//! media type), 415 (a POST that is not JSON). Only a request hyper refuses before any
//! handler runs (431, headers too large) is answered by hyper, without a body.
//! A body over [`MAX_BODY_BYTES`] is refused with 413 and a coded GraphQL error. A panic while
//! answering (a bug) is caught by tower-http's `CatchPanicLayer`: the client gets HTTP 500
//! with an `INTERNAL_SERVER_ERROR` error, `chatstats_panics_total` counts it, the panic hook
//! ([`crate::telemetry::init`]) logs one line, and the request log line shows the 500.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Map, Value};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::answers::{self, Answer, AnswerCache, AnswerKey};
use crate::auth::{Access, AuthError, Caller, API_KEY_HEADER};
use crate::cache::ChunkCache;
use crate::error::code;
use crate::fetch::{Fetcher, RequestScope};
use crate::graphql::document_cache::DocumentCache;
use crate::graphql::error_codes::{code_errors, Phase};
use crate::graphql::guard::{Guard, ReadOnlyRequest};
use crate::graphql::raw_json;
use crate::graphql::ChatstatsSchema;
use crate::process_metrics::Metrics;
use crate::rate_limit::{rate_limited_message, RateKey};
use crate::telemetry::{self, RequestSummary};
use crate::ws::{self, Live};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
pub(crate) const APPLICATION_JSON: &str = "application/json";

/// What the HTTP handlers read, as one configuration made it. A reload builds a new one and
/// swaps it in ([`Served`]); every request runs on the one it took first ([`Snapshot`]).
#[derive(Clone)]
pub struct HttpState {
    pub schema: ChatstatsSchema,
    /// The same schema validating in async-graphql's fast mode: for requests that passed full
    /// validation before (see [`DocumentCache::is_validated`]) and have no compiled plan (see
    /// [`crate::graphql::plan`]).
    pub validated_schema: ChatstatsSchema,
    pub cache: Arc<ChunkCache>,
    /// Whole answers of repeated read-only requests.
    pub answers: AnswerCache,
    /// Prometheus metrics (`/metrics`) and the per-request log line.
    pub metrics: Arc<Metrics>,
    /// API keys, rate limits and CORS origins.
    pub access: Arc<Access>,
    /// Parsed documents, shared with the guard.
    pub documents: DocumentCache,
    /// The workspaces, for compiled plans (the schemas hold them too).
    pub registry: Arc<crate::workspace::Registry>,
    /// Persisted queries, the safelist, the query limits and the `read` scope, applied to
    /// every request before it is executed (the schema has no extensions: see
    /// [`crate::graphql::build_schema`]).
    pub guard: Guard,
    /// The schema of WebSocket operations: with the guard and error coding installed, since
    /// the graphql-transport-ws machinery hands requests straight to it.
    pub ws_schema: ChatstatsSchema,
    /// WebSocket connections: subscription slots and the shutdown signal.
    pub live: Arc<Live>,
    /// OpenTelemetry traces (`[telemetry]`); none when they are off.
    pub tracing: Option<Arc<telemetry::traces::Tracing>>,
}

/// The [`HttpState`] in force: the router's state. A configuration reload replaces it whole
/// ([`crate::app::Reloader`]); requests already running keep the one they took.
pub struct Served {
    current: arc_swap::ArcSwap<HttpState>,
}

impl Served {
    pub fn new(state: HttpState) -> Arc<Served> {
        Arc::new(Served {
            current: arc_swap::ArcSwap::from_pointee(state),
        })
    }

    /// The state new requests use now.
    pub fn current(&self) -> Arc<HttpState> {
        self.current.load_full()
    }

    /// Make `state` the one new requests use; returns the one it replaces.
    pub fn replace(&self, state: HttpState) -> Arc<HttpState> {
        self.current.swap(Arc::new(state))
    }
}

/// The [`HttpState`] one request runs on: taken once, by the first extractor that asks
/// (`gate`, for `/graphql`), and kept in the request's extensions for the handler, so a reload
/// in between cannot authenticate a request with one configuration and run it on another.
#[derive(Clone)]
pub struct Snapshot(pub Arc<HttpState>);

impl axum::extract::FromRequestParts<Arc<Served>> for Snapshot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        served: &Arc<Served>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(taken) = parts.extensions.get::<Snapshot>() {
            return Ok(taken.clone());
        }
        let snapshot = Snapshot(served.current());
        parts.extensions.insert(snapshot.clone());
        Ok(snapshot)
    }
}

/// The request header that asks for `extensions.upstream`.
pub const TRACE_HEADER: &str = "x-chatstats-trace";

/// The largest `/graphql` request body read (axum's default, made explicit so that the
/// refusal can name it). Documents are limited further by `[limits] max_document_bytes`.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// All routes; GraphiQL at `/` only when there is a `graphiql` page (`[server] graphiql`).
/// CORS and the metrics are taken from the state in force now: they do not change on a reload.
pub fn router(served: Arc<Served>, graphiql: Option<crate::graphiql::Page>) -> Router {
    let state = served.current();
    let cors = cors_layer(&state.access.cors_origins);
    let router = Router::new();
    let router = match graphiql {
        Some(page) => router.merge(crate::graphiql::routes(page)),
        None => router,
    };
    // The request log wraps the gate, so refused requests are logged and counted too; it
    // wraps the panic catcher, so a request that panicked is logged with its 500.
    let graphql = get(graphql_get_or_websocket)
        .post(graphql_post)
        .route_layer(middleware::from_fn_with_state(served.clone(), gate))
        // Not a route: the gate does not run, a wrong method is 405 with or without a key.
        .fallback(graphql_method_not_allowed)
        .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(catch_panic(state.metrics.clone()))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            telemetry::observe_graphql,
        ));
    // Outermost, so the request's span covers everything, refusals included; no layer at all
    // when traces are off.
    let graphql = match state.tracing.clone() {
        Some(tracing) => graphql.layer(middleware::from_fn_with_state(
            tracing,
            telemetry::traces::trace_graphql,
        )),
        None => graphql,
    };
    let catch_panic_anywhere = catch_panic(state.metrics.clone());
    let router = router
        .route("/graphql", graphql)
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": "not found"})),
            )
        })
        .with_state(served)
        .layer(catch_panic_anywhere);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Turns a panic while answering into HTTP 500 with an `INTERNAL_SERVER_ERROR` error, counted
/// in `chatstats_panics_total`. The payload is dropped unread: its text can carry request data
/// (the panic hook logs where it happened).
fn catch_panic(
    metrics: Arc<Metrics>,
) -> CatchPanicLayer<impl Fn(Box<dyn std::any::Any + Send + 'static>) -> Response + Clone> {
    CatchPanicLayer::custom(move |_payload: Box<dyn std::any::Any + Send + 'static>| {
        metrics.panic_caught();
        let body = json!({"errors": [{
            "message": "internal error: the server failed while answering this request; \
                        it has been logged",
            "extensions": {"code": code::INTERNAL_SERVER_ERROR},
        }]});
        let mut response = with_media(
            StatusCode::INTERNAL_SERVER_ERROR,
            APPLICATION_JSON,
            body.to_string(),
        );
        response
            .extensions_mut()
            .insert(RequestSummary::rejected(code::INTERNAL_SERVER_ERROR));
        response
    })
}

/// CORS for `origins` (`["*"]`: any); none when the list is empty (same-origin use only).
/// Preflights are answered by the layer, before authentication, as browsers send no
/// credentials with them.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let allow_origin = match origins {
        [] => return None,
        [any] if any == "*" => AllowOrigin::any(),
        origins => AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                HeaderName::from_static(API_KEY_HEADER),
                HeaderName::from_static(TRACE_HEADER),
            ])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// Authenticate and rate-limit a `/graphql` request; the [`Caller`] goes into the request's
/// extensions for the handler and into the response's for whoever logs it.
async fn gate(
    Snapshot(state): Snapshot,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    let media = negotiate(request.headers()).unwrap_or(APPLICATION_JSON);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let access = &state.access;
    let caller = match access.clients.authenticate(request.headers()) {
        Ok(caller) => Some(caller),
        // Browsers cannot set headers on a WebSocket: the key may come in `connection_init`
        // (see `ws`), where a connection without one is refused.
        Err(AuthError::Missing)
            if request.method() == Method::GET && is_websocket(request.headers()) =>
        {
            None
        }
        Err(error) => {
            // Failed attempts spend the peer's bucket, so keys cannot be guessed at speed.
            if let Err(wait) = access.rate.check(&RateKey::Peer(peer)).await {
                return rate_limited(media, wait);
            }
            return unauthenticated(media, error);
        }
    };
    let key = RateKey::of(caller.as_ref().and_then(Caller::client_name), peer);
    if let Err(wait) = access.rate.check(&key).await {
        return rate_limited(media, wait);
    }
    let Some(caller) = caller else {
        return next.run(request).await;
    };
    request.extensions_mut().insert(caller.clone());
    let mut response = next.run(request).await;
    if let Some(summary) = response.extensions_mut().get_mut::<RequestSummary>() {
        summary.client = caller.client_name().map(str::to_string);
    }
    response.extensions_mut().insert(caller);
    response
}

/// True for a WebSocket upgrade request (`Upgrade: websocket`).
fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /graphql`: a WebSocket upgrade goes to [`ws::upgrade`] (subscriptions), anything else
/// is GraphQL over HTTP.
async fn graphql_get_or_websocket(
    Snapshot(state): Snapshot,
    State(served): State<Arc<Served>>,
    request: axum::extract::Request,
) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    if is_websocket(request.headers()) {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let socket = ws::Socket {
            served,
            access: state.access.clone(),
            cache: state.cache.clone(),
            live: state.live.clone(),
            #[cfg(feature = "fault-injection")]
            panics: false,
        };
        return ws::upgrade(socket, caller, peer, request).await;
    }
    // `gate` admits a request without a caller only when it is a WebSocket upgrade.
    let Some(caller) = caller else {
        return unauthenticated(APPLICATION_JSON, AuthError::Missing);
    };
    let headers = request.headers().clone();
    let raw = match Query::<Vec<(String, String)>>::try_from_uri(request.uri()) {
        Ok(Query(raw)) => raw,
        Err(rejection) => {
            let media = negotiate(&headers).unwrap_or(APPLICATION_JSON);
            return reject(
                StatusCode::BAD_REQUEST,
                media,
                &format!("the query string cannot be read: {}", rejection.body_text()),
            );
        }
    };
    graphql_get(state, caller, headers, raw).await
}

fn unauthenticated(media: &'static str, error: AuthError) -> Response {
    let body = json!({"errors": [{
        "message": error.to_string(),
        "extensions": {"code": code::UNAUTHENTICATED},
    }]});
    let mut response = with_media(StatusCode::UNAUTHORIZED, media, body.to_string());
    response
        .extensions_mut()
        .insert(RequestSummary::rejected(code::UNAUTHENTICATED));
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"chatstats\""),
    );
    response
}

fn rate_limited(media: &'static str, wait: Duration) -> Response {
    let seconds = crate::rate_limit::retry_after_secs(wait);
    let body = json!({"errors": [{
        "message": rate_limited_message(seconds),
        "extensions": {"code": code::RATE_LIMITED, "retryAfter": seconds},
    }]});
    let mut response = with_media(StatusCode::TOO_MANY_REQUESTS, media, body.to_string());
    response
        .extensions_mut()
        .insert(RequestSummary::rejected(code::RATE_LIMITED));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// `GET /metrics`: the OpenMetrics text exposition (Prometheus reads it).
async fn metrics_text(Snapshot(state): Snapshot) -> Response {
    let text = state.metrics.render(state.cache.gauges().await);
    (
        [(header::CONTENT_TYPE, crate::process_metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// The media type to answer with, from `Accept`; None when we can offer nothing acceptable.
fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(APPLICATION_JSON);
    };
    let types: Vec<String> = accept
        .split(',')
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    if types.iter().any(|t| t == GRAPHQL_RESPONSE_JSON) {
        Some(GRAPHQL_RESPONSE_JSON)
    } else if types
        .iter()
        .any(|t| t == APPLICATION_JSON || t == "application/*" || t == "*/*" || t.is_empty())
    {
        Some(APPLICATION_JSON)
    } else {
        None
    }
}

/// A request-level failure (before any GraphQL processing): 4xx with a GraphQL error body.
pub(crate) fn reject(status: StatusCode, media: &'static str, message: &str) -> Response {
    let body =
        json!({"errors": [{"message": message, "extensions": {"code": code::BAD_USER_INPUT}}]});
    let mut response = with_media(status, media, body.to_string());
    response
        .extensions_mut()
        .insert(RequestSummary::rejected(code::BAD_USER_INPUT));
    response
}

/// A body over [`MAX_BODY_BYTES`]: 413, with the limit in the message and `extensions.limit`.
fn too_large(media: &'static str) -> Response {
    let body = json!({"errors": [{
        "message": format!(
            "the request body is larger than {MAX_BODY_BYTES} bytes, the limit of a /graphql \
             request; send a smaller document or fewer variables"
        ),
        "extensions": {"code": code::BAD_USER_INPUT, "limit": MAX_BODY_BYTES},
    }]});
    let mut response = with_media(StatusCode::PAYLOAD_TOO_LARGE, media, body.to_string());
    response
        .extensions_mut()
        .insert(RequestSummary::rejected(code::BAD_USER_INPUT));
    response
}

fn with_media(status: StatusCode, media: &'static str, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media_with_charset(media)),
    );
    response
}

fn media_with_charset(media: &'static str) -> &'static str {
    if media == GRAPHQL_RESPONSE_JSON {
        "application/graphql-response+json; charset=utf-8"
    } else {
        "application/json; charset=utf-8"
    }
}

async fn graphql_post(
    Snapshot(state): Snapshot,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large(media)
        }
        Err(rejection) => {
            return reject(
                rejection.status(),
                media,
                &format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
            )
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type != APPLICATION_JSON {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "POST /graphql needs `Content-Type: application/json`",
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return reject(
                StatusCode::BAD_REQUEST,
                media,
                &format!("the body is not valid JSON: {e}"),
            )
        }
    };
    let Value::Object(params) = value else {
        return reject(
            StatusCode::BAD_REQUEST,
            media,
            "the body must be a JSON object with a `query`",
        );
    };
    match request_from_params(params) {
        Ok(request) => execute(&state, &headers, request, caller, media).await,
        Err(message) => reject(StatusCode::BAD_REQUEST, media, &message),
    }
}

async fn graphql_get(
    state: Arc<HttpState>,
    caller: Caller,
    headers: HeaderMap,
    raw: Vec<(String, String)>,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let mut params = Map::new();
    for (name, value) in raw {
        let value = match name.as_str() {
            // These two arrive as JSON text in a query string.
            "variables" | "extensions" => match serde_json::from_str(&value) {
                Ok(parsed) => parsed,
                Err(e) => {
                    return reject(
                        StatusCode::BAD_REQUEST,
                        media,
                        &format!("parameter `{name}` is not valid JSON: {e}"),
                    )
                }
            },
            _ => Value::String(value),
        };
        params.insert(name, value);
    }
    let request = match request_from_params(params) {
        Ok(request) => request,
        Err(message) => return reject(StatusCode::BAD_REQUEST, media, &message),
    };
    if is_mutation(&request, &state.documents) {
        let mut response = reject(
            StatusCode::METHOD_NOT_ALLOWED,
            media,
            "mutations are not allowed over GET; use POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let request = request.data(ReadOnlyRequest);
    execute(&state, &headers, request, caller, media).await
}

/// 406, in `application/json` although the client did not ask for it: a body it may not
/// read beats none (RFC 9110 allows it).
fn not_acceptable() -> Response {
    reject(
        StatusCode::NOT_ACCEPTABLE,
        APPLICATION_JSON,
        "chatstats answers application/graphql-response+json or application/json; \
         send an `Accept` header that takes one of them",
    )
}

/// A method `/graphql` does not answer (PUT, DELETE, PATCH, ...): 405 with a coded error;
/// axum adds the `Allow` header (the methods the route has).
async fn graphql_method_not_allowed(method: Method, headers: HeaderMap) -> Response {
    let media = negotiate(&headers).unwrap_or(APPLICATION_JSON);
    reject(
        StatusCode::METHOD_NOT_ALLOWED,
        media,
        &format!("{method} is not allowed on /graphql; use POST (or GET for queries)"),
    )
}

/// Build a GraphQL request from the GraphQL-over-HTTP parameters, checking their types.
fn request_from_params(mut params: Map<String, Value>) -> Result<async_graphql::Request, String> {
    let query = match params.remove("query") {
        Some(Value::String(q)) => q,
        // APQ requests may omit the query; the persisted-query extension fills it in.
        None | Some(Value::Null) if has_persisted_query(&params) => String::new(),
        None | Some(Value::Null) => return Err("the request has no `query`".into()),
        Some(_) => return Err("`query` must be a string".into()),
    };
    let mut request = async_graphql::Request::new(query);
    match params.remove("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name),
        Some(_) => return Err("`operationName` must be a string or null".into()),
    }
    match params.remove("variables") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => {
            request = request.variables(async_graphql::Variables::from_json(v))
        }
        Some(_) => return Err("`variables` must be an object or null".into()),
    }
    match params.remove("extensions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = async_graphql::Value::from_json(value)
                    .map_err(|_| "`extensions` must be valid JSON".to_string())?;
                request.extensions.insert(name, value);
            }
        }
        Some(_) => return Err("`extensions` must be an object or null".into()),
    }
    Ok(request)
}

fn has_persisted_query(params: &Map<String, Value>) -> bool {
    params
        .get("extensions")
        .and_then(|e| e.get("persistedQuery"))
        .is_some()
}

/// True when the operation the request selects is a mutation (GET must not run those).
fn is_mutation(request: &async_graphql::Request, documents: &DocumentCache) -> bool {
    // Text that does not parse (or nests too deep to parse) is refused later, by the guard.
    documents
        .parse(&request.query)
        .is_some_and(|document| is_mutation_in(&document, request.operation_name.as_deref()))
}

/// True when the operation `operation_name` selects in `document` is a mutation (an only
/// operation whatever the name, else the named one).
fn is_mutation_in(
    document: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        _ => None,
    };
    operation.is_some_and(|op| op.ty == OperationType::Mutation)
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    caller: Caller,
    media: &'static str,
) -> Response {
    #[cfg(feature = "fault-injection")]
    fault::inject(headers);
    let scope = Arc::new(RequestScope::new());
    let fetcher = Fetcher {
        cache: state.cache.clone(),
        scope: scope.clone(),
    };
    let plan_fetcher = fetcher.clone();
    let traced = headers
        .get(TRACE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    // Encoded by `raw_json::encode` below, so resolvers may answer JSON text.
    let mut request = request
        .data(fetcher)
        .data(caller.clone())
        .data(raw_json::RawJson);
    let mut request_key = None;
    let mut answer_key = None;
    let mut validated = false;
    let mut cost = None;
    // The document, for coding the errors async-graphql raises by where they point in it.
    let mut document = None;
    let operation;
    let mut response = match state.guard.admit(&mut request).await {
        Ok(mut admitted) => {
            request_key = admitted.key.take();
            let requested = request.operation_name.as_deref();
            operation = telemetry::operation_name_in(&admitted.document, requested);
            cost = telemetry::traces::traced_cost(&state.guard, &request, &caller);
            // A traced request reports the chunk cache's real work, so it is always resolved.
            if let (Some(key), false) = (&request_key, traced) {
                let mutation = is_mutation_in(&admitted.document, requested);
                answer_key = AnswerKey::of(&caller, key, mutation);
            }
            if let Some(answer) = answer_key.as_ref().and_then(|k| state.answers.get(k)) {
                let summary = RequestSummary {
                    operation,
                    cache_hits: answer.cache_hits,
                    error_codes: answer.error_codes,
                    cost,
                    ..RequestSummary::default()
                };
                return encoded(StatusCode::OK, media, answer.body, summary);
            }
            // Validation depends on the text and the variables only: a request that passed
            // it once passes it again.
            validated = request_key
                .as_ref()
                .is_some_and(|key| state.documents.is_validated(key));
            // A request validated before runs on its operation's compiled plan, if it has one
            // and its windows bind (see `graphql::plan`).
            let plan = validated
                .then(|| {
                    state
                        .documents
                        .plan(&request.query, requested, &admitted.document)
                })
                .flatten();
            let planned = match plan {
                Some(plan) => {
                    plan.execute(&state.registry, &caller, &plan_fetcher, &request.variables)
                        .await
                }
                None => None,
            };
            let executed = match planned {
                Some(response) => {
                    state.metrics.execution("plan");
                    response
                }
                None => {
                    state.metrics.execution("async_graphql");
                    admitted.hand_to(&mut request);
                    if validated {
                        state.validated_schema.execute(request).await
                    } else {
                        state.schema.execute(request).await
                    }
                }
            };
            document = Some(admitted.document);
            executed
        }
        Err(error) => {
            operation = telemetry::refused_operation_name(&request, &state.documents);
            async_graphql::Response::from_errors(vec![error])
        }
    };
    let warnings = scope.warnings();
    if !warnings.is_empty() {
        response.extensions.insert(
            "warnings".into(),
            async_graphql::Value::from_json(json!(warnings)).unwrap_or_default(),
        );
    }
    if traced {
        if let Ok(trace) = async_graphql::Value::from_json(scope.trace_json()) {
            response.extensions.insert("upstream".into(), trace);
        }
    }
    // A request that failed before execution (parse, validation) has errors without a path
    // and must not carry a `data` entry at all.
    let failed_before_execution = response.data == async_graphql::Value::Null
        && response.is_err()
        && response.errors.iter().all(|e| e.path.is_empty());
    if let (Some(key), false, false) = (request_key, failed_before_execution, validated) {
        // It was executed, so it passed full validation: remember that (once).
        state.documents.validated(key);
    }
    // Every error a client sees has a code. Resolver errors carry theirs (`crate::error`);
    // what async-graphql raises itself is coded by its phase and where it points.
    let phase = if failed_before_execution {
        Phase::Validation
    } else {
        Phase::Execution
    };
    response.errors = code_errors(std::mem::take(&mut response.errors), phase, || document);
    let status = if media == GRAPHQL_RESPONSE_JSON && failed_before_execution {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let encoded_body = if failed_before_execution {
        serde_json::to_vec(&FailedBeforeExecution {
            errors: &response.errors,
            extensions: &response.extensions,
        })
    } else {
        raw_json::encode(&response)
    };
    let Ok(body) = encoded_body.map(Bytes::from) else {
        return reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            media,
            "the response could not be encoded",
        );
    };
    // For the request log line and metrics (`telemetry::observe_graphql`); `gate` adds the
    // client's name.
    let mut summary = RequestSummary::new(operation, None, &scope, &response.errors);
    summary.cost = cost;
    if let Some(key) = answer_key {
        let answered = !failed_before_execution && response.data != async_graphql::Value::Null;
        keep_answer(&state.answers, key, answered, &scope, &body, &summary);
    }
    encoded(status, media, body, summary)
}

/// Keep `body` as the answer to `key` when it may be served again: the request was answered
/// (not refused before execution), its errors answer the request itself, and every read was
/// fresh (see [`crate::answers`]).
fn keep_answer(
    answers: &AnswerCache,
    key: AnswerKey,
    answered: bool,
    scope: &RequestScope,
    body: &Bytes,
    summary: &RequestSummary,
) {
    let Some(fresh_until) = scope.reusable_until() else {
        return;
    };
    let deterministic = summary
        .error_codes
        .iter()
        .all(|(code, _)| answers::is_deterministic(code));
    if answered && deterministic {
        let answer = Answer::new(
            body.clone(),
            scope.chunks_read(),
            summary.error_codes.clone(),
            fresh_until,
            scope.conditions(),
        );
        answers.put(key, answer);
    }
}

/// The body of a request that failed before execution: no `data` entry at all.
#[derive(serde::Serialize)]
struct FailedBeforeExecution<'a> {
    errors: &'a [async_graphql::ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
}

/// An encoded GraphQL response, with its summary for the request log line and metrics.
fn encoded(
    status: StatusCode,
    media: &'static str,
    body: Bytes,
    summary: RequestSummary,
) -> Response {
    let mut response = with_media(status, media, body);
    response.extensions_mut().insert(summary);
    response
}

/// Test-only faults in the request path. Compiled only with the `fault-injection` feature,
/// which `cargo test` and `cargo bench` turn on (the crate's dev-dependency on itself) and
/// `cargo build`, `cargo run` and `cargo install` leave off: no binary a deployment builds
/// has this code.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use axum::http::HeaderMap;

    /// `x-chatstats-fault: panic` makes the handler panic, as a broken invariant would.
    pub const HEADER: &str = "x-chatstats-fault";

    /// True when the request asks for a panic.
    pub fn asks_panic(headers: &HeaderMap) -> bool {
        headers
            .get(HEADER)
            .is_some_and(|v| v.as_bytes() == b"panic")
    }

    pub(super) fn inject(headers: &HeaderMap) {
        if asks_panic(headers) {
            // Built at run time from the request, as a real panic message can be: the panic
            // hook must not log it (the tests send a key here and look for it in the logs).
            let key = headers
                .get(crate::auth::API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            panic!("injected fault (request key {key})");
        }
    }
}
