//! API keys, scopes and tenants (SPEC §8): both key transports, 401 without or with an unknown
//! key, another tenant's workspace indistinguishable from an unknown one (through every door:
//! `workspace`, `workspaces`, `operator`, federation `_entities`, the NPS export), and the
//! `read` and `export` scopes.

use chatstats::config::Scope;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, client, spawn_app_with, TestApp};

const DASHBOARD_KEY: &str = "dash-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-abcdefgh";
const EXPORTER_KEY: &str = "export-only-key-xyz";

/// Three clients: one sees every workspace and reads, one reads only `globex`, one may only
/// export.
async fn app_with_clients() -> TestApp {
    spawn_app_with(|config| {
        config.clients = vec![
            client("dashboard", DASHBOARD_KEY, &["*"], &[Scope::Read]),
            client("globex-partner", GLOBEX_KEY, &["globex"], &[Scope::Read]),
            client(
                "exporter",
                EXPORTER_KEY,
                &["acme"],
                &[Scope::Export, Scope::Read],
            ),
        ];
    })
    .await
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn as_client(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    let reply = app
        .post(
            &json!({"query": query, "variables": variables}),
            &[("x-api-key", key)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

#[tokio::test]
async fn a_key_is_accepted_as_a_bearer_token_or_in_x_api_key() {
    let app = app_with_clients().await;
    let query = json!({"query": "{ workspaces { id } }"});
    let by_bearer = app
        .post(&query, &[("authorization", &bearer(DASHBOARD_KEY))])
        .await;
    let by_header = app.post(&query, &[("x-api-key", DASHBOARD_KEY)]).await;
    for reply in [by_bearer, by_header] {
        assert_eq!(reply.status, StatusCode::OK);
        assert_no_errors(&reply.body);
        assert_eq!(
            reply.body["data"]["workspaces"],
            json!([{"id": "acme"}, {"id": "globex"}])
        );
    }
}

#[tokio::test]
async fn a_request_without_a_key_is_401_unauthenticated() {
    let app = app_with_clients().await;
    let reply = app.post(&json!({"query": "{ __typename }"}), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "UNAUTHENTICATED");
    assert!(reply.body.get("data").is_none(), "{}", reply.text);
    assert!(
        reply.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("x-api-key") && m.contains("Bearer")),
        "says how to send a key: {}",
        reply.text
    );
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"chatstats\"")
    );
    // GET is guarded the same way.
    let get = app.get(&[("query", "{ __typename }")], &[]).await;
    assert_eq!(get.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get.code(), "UNAUTHENTICATED");
    // Only a GET WebSocket upgrade may defer its key to `connection_init`: a POST that merely
    // claims to upgrade is refused like any other (it once reached the handler without a
    // caller and got a 500).
    let post = app
        .post(
            &json!({"query": "{ __typename }"}),
            &[("upgrade", "websocket")],
        )
        .await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED, "{}", post.text);
    assert_eq!(post.code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_unknown_or_malformed_key_is_401_and_never_echoed() {
    let app = app_with_clients().await;
    let guess = "dash-key-0123456788";
    for headers in [
        vec![("x-api-key", guess.to_string())],
        vec![("authorization", bearer(guess))],
        vec![("authorization", format!("Basic {guess}"))],
        vec![("authorization", bearer(&format!("{DASHBOARD_KEY}x")))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = app
            .post(&json!({"query": "{ workspaces { id } }"}), &headers)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(reply.code(), "UNAUTHENTICATED");
        assert!(!reply.text.contains(guess), "{}", reply.text);
        assert!(!reply.text.contains(DASHBOARD_KEY), "{}", reply.text);
        assert!(!reply.text.contains("acme"), "no data: {}", reply.text);
    }
}

#[tokio::test]
async fn workspaces_lists_only_the_callers_own() {
    let app = app_with_clients().await;
    let body = as_client(&app, GLOBEX_KEY, "{ workspaces { id } }", json!({})).await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["workspaces"], json!([{"id": "globex"}]));
}

/// The body a client gets, with the asked-for id replaced, so answers about two ids compare.
async fn answer(app: &TestApp, query: &str, id: &str) -> String {
    let body = as_client(app, GLOBEX_KEY, &query.replace("ID", id), json!({})).await;
    body.to_string().replace(id, "ID")
}

/// `body` (as [`answer`] gives it) is null at `field` with one `NOT_FOUND` error there, whose
/// message names the asked-for id (shown as `ID`).
fn assert_not_found(body: &str, field: &str) {
    let body: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(body["data"], json!({ field: null }), "{body}");
    let errors = body["errors"].as_array().expect("an error");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(
        errors[0]["extensions"]["code"],
        json!("NOT_FOUND"),
        "{body}"
    );
    assert_eq!(errors[0]["path"], json!([field]), "{body}");
    let message = errors[0]["message"].as_str().expect("a message");
    assert!(message.contains("ID"), "{message}");
}

#[tokio::test]
async fn another_tenants_workspace_looks_exactly_like_an_unknown_one() {
    let app = app_with_clients().await;
    let workspace = r#"{ workspace(id: "ID") { id name } }"#;
    let foreign = answer(&app, workspace, "acme").await;
    assert_eq!(foreign, answer(&app, workspace, "no-such-workspace").await);
    assert_not_found(&foreign, "workspace");
    // The caller's own workspace is there.
    let own = as_client(
        &app,
        GLOBEX_KEY,
        r#"{ workspace(id: "globex") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(own["data"]["workspace"]["id"], json!("globex"));

    let entities = r#"{ _entities(representations: [{__typename: "Workspace", id: "ID"}]) { ... on Workspace { id name } } }"#;
    let foreign = answer(&app, entities, "acme").await;
    assert_eq!(foreign, answer(&app, entities, "no-such-workspace").await);
    assert_eq!(foreign, r#"{"data":{"_entities":[null]}}"#);
    let own = as_client(
        &app,
        GLOBEX_KEY,
        &entities.replace("ID", "globex"),
        json!({}),
    )
    .await;
    assert_eq!(own["data"]["_entities"][0]["id"], json!("globex"));

    // acme is the only workspace with Chat-Tonic, so this operator is acme's.
    let operator = r#"{ operator(id: "chat_tonic:ID") { id } }"#;
    let foreign = answer(&app, operator, "5f286ede4dbdcf209af").await;
    assert_eq!(foreign, answer(&app, operator, "unknown0operator").await);
    assert_not_found(&foreign, "operator");
    let operator_entity = r#"{ _entities(representations: [{__typename: "Operator", id: "chat_tonic:ID"}]) { ... on Operator { id } } }"#;
    let foreign = answer(&app, operator_entity, "5f286ede4dbdcf209af").await;
    assert_eq!(
        foreign,
        answer(&app, operator_entity, "unknown0operator").await
    );
    assert_eq!(foreign, r#"{"data":{"_entities":[null]}}"#);
    assert!(
        app.calls_to("chat_tonic").await.is_empty(),
        "nothing of acme's was fetched for globex's partner"
    );
}

#[tokio::test]
async fn the_nps_export_of_a_foreign_workspace_is_not_found_like_an_unknown_one() {
    let app = spawn_app_with(|config| {
        config.clients = vec![client(
            "globex-exporter",
            GLOBEX_KEY,
            &["globex"],
            &[Scope::Read, Scope::Export],
        )];
    })
    .await;
    let mutation = r#"mutation { requestNpsExport(workspaceId: "ID", window: {from: "2025-03-01T00:00:00Z", to: "2025-04-01T00:00:00Z"}) { requestedAt } }"#;
    let foreign = answer(&app, mutation, "acme").await;
    assert_eq!(foreign, answer(&app, mutation, "no-such-workspace").await);
    let body: Value = serde_json::from_str(&foreign).expect("JSON");
    assert_eq!(body["errors"][0]["extensions"]["code"], json!("NOT_FOUND"));
    assert_eq!(
        body["data"],
        Value::Null,
        "the mutation's field is non-null"
    );
    assert!(app.calls_to("chat_tonic").await.is_empty());
}

#[tokio::test]
async fn request_nps_export_needs_the_export_scope() {
    let app = app_with_clients().await;
    let mutation = r#"mutation { requestNpsExport(workspaceId: "acme", window: {from: "2025-03-01T00:00:00Z", to: "2025-04-01T00:00:00Z"}) { requestedAt } }"#;
    let refused = as_client(&app, DASHBOARD_KEY, mutation, json!({})).await;
    let error = &refused["errors"][0];
    assert_eq!(error["extensions"]["code"], json!("FORBIDDEN"));
    assert_eq!(error["extensions"]["scope"], json!("export"));
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("`export`") && message.contains("requestNpsExport"),
        "{message}"
    );
    assert!(
        app.calls_to("chat_tonic").await.is_empty(),
        "refused before the upstream"
    );

    let allowed = as_client(&app, EXPORTER_KEY, mutation, json!({})).await;
    assert_no_errors(&allowed);
    assert!(allowed["data"]["requestNpsExport"]["requestedAt"].is_string());
}

#[tokio::test]
async fn queries_need_the_read_scope() {
    let app = spawn_app_with(|config| {
        config.clients = vec![client("exporter", EXPORTER_KEY, &["*"], &[Scope::Export])];
    })
    .await;
    let refused = as_client(&app, EXPORTER_KEY, "{ workspaces { id } }", json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN")
    );
    assert_eq!(refused["errors"][0]["extensions"]["scope"], json!("read"));
    assert!(
        refused.get("data").is_none(),
        "refused before execution: {refused}"
    );
    let mutation = r#"mutation { requestNpsExport(workspaceId: "acme", window: {from: "2025-03-01T00:00:00Z", to: "2025-04-01T00:00:00Z"}) { requestedAt } }"#;
    assert_no_errors(&as_client(&app, EXPORTER_KEY, mutation, json!({})).await);
}

#[tokio::test]
async fn a_valid_key_never_appears_in_the_response() {
    let app = app_with_clients().await;
    let reply = app
        .post(
            &json!({"query": "{ workspaces { id } }"}),
            &[("x-api-key", DASHBOARD_KEY)],
        )
        .await;
    assert!(!reply.text.contains(DASHBOARD_KEY));
    for (_, value) in reply.headers.iter() {
        assert!(!value.to_str().unwrap_or("").contains(DASHBOARD_KEY));
    }
}

/// Log output captured from the current thread (the test's single-threaded runtime, where
/// `App::build` runs).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

async fn start_log(edit: impl FnOnce(&mut chatstats::config::Config)) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let _app = spawn_app_with(edit).await;
    captured.text()
}

#[tokio::test]
async fn open_access_is_logged_as_a_warning_at_start_and_keys_never_are() {
    let open = start_log(|_| {}).await;
    assert!(
        open.contains("WARN") && open.contains("no [[clients]] configured"),
        "{open}"
    );
    let keyed = start_log(|config| {
        config.clients = vec![client("dashboard", DASHBOARD_KEY, &["*"], &[Scope::Read])];
    })
    .await;
    assert!(!keyed.contains("no [[clients]] configured"), "{keyed}");
    assert!(!keyed.contains(DASHBOARD_KEY), "{keyed}");
}
