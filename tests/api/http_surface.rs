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

#[tokio::test]
async fn an_oversized_body_gets_a_coded_json_413_that_names_the_limit() {
    let app = spawn_app().await;
    let limit = chatstats::http::MAX_BODY_BYTES;
    // Valid JSON one byte over the limit: only its size is wrong.
    let padding = " ".repeat(limit + 1 - r#"{"query": "{ __typename }"}"#.len());
    let body = format!(r#"{{"query": "{{ __typename }}"{padding}}}"#);
    assert_eq!(body.len(), limit + 1);
    let reply = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answers");
    let reply = crate::helpers::Reply::read(reply).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.code(), "BAD_USER_INPUT", "{}", reply.text);
    let error = &reply.body["errors"][0];
    assert_eq!(error["extensions"]["limit"], json!(limit));
    let message = error["message"].as_str().expect("a message");
    assert!(message.contains(&limit.to_string()), "{message}");
    // Exactly at the limit, the same request runs.
    let padding = " ".repeat(limit - r#"{"query": "{ __typename }"}"#.len());
    let (status, text) = raw_post(
        &app,
        "application/json",
        format!(r#"{{"query": "{{ __typename }}"{padding}}}"#).into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

/// The request header of the test-only fault (`chatstats::http::fault`).
const FAULT: &str = chatstats::http::fault::HEADER;

#[tokio::test]
async fn a_panic_while_answering_is_a_counted_500_with_a_coded_error_and_the_server_goes_on() {
    let app = spawn_app().await;
    let reply = app
        .post(&json!({"query": "{ __typename }"}), &[(FAULT, "panic")])
        .await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text
    );
    assert_eq!(reply.code(), "INTERNAL_SERVER_ERROR", "{}", reply.text);
    assert!(reply.body.get("data").is_none(), "{}", reply.text);
    let metrics = app.metrics().await;
    assert_eq!(
        crate::helpers::sample(&metrics, "chatstats_panics_total", ""),
        Some(1.0)
    );
    assert_eq!(
        crate::helpers::sample(
            &metrics,
            "chatstats_graphql_requests_total",
            r#"operation="anonymous",status="500""#
        ),
        Some(1.0),
        "the request log counts the 500"
    );
    assert_eq!(
        crate::helpers::sample(
            &metrics,
            "chatstats_graphql_errors_total",
            r#"code="INTERNAL_SERVER_ERROR""#
        ),
        Some(1.0)
    );
    assert_no_errors(&app.query("{ workspaces { id } }").await);
}

/// stderr lines of `binary` once one matches `what`, within 20 s.
async fn stderr_once(binary: &crate::helpers::Binary, what: fn(&str) -> bool) -> Vec<String> {
    crate::helpers::eventually(std::time::Duration::from_secs(20), "a log line", || async {
        let lines = binary.stderr_lines();
        lines.iter().any(|l| what(l)).then_some(lines)
    })
    .await
}

#[tokio::test]
async fn the_binary_logs_a_panic_in_one_line_without_its_message() {
    let key = "k-0123456789-secret";
    let binary = crate::helpers::Binary::start(None, &[("CHATSTATS_LOG_FORMAT", "json")]);
    let http = reqwest::Client::new();
    let response = http
        .post(binary.url("/graphql"))
        .header(FAULT, "panic")
        .header("x-api-key", key)
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = response.text().await.expect("body");
    assert!(!text.contains(key), "{text}");
    let lines = stderr_once(&binary, |l| l.contains("\"graphql request\"")).await;
    let panics: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "chatstats::panic")
        .collect();
    assert_eq!(panics.len(), 1, "{lines:#?}");
    let fields = &panics[0]["fields"];
    assert_eq!(panics[0]["level"], "ERROR");
    assert!(
        fields["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("src/http.rs:")),
        "{fields}"
    );
    for line in &lines {
        assert!(!line.contains(key), "the key is logged: {line}");
        // Every line is the JSON the log format promises: not the default hook's text.
        assert!(serde_json::from_str::<Value>(line).is_ok(), "{line}");
    }
    let metrics = http
        .get(binary.url("/metrics"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert_eq!(
        crate::helpers::sample(&metrics, "chatstats_panics_total", ""),
        Some(1.0)
    );
}

#[tokio::test]
async fn logs_written_to_a_pipe_have_no_colour_escapes() {
    // An empty NO_COLOR does not ask for plain text: only the pipe does.
    let binary = crate::helpers::Binary::start(None, &[("NO_COLOR", "")]);
    let status = reqwest::Client::new()
        .post(binary.url("/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .expect("answers")
        .status();
    assert_eq!(status, StatusCode::OK);
    let lines = stderr_once(&binary, |l| l.contains("graphql request")).await;
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an escape in {line:?}");
    }
    let request = lines
        .iter()
        .find(|l| l.contains("graphql request"))
        .expect("the request line");
    assert!(
        request.contains(" INFO chatstats::request: graphql request"),
        "{request}"
    );
}

/// The code of the one error of a refusal, checking the body is a JSON GraphQL error.
async fn refusal_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status}: the body is not JSON: {text:?}"));
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}: no extensions.code in {body}"))
        .to_string();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{status}: {body}"
    );
    (status, code)
}

#[tokio::test]
async fn every_refusal_of_graphql_is_a_coded_json_error() {
    let app = spawn_app().await;
    let not_acceptable = app
        .http
        .post(app.url("/graphql"))
        .header("accept", "text/html")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        refusal_code(not_acceptable).await,
        (StatusCode::NOT_ACCEPTABLE, "BAD_USER_INPUT".into())
    );
    for method in ["PUT", "DELETE", "PATCH"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let response = app
            .http
            .request(method.clone(), app.url("/graphql"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .expect("answers");
        let allow = response.headers()["allow"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            allow.contains("GET") && allow.contains("POST"),
            "{method}: Allow {allow}"
        );
        assert_eq!(
            refusal_code(response).await,
            (StatusCode::METHOD_NOT_ALLOWED, "BAD_USER_INPUT".into()),
            "{method}"
        );
    }
    // `Upgrade: websocket` without the rest of a handshake, and a handshake without our
    // subprotocol.
    let broken_handshakes: [&[(&str, &str)]; 3] = [
        &[("upgrade", "websocket")],
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-protocol", "graphql-transport-ws"),
        ],
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    ];
    for headers in broken_handshakes {
        let mut request = app.http.get(app.url("/graphql"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("answers");
        assert_eq!(
            refusal_code(response).await,
            (StatusCode::BAD_REQUEST, "BAD_USER_INPUT".into()),
            "{headers:?}"
        );
    }
}
