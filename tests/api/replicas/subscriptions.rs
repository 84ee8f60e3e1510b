//! A live subscription on every replica: each refresh of its live chunk costs one upstream
//! call across all of them, as on one replica.

use std::time::Duration;

use chatstats::sandbox::SandboxOptions;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{shared_section, RedisServer, Replicas};
use crate::helpers::rfc3339;

/// Emissions each subscriber waits for: the first and two refreshes.
const EMISSIONS: usize = 3;

/// Chat-Tonic's pending dialogs over a window that touches now (its newest chunk is live).
fn live_query() -> String {
    let now = chrono::Utc::now();
    format!(
        r#"subscription {{ workspace(id: "acme") {{ dialogs {{ pending(window: {{from: "{}", to: "{}", granularity: HOUR, timeZone: "UTC"}}) {{ total }} }} }} }}"#,
        rfc3339(now - chrono::Duration::hours(3)),
        rfc3339(now + chrono::Duration::hours(1))
    )
}

/// Subscribes to [`live_query`] on `addr` and returns its first [`EMISSIONS`] payloads
/// (each bounded by 30 s).
async fn emissions(addr: std::net::SocketAddr) -> Vec<Value> {
    let (mut ws, _) = tokio_tungstenite::connect_async(crate::helpers::ws_request(addr, &[]))
        .await
        .expect("the upgrade is accepted");
    let send = |message: Value| Message::Text(message.to_string().into());
    ws.send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .expect("sent");
    ws.send(send(
        json!({"id": "1", "type": "subscribe", "payload": {"query": live_query()}}),
    ))
    .await
    .expect("sent");
    let mut payloads = Vec::new();
    while payloads.len() < EMISSIONS {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s");
        let Some(Ok(Message::Text(text))) = frame else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).expect("JSON");
        if message["type"] == "next" {
            payloads.push(message["payload"].clone());
        }
    }
    let _ = ws.close(None).await;
    payloads
}

fn chat_tonic_calls(replicas: &Replicas) -> usize {
    replicas
        .calls()
        .iter()
        .filter(|(provider, _, _)| provider == "chat_tonic")
        .count()
}

#[tokio::test]
async fn a_refresh_costs_one_upstream_call_across_three_replicas() {
    let redis = RedisServer::start().await;
    let live = "\n[cache]\nlive_ttl_secs = 1\n";
    let shared = format!("{}{live}", shared_section(&redis.url(), 1000, true));
    let (alone, replicas) = tokio::join!(
        Replicas::start(1, SandboxOptions::default(), live),
        Replicas::start(3, SandboxOptions::default(), &shared)
    );
    let (one, three) = tokio::join!(
        emissions(alone.servers[0].addr),
        futures::future::join_all(replicas.servers.iter().map(|s| emissions(s.addr)))
    );
    let baseline = chat_tonic_calls(&alone);
    let shared_calls = chat_tonic_calls(&replicas);
    for payload in one.iter().chain(three.iter().flatten()) {
        assert!(payload.get("errors").is_none(), "{payload}");
        assert!(
            payload["data"]["workspace"]["dialogs"]["pending"]["total"].is_number(),
            "{payload}"
        );
    }
    eprintln!(
        "Chat-Tonic calls for {EMISSIONS} emissions: one replica {baseline}, three {shared_calls}"
    );
    assert!(baseline >= EMISSIONS, "each emission refreshed: {baseline}");
    // One more at most: a refresh that started just before the count was taken.
    assert!(
        shared_calls <= baseline + 1,
        "three replicas {shared_calls} calls, one {baseline}"
    );
}
