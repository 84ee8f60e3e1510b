//! Xenioo: every field from one hourly snapshot, and the throttle never broken — one call per
//! account per interval however many queries arrive, stale data or `UPSTREAM_THROTTLED` after
//! (told apart: Xenioo's own 429, or chatstats waiting after a call that may have counted; a
//! call that never left spends nothing); the snapshot in the trace; `sources` after the calls.

use chatstats::sandbox::accounts::ACME;
use chatstats::sandbox::xenioo::hourly_value;
use chrono::{Duration, DurationRound, Utc};
use serde_json::json;

use chatstats::config::BaseUrl;

use crate::helpers::{
    assert_no_errors, assert_only_codes, errors, points, rfc3339, sample, spawn_app,
    spawn_app_with, spawn_app_with_one_second_xenioo_interval,
};

const ALL_TYPES_PATH: &str =
    "/analytics/statistics/account/*/0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17/hour/30";

fn bot_key(name: &str) -> &'static str {
    ACME.xenioo
        .as_ref()
        .expect("acme has Xenioo")
        .bots
        .iter()
        .find(|b| b.name == name)
        .expect("known bot")
        .api_key
}

#[tokio::test]
async fn fifty_concurrent_cold_queries_make_exactly_one_call() {
    let app = spawn_app().await;
    let query = r#"{ workspace(id: "acme") { bots { name } users { returning(window: {from: "2025-01-01T00:00:00Z", to: "2025-01-02T00:00:00Z"}) { sources } } } }"#;
    let bodies = futures::future::join_all((0..50).map(|_| app.query(query))).await;
    for body in &bodies {
        assert_eq!(
            body["data"]["workspace"]["bots"],
            bodies[0]["data"]["workspace"]["bots"]
        );
        assert!(
            body["data"]["workspace"]["bots"]
                .as_array()
                .is_some_and(|b| b.len() == 2),
            "{body}"
        );
    }
    let calls = app.calls_to("xenioo").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, ALL_TYPES_PATH);
    assert_eq!(calls[0].status, 200);
}

#[tokio::test]
async fn bot_metrics_by_hour_match_the_sandbox() {
    let app = spawn_app().await;
    let to = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncates");
    let from = to - Duration::hours(6);
    let query = format!(
        r#"{{ workspace(id: "acme") {{ bots {{ name metric(kind: MESSAGES, window: {{from: "{}", to: "{}", granularity: HOUR, timeZone: "UTC"}}) {{ unit aggregation points {{ at value }} }}
            facebook: metric(kind: MESSAGES, channel: "Facebook", window: {{from: "{}", to: "{}", granularity: HOUR, timeZone: "UTC"}}) {{ total }} }} }} }}"#,
        rfc3339(from),
        rfc3339(to),
        rfc3339(from),
        rfc3339(to)
    );
    let body = app.query(&query).await;
    assert_no_errors(&body);
    let xenioo = ACME.xenioo.as_ref().expect("Xenioo");
    let mut checked = 0.0;
    for bot in body["data"]["workspace"]["bots"].as_array().expect("bots") {
        let name = bot["name"].as_str().expect("name");
        let account_bot = xenioo
            .bots
            .iter()
            .find(|b| b.name == name)
            .expect("known bot");
        assert_eq!(bot["metric"]["aggregation"], json!("SUM"));
        for (at, value) in points(&bot["metric"]) {
            let expected: f64 = account_bot
                .channels
                .iter()
                .map(|c| hourly_value("acme", bot_key(name), c, 3, at))
                .sum();
            assert_eq!(value, Some(expected), "{name} at {at}");
            checked += expected;
        }
        let facebook: f64 = if account_bot.channels.contains(&"Facebook") {
            (0..6)
                .map(|h| {
                    hourly_value(
                        "acme",
                        bot_key(name),
                        "Facebook",
                        3,
                        from + Duration::hours(h),
                    )
                })
                .sum()
        } else {
            0.0
        };
        assert_eq!(bot["facebook"]["total"].as_f64(), Some(facebook));
    }
    assert!(checked > 0.0, "the sandbox has recent bot traffic");
}

