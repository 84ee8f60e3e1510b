//! Resilience of upstream calls (SPEC §4.7): retries counted exactly in the sandbox call log,
//! `Retry-After`, the retry budget, the circuit breaker, per-provider timeouts, and malformed
//! bodies. Backoff is 1 ms in tests (see `helpers::spawn_app_with_options`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chatstats::sandbox::SandboxOptions;
use serde_json::{json, Value};

use crate::helpers::{
    assert_no_errors, errors, eventually, sample, spawn_app, spawn_app_with,
    spawn_app_with_options, TestApp,
};

const CONVERSATIONS: &str = r#"{ workspace(id: "acme") { channel(id: "help_scout:chat") {
    conversations(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } } } }"#;

const CC_SENT: &str = r#"{ workspace(id: "acme") { messages {
    sent(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}, provider: CONNECTYCUBE) { total sources } } } }"#;

/// Xenioo's users.returning over a recent window (so the snapshot is really asked for).
fn returning() -> String {
    format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning({}) {{ sources }} }} }} }}"#,
        crate::helpers::recent_window()
    )
}

fn only_error(body: &Value) -> Value {
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    errors[0].clone()
}

fn statuses(calls: &[crate::helpers::Call]) -> Vec<u16> {
    calls.iter().map(|c| c.status).collect()
}

#[tokio::test]
async fn one_503_then_success_is_retried_once_and_answers() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "help_scout", "status": 503, "times": 1}))
        .await;
    let body = app.query(CONVERSATIONS).await;
    assert_no_errors(&body);
    let total = body["data"]["workspace"]["channel"]["conversations"]["total"]
        .as_f64()
        .expect("a total");
    assert_eq!(statuses(&app.calls_to("help_scout").await), [503, 200]);

    // The same answer as an app that saw no fault.
    let clean = spawn_app().await;
    let expected = clean.query(CONVERSATIONS).await;
    assert_eq!(
        expected["data"]["workspace"]["channel"]["conversations"]["total"].as_f64(),
        Some(total)
    );
}

#[tokio::test]
async fn a_permanent_503_is_tried_three_times_and_the_message_says_so() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "help_scout", "status": 503}))
        .await;
    let body = app.query(CONVERSATIONS).await;
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_UNAVAILABLE");
    assert_eq!(error["extensions"]["provider"], "HELP_SCOUT");
    assert_eq!(
        error["message"],
        "Help Scout is unavailable: HTTP 503 on all 3 attempts (2 retries); try again later"
    );
    assert_eq!(statuses(&app.calls_to("help_scout").await), [503, 503, 503]);
}

#[tokio::test]
async fn a_4xx_is_never_retried() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "connectycube", "status": 400}))
        .await;
    let body = app.query(CC_SENT).await;
    assert_eq!(only_error(&body)["extensions"]["code"], "UPSTREAM_REJECTED");
    assert_eq!(app.calls_to("connectycube").await.len(), 1);
}

#[tokio::test]
async fn the_nps_export_mutation_is_never_retried_even_on_503() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "chat_tonic", "status": 503}))
        .await;
    let body = app
        .query(r#"mutation { requestNpsExport(workspaceId: "acme", window: {from: "2025-03-01T00:00:00Z", to: "2025-04-01T00:00:00Z"}) { requestedAt } }"#)
        .await;
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_UNAVAILABLE");
    assert_eq!(
        error["message"],
        "Chat-Tonic is unavailable: HTTP 503; try again later"
    );
    let calls = app.calls_to("chat_tonic").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].path.ends_with("/stats/nps/export"));
}

