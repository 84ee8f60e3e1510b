//! Subscriptions over graphql-transport-ws on `/graphql`: live series that refresh with the
//! cache's live TTL, one upstream poll for any number of subscribers, the per-client limit,
//! keys in headers or in `connection_init`, and clean ends on disconnect and on SIGTERM.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{
    client, eventually, rfc3339, sample, spawn_app, spawn_app_with, Binary, TestApp,
};
use chatstats::config::Scope;

/// A bound on every wait for a message, so a broken server fails the test instead of hanging
/// it. Tests wait on messages, never on time.
const PATIENCE: Duration = Duration::from_secs(30);

/// A live dashboard tile: Chat-Tonic's pending dialogs over a window that touches now (its
/// newest chunk is live).
fn live_query() -> String {
    let now = chrono::Utc::now();
    let from = rfc3339(now - chrono::Duration::hours(3));
    let to = rfc3339(now + chrono::Duration::hours(1));
    format!(
        r#"subscription {{ workspace(id: "acme") {{ id
            dialogs {{ pending(window: {{from: "{from}", to: "{to}", granularity: HOUR, timeZone: "UTC"}}) {{ total sources }} }} }} }}"#
    )
}

/// A graphql-transport-ws client.
struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
enum End {
    Closed(Option<u16>),
    Message(Value),
}

