//! Help Scout conversations through `Channel.conversations`, checked against the sandbox's
//! own data, and the report calls the sandbox saw.

use chatstats::sandbox::help_scout::conversations;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, days, points, rfc3339, spawn_app, utc, TestApp};

const CHAT_SERIES: &str = r#"query($w: Window!) { workspace(id: "acme") { channel(id: "help_scout:chat") {
    conversations(window: $w) { total exact sources points { at value } window { from to granularity timeZone } } } } }"#;

async fn chat_conversations(app: &TestApp, window: Value) -> Value {
    let body = app.query_with(CHAT_SERIES, json!({ "w": window })).await;
    assert_no_errors(&body);
    body["data"]["workspace"]["channel"]["conversations"].clone()
}

fn truth(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    conversations("acme", "chat", &[], &[], &[], from, to) as f64
}

/// The (start, end) of consecutive buckets given their starts and the window end.
fn spans(starts: &[DateTime<Utc>], end: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    starts
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, starts.get(i + 1).copied().unwrap_or(end)))
        .collect()
}

fn assert_matches_truth(series: &Value, window_end: DateTime<Utc>) {
    let pts = points(series);
    assert!(!pts.is_empty());
    let starts: Vec<_> = pts.iter().map(|(at, _)| *at).collect();
    let mut sum = 0.0;
    for ((at, value), (from, to)) in pts.iter().zip(spans(&starts, window_end)) {
        let expected = truth(from, to);
        assert_eq!(*value, Some(expected), "bucket {at}");
        sum += expected;
    }
    assert!(sum > 0.0, "the sandbox has data in the window");
    assert_eq!(series["total"].as_f64(), Some(sum));
}

fn day_range_of(call: &crate::helpers::Call) -> i64 {
    let parse =
        |name| DateTime::parse_from_rfc3339(call.param(name).expect(name)).expect("RFC 3339");
    (parse("end") - parse("start")).num_days()
}

#[tokio::test]
async fn fourteen_days_by_day_match_the_sandbox_in_one_call() {
    let app = spawn_app().await;
    let from = utc(2025, 3, 3);
    let series = chat_conversations(
        &app,
        json!({"from": rfc3339(from), "to": rfc3339(from + days(14)), "granularity": "DAY", "timeZone": "UTC"}),
    )
    .await;
    assert_eq!(points(&series).len(), 14);
    assert_matches_truth(&series, from + days(14));
    assert_eq!(series["exact"], json!(true));
    assert_eq!(series["sources"], json!(["HELP_SCOUT"]));
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].param("viewBy"), Some("day"));
    // The two 30-day blocks of the cache grid that cover the window, in one legal call.
    assert_eq!(calls[0].param("start"), Some("2025-02-11T00:00:00Z"));
    assert_eq!(calls[0].param("end"), Some("2025-04-12T00:00:00Z"));
}

#[tokio::test]
async fn a_hundred_days_by_day_are_split_into_legal_day_calls() {
    let app = spawn_app().await;
    let from = utc(2025, 1, 1);
    let to = from + days(100);
    let series = chat_conversations(
        &app,
        json!({"from": rfc3339(from), "to": rfc3339(to), "timeZone": "UTC"}),
    )
    .await;
    assert_eq!(points(&series).len(), 100);
    assert_matches_truth(&series, to);
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call.param("viewBy"), Some("day"));
        assert!(
            day_range_of(call) <= 60,
            "viewBy=day only for ranges of at most 60 days: {call:?}"
        );
        assert_eq!(call.status, 200);
    }
}

#[tokio::test]
async fn weeks_use_the_week_view_and_match_the_sandbox() {
    let app = spawn_app().await;
    let from = utc(2025, 1, 6); // a Monday
    let to = from + days(7 * 12);
    let series = chat_conversations(
        &app,
        json!({"from": rfc3339(from), "to": rfc3339(to), "granularity": "WEEK", "timeZone": "UTC"}),
    )
    .await;
    assert_eq!(points(&series).len(), 12);
    assert_matches_truth(&series, to);
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("viewBy"), Some("week"));
}

#[tokio::test]
async fn months_use_the_month_view_and_match_the_sandbox() {
    let app = spawn_app().await;
    let (from, to) = (utc(2024, 7, 1), utc(2025, 1, 1));
    let series = chat_conversations(
        &app,
        json!({"from": rfc3339(from), "to": rfc3339(to), "granularity": "MONTH", "timeZone": "UTC"}),
    )
    .await;
    let pts = points(&series);
    assert_eq!(pts.len(), 6);
    assert_eq!(pts[1].0, utc(2024, 8, 1));
    assert_matches_truth(&series, to);
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("viewBy"), Some("month"));
    assert!(day_range_of(&calls[0]) >= 61);
}

