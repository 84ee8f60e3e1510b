//! Issue 12's acceptance over real binaries, a real redis-server and the sandbox: many cold
//! dashboards over three replicas cost what one replica costs, and Xenioo is called once.

use std::time::Duration;

use chatstats::sandbox::SandboxOptions;
use chrono::DurationRound;
use serde_json::Value;

use super::{assert_no_secret_in, configured_secrets, shared_section, RedisServer, Replicas};
use crate::helpers::rfc3339;

/// Dashboards sent at once, spread round-robin over the replicas.
const DASHBOARDS: usize = 60;

/// Dashboard `i`: every provider, over a recent window (inside Xenioo's 30 days) that no
/// other dashboard uses: it ends `i % 10` hours before the current hour and spans
/// `2 + i / 10` days.
pub fn dashboard(i: usize) -> String {
    let hour = chrono::Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .expect("truncates to the hour");
    let to = hour - chrono::Duration::hours((i % 10) as i64);
    let from = to - chrono::Duration::days(2 + (i / 10) as i64);
    let window = format!(
        r#"window: {{from: "{}", to: "{}"}}"#,
        rfc3339(from),
        rfc3339(to)
    );
    format!(
        r#"{{ workspace(id: "acme") {{
            chat: channel(id: "help_scout:chat") {{ conversations({window}) {{ total }} }}
            messages {{ sent({window}) {{ total }} }}
            dialogs {{ created({window}) {{ total }} }}
            users {{ returning({window}) {{ total }} }} }} }}"#
    )
}

/// Sends the dashboards at once, `i` to replica `i % n`; the statuses and bodies.
async fn send_all(replicas: &Replicas) -> Vec<(u16, Value)> {
    let n = replicas.servers.len();
    let bodies = futures::future::join_all(
        (0..DASHBOARDS).map(|i| async move { replicas.query(i % n, &dashboard(i)).await }),
    );
    tokio::time::timeout(Duration::from_secs(180), bodies)
        .await
        .expect("the dashboards answer within 180 s")
}

fn assert_clean(replicas: &Replicas, answers: &[(u16, Value)]) {
    let logs = || {
        replicas
            .servers
            .iter()
            .flat_map(|s| s.stderr_lines())
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
    };
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "dashboard {i}: {body}; {:?}", logs());
        assert!(
            body.get("errors").is_none(),
            "dashboard {i}: {body}; {:?}",
            logs()
        );
        assert!(
            body["data"]["workspace"].is_object(),
            "dashboard {i}: {body}"
        );
    }
}

#[tokio::test]
async fn sixty_cold_dashboards_over_three_replicas_cost_one_replicas_calls_and_one_xenioo_call() {
    // One replica alone (the baseline) and three sharing Redis, on two sandboxes, at once:
    // the cold Xenioo snapshot takes seconds in a debug build, so the two runs overlap.
    let redis = RedisServer::start().await;
    let shared = shared_section(&redis.url(), 1000, true);
    let (alone, replicas) = tokio::join!(
        Replicas::start(1, SandboxOptions::default(), ""),
        Replicas::start(3, SandboxOptions::default(), &shared)
    );
    let started = std::time::Instant::now();
    let (alone_answers, answers) = tokio::join!(send_all(&alone), send_all(&replicas));
    eprintln!(
        "60 dashboards, alone and over three replicas: {:?}",
        started.elapsed()
    );
    assert_clean(&alone, &alone_answers);
    let baseline = alone.calls();
    drop(alone);
    assert_clean(&replicas, &answers);
    let calls = replicas.calls();
    let xenioo: Vec<_> = calls.iter().filter(|(p, _, _)| p == "xenioo").collect();
    assert_eq!(xenioo.len(), 1, "Xenioo exactly once: {xenioo:?}");
    assert!(
        calls.iter().all(|(_, _, status)| *status != 429),
        "no 429: {calls:?}"
    );
    eprintln!(
        "upstream calls: one replica {}, three replicas {}",
        baseline.len(),
        calls.len()
    );
    let mut extra: Vec<&(String, String, u16)> = calls.iter().collect();
    for call in &baseline {
        if let Some(i) = extra.iter().position(|c| c.0 == call.0 && c.1 == call.1) {
            extra.remove(i);
        }
    }
    eprintln!("beyond the baseline's: {extra:?}");
    assert!(
        calls.len() <= baseline.len() + 2,
        "three replicas made {} calls, one alone {}; beyond the baseline's: {extra:#?}",
        calls.len(),
        baseline.len()
    );
    // Every replica serves the one snapshot, and knows the same next allowed call.
    let mut next_calls = Vec::new();
    for i in 0..3 {
        let (_, body) = replicas
            .query(
                i,
                r#"{ workspace(id: "acme") { sources { provider nextCallAllowedAt } } }"#,
            )
            .await;
        let sources = body["data"]["workspace"]["sources"]
            .as_array()
            .unwrap_or_else(|| panic!("sources: {body}"));
        let xenioo = sources
            .iter()
            .find(|s| s["provider"] == "XENIOO")
            .unwrap_or_else(|| panic!("a Xenioo source: {body}"));
        assert!(xenioo["nextCallAllowedAt"].is_string(), "{body}");
        next_calls.push(xenioo["nextCallAllowedAt"].clone());
    }
    assert!(
        next_calls.iter().all(|n| *n == next_calls[0]),
        "{next_calls:?}"
    );
    // Security: after the full run, no configured credential in any key or value.
    let config = std::fs::read_to_string(&replicas.config.path).expect("the config file");
    assert_no_secret_in(&redis, &configured_secrets(&config)).await;
}