#[tokio::test]
async fn xenioo_channels_are_listed_and_measured() {
    let app = spawn_app().await;
    let to = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncates");
    let from = to - Duration::hours(3);
    let query = format!(
        r#"{{ workspace(id: "acme") {{ channels {{ id kind }} channel(id: "xenioo:Telegram") {{ messages(window: {{from: "{}", to: "{}", granularity: HOUR}}) {{ total }} }}
            sources {{ provider nextCallAllowedAt }} }} }}"#,
        rfc3339(from),
        rfc3339(to)
    );
    let body = app.query(&query).await;
    assert_no_errors(&body);
    let ids: Vec<&str> = body["data"]["workspace"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in [
        "xenioo:Facebook",
        "xenioo:Telegram",
        "xenioo:WebChat",
        "xenioo:WhatsApp",
        "message2give:web",
        "help_scout:chat",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let expected: f64 = (0..3)
        .map(|h| {
            hourly_value(
                "acme",
                bot_key("Acme Helper"),
                "Telegram",
                3,
                from + Duration::hours(h),
            )
        })
        .sum();
    assert_eq!(
        body["data"]["workspace"]["channel"]["messages"]["total"].as_f64(),
        Some(expected)
    );
    let xenioo = body["data"]["workspace"]["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["provider"] == json!("XENIOO"))
        .expect("Xenioo source")
        .clone();
    assert!(xenioo["nextCallAllowedAt"].is_string(), "{xenioo}");
}

#[tokio::test]
async fn a_window_older_than_thirty_days_is_out_of_retention_for_xenioo_only() {
    let app = spawn_app().await;
    let to = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncates");
    let from = to - Duration::days(40);
    let query = format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning(window: {{from: "{}", to: "{}"}}) {{ sources total }} }} }} }}"#,
        rfc3339(from),
        rfc3339(to)
    );
    let body = app.query(&query).await;
    let errs = errors(&body);
    assert_eq!(errs.len(), 1, "{body}");
    assert_eq!(errs[0].0, "OUT_OF_RETENTION");
    assert_eq!(errs[0].1.as_deref(), Some("XENIOO"));
    assert_eq!(
        body["data"]["workspace"]["users"]["returning"]["sources"],
        json!(["XENIOO"]),
        "the recent part still counts"
    );
    assert!(
        body["data"]["workspace"]["users"]["returning"]["total"]
            .as_f64()
            .expect("total")
            > 0.0
    );
}

#[tokio::test]
async fn a_warm_series_from_the_snapshot_is_one_cache_read() {
    // Kept answers off: the second query is resolved, not served its answer.
    let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let query = format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning({}) {{ total points {{ at value }} }} }} }} }}"#,
        crate::helpers::recent_window()
    );
    let hits = |metrics: String| {
        sample(&metrics, "chatstats_cache_lookups_total", "outcome=\"hit\"").unwrap_or(0.0)
    };
    let cold = app.query(&query).await;
    assert_no_errors(&cold);
    assert!(
        cold["data"]["workspace"]["users"]["returning"]["total"].as_f64() > Some(0.0),
        "{cold}"
    );
    let before = hits(app.metrics().await);
    let warm = app.query(&query).await;
    assert_eq!(warm, cold, "the same series");
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
    assert_eq!(
        hits(app.metrics().await),
        before + 1.0,
        "the series put on its buckets was kept and read again, not rebuilt from the snapshot"
    );
}

#[tokio::test]
async fn a_failed_refresh_serves_the_last_snapshot_as_stale_and_never_calls_early() {
    let app = spawn_app_with_one_second_xenioo_interval().await;
    let to = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncates");
    let query = &format!(
        r#"{{ workspace(id: "acme") {{ bots {{ name metric(kind: MESSAGES, window: {{from: "{}", to: "{}"}}) {{ stale }} }} }} }}"#,
        rfc3339(to - Duration::days(2)),
        rfc3339(to)
    );
    let fresh = app.query(query).await;
    assert_eq!(
        fresh["data"]["workspace"]["bots"][0]["metric"]["stale"],
        json!(false),
        "{fresh}"
    );
    app.fault(json!({"provider": "xenioo", "status": 503}))
        .await;
    // Inside the interval: no call at all, even with the upstream failing.
    let inside = app.query(query).await;
    assert_eq!(
        inside["data"]["workspace"]["bots"][0]["metric"]["stale"],
        json!(false)
    );
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
    // The interval passing is the behaviour under test.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let stale = app.query(query).await;
    assert_eq!(
        stale["data"]["workspace"]["bots"][0]["metric"]["stale"],
        json!(true),
        "{stale}"
    );
    assert!(
        stale["extensions"]["warnings"][0]
            .as_str()
            .expect("warning")
            .contains("Xenioo"),
        "{stale}"
    );
    assert_eq!(
        app.calls_to("xenioo").await.len(),
        2,
        "one refresh attempt after the interval"
    );
}

