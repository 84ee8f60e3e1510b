//! Kept answers (`chatstats::answers`): a repeated read-only request is answered without being
//! resolved while its data is fresh, and never when that would show something a resolution
//! would not: another caller's view, an upstream failure, or health that changed since.

use chatstats::config::Scope;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_no_errors, client, recent_window, sample, spawn_app, spawn_app_with,
    spawn_app_with_one_second_xenioo_interval, TestApp,
};

/// Help Scout, ConnectyCube and message2give over one closed week (Xenioo keeps no history
/// that old: its part is left out).
const WEEK: &str = r#"{ workspace(id: "acme") {
    dialogs { created(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z"}) { total points { at value } } }
    messages { sent(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z"}, provider: CONNECTYCUBE) { total } } } }"#;

/// `chatstats_answers_total{outcome}` of `app`.
async fn answers(app: &TestApp, outcome: &str) -> f64 {
    let metrics = app.metrics().await;
    sample(
        &metrics,
        "chatstats_answers_total",
        &format!("outcome=\"{outcome}\""),
    )
    .unwrap_or(0.0)
}

async fn post_as(app: &TestApp, key: &str, query: &str) -> Value {
    let reply = app
        .post(&json!({ "query": query }), &[("x-api-key", key)])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

#[tokio::test]
async fn a_repeated_query_gets_the_same_answer_without_being_resolved_again() {
    let app = spawn_app().await;
    let first = app.post(&json!({ "query": WEEK }), &[]).await;
    assert_no_errors(&first.body);
    assert!(first.body["data"]["workspace"]["dialogs"]["created"]["total"].as_f64() > Some(0.0));
    let calls = app.calls().await.len();
    assert!(calls >= 3, "three providers were called: {calls}");
    let second = app.post(&json!({ "query": WEEK }), &[]).await;
    assert_eq!(second.text, first.text, "byte for byte the same answer");
    assert_eq!(app.calls().await.len(), calls, "no upstream call");
    assert_eq!(answers(&app, "stored").await, 1.0);
    assert_eq!(answers(&app, "hit").await, 1.0);
    // Other variables are another request.
    let with_variables = app
        .post(&json!({ "query": WEEK, "variables": {"unused": 1} }), &[])
        .await;
    assert_eq!(with_variables.body, first.body);
    assert_eq!(answers(&app, "hit").await, 1.0, "resolved, not served");
}

#[tokio::test]
async fn callers_who_see_different_workspaces_never_share_an_answer() {
    const ALL: &str = "all-key-0123456789";
    const GLOBEX: &str = "globex-key-abcdefgh";
    let app = spawn_app_with(|config| {
        config.clients = vec![
            client("dashboard", ALL, &["*"], &[Scope::Read]),
            client("globex-partner", GLOBEX, &["globex"], &[Scope::Read]),
        ];
    })
    .await;
    let acme = post_as(&app, ALL, WEEK).await;
    assert_no_errors(&acme);
    assert!(acme["data"]["workspace"].is_object());
    assert_eq!(post_as(&app, ALL, WEEK).await, acme);
    assert_eq!(answers(&app, "hit").await, 1.0, "the same caller is served");
    let foreign = post_as(&app, GLOBEX, WEEK).await;
    assert_eq!(foreign["data"], json!({"workspace": null}));
    assert_eq!(foreign["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert_eq!(answers(&app, "hit").await, 1.0, "another caller is not");
}

#[tokio::test]
async fn an_answer_with_an_upstream_failure_is_not_kept() {
    let app = spawn_app_with(|config| config.limits.upstream_max_retries = 0).await;
    app.fault(json!({"provider": "connectycube", "status": 503, "times": 1}))
        .await;
    let failed = app.query(WEEK).await;
    let codes: Vec<&str> = failed["errors"]
        .as_array()
        .expect("an error")
        .iter()
        .filter_map(|e| e["extensions"]["code"].as_str())
        .collect();
    assert_eq!(codes, ["UPSTREAM_UNAVAILABLE"], "{failed}");
    let before = app.calls_to("connectycube").await.len();
    let recovered = app.query(WEEK).await;
    assert_no_errors(&recovered);
    assert_eq!(
        app.calls_to("connectycube").await.len(),
        before + 1,
        "the failed request was asked again (the other one is cached)"
    );
    assert_eq!(answers(&app, "hit").await, 0.0);
}

#[tokio::test]
async fn an_answer_that_shows_health_is_resolved_again_after_an_upstream_call_failed() {
    let app = spawn_app_with(|config| config.limits.upstream_max_retries = 0).await;
    let health = r#"{ workspace(id: "acme") { sources { provider healthy lastError }
        messages { sent(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z"}, provider: CONNECTYCUBE) { total } } } }"#;
    let connectycube = |body: &Value| {
        body["data"]["workspace"]["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .find(|s| s["provider"] == "CONNECTYCUBE")
            .cloned()
            .expect("ConnectyCube is configured")
    };
    // The first answer showed the sources after its own call ended, so while they read the
    // same it is served again.
    let first = app.query(health).await;
    assert_no_errors(&first);
    let before = app.query(health).await;
    assert_eq!(before, first);
    assert_eq!(connectycube(&before)["healthy"], json!(true));
    assert_eq!(app.query(health).await, before);
    assert_eq!(answers(&app, "hit").await, 2.0, "unchanged health: served");
    assert_eq!(app.calls_to("connectycube").await.len(), 1);

    // Another window's call fails: ConnectyCube is unhealthy now.
    app.fault(json!({"provider": "connectycube", "status": 503}))
        .await;
    let other = app
        .query(
            &health
                .replace("2025-03-03", "2025-01-06")
                .replace("2025-03-10", "2025-01-13"),
        )
        .await;
    assert!(other.get("errors").is_some(), "{other}");

    let after = app.query(health).await;
    assert_no_errors(&after);
    assert_eq!(connectycube(&after)["healthy"], json!(false), "{after}");
    assert!(connectycube(&after)["lastError"].is_string());
    assert_eq!(
        after["data"]["workspace"]["messages"], before["data"]["workspace"]["messages"],
        "the data itself still comes from the chunk cache"
    );
}

#[tokio::test]
async fn a_mutation_is_never_answered_from_a_kept_answer() {
    let app = spawn_app().await;
    let export = r#"mutation { requestNpsExport(workspaceId: "acme", window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z"}) { requestedAt } }"#;
    let first = app.query(export).await;
    let second = app.query(export).await;
    assert_no_errors(&first);
    assert_no_errors(&second);
    assert_eq!(
        app.calls_to("chat_tonic").await.len(),
        2,
        "both reached Chat-Tonic"
    );
    assert_eq!(
        answers(&app, "stored").await + answers(&app, "hit").await,
        0.0
    );
}

#[tokio::test]
async fn an_answer_built_on_the_xenioo_snapshot_lasts_only_until_the_gate_opens() {
    let app = spawn_app_with_one_second_xenioo_interval().await;
    // The ConnectyCube part is history (fresh for a day); the Xenioo part holds for the
    // one-second interval only.
    let query = format!(
        r#"{{ workspace(id: "acme") {{ bots {{ name metric(kind: MESSAGES, {}) {{ total }} }}
            messages {{ sent(window: {{from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z"}}, provider: CONNECTYCUBE) {{ total }} }} }} }}"#,
        recent_window()
    );
    let first = app.query(&query).await;
    assert_no_errors(&first);
    assert_eq!(app.query(&query).await, first);
    assert_eq!(answers(&app, "hit").await, 1.0, "inside the interval: kept");
    assert_eq!(app.calls_to("xenioo").await.len(), 1);
    // The interval passing is the behaviour under test.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_no_errors(&app.query(&query).await);
    assert_eq!(answers(&app, "hit").await, 1.0, "resolved again");
    assert_eq!(
        app.calls_to("xenioo").await.len(),
        2,
        "a new snapshot was fetched"
    );
}
