//! The example operations of `schema/examples` (issue 4): each costs exactly the upstream calls
//! its header documents on a cold server, and none warm; and a window that overlaps a cached
//! one fetches only the chunks that are missing.

mod example_file;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, assert_only_codes, spawn_app, TestApp};
use example_file::{today, ExampleFile, PROVIDERS};

/// POST an example with `x-chatstats-trace: 1`; returns the JSON body.
async fn run(app: &TestApp, example: &ExampleFile, variables: &Value) -> Value {
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("x-chatstats-trace", "1")
        .json(&json!({ "query": example.document, "variables": variables }))
        .send()
        .await
        .expect("server answers");
    assert!(
        response.status().is_success(),
        "{}: HTTP {}",
        example.name,
        response.status()
    );
    response.json().await.expect("JSON body")
}

/// The sandbox's call log as calls per provider (every provider present, 0 when not called).
async fn calls_per_provider(app: &TestApp) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = PROVIDERS.iter().map(|p| (p.to_string(), 0)).collect();
    for call in app.calls().await {
        *counts.entry(call.provider).or_default() += 1;
    }
    counts
}

/// Cold on a fresh server: exactly the documented calls; warm: the same data and no call.
async fn costs_its_documented_calls_cold_and_none_warm(name: &str) {
    let example = ExampleFile::load(name).expect("the example file parses");
    let variables = example.variables_at(today());
    let app = spawn_app().await;

    let cold = run(&app, &example, &variables).await;
    if example.errors.is_empty() {
        assert_no_errors(&cold);
    } else {
        let allowed: Vec<&str> = example.errors.iter().map(String::as_str).collect();
        assert_only_codes(&cold, &allowed);
    }
    assert!(
        cold["data"]["workspace"].is_object(),
        "{name}: no workspace in {cold}"
    );
    let counts = calls_per_provider(&app).await;
    assert_eq!(
        counts,
        example.calls,
        "{name}: cold calls per provider (the `# calls:` line); log: {:?}",
        app.calls().await
    );

    let warm = run(&app, &example, &variables).await;
    assert_eq!(warm["data"], cold["data"], "{name}: warm answers the same");
    assert_eq!(
        calls_per_provider(&app).await,
        counts,
        "{name}: a warm run makes no upstream call"
    );
    assert_eq!(
        warm["extensions"]["upstream"]["upstreamCalls"],
        json!(0),
        "{name}: the trace agrees"
    );
}

#[tokio::test]
async fn the_overview_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("overview").await;
}

#[tokio::test]
async fn the_operator_leaderboard_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("operator_leaderboard").await;
}

#[tokio::test]
async fn the_channel_drilldown_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("channel_drilldown").await;
}

#[tokio::test]
async fn the_bot_report_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("bot_report").await;
}

#[test]
fn every_example_is_one_named_operation_whose_calls_are_the_documented_minimum() {
    let examples = ExampleFile::all().expect("every example file parses");
    let names: Vec<&str> = examples.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bot_report",
            "channel_drilldown",
            "operator_leaderboard",
            "overview"
        ]
    );
    for example in &examples {
        let operations = example
            .document
            .lines()
            .filter(|line| line.starts_with("query "))
            .count();
        assert_eq!(operations, 1, "{}: one named query", example.name);
        assert_eq!(
            example.calls, example.minimum,
            "{}: the gateway makes more calls than the upstream APIs need",
            example.name
        );
    }
}

#[tokio::test]
async fn a_window_overlapping_cached_months_fetches_only_the_missing_month() {
    let app = spawn_app().await;
    // message2give SMS usage: one call per local month (Sydney, UTC+11 January to March 2025).
    let query = |from: &str, to: &str| {
        format!(
            r#"{{ workspace(id: "acme") {{ messages {{
                sent(window: {{from: "{from}", to: "{to}"}}, provider: MESSAGE2GIVE) {{ total }} }} }} }}"#
        )
    };
    let months = |calls: &[crate::helpers::Call]| -> Vec<String> {
        let mut months: Vec<String> = calls
            .iter()
            .map(|c| c.param("month").unwrap_or("<none>").to_string())
            .collect();
        months.sort();
        months
    };

    // January and February.
    let first = app
        .query(&query(
            "2025-01-01T00:00:00+11:00",
            "2025-03-01T00:00:00+11:00",
        ))
        .await;
    assert_no_errors(&first);
    let after_first = app.calls().await;
    assert_eq!(
        months(&after_first),
        ["2024-12-31T13:00:00.000Z", "2025-01-31T13:00:00.000Z"]
    );

    // February (cached) and March (missing).
    let second = app
        .query(&query(
            "2025-02-01T00:00:00+11:00",
            "2025-04-01T00:00:00+11:00",
        ))
        .await;
    assert_no_errors(&second);
    let after_second = app.calls().await;
    assert_eq!(
        months(&after_second[after_first.len()..]),
        ["2025-02-28T13:00:00.000Z"],
        "only March is fetched"
    );
    assert!(
        after_second
            .iter()
            .all(|c| c.provider == "message2give" && c.path.ends_with("/usage/sms/console")),
        "{after_second:?}"
    );
}
