//! GraphQL over WebSocket on `/graphql` (graphql-transport-ws, and the older graphql-ws):
//! subscriptions ([`crate::graphql::subscription`]), and queries if a client sends them there.
//!
//! Entry point: [`upgrade`], called by the `/graphql` GET handler for `Upgrade: websocket`.
//!
//! - **Auth.** The upgrade passes `gate` like any `/graphql` request: a key in the headers is
//!   checked there. Browsers cannot set headers on a WebSocket, so `gate` lets an upgrade
//!   without a key through, and the key may come in the `connection_init` payload instead
//!   (`{"authorization": "Bearer <key>"}` or `{"x-api-key": "<key>"}`; it wins over a header
//!   key). A connection without a valid key is closed (code 1002 with the reason) unless
//!   access is open. Every operation gets the [`Caller`] in its *request* data (the guard and
//!   the resolvers read it there), and its own [`Fetcher`]. After a configuration reload,
//!   each new operation has the connection's key checked again against the clients then in
//!   force (a revoked key: `UNAUTHENTICATED`); running subscriptions go on.
//! - **Protocol.** A [`Referee`] reads every graphql-transport-ws message before
//!   async-graphql's state machine does and closes the connection as the protocol says: 4400
//!   (with the reason) for a message that is not valid JSON, has an unknown `type` or
//!   mistyped fields; 4401 for a `subscribe` before `connection_init`; 4409 for a `subscribe`
//!   with the id of a running operation; 4429 for a second `connection_init`. A refused
//!   handshake (no graphql-transport-ws protocol, missing WebSocket headers) is an HTTP 4xx
//!   with a coded JSON error.
//! - **Limits.** Every operation sent over a socket spends a token of its client's request
//!   rate (`[limits] requests_per_minute`, the same bucket as its HTTP requests; the upgrade
//!   itself is one request): over it, that operation is answered with `RATE_LIMITED` and
//!   `extensions.retryAfter`, and the connection stays usable. Every operation running over a
//!   socket also holds one of its client's `[limits] max_subscriptions_per_client` slots
//!   (counted across the client's connections; by peer IP under open access) until it ends. One more is refused with `RATE_LIMITED` (a
//!   quota of the client, like the request rate, not a property of the document) as an error
//!   on that operation only; the connection stays usable.
//! - **Panics.** A panic while an operation runs (a bug) ends that operation with an
//!   `INTERNAL_SERVER_ERROR` error, counted in `chatstats_panics_total`; the connection and
//!   its other operations go on.
//! - **Shutdown.** [`Live::close`] tells every connection to send a close frame (1001, going
//!   away) and stop; the subscriptions' streams are dropped with the connection.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_graphql::http::{ClientMessage, WebSocketProtocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, ErrorExtensions, Executor, Request, Response, ServerError};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response as HttpResponse;
use futures::stream::{BoxStream, StreamExt};
use futures::{FutureExt, SinkExt};
use tokio::sync::watch;

use crate::auth::{Access, Caller, API_KEY_HEADER};
use crate::cache::ChunkCache;
use crate::error::code;
use crate::fetch::{Fetcher, RequestScope};
use crate::http::Served;
use crate::process_metrics::Metrics;
use crate::rate_limit::{rate_limited_message, retry_after_secs, RateKey};

/// The close code sent to every connection when the server shuts down (RFC 6455: going away).
pub const GOING_AWAY: u16 = 1001;

/// What every WebSocket connection shares: the per-client slots and the shutdown signal.
pub struct Live {
    /// `[limits] max_subscriptions_per_client`; a reload may change it
    /// ([`Live::set_max_per_client`]).
    max_per_client: std::sync::atomic::AtomicUsize,
    /// Slots held, by client key (`client:<name>`, or `ip:<peer>` under open access).
    held: Mutex<HashMap<String, usize>>,
    metrics: Arc<Metrics>,
    /// `true` once the server shuts down; every connection holds a receiver, so
    /// [`Live::closed`] can wait for the last one to finish.
    closing: watch::Sender<bool>,
}

