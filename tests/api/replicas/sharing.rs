//! What replicas share through Redis: a block fetched by one serves the others.

use chatstats::sandbox::SandboxOptions;
use serde_json::Value;

use super::{shared_section, RedisServer, Replicas};
use crate::helpers::assert_only_codes;

/// Every provider but Xenioo (the window is older than its 30 days): per-range and block reads.
pub const OVERVIEW: &str = r#"{ workspace(id: "acme") {
    chat: channel(id: "help_scout:chat") { conversations(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    email: channel(id: "help_scout:email") { conversations(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    dialogs { created(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } } } }"#;

#[tokio::test]
async fn a_query_answered_through_replica_a_costs_no_call_on_replica_b() {
    let redis = RedisServer::start().await;
    let replicas = Replicas::start(
        2,
        SandboxOptions::default(),
        &shared_section(&redis.url(), 1000, true),
    )
    .await;
    let (status, on_a) = replicas.query(0, OVERVIEW).await;
    assert_eq!(status, 200);
    assert_only_codes(&on_a, &["OUT_OF_RETENTION"]);
    let after_a = replicas.calls().len();
    assert!(after_a > 0, "replica A called the upstreams");
    let (status, on_b) = replicas.query(1, OVERVIEW).await;
    assert_eq!(status, 200);
    assert_eq!(on_b["data"], on_a["data"]);
    assert_eq!(
        replicas.calls().len(),
        after_a,
        "replica B answered from what A stored: {:?}",
        &replicas.calls()[after_a..]
    );
    let totals: Vec<&Value> = ["chat", "email"]
        .iter()
        .map(|c| &on_b["data"]["workspace"][c]["conversations"]["total"])
        .collect();
    assert!(totals.iter().all(|t| t.is_number()), "{on_b}");
}
