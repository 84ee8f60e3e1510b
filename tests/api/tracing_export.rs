//! OpenTelemetry traces (`[telemetry]`): an OTLP/HTTP receiver started here on loopback
//! decodes what chatstats exports; a recording proxy between chatstats and the sandbox sees
//! the `traceparent` sent upstream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use chatstats::config::Scope;
use chatstats::sandbox::{self, SandboxOptions};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

use crate::helpers::{client, spawn_app_on, TestApp};

const KEY: &str = "trace-test-key-V8kQ3";

const OVERVIEW: &str = r#"query Overview { workspace(id: "acme") {
    chat: channel(id: "help_scout:chat") { conversations(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    dialogs { created(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } } } }"#;

/// The OTLP/HTTP receiver: every body as received, and every span decoded so far.
struct Receiver {
    bodies: Mutex<Vec<Vec<u8>>>,
    spans: tokio::sync::watch::Sender<Vec<Span>>,
    resources: Mutex<Vec<String>>,
}

async fn receive(State(receiver): State<Arc<Receiver>>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body.clone()).expect("OTLP protobuf");
    receiver
        .bodies
        .lock()
        .expect("bodies lock")
        .push(body.to_vec());
    for resource_spans in request.resource_spans {
        if let Some(resource) = &resource_spans.resource {
            receiver
                .resources
                .lock()
                .expect("resources lock")
                .push(format!("{:?}", resource.attributes));
        }
        let spans: Vec<Span> = resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
            .collect();
        receiver.spans.send_modify(|all| all.extend(spans));
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

async fn start_receiver() -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver {
        bodies: Mutex::new(Vec::new()),
        spans: tokio::sync::watch::channel(Vec::new()).0,
        resources: Mutex::new(Vec::new()),
    });
    let router = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("receiver binds");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (receiver, addr)
}

/// A proxy in front of the sandbox that records the `traceparent` of every request.
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    traceparents: Mutex<Vec<Option<String>>>,
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    proxy.traceparents.lock().expect("proxy lock").push(
        parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .expect("request body");
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut upstream = proxy
        .http
        .request(parts.method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.expect("the sandbox answers");
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let body = answer.bytes().await.expect("sandbox body");
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert("content-type", content_type);
    }
    response
}