#[tokio::test]
async fn a_failing_first_call_spends_the_interval_and_later_queries_are_throttled() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "xenioo", "status": 503}))
        .await;
    let to = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncates");
    let query = &format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning(window: {{from: "{}", to: "{}"}}) {{ sources }} }} }} }}"#,
        rfc3339(to - Duration::days(1)),
        rfc3339(to)
    );
    let first = app.query(query).await;
    assert_eq!(errors(&first)[0].0, "UPSTREAM_UNAVAILABLE");
    let second = app.query(query).await;
    let second_errors = second["errors"].as_array().expect("errors");
    assert_eq!(
        second_errors[0]["extensions"]["code"],
        json!("UPSTREAM_THROTTLED")
    );
    assert!(
        second_errors[0]["extensions"]["retryAfter"]
            .as_u64()
            .expect("retryAfter")
            > 3000
    );
    // Xenioo throttled no one: the 503 may have counted, so chatstats waits, and says so.
    let message = second_errors[0]["message"].as_str().expect("message");
    assert!(
        message.contains("chatstats waits for this account's next allowed call")
            && message.contains("HTTP 503")
            && !message.contains("throttling"),
        "{message}"
    );
    let source = xenioo_source(&app).await;
    assert_eq!(source["nextCallWait"], json!("CALL_INTERVAL"), "{source}");
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
}

/// The Xenioo entry of `sources`, read by a query that calls no upstream.
async fn xenioo_source(app: &crate::helpers::TestApp) -> serde_json::Value {
    let body = app
        .query(r#"{ workspace(id: "acme") { sources { provider healthy lastError nextCallAllowedAt nextCallWait } } }"#)
        .await;
    assert_no_errors(&body);
    xenioo_in(&body["data"]["workspace"]["sources"])
}

/// The Xenioo entry of a `sources` list.
fn xenioo_in(sources: &serde_json::Value) -> serde_json::Value {
    sources
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["provider"] == json!("XENIOO"))
        .expect("a Xenioo source")
        .clone()
}

/// A recent Xenioo series (it needs the snapshot) with the sources next to it.
fn returning_with_sources() -> String {
    format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning({}) {{ total }} }} sources {{ provider healthy lastError nextCallAllowedAt nextCallWait }} }} }}"#,
        crate::helpers::recent_window()
    )
}

#[tokio::test]
async fn a_call_that_could_not_connect_spends_no_interval_and_the_next_query_tries_again() {
    let (_reserved, closed) = crate::helpers::closed_port();
    let app = spawn_app_with(|config| {
        config.workspaces[0]
            .xenioo
            .as_mut()
            .expect("the first sandbox workspace has Xenioo")
            .base_url = BaseUrl::parse(&format!("http://{closed}")).expect("a valid URL");
    })
    .await;
    let query = returning_with_sources();
    for attempt in ["first", "second"] {
        let body = app.query(&query).await;
        let errs = errors(&body);
        assert_eq!(errs.len(), 1, "{attempt}: {body}");
        let (code, provider, message) = &errs[0];
        assert_eq!(code, "UPSTREAM_UNAVAILABLE", "{attempt}: {body}");
        assert_eq!(provider.as_deref(), Some("XENIOO"));
        assert!(
            message.contains("could not connect"),
            "{attempt}: {message}"
        );
        // Nothing reached Xenioo, so nothing is held back.
        let source = xenioo_in(&body["data"]["workspace"]["sources"]);
        assert_eq!(source["healthy"], json!(false), "{attempt}: {source}");
        assert_eq!(
            source["nextCallAllowedAt"],
            json!(null),
            "{attempt}: {source}"
        );
        assert_eq!(source["nextCallWait"], json!(null), "{attempt}: {source}");
    }
}