impl Live {
    pub fn new(max_per_client: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            max_per_client: std::sync::atomic::AtomicUsize::new(max_per_client),
            held: Mutex::new(HashMap::new()),
            metrics,
            closing: watch::Sender::new(false),
        }
    }

    /// A reloaded `[limits] max_subscriptions_per_client`: applies to the operations that
    /// start after it; the ones running keep their slots.
    pub fn set_max_per_client(&self, max_per_client: usize) {
        self.max_per_client
            .store(max_per_client, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ask every connection to close (1001) and stop.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Wait until every connection has closed, at most `limit`.
    pub async fn closed(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.closing.closed()).await;
    }

    /// One slot for an operation of `client`, or `RATE_LIMITED`.
    fn take(self: &Arc<Self>, client: String) -> Result<Slot, ServerError> {
        let mut held = self.held.lock().expect("slots lock is never poisoned");
        let count = held.entry(client.clone()).or_default();
        let limit = self
            .max_per_client
            .load(std::sync::atomic::Ordering::Relaxed);
        if *count >= limit {
            let error = async_graphql::Error::new(format!(
                "this client already runs {limit} subscriptions, its limit \
                 ([limits] max_subscriptions_per_client); complete one before starting another"
            ))
            .extend_with(|_, ext| {
                ext.set("code", code::RATE_LIMITED);
                ext.set("limit", limit as u64);
                ext.set("setting", "limits.max_subscriptions_per_client");
            });
            return Err(error.into_server_error(async_graphql::Pos::default()));
        }
        *count += 1;
        self.metrics.subscription_started();
        Ok(Slot {
            live: self.clone(),
            client,
        })
    }
}

/// A held slot; dropping it (the operation's stream ends or is dropped) gives it back.
struct Slot {
    live: Arc<Live>,
    client: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.live.held.lock().expect("slots lock is never poisoned");
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
        self.live.metrics.subscription_ended();
    }
}

/// What the upgrade handler needs from the HTTP state.
pub struct Socket {
    /// The configuration in force: each operation (and the `connection_init`) reads the one
    /// current when it starts, so a connection opened before a reload runs its later
    /// operations on the new schema, limits and rate.
    pub served: Arc<Served>,
    /// The API keys that admitted the upgrade (a key in its headers was checked against them).
    pub access: Arc<Access>,
    pub cache: Arc<ChunkCache>,
    pub live: Arc<Live>,
    /// Test-only: every operation panics (the upgrade asked with `x-chatstats-fault: panic`).
    #[cfg(feature = "fault-injection")]
    pub panics: bool,
}

/// Answer a WebSocket upgrade on `/graphql`. `caller`: from a key in the upgrade's headers.
pub async fn upgrade(
    socket: Socket,
    caller: Option<Caller>,
    peer: Option<SocketAddr>,
    request: axum::extract::Request,
) -> HttpResponse {
    let (mut parts, _body) = request.into_parts();
    let Some(protocol) = protocol(&parts.headers) else {
        return handshake_refused(
            StatusCode::BAD_REQUEST,
            "WebSocket /graphql speaks `Sec-WebSocket-Protocol: graphql-transport-ws`".into(),
        );
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        // A missing or wrong `Connection`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version` (400),
        // or a connection that cannot be upgraded (426).
        Err(rejection) => {
            return handshake_refused(
                rejection.status(),
                format!("not a WebSocket handshake: {}", rejection.body_text()),
            )
        }
    };
    let peer = peer.map(|p| p.ip());
    #[cfg(feature = "fault-injection")]
    let socket = Socket {
        panics: crate::http::fault::asks_panic(&parts.headers),
        ..socket
    };
    let upgrade_key = key_of(&parts.headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |ws| serve(ws, protocol, socket, caller, upgrade_key, peer))
}