/// A server exporting traces to a fresh receiver, its upstreams reached through a proxy.
async fn traced_app() -> (TestApp, Arc<Receiver>, Arc<Proxy>, Vec<String>) {
    let (receiver, receiver_addr) = start_receiver().await;
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let proxy = Arc::new(Proxy {
        upstream: sandbox.base_url().trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        traceparents: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy binds");
    let proxy_url = format!("http://{}", listener.local_addr().expect("proxy address"));
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let config_toml = sandbox::config_toml(&proxy_url);
    let secrets = credentials(&config_toml);
    let app = spawn_app_on(
        sandbox,
        &config_toml,
        |config| {
            config.clients = vec![client("dashboard", KEY, &["*"], &[Scope::Read])];
            config.telemetry.otlp_endpoint = Some(format!("http://{receiver_addr}"));
            config.telemetry.service_name = "chatstats-under-test".into();
            // Spans leave within 50 ms of ending: the test waits on the receiver, not a clock.
            config.telemetry.batch_delay_ms = 50;
        },
        reqwest::Client::new(),
    )
    .await;
    let mut secrets = secrets;
    secrets.push(KEY.to_string());
    (app, receiver, proxy, secrets)
}

/// Every credential in a config text: the string values of keys that name one.
fn credentials(config_toml: &str) -> Vec<String> {
    fn walk(value: &toml::Value, key: &str, found: &mut Vec<String>) {
        match value {
            toml::Value::String(s)
                if ["token", "key", "secret", "mfa", "password"]
                    .iter()
                    .any(|word| key.contains(word)) =>
            {
                found.push(s.clone())
            }
            toml::Value::Table(table) => {
                for (k, v) in table {
                    walk(v, k, found);
                }
            }
            toml::Value::Array(items) => {
                for item in items {
                    walk(item, key, found);
                }
            }
            _ => {}
        }
    }
    let parsed: toml::Value = toml::from_str(config_toml).expect("the config is TOML");
    let mut found = Vec::new();
    walk(&parsed, "", &mut found);
    found
}

async fn post(app: &TestApp, body: Value, traceparent: &str) -> Value {
    app.http
        .post(app.url("/graphql"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-chatstats-trace", "1")
        .header("traceparent", traceparent)
        .json(&body)
        .send()
        .await
        .expect("server answers")
        .json()
        .await
        .expect("JSON")
}

/// A request span: the server side of the trace.
fn is_request(span: &Span) -> bool {
    span.kind == SpanKind::Server as i32 && span.name == "graphql request"
}

/// An upstream call's span: the client side.
fn is_call(span: &Span) -> bool {
    span.kind == SpanKind::Client as i32
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(span: &Span) -> HashMap<String, Any> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = kv.value.as_ref()?.value.clone()?;
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn text(span: &Span, key: &str) -> Option<String> {
    match attributes(span).get(key) {
        Some(Any::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attributes(span).get(key) {
        Some(Any::IntValue(n)) => Some(*n),
        _ => None,
    }
}

/// The spans of trace `trace_id`, once its request span and `children` children arrived.
async fn trace_of(receiver: &Receiver, trace_id: &str, children: usize) -> Vec<Span> {
    let mut spans = receiver.spans.subscribe();
    let wanted = |all: &Vec<Span>| {
        let mine: Vec<&Span> = all
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        mine.iter().any(|s| is_request(s)) && mine.len() > children
    };
    let arrived = tokio::time::timeout(Duration::from_secs(20), spans.wait_for(wanted))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "trace {trace_id} with {children} children not received within 20 s; got {:?}",
                receiver
                    .spans
                    .borrow()
                    .iter()
                    .map(|s| (hex(&s.trace_id), s.name.clone()))
                    .collect::<Vec<_>>()
            )
        })
        .expect("the receiver lives");
    arrived
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id)
        .cloned()
        .collect()
}

fn outcomes(body: &Value, wanted: &[&str]) -> usize {
    body["extensions"]["upstream"]["calls"]
        .as_array()
        .expect("extensions.upstream.calls")
        .iter()
        .filter(|c| wanted.contains(&c["outcome"].as_str().unwrap_or_default()))
        .count()
}

#[tokio::test]
async fn requests_and_upstream_calls_are_exported_as_linked_spans_that_continue_the_caller_trace() {
    let (app, receiver, proxy, secrets) = traced_app().await;
    let cold_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let cold = post(
        &app,
        json!({ "query": OVERVIEW, "operationName": "Overview" }),
        &format!("00-{cold_trace}-{caller_span}-01"),
    )
    .await;
    let calls = outcomes(&cold, &["upstream"]);
    let served = outcomes(&cold, &["batched", "hit", "coalesced"]);
    assert!(calls >= 3, "the cold query calls several upstreams: {cold}");
    let spans = trace_of(&receiver, cold_trace, calls + served).await;

    // The request span continues the caller's trace, under the caller's span.
    let request = spans
        .iter()
        .find(|s| is_request(s))
        .expect("a request span");
    assert_eq!(hex(&request.parent_span_id), caller_span);
    assert_eq!(
        text(request, "graphql.operation.name").as_deref(),
        Some("Overview")
    );
    assert_eq!(
        text(request, "chatstats.client").as_deref(),
        Some("dashboard")
    );
    assert!(
        int(request, "chatstats.cost").is_some_and(|c| c > 0),
        "{request:?}"
    );
    assert_eq!(int(request, "http.response.status_code"), Some(200));

    // One child per upstream call, with its provider, endpoint, outcome, status and retries.
    let call_spans: Vec<&Span> = spans.iter().filter(|s| is_call(s)).collect();
    assert_eq!(call_spans.len(), calls, "{cold}");
    for call in &call_spans {
        assert_eq!(call.parent_span_id, request.span_id, "{call:?}");
        assert!(text(call, "chatstats.provider").is_some_and(|p| !p.is_empty()));
        assert!(text(call, "chatstats.endpoint").is_some_and(|e| !e.is_empty()));
        assert_eq!(text(call, "chatstats.outcome").as_deref(), Some("upstream"));
        assert_eq!(int(call, "http.response.status_code"), Some(200));
        assert_eq!(int(call, "chatstats.retries"), Some(0));
    }
    let mut providers: Vec<String> = call_spans
        .iter()
        .filter_map(|s| text(s, "chatstats.provider"))
        .collect();
    providers.sort();
    providers.dedup();
    assert!(
        providers.len() >= 2,
        "calls to several providers: {providers:?}"
    );
    let read_spans: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Internal as i32)
        .collect();
    for read in &read_spans {
        assert_eq!(read.parent_span_id, request.span_id, "{read:?}");
        let outcome = text(read, "chatstats.outcome").unwrap_or_default();
        assert!(
            ["batched", "hit", "coalesced"].contains(&outcome.as_str()),
            "{read:?}"
        );
    }
    assert_eq!(read_spans.len(), served, "{cold}");

    // Each call sent its own span's context upstream, in the caller's trace.
    let sent: Vec<String> = proxy
        .traceparents
        .lock()
        .expect("proxy lock")
        .iter()
        .map(|t| {
            t.clone()
                .expect("every upstream request carries a traceparent")
        })
        .collect();
    assert!(sent.len() >= calls, "{sent:?}");
    for call in &call_spans {
        let expected = format!("00-{cold_trace}-{}-01", hex(&call.span_id));
        assert!(sent.contains(&expected), "{expected} not in {sent:?}");
    }

    // Warm: the same reads are cache hits, each a child span with outcome `hit`, no call.
    let warm_trace = "0af7651916cd43dd8448eb211c80319c";
    let warm = post(
        &app,
        json!({ "query": OVERVIEW }),
        &format!("00-{warm_trace}-b7ad6b7169203331-01"),
    )
    .await;
    let hits = outcomes(&warm, &["hit"]);
    assert!(hits > 0, "{warm}");
    let spans = trace_of(&receiver, warm_trace, hits).await;
    let request = spans
        .iter()
        .find(|s| is_request(s))
        .expect("a request span");
    let hit_spans: Vec<&Span> = spans
        .iter()
        .filter(|s| text(s, "chatstats.outcome").as_deref() == Some("hit"))
        .collect();
    assert_eq!(hit_spans.len(), hits);
    assert!(hit_spans
        .iter()
        .all(|s| s.parent_span_id == request.span_id));
    assert!(!spans.iter().any(is_call), "a warm query calls nothing");
    // The query has errors (Xenioo keeps 30 days): their codes are on the request span.
    let codes = text(request, "chatstats.error_codes").unwrap_or_default();
    assert!(codes.contains("OUT_OF_RETENTION="), "{codes:?} {warm}");

    // A request refused before execution is traced too, with its code.
    let refused_trace = "5b8aa5a2d2c872e8321cf37308d69df2";
    post(
        &app,
        json!({ "query": "{ nope }" }),
        &format!("00-{refused_trace}-051581bf3cb55c13-01"),
    )
    .await;
    let spans = trace_of(&receiver, refused_trace, 0).await;
    let codes = text(&spans[0], "chatstats.error_codes").unwrap_or_default();
    assert!(codes.contains("GRAPHQL_VALIDATION_FAILED=1"), "{codes:?}");

    // The service is named as configured; no credential is anywhere in what was exported.
    let resources = receiver
        .resources
        .lock()
        .expect("resources lock")
        .join("\n");
    assert!(resources.contains("chatstats-under-test"), "{resources}");
    assert!(
        secrets.len() >= 10,
        "every configured credential: {secrets:?}"
    );
    let bodies = receiver.bodies.lock().expect("bodies lock").clone();
    for secret in &secrets {
        for body in &bodies {
            assert!(
                !body
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "an exported span holds the credential {secret:?}"
            );
        }
    }
}

#[tokio::test]
async fn without_a_traceparent_a_request_starts_a_trace_of_its_own() {
    let (app, receiver, _proxy, _) = traced_app().await;
    let body = app
        .http
        .post(app.url("/graphql"))
        .header("authorization", format!("Bearer {KEY}"))
        .json(&json!({ "query": "query Name { __typename }" }))
        .send()
        .await
        .expect("server answers");
    assert_eq!(body.status(), 200);
    let mut spans = receiver.spans.subscribe();
    let arrived = tokio::time::timeout(
        Duration::from_secs(20),
        spans.wait_for(|all| all.iter().any(is_request)),
    )
    .await
    .expect("a request span within 20 s")
    .expect("the receiver lives");
    let request = arrived
        .iter()
        .find(|s| is_request(s))
        .expect("a request span");
    assert!(
        request.parent_span_id.is_empty(),
        "a root span: {request:?}"
    );
    assert_eq!(request.trace_id.len(), 16);
    assert!(request.trace_id.iter().any(|b| *b != 0));
    assert_eq!(
        text(request, "graphql.operation.name").as_deref(),
        Some("Name")
    );
}

#[tokio::test]
async fn a_call_span_shows_its_retries_and_a_failed_call_its_status_and_error() {
    let (app, receiver, _proxy, _) = traced_app().await;
    // Help Scout answers 503 once (then the retry succeeds); ConnectyCube refuses with 400.
    app.fault(json!({"provider": "help_scout", "status": 503, "times": 1}))
        .await;
    app.fault(json!({"provider": "connectycube", "status": 400}))
        .await;
    let trace_id = "c0ffee0000000000000000000000beef";
    let body = post(
        &app,
        json!({ "query": OVERVIEW }),
        &format!("00-{trace_id}-1111111111111111-01"),
    )
    .await;
    let calls = outcomes(&body, &["upstream", "error"]);
    let spans = trace_of(&receiver, trace_id, calls).await;
    let call_spans: Vec<&Span> = spans.iter().filter(|s| is_call(s)).collect();
    let of = |provider: &str| -> Vec<&Span> {
        call_spans
            .iter()
            .copied()
            .filter(|s| text(s, "chatstats.provider").as_deref() == Some(provider))
            .collect()
    };
    let help_scout = of("help_scout");
    assert_eq!(help_scout.len(), 1, "{body}");
    assert_eq!(int(help_scout[0], "chatstats.retries"), Some(1));
    assert_eq!(int(help_scout[0], "http.response.status_code"), Some(200));
    assert_eq!(
        text(help_scout[0], "chatstats.outcome").as_deref(),
        Some("upstream")
    );
    let connectycube = of("connectycube");
    assert!(!connectycube.is_empty(), "{body}");
    for call in connectycube {
        assert_eq!(text(call, "chatstats.outcome").as_deref(), Some("error"));
        assert_eq!(int(call, "http.response.status_code"), Some(400));
        assert_eq!(
            int(call, "chatstats.retries"),
            Some(0),
            "a 400 is not retried"
        );
        let status = call.status.as_ref().expect("a status");
        assert_eq!(
            status.code,
            opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32
        );
    }
    let request = spans
        .iter()
        .find(|s| is_request(s))
        .expect("a request span");
    let codes = text(request, "chatstats.error_codes").unwrap_or_default();
    assert!(codes.contains("UPSTREAM_REJECTED="), "{codes:?}");
}
