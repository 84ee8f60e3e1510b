//! Per-client rate limits across replicas (issue 12, item 4): one bucket per client in Redis
//! for all replicas, each replica's own buckets while Redis is down, and Redis's again once it
//! is back. WebSocket operations spend the same bucket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatstats::process_metrics::Metrics;
use chatstats::rate_limit::{RateKey, RateLimiter};
use chatstats::sandbox::SandboxOptions;
use chatstats::shared::SharedTier;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::{shared_section, RedisServer, Replicas};
use crate::helpers::{eventually, sample};

const CLIENT_KEY: &str = "partner-key-Zr41xQ";

/// `[limits]` at `per_minute` and one client, `partner`, with [`CLIENT_KEY`].
fn limits_and_client(per_minute: u32) -> String {
    format!(
        "\n[limits]\nrequests_per_minute = {per_minute}\n\
         [[clients]]\nname = \"partner\"\nkey = \"{CLIENT_KEY}\"\nworkspaces = [\"*\"]\n\
         scopes = [\"read\"]\n"
    )
}

/// The answers to `{ __typename }` from `partner`: one request to each replica in `targets`,
/// all at once. Every answer is a 200 with data or a 429 coded `RATE_LIMITED` with a
/// `Retry-After`; anything else fails the test. Returns the replicas that answered 200 and
/// the time from the first request sent to the last answer.
async fn send(replicas: &Replicas, targets: &[usize]) -> (Vec<usize>, Duration) {
    let started = Instant::now();
    let answers = futures::future::join_all(targets.iter().map(|&i| async move {
        let response = replicas
            .http
            .post(replicas.servers[i].url("/graphql"))
            .header("x-api-key", CLIENT_KEY)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .expect("replica answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.expect("a JSON body");
        (i, status, retry_after, body)
    }))
    .await;
    let elapsed = started.elapsed();
    let mut answered = Vec::new();
    for (i, status, retry_after, body) in answers {
        match status {
            200 => {
                assert_eq!(body["data"]["__typename"], "Query", "{body}");
                answered.push(i);
            }
            429 => {
                assert_eq!(
                    body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
                    "{body}"
                );
                let seconds = body["errors"][0]["extensions"]["retryAfter"]
                    .as_u64()
                    .expect("retryAfter");
                assert!(seconds >= 1, "{body}");
                assert_eq!(retry_after, Some(seconds.to_string()), "{body}");
            }
            other => panic!("replica {i} answered {other}: {body}"),
        }
    }
    (answered, elapsed)
}

/// Tokens a bucket of `per_minute` may have earned back during `elapsed` (whole tokens only).
fn refills(per_minute: u32, elapsed: Duration) -> usize {
    (elapsed.as_secs_f64() * f64::from(per_minute) / 60.0) as usize
}

/// Wait until every replica reports the tier `up` (1) or down (0).
async fn tier_state_on_all(replicas: &Replicas, up: bool) {
    let expected = if up { 1.0 } else { 0.0 };
    for i in 0..replicas.servers.len() {
        eventually(
            Duration::from_secs(15),
            "the tier's state on a replica",
            || async move {
                let metrics = replicas.metrics(i).await;
                (sample(&metrics, "chatstats_shared_tier_up", "") == Some(expected)).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_client_limited_to_60_a_minute_gets_60_answers_of_90_across_3_replicas() {
    let redis = RedisServer::start().await;
    let replicas = Replicas::start(
        3,
        SandboxOptions::default(),
        &format!(
            "{}{}",
            limits_and_client(60),
            shared_section(&redis.url(), 1000, true)
        ),
    )
    .await;
    let targets: Vec<usize> = (0..90).map(|n| n % 3).collect();
    let (answered, elapsed) = send(&replicas, &targets).await;
    // 60 a minute is one token a second back: exactly 60 when the 90 take under a second,
    // and never the 90 that three separate buckets of 60 would answer.
    let most = 60 + refills(60, elapsed);
    assert!(
        (60..=most).contains(&answered.len()),
        "{} answered in {elapsed:?}; expected 60 (at most {most})",
        answered.len()
    );
    if elapsed < Duration::from_secs(1) {
        assert_eq!(answered.len(), 60);
        assert_eq!(targets.len() - answered.len(), 30, "RATE_LIMITED answers");
    }
    // Redis holds one bucket, named by a fingerprint: not the key (as configured), not the
    // client's name.
    let configured = std::fs::read_to_string(&replicas.config.path).expect("the config");
    assert!(
        configured.contains(CLIENT_KEY),
        "the key scanned for is the configured one"
    );
    let stored = redis.dump().await;
    let buckets: Vec<&String> = stored
        .iter()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with("cs-test:rate:"))
        .collect();
    assert_eq!(buckets.len(), 1, "{stored:?}");
    for (key, value) in &stored {
        let value = String::from_utf8_lossy(value);
        for secret in [CLIENT_KEY, "partner"] {
            assert!(!key.contains(secret) && !value.contains(secret), "{key}");
        }
    }
}

#[tokio::test]
async fn with_redis_killed_each_replica_limits_on_its_own_then_shares_again_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let replicas = Replicas::start(
        3,
        SandboxOptions::default(),
        &format!(
            "{}{}",
            limits_and_client(10),
            shared_section(&redis.url(), 1000, true)
        ),
    )
    .await;
    redis.kill();
    // 15 to each replica: each answers 10 from its own bucket (no 5xx, every refusal coded),
    // 30 in all where the shared bucket would have answered 10.
    let targets: Vec<usize> = (0..45).map(|n| n % 3).collect();
    let (answered, elapsed) = send(&replicas, &targets).await;
    let most = 10 + refills(10, elapsed);
    for i in 0..3 {
        let on_i = answered.iter().filter(|&&r| r == i).count();
        assert!(
            (10..=most).contains(&on_i),
            "replica {i} answered {on_i} in {elapsed:?}; expected 10 (at most {most})"
        );
    }
    tier_state_on_all(&replicas, false).await;

    // Redis back (empty): every replica's own bucket for `partner` is spent, yet the shared
    // one (full) answers again, once for all replicas.
    redis.restart().await;
    tier_state_on_all(&replicas, true).await;
    let (answered, elapsed) = send(&replicas, &targets).await;
    let most = 10 + refills(10, elapsed);
    assert!(
        (10..=most).contains(&answered.len()),
        "{} answered in {elapsed:?} after Redis came back; expected 10 (at most {most})",
        answered.len()
    );
}

/// A graphql-transport-ws connection to replica `i` as `partner`, acknowledged.
async fn socket(
    replicas: &Replicas,
    i: usize,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{}/graphql", replicas.servers[i].addr)
        .into_client_request()
        .expect("a valid request");
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    headers.insert("x-api-key", HeaderValue::from_static(CLIENT_KEY));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade is accepted");
    ws.send(Message::Text(
        json!({"type": "connection_init", "payload": {}})
            .to_string()
            .into(),
    ))
    .await
    .expect("sent");
    assert_eq!(next_message(&mut ws).await["type"], "connection_ack");
    ws
}

async fn next_message(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).expect("a JSON message")
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_operations_spend_the_same_shared_bucket_as_http_requests() {
    let redis = RedisServer::start().await;
    let replicas = Replicas::start(
        2,
        SandboxOptions::default(),
        &format!(
            "{}{}",
            limits_and_client(6),
            shared_section(&redis.url(), 1000, true)
        ),
    )
    .await;
    // The upgrade is a request (1 of 6), on replica B.
    let started = Instant::now();
    let mut ws = socket(&replicas, 1).await;
    // Three over HTTP on replica A (4 of 6).
    let (answered, _) = send(&replicas, &[0, 0, 0]).await;
    assert_eq!(answered.len(), 3);
    // Two operations on B's socket are left; the third is refused (one token comes back every
    // 10 s, far longer than these few round trips take).
    let mut outcomes = Vec::new();
    for id in ["1", "2", "3"] {
        ws.send(Message::Text(
            json!({"id": id, "type": "subscribe", "payload": {"query": "{ __typename }"}})
                .to_string()
                .into(),
        ))
        .await
        .expect("sent");
        let message = next_message(&mut ws).await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id, "{message}");
        outcomes.push(message["payload"].clone());
        let complete = next_message(&mut ws).await;
        assert_eq!(complete["type"], "complete", "{complete}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "too slow to tell"
    );
    assert_eq!(
        outcomes[0]["data"]["__typename"], "Query",
        "{}",
        outcomes[0]
    );
    assert_eq!(
        outcomes[1]["data"]["__typename"], "Query",
        "{}",
        outcomes[1]
    );
    assert_eq!(
        outcomes[2]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{}",
        outcomes[2]
    );
}

/// The library's limiter on a real Redis: `fetch_timeout_ms` 100, `per_minute` per key.
async fn limiter_on(redis: &RedisServer, per_minute: u32) -> (RateLimiter, SharedTier) {
    let config = chatstats::config::SharedConfig {
        redis_url: chatstats::config::Secret::new(redis.url()),
        namespace: "cs-test".to_owned(),
        fetch_timeout_ms: 100,
        required_to_start: true,
    };
    let tier = SharedTier::connect(&config, Arc::new(Metrics::new()))
        .await
        .expect("Redis answers");
    (
        RateLimiter::per_minute(per_minute).with_shared(tier.clone()),
        tier,
    )
}

#[tokio::test]
async fn a_check_that_redis_does_not_answer_in_time_falls_back_then_redis_counts_again() {
    let redis = RedisServer::start().await;
    // Two "replicas" of one client, 2 a minute: a token comes back every 30 s, longer than
    // this test takes.
    let (a, tier) = limiter_on(&redis, 2).await;
    let (b, _) = limiter_on(&redis, 2).await;
    let key = RateKey::Client("partner".into());
    assert_eq!(a.check(&key).await, Ok(()));
    assert_eq!(b.check(&key).await, Ok(()));
    let wait = a.check(&key).await.expect_err("the shared bucket is spent");
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(a.keys(), 0, "nothing spent locally while Redis answers");

    // Redis stops answering for 1.5 s: the check times out after fetch_timeout_ms and A's own
    // (full) bucket answers.
    let mut connection = redis.connection().await;
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "1500", "ALL"])
        .query_async(&mut connection)
        .await
        .expect("CLIENT PAUSE");
    let started = Instant::now();
    assert_eq!(a.check(&key).await, Ok(()), "A's own bucket");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "bounded by fetch_timeout_ms: {:?}",
        started.elapsed()
    );
    assert!(!tier.is_up(), "a timeout marks the tier down");
    // Down: answered at once, locally, 2 a minute on this replica.
    assert_eq!(a.check(&key).await, Ok(()));
    assert!(a.check(&key).await.is_err());
    assert_eq!(a.keys(), 1);

    // Back: the shared bucket (still spent) answers again.
    eventually(Duration::from_secs(15), "the tier to be up again", || {
        let up = tier.is_up();
        async move { up.then_some(()) }
    })
    .await;
    let wait = a
        .check(&key)
        .await
        .expect_err("the shared bucket is still spent");
    assert!(wait > Duration::from_secs(20), "{wait:?}");
}