/// A refused upgrade: a coded JSON error like every other refusal of `/graphql`.
fn handshake_refused(status: StatusCode, message: String) -> HttpResponse {
    crate::http::reject(status, crate::http::APPLICATION_JSON, &message)
}

fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| p.trim().parse().ok())
}

/// One connection: the graphql-transport-ws state machine of async-graphql between the socket
/// and our executor, until the client leaves or the server shuts down.
async fn serve(
    ws: WebSocket,
    protocol: WebSocketProtocols,
    socket: Socket,
    header_caller: Option<Caller>,
    upgrade_key: HeaderMap,
    peer: Option<IpAddr>,
) {
    let mut closing = socket.live.closing.subscribe();
    let caller = Arc::new(OnceLock::new());
    let executor = SocketExecutor {
        served: socket.served.clone(),
        cache: socket.cache,
        live: socket.live,
        caller: caller.clone(),
        peer,
        #[cfg(feature = "fault-injection")]
        panics: socket.panics,
    };
    let served = socket.served;
    let by_upgrade = header_caller.map(|caller| Authenticated {
        caller,
        key: upgrade_key,
        access: socket.access,
    });
    let on_init = move |payload: serde_json::Value| {
        authenticate(served.current().access.clone(), by_upgrade, payload, caller)
    };
    let (mut sink, stream) = ws.split();
    let referee = Arc::new(Mutex::new(Referee::new(protocol)));
    let input = stream
        .take_while(|message| futures::future::ready(message.is_ok()))
        .filter_map(|message| {
            futures::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        })
        // A message the referee refuses ends the input, which ends `messages`; the loop
        // below then sends the referee's close frame.
        .scan(referee.clone(), |referee, bytes| {
            futures::future::ready(lock(referee).read(&bytes))
        });
    let mut messages =
        async_graphql::http::WebSocket::from_message_stream(executor, input, protocol)
            .on_connection_init(on_init);
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(WsMessage::Text(text)) => {
                    lock(&referee).sent(&text);
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: close_reason(reason).into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => {
                    let verdict = lock(&referee).verdict.take();
                    if let Some((code, reason)) = verdict {
                        let frame = CloseFrame { code, reason: close_reason(reason).into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                    }
                    break;
                }
            },
            _ = closing.wait_for(|closing| *closing).map(|_| ()) => {
                let frame = CloseFrame {
                    code: GOING_AWAY,
                    reason: "the server is shutting down".into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    // Dropping `messages` drops every subscription's stream, which gives back its slot.
}

/// Close codes of graphql-transport-ws
/// (<https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md>).
pub mod close {
    /// A message that is not a valid graphql-transport-ws message.
    pub const BAD_REQUEST: u16 = 4400;
    /// A `subscribe` before the connection was acknowledged.
    pub const UNAUTHORIZED: u16 = 4401;
    /// A `subscribe` with the id of an operation still running.
    pub const SUBSCRIBER_ALREADY_EXISTS: u16 = 4409;
    /// A second `connection_init`.
    pub const TOO_MANY_INITIALISATION_REQUESTS: u16 = 4429;
}

/// The longest reason a close frame carries (RFC 6455: 125 bytes of payload, 2 of them the code).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// `reason` cut to what a close frame carries, on a character boundary (reasons can quote the
/// client's input, e.g. an id).
fn close_reason(mut reason: String) -> String {
    if reason.len() > MAX_CLOSE_REASON_BYTES {
        let mut end = MAX_CLOSE_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

fn lock(referee: &Mutex<Referee>) -> std::sync::MutexGuard<'_, Referee> {
    referee.lock().expect("the referee lock is never poisoned")
}

/// The graphql-transport-ws rules async-graphql's state machine leaves out (it closes 1002 on
/// any message it cannot read, 1011 on a `subscribe` before `connection_init`, and replaces a
/// running operation whose id is reused): every client message passes here first, and the
/// first one that breaks a rule ends the connection with the protocol's close code.
///
/// One per connection, shared by the input stream (which reads client messages) and the
/// connection's loop (which sees the server's `complete`s): both run in the connection's one
/// task, so the lock is never contended.
struct Referee {
    /// The legacy `graphql-ws` protocol (subscriptions-transport-ws) is passed through as is.
    checked: bool,
    /// A `connection_init` was read. async-graphql reads no further message until it has
    /// answered that one, and closes the connection if it refused it, so any later message
    /// is read on an acknowledged connection.
    initialised: bool,
    /// Ids of operations started and not yet completed by either side.
    running: HashSet<String>,
    /// The close frame for the message that broke a rule.
    verdict: Option<(u16, String)>,
}

impl Referee {
    fn new(protocol: WebSocketProtocols) -> Self {
        Self {
            checked: protocol == WebSocketProtocols::GraphQLWS,
            initialised: false,
            running: HashSet::new(),
            verdict: None,
        }
    }

    /// The message for async-graphql, or None (the input ends) after setting the verdict.
    fn read(&mut self, bytes: &[u8]) -> Option<serde_json::Result<ClientMessage>> {
        if !self.checked {
            return Some(ClientMessage::from_bytes(bytes));
        }
        match self.judge(bytes) {
            Ok(message) => Some(Ok(message)),
            Err(verdict) => {
                self.verdict = Some(verdict);
                None
            }
        }
    }

    fn judge(&mut self, bytes: &[u8]) -> Result<ClientMessage, (u16, String)> {
        let invalid = |why: String| {
            (
                close::BAD_REQUEST,
                format!("Invalid message received: {why}"),
            )
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON ({e})")))?;
        let kind = value
            .get("type")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| invalid("an object with a string `type` expected".into()))?;
        match kind {
            "connection_init" => {
                if self.initialised {
                    return Err((
                        close::TOO_MANY_INITIALISATION_REQUESTS,
                        "Too many initialisation requests".into(),
                    ));
                }
                self.initialised = true;
            }
            "ping" | "pong" => {}
            "subscribe" => {
                let id = operation_id(&value).map_err(invalid)?;
                check_subscribe_payload(&value["payload"]).map_err(invalid)?;
                if !self.initialised {
                    return Err((close::UNAUTHORIZED, "Unauthorized".into()));
                }
                if !self.running.insert(id.to_owned()) {
                    return Err((
                        close::SUBSCRIBER_ALREADY_EXISTS,
                        format!("Subscriber for {id} already exists"),
                    ));
                }
            }
            "complete" => {
                let id = operation_id(&value).map_err(invalid)?;
                self.running.remove(id);
            }
            other => {
                return Err(invalid(format!(
                    "unknown type {other:?} (graphql-transport-ws: connection_init, ping, \
                     pong, subscribe, complete)"
                )))
            }
        }
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
    }

    /// The server sent `text`: a `complete` frees its id for a new operation.
    fn sent(&mut self, text: &str) {
        // async-graphql writes the `type` tag first; only `complete` needs parsing.
        if self.checked && text.starts_with(r#"{"type":"complete""#) {
            if let Ok(complete) = serde_json::from_str::<serde_json::Value>(text) {
                if let Some(id) = complete["id"].as_str() {
                    self.running.remove(id);
                }
            }
        }
    }
}

/// The `id` of a `subscribe` or `complete`: a non-empty string.
fn operation_id(message: &serde_json::Value) -> Result<&str, String> {
    match message.get("id").and_then(serde_json::Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err("`id` must be a non-empty string".into()),
    }
}

/// The payload of a `subscribe`, as the protocol types it: `query` a string, `variables` and
/// `extensions` objects or null, `operationName` a string or null.
fn check_subscribe_payload(payload: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    let Value::Object(fields) = payload else {
        return Err("`payload` of a subscribe must be an object".into());
    };
    if !matches!(fields.get("query"), Some(Value::String(_))) {
        return Err("`payload.query` must be a string".into());
    }
    for (name, object) in [
        ("variables", true),
        ("extensions", true),
        ("operationName", false),
    ] {
        match fields.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Object(_)) if object => {}
            Some(Value::String(_)) if !object => {}
            Some(_) if object => return Err(format!("`payload.{name}` must be an object or null")),
            Some(_) => return Err(format!("`payload.{name}` must be a string or null")),
        }
    }
    Ok(())
}

/// Who a connection authenticated as, with which key and against which clients: an operation
/// that starts after a configuration reload has its key checked again against the clients then
/// in force, so a revoked key stops working on open connections too.
struct Authenticated {
    caller: Caller,
    /// The key's headers (`authorization` or `x-api-key`), marked sensitive; empty under open
    /// access. Never logged.
    key: HeaderMap,
    /// The API keys that admitted it.
    access: Arc<Access>,
}

/// The key headers of the upgrade request, kept to check the key again after a reload.
fn key_of(headers: &HeaderMap) -> HeaderMap {
    let mut key = HeaderMap::new();
    for name in [
        header::AUTHORIZATION,
        header::HeaderName::from_static(API_KEY_HEADER),
    ] {
        if let Some(value) = headers.get(&name) {
            let mut value = value.clone();
            value.set_sensitive(true);
            key.insert(name, value);
        }
    }
    key
}

/// `connection_init`: the key in the payload, else the one the upgrade's headers carried, else
/// open access; the caller is kept for every operation of the connection (and checked again
/// after a reload, see [`Authenticated`]).
fn authenticate(
    access: Arc<Access>,
    by_upgrade: Option<Authenticated>,
    payload: serde_json::Value,
    cell: Arc<OnceLock<Authenticated>>,
) -> impl Future<Output = async_graphql::Result<Data>> + Send + 'static {
    let result = (|| {
        let headers = key_headers(&payload)?;
        let authenticated = match by_upgrade {
            Some(by_upgrade) if headers.is_empty() => by_upgrade,
            _ => Authenticated {
                caller: access
                    .clients
                    .authenticate(&headers)
                    .map_err(|e| async_graphql::Error::new(e.to_string()))?,
                key: key_of(&headers),
                access,
            },
        };
        let _ = cell.set(authenticated);
        Ok(Data::default())
    })();
    futures::future::ready(result)
}

/// The key fields of a `connection_init` payload as the headers they stand for (names
/// compared without case).
fn key_headers(payload: &serde_json::Value) -> async_graphql::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    let Some(fields) = payload.as_object() else {
        return Ok(headers);
    };
    for (name, value) in fields {
        let name = name.to_ascii_lowercase();
        let header = match name.as_str() {
            "authorization" => header::AUTHORIZATION,
            API_KEY_HEADER => header::HeaderName::from_static(API_KEY_HEADER),
            _ => continue,
        };
        let value = value
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
            .ok_or_else(|| async_graphql::Error::new(format!("`{name}` must be a string")))?;
        headers.insert(header, value);
    }
    Ok(headers)
}