#[tokio::test]
async fn xenioo_is_never_retried_on_503_or_429() {
    for (status, code) in [(503, "UPSTREAM_UNAVAILABLE"), (429, "UPSTREAM_THROTTLED")] {
        let app = spawn_app().await;
        app.fault(json!({"provider": "xenioo", "status": status, "retry_after_secs": 0}))
            .await;
        for _ in 0..3 {
            let body = app.query(&returning()).await;
            let error = only_error(&body);
            assert!(
                error["extensions"]["code"] == code
                    || error["extensions"]["code"] == "UPSTREAM_THROTTLED",
                "{body}"
            );
        }
        let calls = app.calls_to("xenioo").await;
        assert_eq!(statuses(&calls), [status], "one call for three queries");
    }
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_retry() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "help_scout", "status": 429, "retry_after_secs": 1, "times": 1}))
        .await;
    let started = Instant::now();
    let body = app.query(CONVERSATIONS).await;
    assert_no_errors(&body);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the upstream's Retry-After"
    );
    assert_eq!(statuses(&app.calls_to("help_scout").await), [429, 200]);
}

#[tokio::test]
async fn a_retry_after_beyond_the_wait_bound_fails_at_once_as_throttled() {
    let app = spawn_app_with(|config| config.limits.upstream_retry_max_wait_ms = 2_000).await;
    app.fault(json!({"provider": "help_scout", "status": 429, "retry_after_secs": 120}))
        .await;
    let started = Instant::now();
    let body = app.query(CONVERSATIONS).await;
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_THROTTLED");
    assert_eq!(error["extensions"]["retryAfter"], 120);
    assert!(started.elapsed() < Duration::from_secs(60), "did not wait");
    assert_eq!(app.calls_to("help_scout").await.len(), 1);
}

#[tokio::test]
async fn the_retry_budget_stops_retries_against_a_dead_upstream() {
    let app = spawn_app_with(|config| {
        config.limits.upstream_max_retries = 10;
        config.limits.upstream_retry_budget_percent = 0;
        config.limits.circuit_failure_threshold = 100;
    })
    .await;
    app.fault(json!({"provider": "help_scout", "status": 503}))
        .await;
    let first = app.query(CONVERSATIONS).await;
    let message = only_error(&first)["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(
        message.contains("HTTP 503 on all 4 attempts (3 retries)")
            && message.contains("retry budget is spent"),
        "{message}"
    );
    // The floor of 3 retries per 10 s is spent: the next query makes one attempt.
    app.query(CONVERSATIONS).await;
    assert_eq!(app.calls_to("help_scout").await.len(), 4 + 1);
    assert!(app
        .metrics()
        .await
        .contains("chatstats_upstream_retry_budget_exhausted_total{provider=\"help_scout\",workspace=\"acme\"}"));
}

async fn circuit_state(app: &TestApp, provider: &str) -> Option<f64> {
    sample(
        &app.metrics().await,
        "chatstats_upstream_circuit_state",
        &format!("provider=\"{provider}\",workspace=\"acme\""),
    )
}

#[tokio::test]
async fn the_breaker_opens_after_n_failed_calls_and_then_fails_fast_without_calling() {
    let app = spawn_app_with(|config| {
        config.limits.circuit_failure_threshold = 2;
        config.limits.circuit_cooldown_ms = 600_000;
        // Enough budget for both queries' retries (3 + 100% of 2 calls).
        config.limits.upstream_retry_budget_percent = 100;
    })
    .await;
    app.fault(json!({"provider": "connectycube", "status": 503}))
        .await;
    assert_eq!(circuit_state(&app, "connectycube").await, Some(0.0));
    for _ in 0..2 {
        let body = app.query(CC_SENT).await;
        assert_eq!(
            only_error(&body)["extensions"]["code"],
            "UPSTREAM_UNAVAILABLE"
        );
    }
    assert_eq!(app.calls_to("connectycube").await.len(), 2 * 3);
    assert_eq!(circuit_state(&app, "connectycube").await, Some(2.0));

    let started = Instant::now();
    let body = app.query(CC_SENT).await;
    let error = only_error(&body);
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    assert_eq!(error["extensions"]["code"], "UPSTREAM_UNAVAILABLE");
    assert_eq!(error["extensions"]["provider"], "CONNECTYCUBE");
    assert_eq!(error["extensions"]["retryAfter"], 600);
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("circuit open after 2 consecutive failed calls")
            && message.contains("HTTP 503 on all 3 attempts"),
        "{message}"
    );
    assert_eq!(app.calls_to("connectycube").await.len(), 6, "no new call");
    // Other providers are untouched.
    assert_no_errors(&app.query(CONVERSATIONS).await);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "chatstats_upstream_circuit_rejections_total",
            "provider=\"connectycube\",workspace=\"acme\""
        ),
        Some(1.0)
    );
    assert_eq!(circuit_state(&app, "help_scout").await, Some(0.0));
}