/// Calls of Lua scripts Redis has run since it started (`INFO commandstats`).
async fn script_calls(redis: &RedisServer) -> u64 {
    let mut connection = redis.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter(|line| line.starts_with("cmdstat_eval:") || line.starts_with("cmdstat_evalsha:"))
        .filter_map(|line| {
            line.split(['=', ','])
                .nth(1)
                .and_then(|calls| calls.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test]
async fn a_high_limit_takes_tokens_from_redis_in_leases_not_one_round_trip_per_request() {
    // 3,000 a minute: leases of 3 tokens (a thousandth of the budget).
    let per_minute = 3_000;
    let lease = u64::from(per_minute / 1000);
    assert!(per_minute >= chatstats::rate_limit::LEASE_FROM);
    let redis = RedisServer::start().await;
    let replicas = Replicas::start(
        3,
        SandboxOptions::default(),
        &format!(
            "{}{}",
            limits_and_client(per_minute),
            shared_section(&redis.url(), 1000, true)
        ),
    )
    .await;
    let per_replica = 60;
    let before = script_calls(&redis).await;
    // One lane per replica, each sending its requests one after another.
    let lanes = futures::future::join_all((0..3).map(|i| {
        let replicas = &replicas;
        async move {
            let mut answered = 0;
            for _ in 0..per_replica {
                answered += send(replicas, &[i]).await.0.len();
            }
            answered
        }
    }))
    .await;
    let calls = script_calls(&redis).await - before;
    assert_eq!(
        lanes,
        vec![per_replica; 3],
        "every request answered, far under the limit"
    );
    // Each replica takes a lease of 3 and spends it over its next requests (plus, at most
    // once per replica, the EVALSHA that finds the script not yet loaded and its EVAL).
    let most = 3 * (per_replica as u64).div_ceil(lease) + 3;
    assert!(
        calls <= most,
        "{calls} script calls for {} requests; expected at most {most}",
        3 * per_replica
    );
    assert!(
        calls >= 3 * (per_replica as u64).div_ceil(lease),
        "{calls} script calls: the limit was checked in Redis for every lease"
    );
}