#[tokio::test]
async fn xenioos_own_429_is_told_apart_from_chatstats_interval() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "xenioo", "status": 429, "retry_after_secs": 7200}))
        .await;
    let query = returning_with_sources();
    let first = app.query(&query).await;
    assert_eq!(errors(&first)[0].0, "UPSTREAM_THROTTLED", "{first}");
    let second = app.query(&query).await;
    let (code, _, message) = &errors(&second)[0];
    assert_eq!(code, "UPSTREAM_THROTTLED");
    assert!(
        message.contains("Xenioo is throttling requests"),
        "{message}"
    );
    assert!(
        second["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .expect("retryAfter")
            > 7000,
        "Xenioo's Retry-After, longer than the interval: {second}"
    );
    let source = xenioo_in(&second["data"]["workspace"]["sources"]);
    assert_eq!(
        source["nextCallWait"],
        json!("PROVIDER_THROTTLED"),
        "{source}"
    );
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
}

#[tokio::test]
async fn sources_show_a_provider_unhealthy_in_the_answer_that_carries_its_error() {
    // Sources asked before, after and beside the failing fields, in the same workspace and
    // under other root fields: each shows the health after this request's calls, whether the
    // call is Xenioo's snapshot or a chunk (Help Scout, retried first).
    let app = spawn_app().await;
    for provider in ["xenioo", "help_scout"] {
        app.fault(json!({"provider": provider, "status": 503, "latency_ms": 100}))
            .await;
    }
    let sources = "sources { provider healthy lastError }";
    let query = format!(
        r#"{{ before: workspace(id: "acme") {{ {sources} bots {{ name }} {sources} }}
            other: workspace(id: "acme") {{ {sources} }}
            chat: workspace(id: "acme") {{ channel(id: "help_scout:chat") {{ conversations(window: {{from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z"}}) {{ total }} }} }} }}"#
    );
    let body = app.query(&query).await;
    let mut failed: Vec<Option<String>> = errors(&body)
        .into_iter()
        .map(|(code, provider, _)| {
            assert_eq!(code, "UPSTREAM_UNAVAILABLE", "{body}");
            provider
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![Some("HELP_SCOUT".to_string()), Some("XENIOO".to_string())],
        "{body}"
    );
    for root in ["before", "other"] {
        for provider in ["XENIOO", "HELP_SCOUT"] {
            let source = body["data"][root]["sources"]
                .as_array()
                .expect("sources")
                .iter()
                .find(|s| s["provider"] == json!(provider))
                .unwrap_or_else(|| panic!("{provider} in {body}"));
            assert_eq!(source["healthy"], json!(false), "{root}: {source}");
            assert!(
                source["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("HTTP 503")),
                "{root}: {source}"
            );
        }
    }
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
}

fn xenioo_trace_lines(body: &serde_json::Value) -> Vec<serde_json::Value> {
    body["extensions"]["upstream"]["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("a trace in {body}"))
        .iter()
        .filter(|c| c["provider"] == json!("xenioo"))
        .cloned()
        .collect()
}

async fn traced(app: &crate::helpers::TestApp, query: &str) -> serde_json::Value {
    app.post(&json!({ "query": query }), &[("x-chatstats-trace", "1")])
        .await
        .body
}

#[tokio::test]
async fn the_trace_lists_the_snapshot_once_per_request_as_a_call_then_a_hit() {
    let app = spawn_app().await;
    // Four fields read the snapshot: one line, like a chunk the memo serves.
    let query = format!(
        r#"{{ workspace(id: "acme") {{ bots {{ name }} channels {{ id }} users {{ returning({w}) {{ total }} new({w}) {{ total }} }} }} }}"#,
        w = crate::helpers::recent_window()
    );
    let cold = traced(&app, &query).await;
    assert_no_errors(&cold);
    let lines = xenioo_trace_lines(&cold);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], json!("upstream"));
    assert_eq!(lines[0]["endpoint"], json!("statistics"));
    assert!(lines[0]["latencyMs"].as_f64().is_some(), "{lines:?}");
    assert_eq!(
        cold["extensions"]["upstream"]["upstreamCalls"],
        json!(app.calls().await.len()),
        "the trace counts every call the sandbox saw, Xenioo's included"
    );

    let calls = app.calls().await.len();
    let warm = traced(&app, &query).await;
    assert_no_errors(&warm);
    let lines = xenioo_trace_lines(&warm);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], json!("hit"));
    assert_eq!(warm["extensions"]["upstream"]["upstreamCalls"], json!(0));
    assert_eq!(app.calls().await.len(), calls);
}

#[tokio::test]
async fn the_trace_shows_a_failed_snapshot_call_then_the_throttled_reads_after_it() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "xenioo", "status": 503}))
        .await;
    let query = format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning({}) {{ total }} }} }} }}"#,
        crate::helpers::recent_window()
    );
    let failed = traced(&app, &query).await;
    let lines = xenioo_trace_lines(&failed);
    assert_eq!(lines.len(), 1, "{failed}");
    assert_eq!(lines[0]["outcome"], json!("error"));
    assert_eq!(failed["extensions"]["upstream"]["upstreamCalls"], json!(1));
    let held = traced(&app, &query).await;
    let lines = xenioo_trace_lines(&held);
    assert_eq!(lines.len(), 1, "{held}");
    assert_eq!(lines[0]["outcome"], json!("throttled"));
    assert_eq!(held["extensions"]["upstream"]["upstreamCalls"], json!(0));
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
}