#[tokio::test]
async fn after_the_cooldown_one_probe_closes_the_breaker_again() {
    let app = spawn_app_with(|config| {
        config.limits.circuit_failure_threshold = 1;
        config.limits.upstream_max_retries = 0;
        config.limits.circuit_cooldown_ms = 300;
    })
    .await;
    app.fault(json!({"provider": "connectycube", "status": 503, "times": 1}))
        .await;
    let failed = app.query(CC_SENT).await;
    assert_eq!(
        only_error(&failed)["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
    // Retry the query until the breaker lets its probe through; refused queries make no call.
    let body = eventually(Duration::from_secs(20), "the probe to succeed", || async {
        let body = app.query(CC_SENT).await;
        body.get("errors").is_none().then_some(body)
    })
    .await;
    assert!(
        body["data"]["workspace"]["messages"]["sent"]["total"]
            .as_f64()
            .is_some_and(|t| t > 0.0),
        "{body}"
    );
    assert_eq!(
        statuses(&app.calls_to("connectycube").await),
        [503, 200],
        "the failed call and the probe, nothing while open"
    );
    assert_eq!(circuit_state(&app, "connectycube").await, Some(0.0));
}

/// An app whose ConnectyCube breaker opens after two failed calls and stays open, with no
/// retries: each query below makes exactly one call.
async fn app_with_a_strict_breaker() -> TestApp {
    spawn_app_with(|config| {
        config.limits.circuit_failure_threshold = 2;
        config.limits.circuit_cooldown_ms = 600_000;
        config.limits.upstream_max_retries = 0;
    })
    .await
}

#[tokio::test]
async fn a_malformed_body_counts_as_a_failed_call_for_the_breaker() {
    let app = app_with_a_strict_breaker().await;
    app.fault(json!({"provider": "connectycube", "malformed": true}))
        .await;
    for _ in 0..2 {
        let body = app.query(CC_SENT).await;
        assert_eq!(only_error(&body)["extensions"]["code"], "UPSTREAM_INVALID");
    }
    assert_eq!(circuit_state(&app, "connectycube").await, Some(2.0));
    let body = app.query(CC_SENT).await;
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_UNAVAILABLE");
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("circuit open after 2 consecutive failed calls")
            && message.contains("unreadable body"),
        "{message}"
    );
    assert_eq!(
        statuses(&app.calls_to("connectycube").await),
        [200, 200],
        "the open circuit made no call"
    );
}

#[tokio::test]
async fn a_429_or_another_4xx_neither_opens_the_breaker_nor_resets_its_count() {
    let app = app_with_a_strict_breaker().await;
    let answer = |status: u16| {
        let app = &app;
        async move {
            app.fault(json!({"provider": "connectycube", "status": status, "times": 1, "retry_after_secs": 3600}))
                .await;
            let body = app.query(CC_SENT).await;
            only_error(&body)["extensions"]["code"]
                .as_str()
                .expect("a code")
                .to_string()
        }
    };
    assert_eq!(answer(503).await, "UPSTREAM_UNAVAILABLE");
    for (status, code) in [
        (429, "UPSTREAM_THROTTLED"),
        (401, "UPSTREAM_REJECTED"),
        (403, "UPSTREAM_REJECTED"),
        (404, "UPSTREAM_REJECTED"),
        (400, "UPSTREAM_REJECTED"),
    ] {
        assert_eq!(answer(status).await, code, "HTTP {status}");
        assert_eq!(
            circuit_state(&app, "connectycube").await,
            Some(0.0),
            "HTTP {status} is not a failure: still closed"
        );
    }
    // Had any of them counted as a success, this second failure would be the first again.
    assert_eq!(answer(503).await, "UPSTREAM_UNAVAILABLE");
    assert_eq!(circuit_state(&app, "connectycube").await, Some(2.0));
    assert_eq!(
        statuses(&app.calls_to("connectycube").await),
        [503, 429, 401, 403, 404, 400, 503],
        "one call per query"
    );
}

#[tokio::test]
async fn a_per_provider_timeout_overrides_the_default_and_timeouts_are_not_retried() {
    let app = spawn_app_with(|config| {
        config.limits.upstream_timeout_ms = 30_000;
        config.limits.upstream_timeouts_ms.connectycube = Some(300);
    })
    .await;
    app.fault(json!({"provider": "connectycube", "latency_ms": 20_000}))
        .await;
    let body = app
        .query(r#"{ workspace(id: "acme") {
            channel(id: "help_scout:chat") { conversations(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
            messages { sent(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}, provider: CONNECTYCUBE) { total sources } } } }"#)
        .await;
    assert!(
        body["data"]["workspace"]["channel"]["conversations"]["total"]
            .as_f64()
            .is_some()
    );
    let error = only_error(&body);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_UNAVAILABLE");
    assert!(error["message"]
        .as_str()
        .is_some_and(|m| m.contains("timed out")));
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "chatstats_upstream_requests_total",
            "provider=\"connectycube\",endpoint=\"messages/sent-total\",outcome=\"timeout\""
        ),
        Some(1.0),
        "one attempt, no retry:\n{metrics}"
    );
}

