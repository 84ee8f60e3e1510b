//! APQ registrations across replicas (issue 12, item 5): an operation registered through one
//! replica is a hit on another, through Redis; what Redis holds runs only if it hashes right.

use chatstats::persisted::{sha256_hex, APQ_SHARED_TTL};
use chatstats::sandbox::SandboxOptions;
use serde_json::{json, Value};

use super::{shared_section, RedisServer, Replicas};

/// POST `query` (may be empty) with the APQ extension for `hash` to replica `i`.
async fn apq(replicas: &Replicas, i: usize, query: &str, hash: &str) -> (u16, Value) {
    let mut body = json!({
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}},
    });
    if !query.is_empty() {
        body["query"] = json!(query);
    }
    let response = replicas
        .http
        .post(replicas.servers[i].url("/graphql"))
        .json(&body)
        .send()
        .await
        .expect("replica answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn an_operation_registered_on_a_is_a_hit_on_b() {
    let redis = RedisServer::start().await;
    let replicas = Replicas::start(
        2,
        SandboxOptions::default(),
        &shared_section(&redis.url(), 1000, true),
    )
    .await;
    let query = r#"query Registered { workspace(id: "acme") { id } }"#;
    let hash = sha256_hex(query);
    // B does not know it yet: the client would register it.
    let (status, before) = apq(&replicas, 1, "", &hash).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(code(&before), "PERSISTED_QUERY_NOT_FOUND", "{before}");
    // Registered through A...
    let (status, on_a) = apq(&replicas, 0, query, &hash).await;
    assert_eq!(status, 200, "{on_a}");
    assert_eq!(on_a["data"]["workspace"]["id"], "acme", "{on_a}");
    // ...and a hit on B, by the hash alone.
    let (status, on_b) = apq(&replicas, 1, "", &hash).await;
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(on_b["data"], on_a["data"], "{on_b}");
    // Redis holds it under the namespace, with the stated TTL.
    let mut connection = redis.connection().await;
    let key = format!("cs-test:apq:{hash}");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .expect("PTTL");
    let stated = i64::try_from(APQ_SHARED_TTL.as_millis()).expect("a day fits");
    assert!(
        ttl_ms > 0 && ttl_ms <= stated,
        "TTL {ttl_ms} ms of {key}, stated {stated}"
    );
}

#[tokio::test]
async fn a_text_in_redis_that_does_not_match_its_hash_is_not_run() {
    let redis = RedisServer::start().await;
    let replicas = Replicas::start(
        1,
        SandboxOptions::default(),
        &shared_section(&redis.url(), 1000, true),
    )
    .await;
    let query = r#"query Listed { workspace(id: "acme") { id } }"#;
    let hash = sha256_hex(query);
    // Whoever can write to Redis stores another operation, one that calls an upstream, under
    // this hash.
    let mut connection = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg(format!("cs-test:apq:{hash}"))
        .arg(
            r#"{ workspace(id: "acme") { channel(id: "help_scout:chat") {
                conversations(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } } } }"#,
        )
        .query_async(&mut connection)
        .await
        .expect("SET");
    let (status, body) = apq(&replicas, 0, "", &hash).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert!(body["data"].is_null(), "{body}");
    assert_eq!(replicas.calls(), vec![], "the stored text did not run");
    // The real text stored under its real hash is a hit.
    let _: () = redis::cmd("SET")
        .arg(format!("cs-test:apq:{hash}"))
        .arg(query)
        .query_async(&mut connection)
        .await
        .expect("SET");
    let (status, body) = apq(&replicas, 0, "", &hash).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["workspace"]["id"], "acme", "{body}");
}

#[tokio::test]
async fn with_redis_killed_registrations_stay_per_replica_and_nothing_fails() {
    let mut redis = RedisServer::start().await;
    let replicas = Replicas::start(
        2,
        SandboxOptions::default(),
        &shared_section(&redis.url(), 1000, true),
    )
    .await;
    redis.kill();
    let query = r#"query Alone { workspace(id: "acme") { id } }"#;
    let hash = sha256_hex(query);
    let (status, on_a) = apq(&replicas, 0, query, &hash).await;
    assert_eq!(status, 200, "{on_a}");
    assert_eq!(on_a["data"]["workspace"]["id"], "acme", "{on_a}");
    // A still knows it (its own store); B never heard of it, and says so with the APQ code.
    let (status, again) = apq(&replicas, 0, "", &hash).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"], on_a["data"], "{again}");
    let (status, on_b) = apq(&replicas, 1, "", &hash).await;
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(code(&on_b), "PERSISTED_QUERY_NOT_FOUND", "{on_b}");
}
