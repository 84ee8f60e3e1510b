//! Thousands of hostile graphql-transport-ws messages against the real binary (rate limit
//! off): bad JSON, unknown types, subscribe before `connection_init`, a second
//! `connection_init`, duplicate ids, thousands of subscribes on one connection, oversized
//! payloads, ping floods, binary junk, bad payloads and the mutated documents of the HTTP
//! flood. Every connection ends with the close code the protocol gives (or stays usable),
//! every error in a `next` or `error` is coded, no panic, the subscription slots all come
//! back, the server answers afterwards and its RSS is bounded.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::generate::{http_case, XorShift};
use super::server::{cpu_secs, seed_documents, Target};
use super::tally::Tally;
use crate::helpers::{eventually, sample};

const SEED: u64 = 0x0005_0c4e_7f10_0d00;
/// A bound on each wait for the server, so a hang fails the test instead of holding it.
const PATIENCE: Duration = Duration::from_secs(30);
/// Each kind of message that closes the connection gets this many connections.
const CONNECTIONS_PER_KIND: usize = 40;
const PINGS: usize = 2_000;
const SUBSCRIBES: usize = 2_000;
/// The default `[limits] max_subscriptions_per_client`.
const SLOTS: usize = 20;
pub(super) const CHEAP_SUBSCRIPTION: &str = r#"subscription { workspace(id: "acme") { id name } }"#;

pub(super) struct Conn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// What was last sent, for a failure message.
    last: String,
}

/// How the wait for a message ended.
#[derive(Debug)]
pub(super) enum Got {
    Text(Value),
    Closed(String),
}

impl Conn {
    pub(super) async fn open(target: &Target) -> Conn {
        let mut request = format!("ws://{}/graphql", target.binary.addr)
            .into_client_request()
            .expect("a valid request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        // The client must be able to send what the server is meant to refuse.
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, _) = tokio::time::timeout(
            PATIENCE,
            tokio_tungstenite::connect_async_with_config(request, Some(config), false),
        )
        .await
        .expect("the upgrade within the patience")
        .expect("the upgrade is accepted");
        Conn {
            ws,
            last: String::new(),
        }
    }

    /// Open, `connection_init`, and expect the ack.
    pub(super) async fn ready(target: &Target, tally: &mut Tally) -> Conn {
        let mut conn = Conn::open(target).await;
        conn.text(
            tally,
            "connection_init",
            &json!({"type": "connection_init"}).to_string(),
        )
        .await;
        match conn.next(tally).await {
            Got::Text(ack) if ack["type"] == "connection_ack" => conn,
            other => panic!("no ack: {other:?}"),
        }
    }

    /// Send a text message of `kind`; false when the connection is gone (or went while it
    /// was sent).
    pub(super) async fn text(&mut self, tally: &mut Tally, kind: &str, text: &str) -> bool {
        self.frame(tally, kind, Message::Text(text.to_owned().into()))
            .await
    }

    async fn frame(&mut self, tally: &mut Tally, kind: &str, message: Message) -> bool {
        self.last = match &message {
            Message::Text(text) => {
                format!("{kind}: {}", text.chars().take(120).collect::<String>())
            }
            other => format!("{kind}: a {}-byte frame", other.len()),
        };
        // Counted when attempted: a server may refuse a frame by its header, mid-send.
        tally.kind(kind);
        self.ws.send(message).await.is_ok()
    }

    /// The next text message (checked: JSON, its errors coded), or how the connection ended
    /// (also counted).
    pub(super) async fn next(&mut self, tally: &mut Tally) -> Got {
        loop {
            let frame = match tokio::time::timeout(PATIENCE, self.ws.next()).await {
                Ok(frame) => frame,
                Err(_) => {
                    tally.fail(format!(
                        "no message or close within {PATIENCE:?} after {}",
                        self.last
                    ));
                    return Got::Closed("timeout".into());
                }
            };
            let got = match frame {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                    Ok(message) => {
                        check_coded(tally, &message);
                        Got::Text(message)
                    }
                    Err(_) => {
                        tally.fail(format!("a text message that is not JSON: {text}"));
                        continue;
                    }
                },
                Some(Ok(Message::Close(frame))) => {
                    Got::Closed(frame.map_or("none".into(), |f| u16::from(f.code).to_string()))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Got::Closed("none".into()),
            };
            if let Got::Closed(code) = &got {
                tally.close(code);
            }
            return got;
        }
    }