#[tokio::test]
async fn a_short_month_window_is_built_from_days() {
    let app = spawn_app().await;
    let (from, to) = (utc(2025, 2, 1), utc(2025, 3, 1));
    let series = chat_conversations(
        &app,
        json!({"from": rfc3339(from), "to": rfc3339(to), "granularity": "MONTH", "timeZone": "UTC"}),
    )
    .await;
    assert_eq!(points(&series).len(), 1);
    assert_matches_truth(&series, to);
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].param("viewBy"),
        Some("day"),
        "month needs at least 61 days"
    );
}

#[tokio::test]
async fn local_days_in_madrid_come_from_utc_days_and_are_not_exact() {
    let app = spawn_app().await;
    // 2025-03-24..31 contains the DST change of 2025-03-30 in Madrid.
    let series = chat_conversations(
        &app,
        json!({"from": "2025-03-24T00:00:00+01:00", "to": "2025-03-31T00:00:00+02:00", "timeZone": "Europe/Madrid"}),
    )
    .await;
    let pts = points(&series);
    assert_eq!(pts.len(), 7);
    assert_eq!(series["exact"], json!(false));
    assert_eq!(series["window"]["timeZone"], json!("Europe/Madrid"));
    assert_eq!(
        pts[0].0.to_rfc3339(),
        "2025-03-23T23:00:00+00:00",
        "local midnight in CET"
    );
    assert_eq!(pts[6].0.to_rfc3339(), "2025-03-29T23:00:00+00:00");
    for (i, (at, value)) in pts.iter().enumerate() {
        // Each UTC day's midpoint (12:00Z) falls on the same local date in Madrid.
        let utc_day = utc(2025, 3, 24) + days(i as i64);
        assert_eq!(
            *value,
            Some(truth(utc_day, utc_day + days(1))),
            "local day starting {at}"
        );
    }
}

#[tokio::test]
async fn filters_reach_help_scout_and_narrow_the_counts() {
    let app = spawn_app().await;
    let query = r#"{ workspace(id: "acme") { channel(id: "help_scout:email") {
        conversations(window: {from: "2025-05-01T00:00:00Z", to: "2025-05-08T00:00:00Z", timeZone: "UTC"},
                      mailboxes: [102, 101], tags: [7], folders: [12]) { total } } } }"#;
    let body = app.query(query).await;
    assert_no_errors(&body);
    let expected = conversations(
        "acme",
        "email",
        &[101, 102],
        &[7],
        &[12],
        utc(2025, 5, 1),
        utc(2025, 5, 8),
    ) as f64;
    let all = conversations(
        "acme",
        "email",
        &[],
        &[],
        &[],
        utc(2025, 5, 1),
        utc(2025, 5, 8),
    ) as f64;
    assert!(expected > 0.0 && expected < all);
    assert_eq!(
        body["data"]["workspace"]["channel"]["conversations"]["total"].as_f64(),
        Some(expected)
    );
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("mailboxes"), Some("101,102"));
    assert_eq!(calls[0].param("tags"), Some("7"));
    assert_eq!(calls[0].param("folders"), Some("12"));
}

#[tokio::test]
async fn client_credentials_fetch_one_token_and_reuse_it() {
    let app = spawn_app().await;
    // Two windows in different 30-day blocks of the cache grid (04-12..05-12, 05-12..06-11).
    for day in [1, 20] {
        let (from, to) = (utc(2025, 5, day), utc(2025, 5, day + 2));
        let query = format!(
            r#"{{ workspace(id: "globex") {{ channel(id: "help_scout:phone") {{
            conversations(window: {{from: "{}", to: "{}", timeZone: "UTC"}}) {{ total }} }} }} }}"#,
            rfc3339(from),
            rfc3339(to)
        );
        let body = app.query(&query).await;
        assert_no_errors(&body);
        let expected = conversations("globex", "phone", &[], &[], &[], from, to) as f64;
        assert_eq!(
            body["data"]["workspace"]["channel"]["conversations"]["total"].as_f64(),
            Some(expected)
        );
    }
    let calls = app.calls_to("help_scout").await;
    let token_calls = calls
        .iter()
        .filter(|c| c.path == "/v2/oauth2/token")
        .count();
    let report_calls = calls
        .iter()
        .filter(|c| c.path.ends_with("volume-by-channel"))
        .count();
    assert_eq!((token_calls, report_calls), (1, 2), "{calls:?}");
}

#[tokio::test]
async fn workspace_lists_help_scout_channels_and_sources() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspaces { id name timeZone sources { provider healthy } channels { id kind name provider } } }"#)
        .await;
    assert_no_errors(&body);
    let acme = &body["data"]["workspaces"][0];
    assert_eq!(acme["id"], json!("acme"));
    assert_eq!(acme["timeZone"], json!("Australia/Sydney"));
    let ids: Vec<&str> = acme["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in ["help_scout:chat", "help_scout:email", "help_scout:phone"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let providers: Vec<&str> = acme["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter_map(|s| s["provider"].as_str())
        .collect();
    assert!(
        providers.contains(&"HELP_SCOUT") && providers.contains(&"CONNECTYCUBE"),
        "{providers:?}"
    );
    assert_eq!(body["data"]["workspaces"][1]["id"], json!("globex"));
}
