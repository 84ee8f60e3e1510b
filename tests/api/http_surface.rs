//! The HTTP surface: GraphQL over HTTP (POST and GET, content negotiation, status codes),
//! GraphiQL, health, and a barrage of malformed requests that must never get a 5xx.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, spawn_app, TestApp};

#[tokio::test]
async fn graphiql_health_and_readiness_answer() {
    let app = spawn_app().await;
    let page = app.http.get(app.url("/")).send().await.expect("answers");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .expect("body")
        .to_lowercase()
        .contains("graphiql"));
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.http
                .get(app.url(path))
                .send()
                .await
                .expect("answers")
                .status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn graphiql_and_introspection_can_be_switched_off() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.server.graphiql = false;
        config.server.introspection = false;
    })
    .await;
    let page = app.http.get(app.url("/")).send().await.expect("answers");
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let body = app.query("{ __schema { types { name } } }").await;
    assert!(
        body["data"]["__schema"].is_null(),
        "no schema is revealed: {body}"
    );
    assert!(!body.to_string().contains("Workspace"), "{body}");
    assert_no_errors(&app.query("{ workspaces { id } }").await);
}

#[tokio::test]
async fn get_runs_a_query_from_the_query_string() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/graphql"))
        .query(&[
            ("query", "query($id: ID!) { workspace(id: $id) { name } }"),
            ("variables", r#"{"id":"globex"}"#),
        ])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["data"]["workspace"]["name"], json!("Globex Helpdesk"));
}

#[tokio::test]
async fn the_response_media_type_follows_accept() {
    let app = spawn_app().await;
    let post = |accept: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .header("accept", accept)
            .json(&json!({"query": "{ __typename }"}))
            .send()
    };
    let json_only = post("application/json").await.expect("answers");
    assert!(json_only.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("application/json"));
    let modern = post("application/graphql-response+json, application/json;q=0.9")
        .await
        .expect("answers");
    assert!(modern.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("application/graphql-response+json"));
    assert_eq!(
        post("text/html").await.expect("answers").status(),
        StatusCode::NOT_ACCEPTABLE
    );
}

#[tokio::test]
async fn validation_failures_are_400_for_graphql_response_json_clients() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": "{ nope }"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert!(body.get("data").is_none());
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("GRAPHQL_VALIDATION_FAILED")
    );
}

async fn raw_post(app: &TestApp, content_type: &str, body: Vec<u8>) -> (StatusCode, String) {
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("answers");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn malformed_requests_get_4xx_or_coded_errors_and_never_a_5xx() {
    let app = spawn_app().await;
    let deep = format!(
        "{{ {}__typename{} }}",
        "workspaces { ".repeat(40),
        " }".repeat(40)
    );
    let nested_junk = format!("{}{}", "{ workspaces ".repeat(500), "}".repeat(500));
    let huge_string = format!(r#"{{ workspace(id: "{}") {{ id }} }}"#, "x".repeat(200_000));
    let aliases: String = (0..300).map(|i| format!("a{i}: __typename ")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", b"".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", br#"{"query": 42}"#.to_vec()),
        ("application/json", br#"{"variables": {}}"#.to_vec()),
        ("application/json", br#"{"query": "{ __typename }", "variables": "x"}"#.to_vec()),
        ("application/json", br#"{"query": "{ __typename }", "operationName": 1}"#.to_vec()),
        ("application/json", br#"{"query": "{ __typename }", "extensions": []}"#.to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00, 0x9c, 0x12]),
        ("text/plain", br#"{"query": "{ __typename }"}"#.to_vec()),
        ("application/json", json!({"query": "{"}).to_string().into_bytes()),
        ("application/json", json!({"query": "{ workspace { id } }"}).to_string().into_bytes()),
        ("application/json", json!({"query": "{ workspace(id: 5.5) { id } }"}).to_string().into_bytes()),
        ("application/json", json!({"query": deep}).to_string().into_bytes()),
        ("application/json", json!({"query": nested_junk}).to_string().into_bytes()),
        ("application/json", json!({"query": huge_string}).to_string().into_bytes()),
        ("application/json", json!({"query": format!("{{ {aliases} }}")}).to_string().into_bytes()),
        ("application/json", json!({"query": "query A { __typename } query B { __typename }"}).to_string().into_bytes()),
        ("application/json", json!({"query": "query($w: Window!) { workspace(id: \"acme\") { messages { sent(window: $w) { total } } } }", "variables": {"w": {"from": 1, "to": true}}}).to_string().into_bytes()),
        ("application/json", json!({"query": "{ workspace(id: \"acme\") { messages { sent(window: {from: \"2025-01-01T00:00:00Z\", to: \"9999-01-01T00:00:00Z\", granularity: YEAR}) { total } } } }"}).to_string().into_bytes()),
        ("application/json", json!({"query": "{ workspace(id: \"acme\") { messages { sent(window: {from: \"0001-01-01T00:00:00Z\", to: \"2025-01-01T00:00:00Z\", granularity: YEAR}) { total } } } }"}).to_string().into_bytes()),
        ("application/json", json!({"query": "mutation { x }"}).to_string().into_bytes()),
        ("application/json", json!({"query": "subscription { x }"}).to_string().into_bytes()),
    ];
    for (content_type, body) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(80)]).to_string();
        let (status, text) = raw_post(&app, content_type, body).await;
        assert!(!status.is_server_error(), "{status} for {preview}: {text}");
        if status == StatusCode::OK {
            let body: Value = serde_json::from_str(&text).expect("JSON");
            if let Some(errors) = body["errors"].as_array() {
                for error in errors {
                    assert!(
                        error["extensions"]["code"].is_string(),
                        "uncoded error for {preview}: {error}"
                    );
                }
            }
        } else {
            assert!(status.is_client_error(), "{status} for {preview}");
        }
    }
    // Other methods.
    let put = app
        .http
        .put(app.url("/graphql"))
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    let delete = app
        .http
        .delete(app.url("/graphql"))
        .send()
        .await
        .expect("answers");
    assert_eq!(delete.status(), StatusCode::METHOD_NOT_ALLOWED);
    // GET without a query, and with broken variables.
    let get = app
        .http
        .get(app.url("/graphql"))
        .send()
        .await
        .expect("answers");
    assert_eq!(get.status(), StatusCode::BAD_REQUEST);
    let get = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "{ __typename }"), ("variables", "{nope")])
        .send()
        .await
        .expect("answers");
    assert_eq!(get.status(), StatusCode::BAD_REQUEST);
    // Still answering afterwards.
    assert_no_errors(&app.query("{ workspaces { id } }").await);
}