    /// Read until the connection closes; the close code.
    pub(super) async fn until_closed(&mut self, tally: &mut Tally) -> String {
        loop {
            if let Got::Closed(code) = self.next(tally).await {
                return code;
            }
        }
    }

    /// A ping that must be answered by a pong: proof the connection still works, and that
    /// everything sent before it was read.
    async fn still_usable(&mut self, tally: &mut Tally) -> bool {
        self.text(tally, "ping (check)", r#"{"type":"ping"}"#).await;
        loop {
            match self.next(tally).await {
                Got::Text(message) if message["type"] == "pong" => return true,
                Got::Text(_) => continue,
                Got::Closed(_) => return false,
            }
        }
    }
}

/// Every error a `next` or `error` message carries has `extensions.code`.
fn check_coded(tally: &mut Tally, message: &Value) {
    let errors = match message["type"].as_str() {
        Some("next") => message["payload"]["errors"].as_array().cloned(),
        Some("error") => message["payload"].as_array().cloned(),
        _ => None,
    };
    for error in errors.unwrap_or_default() {
        match error["extensions"]["code"].as_str() {
            Some(code) => {
                tally.code(code);
                if code == "INTERNAL_SERVER_ERROR" {
                    tally.fail(format!("the server blamed itself: {error}"));
                }
            }
            None => {
                tally.code("<uncoded>");
                tally.fail(format!("uncoded error: {error}"));
            }
        }
    }
}

fn expect_close(tally: &mut Tally, what: &str, got: &str, expected: &[&str]) {
    if !expected.contains(&got) {
        tally.fail(format!(
            "{what}: closed {got}, expected one of {expected:?}"
        ));
    }
}

/// Messages that are not graphql-transport-ws: after an ack, each closes its connection with
/// 4400, as the protocol says.
async fn invalid_messages(target: &Target, tally: &mut Tally, rng: &mut XorShift) {
    let valid = json!({"id": "1", "type": "subscribe", "payload": {"query": CHEAP_SUBSCRIPTION}})
        .to_string();
    for i in 0..CONNECTIONS_PER_KIND * 4 {
        let (kind, message): (&str, Message) = match i % 4 {
            0 => {
                let cut = rng.below(valid.len());
                ("bad JSON", Message::Text(valid[..cut].to_owned().into()))
            }
            1 => {
                let ty = rng.pick(&[
                    "zz",
                    "start",
                    "stop",
                    "connection_terminate",
                    "SUBSCRIBE",
                    "",
                    "next",
                    "complete ",
                ]);
                (
                    "unknown type",
                    Message::Text(json!({"id": "1", "type": ty}).to_string().into()),
                )
            }
            2 => {
                let messages = [
                    json!({"type": 5}),
                    json!({"id": 5, "type": "subscribe", "payload": {"query": "{ __typename }"}}),
                    json!({"id": "1", "type": "subscribe", "payload": "{ __typename }"}),
                    json!({"id": "1", "type": "subscribe", "payload": {"query": 5}}),
                    json!({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }", "variables": []}}),
                    json!({"id": "1", "type": "subscribe"}),
                    json!(["subscribe"]),
                    json!(null),
                ];
                let message = rng.pick(&messages);
                ("bad fields", Message::Text(message.to_string().into()))
            }
            _ => {
                let n = rng.size(1, 4_000);
                ("binary junk", Message::Binary(rng.bytes(n).into()))
            }
        };
        let mut conn = Conn::ready(target, tally).await;
        if !conn.frame(tally, kind, message).await {
            tally.fail(format!("{kind}: could not send"));
            continue;
        }
        // None is a graphql-transport-ws message (`start`, `stop` and `connection_terminate`
        // belong to the legacy protocol): each closes 4400 (`ws::Referee`).
        let code = conn.until_closed(tally).await;
        expect_close(tally, kind, &code, &["4400"]);
    }
}

/// Before `connection_init`: a subscribe (closes 4401 Unauthorized), a ping (answered), junk.
async fn before_init(target: &Target, tally: &mut Tally) {
    for i in 0..CONNECTIONS_PER_KIND {
        let mut conn = Conn::open(target).await;
        let subscribe = json!({"id": format!("{i}"), "type": "subscribe", "payload": {"query": CHEAP_SUBSCRIPTION}});
        conn.text(tally, "subscribe before init", &subscribe.to_string())
            .await;
        let code = conn.until_closed(tally).await;
        expect_close(tally, "subscribe before init", &code, &["4401"]);
    }
    let mut conn = Conn::open(target).await;
    conn.text(tally, "ping before init", r#"{"type":"ping"}"#)
        .await;
    match conn.next(tally).await {
        Got::Text(pong) if pong["type"] == "pong" => {}
        other => tally.fail(format!("a ping before init: {other:?}")),
    }
}

/// A second `connection_init` closes 4429; a first one with a key that is not a string is
/// refused (1002); other payloads are taken (open access needs no key).
async fn bad_inits(target: &Target, tally: &mut Tally) {
    for _ in 0..CONNECTIONS_PER_KIND {
        let mut conn = Conn::ready(target, tally).await;
        conn.text(
            tally,
            "second connection_init",
            r#"{"type":"connection_init"}"#,
        )
        .await;
        let code = conn.until_closed(tally).await;
        expect_close(tally, "second connection_init", &code, &["4429"]);
    }
    for payload in [
        json!({"authorization": 5}),
        json!({"x-api-key": ["k"]}),
        json!({"x-api-key": "a\u{7}b"}),
    ] {
        let mut conn = Conn::open(target).await;
        conn.text(
            tally,
            "bad init payload",
            &json!({"type": "connection_init", "payload": payload}).to_string(),
        )
        .await;
        let code = conn.until_closed(tally).await;
        expect_close(tally, "bad init payload", &code, &["1002"]);
    }
    for payload in [
        json!(5),
        json!("x"),
        json!([1]),
        json!({"zz": {"deep": [1, 2]}}),
        json!({"authorization": "x".repeat(100_000)}),
    ] {
        let mut conn = Conn::open(target).await;
        let message = json!({"type": "connection_init", "payload": payload.clone()});
        conn.text(tally, "odd init payload", &message.to_string())
            .await;
        match conn.next(tally).await {
            Got::Text(ack) if ack["type"] == "connection_ack" => {}
            other => tally.fail(format!("init with payload {payload}: {other:?}")),
        }
    }
}

/// Pings by the thousand (graphql-transport-ws `ping` and WebSocket ping frames) on one
/// connection, all sent before any answer is read: a pong for each, the connection usable.
async fn ping_flood(target: &Target, tally: &mut Tally) {
    let mut conn = Conn::ready(target, tally).await;
    for i in 0..PINGS {
        let sent = if i % 4 == 3 {
            conn.frame(
                tally,
                "ping flood (WebSocket frames)",
                Message::Ping(vec![i as u8; 8].into()),
            )
            .await
        } else {
            conn.text(
                tally,
                "ping flood",
                &json!({"type": "ping", "payload": {"n": i}}).to_string(),
            )
            .await
        };
        if !sent {
            tally.fail(format!("the ping flood broke at {i}"));
            return;
        }
    }
    let expected = PINGS - PINGS / 4;
    let mut pongs = 0;
    while pongs < expected {
        match conn.next(tally).await {
            Got::Text(message) if message["type"] == "pong" => pongs += 1,
            Got::Text(other) => tally.fail(format!("during the ping flood: {other}")),
            Got::Closed(code) => {
                tally.fail(format!("the ping flood closed {code} after {pongs} pongs"));
                return;
            }
        }
    }
    // Unsolicited pongs and completes of unknown ids are ignored.
    for i in 0..100 {
        conn.text(tally, "unsolicited pong", r#"{"type":"pong"}"#)
            .await;
        conn.text(
            tally,
            "complete of an unknown id",
            &json!({"id": format!("nope{i}"), "type": "complete"}).to_string(),
        )
        .await;
    }
    if !conn.still_usable(tally).await {
        tally.fail("unusable after the ping flood".into());
    }
}

/// Thousands of subscribes on one connection: the client's slots fill, every one over them
/// is refused `RATE_LIMITED` (a `next` and a `complete` each), the connection stays usable;
/// then duplicate ids.
async fn subscribe_flood(target: &Target, tally: &mut Tally) {
    let mut conn = Conn::ready(target, tally).await;
    for i in 0..SUBSCRIBES {
        let message = json!({"id": format!("s{i}"), "type": "subscribe", "payload": {"query": CHEAP_SUBSCRIPTION}});
        if !conn
            .text(tally, "subscribe flood", &message.to_string())
            .await
        {
            tally.fail(format!("the subscribe flood broke at {i}"));
            return;
        }
    }
    let (mut emitted, mut refused, mut completed) = (0, 0, 0);
    while completed < SUBSCRIBES - SLOTS || emitted < SLOTS {
        match conn.next(tally).await {
            Got::Text(message) if message["type"] == "next" => {
                if message["payload"]["errors"][0]["extensions"]["code"] == "RATE_LIMITED" {
                    refused += 1;
                } else if message["payload"]["data"]["workspace"]["id"] == "acme" {
                    emitted += 1;
                } else {
                    tally.fail(format!("subscribe flood: {message}"));
                }
            }
            Got::Text(message) if message["type"] == "complete" => completed += 1,
            Got::Text(other) => tally.fail(format!("subscribe flood: {other}")),
            Got::Closed(code) => {
                tally.fail(format!("the subscribe flood closed {code}"));
                return;
            }
        }
    }
    if (emitted, refused) != (SLOTS, SUBSCRIBES - SLOTS) {
        tally.fail(format!(
            "{emitted} emitted and {refused} refused of {SUBSCRIBES}"
        ));
    }
    // A duplicate id of a running subscription: the protocol says close 4409; async-graphql
    // replaces the running one (reported). Either way no crash, and the slot comes back.
    let duplicate =
        json!({"id": "s0", "type": "subscribe", "payload": {"query": CHEAP_SUBSCRIPTION}});
    conn.text(tally, "duplicate id", &duplicate.to_string())
        .await;
    let mut open = true;
    loop {
        match conn.next(tally).await {
            Got::Text(message) if message["id"] == "s0" && message["type"] == "next" => break,
            Got::Text(_) => continue,
            Got::Closed(code) => {
                expect_close(tally, "duplicate id", &code, &["4409"]);
                open = false;
                break;
            }
        }
    }
    if open && !conn.still_usable(tally).await {
        tally.fail("unusable after the subscribe flood".into());
    }
    let _ = conn.ws.close(None).await;
}

/// Oversized subscribe payloads: over `max_document_bytes` is refused with a coded error and
/// the connection stays; over the WebSocket message limit closes 1009.
async fn oversized(target: &Target, tally: &mut Tally) {
    let mut conn = Conn::ready(target, tally).await;
    for (i, bytes) in [40_000, 1_000_000, 8_000_000].into_iter().enumerate() {
        let query = format!("{{ __typename }}{}", " ".repeat(bytes));
        let message =
            json!({"id": format!("big{i}"), "type": "subscribe", "payload": {"query": query}});
        conn.text(tally, "oversized payload", &message.to_string())
            .await;
        let id = format!("big{i}");
        let mut refused = false;
        loop {
            match conn.next(tally).await {
                Got::Text(message) if message["id"] == id && message["type"] == "complete" => break,
                Got::Text(message) if message["id"] == id => {
                    refused |= message["payload"]["errors"][0]["extensions"]["code"]
                        == "QUERY_TOO_COMPLEX";
                }
                Got::Text(_) => continue,
                Got::Closed(code) => {
                    tally.fail(format!("a {bytes}-byte document closed {code}"));
                    return;
                }
            }
        }
        if !refused {
            tally.fail(format!(
                "a {bytes}-byte document was not refused QUERY_TOO_COMPLEX"
            ));
        }
    }
    if !conn.still_usable(tally).await {
        tally.fail("unusable after oversized documents".into());
    }
    // Over axum's default 64 MiB message limit.
    let huge = format!(
        r#"{{"type":"ping","payload":"{}"}}"#,
        "x".repeat(65 * 1024 * 1024)
    );
    conn.text(tally, "oversized message (65 MiB)", &huge).await;
    drop(huge);
    let code = conn.until_closed(tally).await;
    expect_close(tally, "a 65 MiB message", &code, &["1009", "none"]);
}

/// The mutated documents of the HTTP flood, as subscribe payloads (executed as queries,
/// subscriptions or mutations): each gets `next`s with coded errors or data, then `complete`.
async fn mutated_documents(target: &Target, tally: &mut Tally, count: usize) {
    let documents = seed_documents();
    let mut conn = Conn::ready(target, tally).await;
    let mut sent = 0;
    let mut index = 0;
    while sent < count {
        let case = http_case(SEED, index, &documents);
        index += 1;
        let Ok(Value::Object(mut payload)) = serde_json::from_slice::<Value>(&case.body) else {
            continue;
        };
        if !payload.get("query").is_some_and(Value::is_string) || case.body.len() > 30_000 {
            continue;
        }
        // Only what the protocol can carry: an object of variables or none.
        payload.retain(|key, value| key == "query" || (key == "variables" && value.is_object()));
        let id = format!("m{index}");
        let message = json!({"id": id, "type": "subscribe", "payload": payload});
        conn.text(tally, "mutated document", &message.to_string())
            .await;
        sent += 1;
        loop {
            match conn.next(tally).await {
                Got::Text(message) if message["type"] == "complete" && message["id"] == id => break,
                // A valid subscription keeps running: one emission is enough.
                Got::Text(message) if message["type"] == "next" && message["id"] == id => {
                    if message["payload"]["data"].is_object()
                        && message["payload"].get("errors").is_none()
                    {
                        conn.text(
                            tally,
                            "complete",
                            &json!({"id": id, "type": "complete"}).to_string(),
                        )
                        .await;
                        break;
                    }
                }
                Got::Text(_) => continue,
                Got::Closed(code) => {
                    tally.fail(format!("closed {code} by a mutated document #{index}"));
                    conn = Conn::ready(target, tally).await;
                    break;
                }
            }
        }
    }
    let _ = conn.ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_websocket_messages_get_protocol_closes_or_coded_errors() {
    let target = Target::start("ws").await;
    target.warm(&seed_documents()).await;
    let rss_before = target.rss_kib();
    let (cpu_before, own_before) = (target.cpu_secs(), cpu_secs("self"));
    let started = Instant::now();
    let mut rng = XorShift::new(SEED);
    let mut tally = Tally::default();
    invalid_messages(&target, &mut tally, &mut rng).await;
    before_init(&target, &mut tally).await;
    bad_inits(&target, &mut tally).await;
    ping_flood(&target, &mut tally).await;
    subscribe_flood(&target, &mut tally).await;
    oversized(&target, &mut tally).await;
    mutated_documents(&target, &mut tally, 300).await;
    let elapsed = started.elapsed();

    // Every slot comes back once the connections are gone.
    let metrics_url = target.url("/metrics");
    let http = target.http.clone();
    eventually(PATIENCE, "every subscription slot to come back", || {
        let (http, url) = (http.clone(), metrics_url.clone());
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            (sample(&text, "chatstats_subscriptions_active", "") == Some(0.0)).then_some(())
        }
    })
    .await;
    // The server still answers, over HTTP and over a new WebSocket.
    target.assert_answers().await;
    let mut check = Tally::default();
    let mut conn = Conn::ready(&target, &mut check).await;
    conn.text(
        &mut check,
        "subscribe",
        &json!({"id": "after", "type": "subscribe", "payload": {"query": CHEAP_SUBSCRIPTION}})
            .to_string(),
    )
    .await;
    match conn.next(&mut check).await {
        Got::Text(message) => assert_eq!(
            message["payload"]["data"]["workspace"]["id"], "acme",
            "{message}"
        ),
        other => panic!("no emission after the flood: {other:?}"),
    }
    let rss_after = target.rss_kib();
    let panics = target.panics();
    println!(
        "{}",
        tally.table(
            &format!("hostile WebSocket (graphql-transport-ws): seed {SEED:#x}, real binary, rate limit off"),
            &[
                format!("sent {} messages in {:.1} s", tally.total(), elapsed.as_secs_f64()),
                format!("server RSS {rss_before} KiB after warm-up, {rss_after} KiB after the flood"),
                format!(
                    "CPU: server {:.1} s, test process {:.1} s",
                    target.cpu_secs() - cpu_before,
                    cpu_secs("self") - own_before
                ),
                format!("server panics: {}", panics.len()),
            ],
        )
    );
    assert!(panics.is_empty(), "the server panicked: {panics:?}");
    tally.assert_clean();
    assert!(tally.total() >= 1_000, "only {} messages", tally.total());
    // A 65 MiB message is read whole before it is refused; the rest is small.
    let bound_kib = 256 * 1024;
    assert!(
        rss_after.saturating_sub(rss_before) < bound_kib,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
