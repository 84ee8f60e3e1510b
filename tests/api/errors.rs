//! Bad arguments are `BAD_USER_INPUT` naming the argument; a failing upstream costs only its
//! own fields (SPEC §5).

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, errors, spawn_app, spawn_app_with};

async fn sent(app: &crate::helpers::TestApp, window: &str) -> Value {
    app.query(&format!(
        r#"{{ workspace(id: "acme") {{ messages {{ sent(window: {window}) {{ total }} }} }} }}"#
    ))
    .await
}

fn single_error(body: &Value) -> (String, Option<String>, String) {
    let errors = errors(body);
    assert_eq!(errors.len(), 1, "{body}");
    errors.into_iter().next().expect("one error")
}

#[tokio::test]
async fn a_window_that_ends_before_it_starts_is_bad_user_input() {
    let app = spawn_app().await;
    let body = sent(
        &app,
        r#"{from: "2025-02-08T00:00:00Z", to: "2025-02-01T00:00:00Z"}"#,
    )
    .await;
    let (code, _, message) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(
        message.contains("window") && message.contains("before"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_time_zone_is_bad_user_input_naming_it() {
    let app = spawn_app().await;
    let body = sent(
        &app,
        r#"{from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z", timeZone: "Mars/Olympus"}"#,
    )
    .await;
    let (code, _, message) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(
        message.contains("Mars/Olympus")
            && message.contains("TimeZone")
            && message.contains("Australia/Sydney"),
        "{message}"
    );
    assert_eq!(
        body["errors"][0]["path"],
        json!(["workspace", "messages", "sent"]),
        "{body}"
    );
}

#[tokio::test]
async fn a_bad_zone_in_variables_is_bad_user_input() {
    let app = spawn_app().await;
    let body = app
        .query_with(
            r#"query($w: Window!) { workspace(id: "acme") { messages { sent(window: $w) { total } } } }"#,
            json!({"w": {"from": "2025-02-01T00:00:00Z", "to": "2025-02-08T00:00:00Z", "timeZone": "+25:00"}}),
        )
        .await;
    let (code, _, message) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("+25:00"), "{message}");
}

#[tokio::test]
async fn a_malformed_instant_is_bad_user_input() {
    let app = spawn_app().await;
    let body = sent(&app, r#"{from: "yesterday", to: "2025-02-08T00:00:00Z"}"#).await;
    let (code, _, message) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(
        message.contains("yesterday") && message.contains("RFC 3339"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_granularity_is_bad_user_input() {
    let app = spawn_app().await;
    let body = sent(
        &app,
        r#"{from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z", granularity: FORTNIGHT}"#,
    )
    .await;
    let (code, _, message) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("FORTNIGHT"), "{message}");
}

#[tokio::test]
async fn more_than_ten_thousand_buckets_is_bad_user_input() {
    let app = spawn_app().await;
    let body = sent(
        &app,
        r#"{from: "2020-01-01T00:00:00Z", to: "2048-01-01T00:00:00Z", granularity: DAY, timeZone: "UTC"}"#,
    )
    .await;
    let (code, _, message) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(
        message.contains("10000") || message.contains("10,000"),
        "{message}"
    );
    assert!(
        app.calls().await.is_empty(),
        "refused before any upstream call"
    );
}

#[tokio::test]
async fn hours_from_a_provider_that_only_has_days_name_the_provider_and_its_finest_granularity() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") { channel(id: "help_scout:chat") { conversations(
            window: {from: "2025-02-01T00:00:00Z", to: "2025-02-02T00:00:00Z", granularity: HOUR}) { total } } } }"#)
        .await;
    let (code, provider, message) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(provider.as_deref(), Some("HELP_SCOUT"));
    assert!(
        message.contains("DAY") && message.contains("HOUR") && message.contains("Help Scout"),
        "{message}"
    );
}