#[tokio::test]
async fn a_malformed_body_is_upstream_invalid_for_every_provider_and_never_retried() {
    let app = spawn_app_with_options(SandboxOptions::default(), |_| {}).await;
    app.fault(json!({"provider": "*", "malformed": true})).await;
    let body = app
        .query(&r#"{ workspace(id: "acme") {
            channel(id: "help_scout:chat") { conversations(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
            messages { sent(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}, provider: CONNECTYCUBE) { total } }
            dialogs { pending(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
            surveys(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { id }
            users { returning(RECENT) { total } } } }"#.replace("RECENT", &crate::helpers::recent_window()))
        .await;
    let mut providers: Vec<String> = errors(&body)
        .into_iter()
        .map(|(code, provider, message)| {
            assert_eq!(code, "UPSTREAM_INVALID", "{message}");
            provider.expect("a provider")
        })
        .collect();
    providers.sort();
    providers.dedup();
    assert_eq!(
        providers,
        [
            "CHAT_TONIC",
            "CONNECTYCUBE",
            "HELP_SCOUT",
            "MESSAGE2GIVE",
            "XENIOO"
        ],
        "{body}"
    );
    for call in app.calls().await {
        assert_eq!(call.status, 200);
    }
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for call in app.calls().await {
        *counts.entry(call.provider).or_default() += 1;
    }
    for (provider, n) in counts {
        let expected = if provider == "message2give" { 2 } else { 1 };
        assert!(n <= expected, "{provider}: {n} calls, not retried");
    }
}

/// `VmHWM` (peak RSS) and `VmRSS` of this process, in KiB, from /proc/self/status.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A bounded load (loopback, 5 s or 5000 requests, whichever comes first) of mixed operations
/// while Help Scout fails 20% of its calls and ConnectyCube is slow: no 5xx, every GraphQL
/// error coded, memory within the cache bound plus a generous margin. No timing assertions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_load_with_upstream_faults_gets_no_5xx_and_only_coded_errors() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    const DURATION: Duration = Duration::from_secs(5);
    const MAX_REQUESTS: usize = 5000;
    const WORKERS: usize = 8;
    const MARGIN_BYTES: u64 = 512 * 1024 * 1024;

    let app = Arc::new(spawn_app().await);
    app.fault(json!({"provider": "help_scout", "status": 503, "error_rate": 0.2}))
        .await;
    app.fault(json!({"provider": "connectycube", "latency_ms": 30}))
        .await;
    let max_bytes = chatstats::config::CacheConfig::default().max_bytes;
    // Warm-up, untimed: the sandbox builds its data (the Xenioo 30-day snapshot, message2give
    // months) in seconds in a debug build; the load phase is about the gateway.
    for n in 0..7 {
        app.query(&mixed_query(n)).await;
    }

    let sent = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Mutex<HashMap<u16, usize>>> = Arc::default();
    let codes: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let uncoded = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + DURATION;
    let workers = (0..WORKERS).map(|worker| {
        let (app, sent, statuses, codes, uncoded) = (
            app.clone(),
            sent.clone(),
            statuses.clone(),
            codes.clone(),
            uncoded.clone(),
        );
        tokio::spawn(async move {
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= MAX_REQUESTS || Instant::now() >= deadline {
                    break;
                }
                let query = mixed_query(n + worker);
                let response = app
                    .http
                    .post(app.url("/graphql"))
                    .json(&json!({ "query": query }))
                    .send()
                    .await
                    .expect("the server answers");
                *statuses
                    .lock()
                    .expect("lock")
                    .entry(response.status().as_u16())
                    .or_default() += 1;
                let body: Value = response.json().await.expect("a JSON body");
                for error in body["errors"].as_array().into_iter().flatten() {
                    match error["extensions"]["code"].as_str() {
                        Some(code) => {
                            *codes
                                .lock()
                                .expect("lock")
                                .entry(code.to_string())
                                .or_default() += 1
                        }
                        None => {
                            uncoded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.expect("a worker finishes");
    }
    let statuses = statuses.lock().expect("lock").clone();
    let codes = codes.lock().expect("lock").clone();
    let requests: usize = statuses.values().sum();
    let (hwm, rss) = memory_kib();
    let metrics = app.metrics().await;
    let retries: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("chatstats_upstream_retries_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!(
        "load: {requests} requests in at most {DURATION:?}; statuses {statuses:?}; errors by code {codes:?}; \
         upstream calls {}; retries {retries}; peak RSS {} MiB, RSS {} MiB (cache max {} MiB)",
        app.calls().await.len(),
        hwm / 1024,
        rss / 1024,
        max_bytes / (1024 * 1024)
    );
    assert!(requests > 0);
    assert!(statuses.keys().all(|s| *s < 500), "no 5xx: {statuses:?}");
    assert_eq!(uncoded.load(Ordering::Relaxed), 0, "every error has a code");
    assert!(
        hwm * 1024 < max_bytes + MARGIN_BYTES,
        "peak RSS {hwm} KiB within the cache bound plus {MARGIN_BYTES} bytes"
    );
}

/// The `n`-th query of the load mix: dashboards over shifting windows (cache misses and
/// hits), single-provider series, a bad argument, and a trivial query.
fn mixed_query(n: usize) -> String {
    let day = 1 + (n / 7) % 27;
    let window = format!(
        r#"window: {{from: "2025-02-{day:02}T00:00:00Z", to: "2025-02-{:02}T00:00:00Z"}}"#,
        day + 1
    );
    match n % 7 {
        0 => format!(
            r#"query Dashboard {{ workspace(id: "acme") {{ dialogs {{ created({window}) {{ total }} }} messages {{ sent({window}) {{ total }} }} }} }}"#
        ),
        1 => format!(
            r#"query HelpScout {{ workspace(id: "acme") {{ channel(id: "help_scout:chat") {{ conversations({window}) {{ points {{ at value }} }} }} }} }}"#
        ),
        2 => format!(
            r#"query Cube {{ workspace(id: "globex") {{ messages {{ sent({window}, provider: CONNECTYCUBE) {{ total }} }} }} }}"#
        ),
        3 => format!(
            r#"query Service {{ workspace(id: "acme") {{ dialogs {{ pending({window}) {{ total }} serviceLevel({window}) {{ attention {{ total }} }} }} }} }}"#
        ),
        4 => r#"query Bots { workspace(id: "acme") { users { returning(window: {from: "2025-01-01T00:00:00Z", to: "2025-01-02T00:00:00Z"}) { total } } } }"#.to_string(),
        5 => r#"query Bad { workspace(id: "acme") { messages { sent(window: {from: "2025-02-08T00:00:00Z", to: "2025-02-01T00:00:00Z"}) { total } } } }"#.to_string(),
        _ => "{ __typename }".to_string(),
    }
}