impl Socket {
    /// Open `/graphql` with `headers`; the HTTP status when the upgrade is refused.
    async fn open(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Result<Socket, u16> {
        match tokio_tungstenite::connect_async(crate::helpers::ws_request(addr, headers)).await {
            Ok((ws, _)) => Ok(Socket { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    }

    /// Open and initialise; panics unless the server acknowledges.
    async fn connect(app: &TestApp, headers: &[(&str, &str)], payload: Value) -> Socket {
        let mut socket = Socket::open(app.addr, headers)
            .await
            .expect("the upgrade is accepted");
        socket.init(payload).await;
        let ack = socket.next().await;
        assert_eq!(ack, End::Message(json!({"type": "connection_ack"})));
        socket
    }

    async fn init(&mut self, payload: Value) {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
    }

    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("the message is sent");
    }

    async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query}}))
            .await;
    }

    /// The next protocol message, or how the connection ended.
    async fn next(&mut self) -> End {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message within the test's patience");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return End::Message(serde_json::from_str(&text).expect("JSON message"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return End::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return End::Closed(None),
            }
        }
    }

    /// The close frame that must come next, skipping other messages: its code and reason.
    async fn close_frame(&mut self) -> (u16, String) {
        // One bound for the whole wait: a live subscription that is never closed keeps
        // sending messages.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("a close frame within the test's patience");
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// The next message, which must be a `next` for `id`; its payload.
    async fn next_payload(&mut self, id: &str) -> Value {
        match self.next().await {
            End::Message(message) if message["type"] == "next" && message["id"] == id => {
                message["payload"].clone()
            }
            other => panic!("expected `next` for {id}, got {other:?}"),
        }
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Upstream calls, as (provider, path) pairs, sorted: dates in the parameters depend on when
/// the test runs.
async fn call_paths(app: &TestApp) -> Vec<(String, String)> {
    let mut calls: Vec<(String, String)> = app
        .calls()
        .await
        .into_iter()
        .map(|c| (c.provider, c.path))
        .collect();
    calls.sort();
    calls
}

async fn live_app(max_subscriptions: usize) -> TestApp {
    spawn_app_with(|config| {
        config.cache.live_ttl_secs = 1;
        config.limits.max_subscriptions_per_client = max_subscriptions;
    })
    .await
}

fn assert_live_emission(payload: &Value) {
    assert!(payload.get("errors").is_none(), "{payload}");
    let pending = &payload["data"]["workspace"]["dialogs"]["pending"];
    assert!(pending["total"].as_f64().is_some(), "{payload}");
    assert_eq!(pending["sources"], json!(["CHAT_TONIC"]));
}

#[tokio::test]
async fn a_subscriber_gets_the_series_now_and_again_when_its_live_chunk_refreshes() {
    let app = live_app(20).await;
    let mut socket = Socket::connect(&app, &[], json!({})).await;
    socket.subscribe("1", &live_query()).await;
    let first = socket.next_payload("1").await;
    assert_live_emission(&first);
    let after_first = app.calls_to("chat_tonic").await.len();
    assert!(after_first >= 1);
    let second = socket.next_payload("1").await;
    assert_live_emission(&second);
    let after_second = app.calls_to("chat_tonic").await.len();
    assert!(
        after_second > after_first,
        "the second emission refreshed the live chunk: {after_first} then {after_second} calls"
    );
    socket.close().await;
}

/// Subscribe `n` clients (each on its own connection, all initialised before any subscribes,
/// so the first emissions come together), wait until each has its second emission, and
/// return the upstream calls.
async fn calls_for_subscribers(n: usize) -> Vec<(String, String)> {
    let app = live_app(n + 1).await;
    let query = live_query();
    let mut sockets = Vec::new();
    for _ in 0..n {
        sockets.push(Socket::connect(&app, &[], json!({})).await);
    }
    let emissions = sockets.into_iter().map(|mut socket| {
        let query = query.clone();
        tokio::spawn(async move {
            socket.subscribe("live", &query).await;
            let first = socket.next_payload("live").await;
            let second = socket.next_payload("live").await;
            (socket, first, second)
        })
    });
    let emissions = futures::future::join_all(emissions).await;
    let calls = call_paths(&app).await;
    for emission in emissions {
        let (socket, first, second) = emission.expect("the subscriber runs");
        assert_live_emission(&first);
        assert_live_emission(&second);
        socket.close().await;
    }
    calls
}

#[tokio::test]
async fn a_hundred_subscribers_cost_the_upstream_calls_of_one() {
    let one = calls_for_subscribers(1).await;
    let hundred = calls_for_subscribers(100).await;
    assert!(!one.is_empty());
    assert_eq!(hundred, one, "1 subscriber: {} calls", one.len());
}

#[tokio::test]
async fn subscriptions_end_when_their_clients_disconnect() {
    let app = live_app(20).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut socket = Socket::connect(&app, &[], json!({})).await;
        socket.subscribe("1", &live_query()).await;
        assert_live_emission(&socket.next_payload("1").await);
        sockets.push(socket);
    }
    let active = |metrics: &str| sample(metrics, "chatstats_subscriptions_active", "");
    assert_eq!(active(&app.metrics().await), Some(3.0));
    for socket in sockets {
        socket.close().await;
    }
    eventually(PATIENCE, "the subscriptions to end", || async {
        (active(&app.metrics().await) == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_subscription_over_the_client_limit_is_rate_limited_and_the_connection_stays_usable() {
    let app = live_app(2).await;
    let mut socket = Socket::connect(&app, &[], json!({})).await;
    for id in ["1", "2"] {
        socket.subscribe(id, &live_query()).await;
        assert_live_emission(&socket.next_payload(id).await);
    }
    socket.subscribe("3", &live_query()).await;
    // The first two may emit again meanwhile: look for the answer to `3`.
    let refused = loop {
        match socket.next().await {
            End::Message(message) if message["id"] == "3" => break message,
            End::Message(_) => continue,
            End::Closed(code) => panic!("the connection closed: {code:?}"),
        }
    };
    assert_eq!(refused["type"], "next", "{refused}");
    let error = &refused["payload"]["errors"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{refused}");
    assert_eq!(error["extensions"]["limit"], 2);
    // Completing one frees its slot for another on the same connection.
    socket.send(json!({"id": "1", "type": "complete"})).await;
    socket.subscribe("4", &live_query()).await;
    let accepted = loop {
        match socket.next().await {
            End::Message(message) if message["id"] == "4" => break message,
            End::Message(_) => continue,
            End::Closed(code) => panic!("the connection closed: {code:?}"),
        }
    };
    assert_live_emission(&accepted["payload"]);
    socket.close().await;
}

#[tokio::test]
async fn a_websocket_takes_its_key_from_the_headers_or_from_connection_init() {
    let app = spawn_app_with(|config| {
        config.clients = vec![client("acme-only", "k-acme", &["acme"], &[Scope::Read])];
    })
    .await;
    // A browser's way: no headers, the key in `connection_init`.
    let mut socket = Socket::connect(&app, &[], json!({"authorization": "Bearer k-acme"})).await;
    socket.subscribe("acme", &live_query()).await;
    assert_live_emission(&socket.next_payload("acme").await);
    socket
        .subscribe(
            "globex",
            r#"subscription { workspace(id: "globex") { id } }"#,
        )
        .await;
    let foreign = socket.next_payload("globex").await;
    assert_eq!(foreign["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert!(foreign["data"].is_null(), "{foreign}");
    socket.close().await;

    // A server's way: the key in a header, nothing in `connection_init`.
    let mut socket = Socket::connect(&app, &[("x-api-key", "k-acme")], json!({})).await;
    socket.subscribe("acme", &live_query()).await;
    assert_live_emission(&socket.next_payload("acme").await);
    socket.close().await;

    // No key anywhere: the connection is refused at `connection_init`.
    let mut socket = Socket::open(app.addr, &[]).await.expect("upgraded");
    socket.init(json!({})).await;
    assert_eq!(socket.next().await, End::Closed(Some(1002)));
    // A wrong key in `connection_init`, too.
    let mut socket = Socket::open(app.addr, &[]).await.expect("upgraded");
    socket.init(json!({"x-api-key": "k-wrong"})).await;
    assert_eq!(socket.next().await, End::Closed(Some(1002)));
    // A wrong key in the headers is refused before the upgrade.
    assert_eq!(
        Socket::open(app.addr, &[("x-api-key", "k-wrong")])
            .await
            .err(),
        Some(401)
    );
}

#[tokio::test]
async fn sigterm_closes_live_subscriptions_with_1001_and_the_process_exits_0() {
    let mut binary = Binary::start(None, &[]);
    let mut socket = Socket::open(binary.addr, &[]).await.expect("upgraded");
    socket.init(json!({})).await;
    assert_eq!(
        socket.next().await,
        End::Message(json!({"type": "connection_ack"}))
    );
    socket.subscribe("1", &live_query()).await;
    assert_live_emission(&socket.next_payload("1").await);
    binary.terminate();
    let end = loop {
        match socket.next().await {
            End::Message(_) => continue,
            closed => break closed,
        }
    };
    assert_eq!(end, End::Closed(Some(1001)));
    let status = binary.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn every_operation_over_a_websocket_spends_the_request_rate_and_the_socket_outlives_a_refusal(
) {
    // Open access: the peer address's bucket, 4 a minute. The upgrade is one request.
    let app = spawn_app_with(|config| config.limits.requests_per_minute = 4).await;
    let mut socket = Socket::connect(&app, &[], json!({})).await;
    for id in ["1", "2", "3"] {
        socket.subscribe(id, "{ __typename }").await;
        let payload = socket.next_payload(id).await;
        assert_eq!(payload["data"]["__typename"], "Query", "{payload}");
        assert_eq!(
            socket.next().await,
            End::Message(json!({"id": id, "type": "complete"}))
        );
    }
    socket.subscribe("4", &live_query()).await;
    let refused = socket.next_payload("4").await;
    let error = &refused["errors"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{refused}");
    // 4 a minute: the next token comes within 15 s.
    let retry = error["extensions"]["retryAfter"]
        .as_u64()
        .expect("retryAfter");
    assert!((1..=15).contains(&retry), "{retry}");
    assert_eq!(
        socket.next().await,
        End::Message(json!({"id": "4", "type": "complete"}))
    );
    // The connection is still usable.
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await, End::Message(json!({"type": "pong"})));
    // One bucket for the client's HTTP requests and its socket operations.
    let reply = app.post(&json!({"query": "{ __typename }"}), &[]).await;
    assert_eq!(reply.status, reqwest::StatusCode::TOO_MANY_REQUESTS);
    socket.close().await;
}

#[tokio::test]
async fn a_panic_in_a_websocket_operation_ends_that_operation_with_a_coded_error_not_the_socket() {
    let app = spawn_app_with(|_| {}).await;
    // The test-only fault: every operation on this connection panics.
    let fault = chatstats::http::fault::HEADER;
    let mut socket = Socket::connect(&app, &[(fault, "panic")], json!({})).await;
    for id in ["1", "2"] {
        socket.subscribe(id, &live_query()).await;
        let payload = socket.next_payload(id).await;
        assert_eq!(
            payload["errors"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR",
            "{payload}"
        );
        assert_eq!(
            socket.next().await,
            End::Message(json!({"id": id, "type": "complete"}))
        );
    }
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await, End::Message(json!({"type": "pong"})));
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, "chatstats_panics_total", ""), Some(2.0));
    assert_eq!(
        sample(&metrics, "chatstats_subscriptions_active", ""),
        Some(0.0)
    );
    socket.close().await;
}

#[tokio::test]
async fn invalid_graphql_transport_ws_messages_close_4400_with_a_reason() {
    let app = spawn_app().await;
    let cases: [(&str, Message); 7] = [
        (
            "bad JSON",
            Message::Text(r#"{"type": "subscribe", "id""#.into()),
        ),
        ("no type", Message::Text(r#"{"id": "1"}"#.into())),
        // `start` is the legacy protocol's word; graphql-transport-ws has no such type.
        (
            "unknown type",
            Message::Text(r#"{"id": "1", "type": "start"}"#.into()),
        ),
        (
            "no payload",
            Message::Text(r#"{"id": "1", "type": "subscribe"}"#.into()),
        ),
        (
            "variables not an object",
            Message::Text(
                json!({"id": "1", "type": "subscribe",
                       "payload": {"query": "{ __typename }", "variables": []}})
                .to_string()
                .into(),
            ),
        ),
        (
            "complete without id",
            Message::Text(r#"{"type": "complete"}"#.into()),
        ),
        (
            "binary junk",
            Message::Binary(vec![0xff, 0x00, 0x7b].into()),
        ),
    ];
    for (what, message) in cases {
        let mut socket = Socket::connect(&app, &[], json!({})).await;
        socket.ws.send(message).await.expect("the message is sent");
        let (code, reason) = socket.close_frame().await;
        assert_eq!(code, 4400, "{what}: {reason}");
        assert!(
            reason.starts_with("Invalid message received: "),
            "{what}: {reason:?}"
        );
        assert!(reason.len() <= 123, "{what}: {reason:?}");
    }
}

#[tokio::test]
async fn a_subscribe_before_connection_init_closes_4401_and_a_second_init_4429() {
    let app = spawn_app().await;
    let mut socket = Socket::open(app.addr, &[]).await.expect("upgraded");
    socket.subscribe("1", "{ __typename }").await;
    assert_eq!(socket.close_frame().await, (4401, "Unauthorized".into()));

    let mut socket = Socket::connect(&app, &[], json!({})).await;
    socket.init(json!({})).await;
    assert_eq!(
        socket.close_frame().await,
        (4429, "Too many initialisation requests".into())
    );
}

#[tokio::test]
async fn a_subscribe_reusing_a_running_id_closes_4409_but_a_completed_id_is_free_again() {
    let app = live_app(20).await;
    let mut socket = Socket::connect(&app, &[], json!({})).await;
    // A query completes on its own (the server sends `complete`): its id is free again.
    for _ in 0..2 {
        socket.subscribe("q", "{ __typename }").await;
        let payload = socket.next_payload("q").await;
        assert_eq!(payload["data"]["__typename"], "Query", "{payload}");
        assert_eq!(
            socket.next().await,
            End::Message(json!({"id": "q", "type": "complete"}))
        );
    }
    // A subscription the client completes: its id is free again too.
    socket.subscribe("s", &live_query()).await;
    assert_live_emission(&socket.next_payload("s").await);
    socket.send(json!({"id": "s", "type": "complete"})).await;
    socket.subscribe("s", &live_query()).await;
    loop {
        match socket.next().await {
            End::Message(message) if message["type"] == "complete" => continue,
            End::Message(message) if message["type"] == "next" && message["id"] == "s" => {
                assert_live_emission(&message["payload"]);
                break;
            }
            other => panic!("expected the new subscription's `next`, got {other:?}"),
        }
    }
    // The same id while it runs: the connection is closed as the protocol says.
    socket.subscribe("s", &live_query()).await;
    assert_eq!(
        socket.close_frame().await,
        (4409, "Subscriber for s already exists".into())
    );
}