/// The schema, with what every operation of one connection needs in its request data.
#[derive(Clone)]
struct SocketExecutor {
    /// The schema and the request rate limit (which every operation spends), as configured
    /// when the operation starts.
    served: Arc<Served>,
    cache: Arc<ChunkCache>,
    live: Arc<Live>,
    caller: Arc<OnceLock<Authenticated>>,
    peer: Option<IpAddr>,
    #[cfg(feature = "fault-injection")]
    panics: bool,
}

impl SocketExecutor {
    /// The connection's caller under the clients of `access` (those in force when the
    /// operation starts), or `UNAUTHENTICATED` when a reload revoked its key.
    fn caller(&self, access: &Arc<Access>) -> Result<Caller, ServerError> {
        let Some(authenticated) = self.caller.get() else {
            return Ok(Caller::nobody());
        };
        if Arc::ptr_eq(&authenticated.access, access) {
            return Ok(authenticated.caller.clone());
        }
        access
            .clients
            .authenticate(&authenticated.key)
            .map_err(|e| {
                async_graphql::Error::new(e.to_string())
                    .extend_with(|_, ext| ext.set("code", code::UNAUTHENTICATED))
                    .into_server_error(async_graphql::Pos::default())
            })
    }

    /// Spend one token of the caller's request rate: its bucket's key, or `RATE_LIMITED`.
    async fn count(&self, access: &Access, caller: &Caller) -> Result<RateKey, ServerError> {
        let key = RateKey::of(caller.client_name(), self.peer);
        match access.rate.check(&key).await {
            Ok(()) => Ok(key),
            Err(wait) => {
                let seconds = retry_after_secs(wait);
                let error = async_graphql::Error::new(rate_limited_message(seconds)).extend_with(
                    |_, ext| {
                        ext.set("code", code::RATE_LIMITED);
                        ext.set("retryAfter", seconds);
                    },
                );
                Err(error.into_server_error(async_graphql::Pos::default()))
            }
        }
    }

