//! Redis killed under load: the replicas keep answering from their own caches and the
//! upstreams (no 5xx, every error coded), Xenioo is never called twice within its interval,
//! and once Redis is back they share again within 5 s.

use std::time::{Duration, Instant};

use chatstats::sandbox::SandboxOptions;
use serde_json::{json, Value};

use super::acceptance::dashboard;
use super::{assert_no_secret_in, configured_secrets, shared_section, RedisServer, Replicas};
use crate::helpers::{eventually, sample};

/// The load: this long, at most this many requests, this many at once.
const LOAD_FOR: Duration = Duration::from_secs(10);
const MAX_REQUESTS: usize = 3_000;
const WORKERS: usize = 6;

/// A query no other part of the test asks: Help Scout chat conversations over the days
/// `[day, day + 1)` of February 2025 (out of Xenioo's reach).
fn cold_query(day: u32) -> String {
    format!(
        r#"{{ workspace(id: "acme") {{ channel(id: "help_scout:chat") {{ conversations(window: {{from: "2024-{:02}-01T00:00:00Z", to: "2024-{:02}-02T00:00:00Z", timeZone: "UTC"}}) {{ total }} }} }} }}"#,
        day, day
    )
}

#[tokio::test]
async fn redis_killed_under_load_costs_no_5xx_and_sharing_resumes_after_its_restart() {
    let mut redis = RedisServer::start().await;
    // A short live TTL, so the load keeps refreshing chunks while Redis is away.
    let extra = format!(
        "{}\n[cache]\nlive_ttl_secs = 1\n",
        shared_section(&redis.url(), 300, true)
    );
    let replicas = Replicas::start(3, SandboxOptions::default(), &extra).await;
    // Every replica has seen Xenioo's interval before Redis goes.
    for i in 0..3 {
        let (status, body) = replicas.query(i, &dashboard(i)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
    }
    replicas
        .fault(json!({"provider": "connectycube", "status": 500, "error_rate": 0.2}))
        .await;
    replicas
        .fault(
            json!({"provider": "help_scout", "latency_ms": 30, "status": 503, "error_rate": 0.1}),
        )
        .await;

    let started = Instant::now();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let load = futures::future::join_all((0..WORKERS).map(|worker| {
        let (replicas, sent) = (&replicas, &sent);
        async move {
            let mut seen: Vec<(u16, Value)> = Vec::new();
            let mut k = worker;
            while started.elapsed() < LOAD_FOR
                && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_REQUESTS
            {
                seen.push(replicas.query(k % 3, &dashboard(k % 60)).await);
                k += WORKERS;
            }
            seen
        }
    }));
    let watched = &replicas;
    let chaos = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        redis.kill();
        // Every replica notices (its gauge), while the load runs.
        for i in 0..3 {
            eventually(
                Duration::from_secs(5),
                "the tier to be seen down",
                || async move {
                    let metrics = watched.metrics(i).await;
                    (sample(&metrics, "chatstats_shared_tier_up", "") == Some(0.0)).then_some(())
                },
            )
            .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        redis.restart().await;
        let restarted = Instant::now();
        // Sharing again within 5 s of the restart, while the load goes on: a block fetched by
        // replica 0 after the restart is served to replica 1 without a call.
        let mut day = 0;
        eventually(Duration::from_secs(5), "sharing to resume", || {
            day += 1;
            let query = cold_query(day);
            async move {
                let (status, first) = watched.query(0, &query).await;
                let before = watched.calls().len();
                let (_, second) = watched.query(1, &query).await;
                let after = watched.calls();
                // Only calls about 2024 serve this query; the load asks about recent days.
                let help_scout = |calls: &[(String, String, u16)]| {
                    calls
                        .iter()
                        .filter(|(p, target, _)| p == "help_scout" && target.contains("2024-"))
                        .count()
                };
                let shared = status == 200
                    && first.get("errors").is_none()
                    && second["data"] == first["data"]
                    && help_scout(&after) == help_scout(&after[..before]);
                shared.then_some(())
            }
        })
        .await;
        eprintln!(
            "sharing resumed {:?} after the restart",
            restarted.elapsed()
        );
    };
    let (answers, ()) = tokio::join!(load, chaos);
    let answers: Vec<(u16, Value)> = answers.into_iter().flatten().collect();
    assert!(
        answers.len() >= 30,
        "the load ran: {} answers",
        answers.len()
    );
    let mut coded = 0;
    for (status, body) in &answers {
        assert!(*status < 500, "no 5xx: {status} {body}");
        for error in body["errors"].as_array().into_iter().flatten() {
            assert!(error["extensions"]["code"].is_string(), "coded: {error}");
            coded += 1;
        }
    }
    eprintln!("{} answers, {coded} coded errors", answers.len());
    // Xenioo: its interval is an hour, so one call at most, and never a 429.
    let xenioo: Vec<_> = replicas
        .calls()
        .into_iter()
        .filter(|(p, _, _)| p == "xenioo")
        .collect();
    assert_eq!(xenioo.len(), 1, "{xenioo:?}");
    let config = std::fs::read_to_string(&replicas.config.path).expect("the config file");
    assert_no_secret_in(&redis, &configured_secrets(&config)).await;
}