#[tokio::test]
async fn the_trace_shows_a_stale_snapshot_after_a_failed_refresh_and_no_call_inside_the_interval() {
    let app = spawn_app_with_one_second_xenioo_interval().await;
    let query = format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning({}) {{ stale }} }} }} }}"#,
        crate::helpers::recent_window()
    );
    let fresh = traced(&app, &query).await;
    assert_eq!(xenioo_trace_lines(&fresh)[0]["outcome"], json!("upstream"));
    app.fault(json!({"provider": "xenioo", "status": 503}))
        .await;
    // The interval passing is the behaviour under test.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let refreshed = traced(&app, &query).await;
    let lines = xenioo_trace_lines(&refreshed);
    assert_eq!(lines[0]["outcome"], json!("stale"), "{refreshed}");
    assert!(lines[0]["latencyMs"].as_f64().is_some(), "{lines:?}");
    assert_eq!(
        refreshed["extensions"]["upstream"]["upstreamCalls"],
        json!(1)
    );
    let inside = traced(&app, &query).await;
    let lines = xenioo_trace_lines(&inside);
    assert_eq!(lines[0]["outcome"], json!("stale"), "{inside}");
    assert_eq!(
        inside["extensions"]["upstream"]["upstreamCalls"],
        json!(0),
        "inside the interval the stale snapshot costs no call"
    );
    assert_eq!(app.calls_to("xenioo").await.len(), 2);
}

#[tokio::test]
async fn a_window_older_than_any_snapshot_costs_no_call_and_is_out_of_retention() {
    let app = spawn_app().await;
    let query = r#"{ workspace(id: "acme") { users { returning(window: {from: "2025-01-01T00:00:00Z", to: "2025-01-02T00:00:00Z"}) { sources } } } }"#;
    let body = app.query(query).await;
    assert_only_codes(&body, &["OUT_OF_RETENTION"]);
    let (code, _, message) = &errors(&body)[0];
    assert_eq!(code, "OUT_OF_RETENTION");
    assert!(message.contains("30 days"), "{message}");
    assert!(
        app.calls_to("xenioo").await.is_empty(),
        "the hour is not spent on a window no snapshot can have"
    );

    // A recent window still calls, once; the old window is then judged by that snapshot.
    let recent = format!(
        r#"{{ workspace(id: "acme") {{ users {{ returning({}) {{ sources }} }} }} }}"#,
        crate::helpers::recent_window()
    );
    let body = app.query(&recent).await;
    assert_no_errors(&body);
    let body = app.query(query).await;
    assert_eq!(errors(&body)[0].0, "OUT_OF_RETENTION");
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
}