    /// The caller and a fresh request scope, in the request's own data.
    fn prepare(&self, request: Request, caller: Caller) -> Request {
        let fetcher = Fetcher {
            cache: self.cache.clone(),
            scope: Arc::new(RequestScope::new()),
        };
        request.data(caller).data(fetcher)
    }
}

impl Executor for SocketExecutor {
    fn execute(&self, request: Request) -> impl Future<Output = Response> + Send {
        let state = self.served.current();
        let executor = self.clone();
        async move {
            let admitted = match executor.caller(&state.access) {
                Ok(caller) => executor
                    .count(&state.access, &caller)
                    .await
                    .map(|_| executor.prepare(request, caller)),
                Err(error) => Err(error),
            };
            match admitted {
                Ok(request) => state.ws_schema.execute(request).await,
                Err(error) => Response::from_errors(vec![error]),
            }
        }
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        // Spending the rate may take a round trip to the shared tier: the stream starts once
        // it is spent.
        let executor = self.clone();
        async move { executor.stream(request, session_data).await }
            .flatten_stream()
            .boxed()
    }
}

impl SocketExecutor {
    /// What [`Executor::execute_stream`] answers: the caller's rate spent, a subscription
    /// slot taken, then the operation's responses (or the refusal of either).
    async fn stream(
        self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let refused = |error| {
            futures::stream::once(futures::future::ready(Response::from_errors(vec![error])))
                .boxed()
        };
        let state = self.served.current();
        let caller = match self.caller(&state.access) {
            Ok(caller) => caller,
            Err(error) => return refused(error),
        };
        let key = match self.count(&state.access, &caller).await {
            Ok(key) => key,
            Err(error) => return refused(error),
        };
        let slot = match self.live.take(key.to_string()) {
            Ok(slot) => slot,
            Err(error) => return refused(error),
        };
        let request = self.prepare(request, caller);
        let responses = state
            .ws_schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default());
        #[cfg(feature = "fault-injection")]
        let responses = if self.panics {
            futures::stream::once(async { panic!("injected fault in a WebSocket operation") })
                .boxed()
        } else {
            responses
        };
        let metrics = self.live.metrics.clone();
        // A panic would otherwise unwind through the connection's task and drop the socket
        // with every operation on it; it ends this operation only (the stream stops after it).
        std::panic::AssertUnwindSafe(responses)
            .catch_unwind()
            .map(move |response| {
                // The slot lives as long as the stream.
                let _held = &slot;
                response.unwrap_or_else(|_payload| {
                    metrics.panic_caught();
                    let error = async_graphql::Error::new(
                        "internal error: the server failed while running this operation; \
                         it has been logged",
                    )
                    .extend_with(|_, ext| ext.set("code", code::INTERNAL_SERVER_ERROR));
                    Response::from_errors(vec![
                        error.into_server_error(async_graphql::Pos::default())
                    ])
                })
            })
            .boxed()
    }
}