#[tokio::test]
async fn an_upstream_5xx_nulls_only_that_providers_fields() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "help_scout", "status": 503}))
        .await;
    let body = app
        .query(r#"{ workspace(id: "acme") {
            channel(id: "help_scout:chat") { conversations(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
            messages { sent(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}, provider: CONNECTYCUBE) { total sources } }
            dialogs { created(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total sources } } } }"#)
        .await;
    let workspace = &body["data"]["workspace"];
    assert_eq!(workspace["channel"]["conversations"], Value::Null);
    assert!(
        workspace["messages"]["sent"]["total"]
            .as_f64()
            .expect("ConnectyCube answers")
            > 0.0
    );
    assert_eq!(
        workspace["dialogs"]["created"]["sources"],
        json!(["MESSAGE2GIVE", "CONNECTYCUBE"])
    );
    let errs = errors(&body);
    assert_eq!(errs.len(), 2, "{body}");
    for (code, provider, message) in &errs {
        assert_eq!(code, "UPSTREAM_UNAVAILABLE");
        assert_eq!(provider.as_deref(), Some("HELP_SCOUT"));
        assert!(message.contains("503"), "{message}");
    }
    let paths: Vec<&Value> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| &e["path"])
        .collect();
    assert!(
        paths.contains(&&json!(["workspace", "channel", "conversations"])),
        "{paths:?}"
    );
    assert!(
        paths.contains(&&json!(["workspace", "dialogs", "created"])),
        "{paths:?}"
    );
}

#[tokio::test]
async fn a_slow_upstream_times_out_while_the_others_answer() {
    let app = spawn_app_with(|config| config.limits.upstream_timeout_ms = 2000).await;
    app.fault(json!({"provider": "connectycube", "latency_ms": 60000}))
        .await;
    let body = app
        .query(r#"{ workspace(id: "acme") {
            channel(id: "help_scout:chat") { conversations(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
            messages { sent(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}, provider: CONNECTYCUBE) { total sources } } } }"#)
        .await;
    assert!(
        body["data"]["workspace"]["channel"]["conversations"]["total"]
            .as_f64()
            .is_some(),
        "{body}"
    );
    assert_eq!(
        body["data"]["workspace"]["messages"]["sent"]["sources"],
        json!([])
    );
    let (code, provider, message) = single_error(&body);
    assert_eq!(code, "UPSTREAM_UNAVAILABLE");
    assert_eq!(provider.as_deref(), Some("CONNECTYCUBE"));
    assert!(message.contains("timed out"), "{message}");
}

#[tokio::test]
async fn refused_credentials_are_upstream_rejected_without_the_token() {
    let app = spawn_app_with(|config| {
        let hs = config.workspaces[0]
            .help_scout
            .as_mut()
            .expect("acme has Help Scout");
        hs.auth = chatstats::config::HelpScoutAuth::AccessToken(chatstats::config::Secret::new(
            "wrong-token-123",
        ));
    })
    .await;
    let body = app
        .query(r#"{ workspace(id: "acme") { channel(id: "help_scout:chat") { conversations(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } } } }"#)
        .await;
    let (code, provider, message) = single_error(&body);
    assert_eq!(code, "UPSTREAM_REJECTED");
    assert_eq!(provider.as_deref(), Some("HELP_SCOUT"));
    assert!(message.contains("401"), "{message}");
    assert!(!body.to_string().contains("wrong-token-123"));
    let sources = app
        .query(r#"{ workspace(id: "acme") { sources { provider healthy lastError } } }"#)
        .await;
    assert_no_errors(&sources);
    assert!(!sources.to_string().contains("wrong-token-123"));
    let help_scout = sources["data"]["workspace"]["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["provider"] == json!("HELP_SCOUT"))
        .expect("Help Scout source")
        .clone();
    assert_eq!(help_scout["healthy"], json!(false));
    assert!(help_scout["lastError"]
        .as_str()
        .expect("lastError")
        .contains("401"));
}

#[tokio::test]
async fn an_unknown_workspace_or_operator_is_not_found_naming_the_id() {
    let app = spawn_app().await;
    let body = app.query(r#"{ workspace(id: "nope") { id } }"#).await;
    assert_eq!(body["data"]["workspace"], Value::Null);
    let (code, provider, message) = single_error(&body);
    assert_eq!(code, "NOT_FOUND");
    assert_eq!(provider, None);
    assert!(message.contains("\"nope\""), "{message}");
    assert_eq!(body["errors"][0]["path"], json!(["workspace"]));

    // The rest of the query still answers.
    let body = app
        .query(r#"{ workspaces { id } operator(id: "message2give:nobody-here") { id } }"#)
        .await;
    assert_eq!(body["data"]["operator"], Value::Null);
    assert!(
        !body["data"]["workspaces"]
            .as_array()
            .expect("workspaces")
            .is_empty(),
        "{body}"
    );
    let (code, _, message) = single_error(&body);
    assert_eq!(code, "NOT_FOUND");
    assert!(message.contains("message2give:nobody-here"), "{message}");
    assert_eq!(body["errors"][0]["path"], json!(["operator"]));
}

#[tokio::test]
async fn a_request_that_passed_validation_answers_other_variables_as_a_fresh_server_does() {
    // A request that passed full validation runs again on the fast-validating schema; other
    // variable values are another request and must get exactly the answer a fresh server
    // gives them.
    let query = r#"query Sent($w: Window!) { workspace(id: "acme") { messages { sent(window: $w, provider: CONNECTYCUBE) { total } } } }"#;
    let good = json!({"from": "2025-02-01T00:00:00Z", "to": "2025-02-08T00:00:00Z"});
    let bad = json!({"from": "not a date", "to": "2025-02-08T00:00:00Z"});
    let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
    for _ in 0..2 {
        assert_no_errors(&app.query_with(query, json!({ "w": good })).await);
    }
    let refused = app.query_with(query, json!({ "w": bad })).await;
    let (code, _, message) = single_error(&refused);
    assert_eq!(code, "BAD_USER_INPUT", "{refused}");
    assert!(message.contains("not a date"), "{message}");
    let fresh = spawn_app().await;
    assert_eq!(refused, fresh.query_with(query, json!({ "w": bad })).await);
    // Still answered right after the refusal.
    assert_no_errors(&app.query_with(query, json!({ "w": good })).await);
}

#[tokio::test]
async fn a_document_that_fails_validation_fails_it_every_time() {
    // An unused variable is caught only by full validation: a request that failed it must
    // never be taken for one that passed.
    let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let query = r#"query Unused($n: Int) { workspace(id: "acme") { name } }"#;
    for _ in 0..3 {
        let body = app.query_with(query, json!({"n": 1})).await;
        let (code, _, message) = single_error(&body);
        assert_eq!(code, "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(message.contains("\"$n\" is not used"), "{message}");
        assert!(body.get("data").is_none(), "{body}");
    }
}

#[tokio::test]
async fn errors_async_graphql_raises_are_coded_by_phase_and_place_not_by_message() {
    let app = spawn_app().await;
    let cases = [
        (
            r#"{ workspace(id: "acme") { name "#,
            json!({}),
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            r#"{ workspace(id: "acme") { nope } }"#,
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            r#"{ workspace { name } }"#,
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            r#"query Q($id: ID!) { workspace(id: "acme") { name } }"#,
            json!({"id": "acme"}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        // Values the client gave for an argument, in the document or in variables.
        (
            r#"{ workspace(id: 7.5) { name } }"#,
            json!({}),
            "BAD_USER_INPUT",
        ),
        (
            r#"query Q($id: ID!) { workspace(id: $id) { name } }"#,
            json!({"id": {"not": "an id"}}),
            "BAD_USER_INPUT",
        ),
        (
            r#"query Q($id: ID!) { workspace(id: $id) { name } }"#,
            json!({}),
            "BAD_USER_INPUT",
        ),
    ];
    for (query, variables, expected) in cases {
        // Twice: the second time the request may run on the fast-validating schema.
        for _ in 0..2 {
            let body = app.query_with(query, variables.clone()).await;
            let (code, _, message) = single_error(&body);
            assert_eq!(code, expected, "{query} {variables}: {message}");
        }
    }
}
