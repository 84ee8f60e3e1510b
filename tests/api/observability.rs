//! Observability: `/metrics` counts what really happened upstream, operation-name labels are
//! bounded, the binary logs one JSON line per GraphQL request, SIGTERM lets in-flight requests
//! finish, and no credential ever reaches a response, a log line or a metric.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, eventually, sample, spawn_app, Binary};

/// A `/metrics` text read by a real parser (`prometheus-parse`), after checking it against the
/// OpenMetrics text rules that parser does not enforce (see [`assert_openmetrics`]).
pub fn scrape(metrics: &str) -> prometheus_parse::Scrape {
    assert_openmetrics(metrics);
    prometheus_parse::Scrape::parse(metrics.lines().map(|line| Ok(line.to_string())))
        .expect("the exposition parses")
}

/// The OpenMetrics text rules a scraper relies on: the exposition ends with `# EOF`; every
/// family is declared once (`# TYPE`) before its samples; each sample's name is its family's
/// name plus a suffix its type allows (`_total` for a counter; `_bucket`, `_sum`, `_count` for
/// a histogram; none for a gauge); no series appears twice; counters are not negative.
pub fn assert_openmetrics(metrics: &str) {
    assert_eq!(metrics.lines().last(), Some("# EOF"), "{metrics}");
    let mut families: HashMap<&str, &str> = HashMap::new();
    let mut series = std::collections::HashSet::new();
    for line in metrics.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').expect("# TYPE name kind");
            assert!(
                families.insert(name, kind).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series_id, value) = line.rsplit_once(' ').expect("a sample has a value");
        let name = series_id.split('{').next().expect("a name");
        let allowed = |family: &str, kind: &'static str| {
            let suffix = name.strip_prefix(family)?;
            let ok = match kind {
                "counter" => suffix == "_total",
                "histogram" => ["_bucket", "_sum", "_count"].contains(&suffix),
                _ => suffix.is_empty(),
            };
            ok.then_some(kind)
        };
        let kind = families
            .iter()
            .find_map(|(family, kind)| {
                let kind = match *kind {
                    "counter" => "counter",
                    "histogram" => "histogram",
                    "gauge" => "gauge",
                    other => panic!("{family}: unexpected type {other}"),
                };
                allowed(family, kind)
            })
            .unwrap_or_else(|| panic!("{name}: no family declared for it before: {line}"));
        assert!(
            series.insert(series_id.to_string()),
            "series twice: {series_id}"
        );
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        if kind == "counter" {
            assert!(value >= 0.0, "{line}");
        }
    }
}

/// The value of a counter, gauge or untyped sample.
fn number(value: &prometheus_parse::Value) -> f64 {
    match value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("not a single number: {other:?}"),
    }
}

/// The values of the samples named `name`, summed by the value of their label `by`.
pub fn sum_by(scrape: &prometheus_parse::Scrape, name: &str, by: &str) -> HashMap<String, f64> {
    let mut sums = HashMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == name) {
        let key = sample.labels.get(by).unwrap_or_default().to_string();
        *sums.entry(key).or_default() += number(&sample.value);
    }
    sums
}

const DASHBOARD: &str = r#"query Dashboard { workspace(id: "acme") {
    channel(id: "help_scout:chat") { conversations(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
    messages { sent(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
    dialogs { created(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } pending(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}) { total } }
    users { returning(RECENT) { total } } } }"#;

/// [`DASHBOARD`] with Xenioo's window made recent (older windows cost Xenioo no call).
fn dashboard() -> String {
    DASHBOARD.replace("RECENT", &crate::helpers::recent_window())
}

#[tokio::test]
async fn metrics_count_upstream_requests_exactly_as_the_sandbox_logged_them() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "help_scout", "status": 503, "times": 1}))
        .await;
    app.fault(json!({"provider": "connectycube", "status": 500, "times": 3}))
        .await;
    for _ in 0..2 {
        let body = app.query(&dashboard()).await;
        assert!(body["data"]["workspace"].is_object(), "{body}");
    }
    let metrics = app.metrics().await;
    let mut logged: HashMap<String, f64> = HashMap::new();
    for call in app.calls().await {
        *logged.entry(call.provider).or_default() += 1.0;
    }
    assert_eq!(logged.len(), 5, "every provider was called: {logged:?}");
    let parsed = scrape(&metrics);
    assert_eq!(
        sum_by(&parsed, "chatstats_upstream_requests_total", "provider"),
        logged,
        "{metrics}"
    );
    // Each attempt was timed once: the latency histograms count what the counters count.
    let mut timed: HashMap<String, f64> = HashMap::new();
    for sample in parsed
        .samples
        .iter()
        .filter(|s| s.metric == "chatstats_upstream_request_duration_seconds")
    {
        let prometheus_parse::Value::Histogram(buckets) = &sample.value else {
            panic!("a histogram: {sample:?}");
        };
        let all = buckets
            .iter()
            .find(|b| b.less_than == f64::INFINITY)
            .expect("a +Inf bucket");
        let provider = sample.labels.get("provider").expect("a provider label");
        *timed.entry(provider.to_string()).or_default() += all.count;
    }
    assert_eq!(timed, logged, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "chatstats_upstream_retries_total",
            "provider=\"help_scout\",endpoint=\"volume-by-channel\""
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "chatstats_graphql_requests_total",
            "operation=\"Dashboard\",status=\"200\""
        ),
        Some(2.0)
    );
    assert!(
        sample(
            &metrics,
            "chatstats_graphql_request_duration_seconds_count",
            "operation=\"Dashboard\",status=\"200\""
        ) == Some(2.0)
    );
    // The first answer was clean (every failure was retried away), so the second, identical
    // query was served that answer without resolving it.
    assert_eq!(
        sample(&metrics, "chatstats_answers_total", "outcome=\"stored\""),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "chatstats_answers_total", "outcome=\"hit\""),
        Some(1.0),
        "{metrics}"
    );
    // The hit counter is there from the start (0): nothing was resolved twice.
    assert_eq!(
        sample(&metrics, "chatstats_cache_lookups_total", "outcome=\"hit\""),
        Some(0.0),
        "nothing was resolved twice: {metrics}"
    );
    // A traced request is always resolved: its chunks come from the chunk cache.
    let traced = app
        .post(
            &json!({ "query": dashboard() }),
            &[("x-chatstats-trace", "1")],
        )
        .await;
    assert!(
        traced.body["data"]["workspace"].is_object(),
        "{}",
        traced.body
    );
    assert!(
        sample(
            &app.metrics().await,
            "chatstats_cache_lookups_total",
            "outcome=\"hit\""
        )
        .unwrap_or(0.0)
            > 0.0,
        "the traced query hit the chunk cache"
    );
    assert!(sample(&metrics, "chatstats_cache_weighted_bytes", "").unwrap_or(0.0) > 0.0);
    assert_eq!(
        sample(&metrics, "chatstats_cache_max_bytes", ""),
        Some(268_435_456.0)
    );
    for provider in [
        "message2give",
        "chat_tonic",
        "xenioo",
        "connectycube",
        "help_scout",
    ] {
        assert_eq!(
            sample(
                &metrics,
                "chatstats_upstream_circuit_state",
                &format!("provider=\"{provider}\",workspace=\"acme\"")
            ),
            Some(0.0),
            "{provider}"
        );
    }
    assert!(metrics.contains("# TYPE chatstats_upstream_request_duration_seconds histogram"));
    let response = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}

#[tokio::test]
async fn hostile_operation_names_cannot_blow_up_metric_cardinality() {
    let app = spawn_app().await;
    for i in 0..130 {
        let body = app.query(&format!("query Op{i} {{ __typename }}")).await;
        assert_no_errors(&body);
    }
    // An operationName that is not in the document, with characters a label must not hold.
    let body: Value = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({"query": "{ __typename }", "operationName": "x\"}\n{evil"}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert!(body["errors"].is_array());
    let metrics = app.metrics().await;
    let operations: std::collections::HashSet<String> = sum_by(
        &scrape(&metrics),
        "chatstats_graphql_requests_total",
        "operation",
    )
    .into_keys()
    .collect();
    assert!(operations.len() <= 101, "{} labels", operations.len());
    assert!(operations.contains("other"));
    assert!(operations.contains("Op0"));
    assert!(!metrics.contains("evil\n") && !metrics.contains("{evil"));
}

fn request_lines(binary: &Binary) -> Vec<Value> {
    binary
        .stderr_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "chatstats::request")
        .collect()
}

#[tokio::test]
async fn the_binary_logs_one_json_line_per_graphql_request() {
    let binary = Binary::start(None, &[("CHATSTATS_LOG_FORMAT", "json")]);
    let sandbox = binary.sandbox_url.clone().expect("sandbox mode");
    let http = reqwest::Client::new();
    http.post(format!("{sandbox}/_sim/faults"))
        .json(&json!({"provider": "connectycube", "status": 503}))
        .send()
        .await
        .expect("fault set");
    let dashboard = dashboard();
    for query in [
        dashboard.as_str(),
        "{ __typename }",
        "query Broken { workspace(id: ",
    ] {
        let response = http
            .post(binary.url("/graphql"))
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("answers");
        assert!(response.status().is_success() || response.status().is_client_error());
    }
    let lines = eventually(Duration::from_secs(10), "three request lines", || {
        let lines = request_lines(&binary);
        async move { (lines.len() >= 3).then_some(lines) }
    })
    .await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let dashboard = &lines[0]["fields"];
    assert_eq!(dashboard["message"], "graphql request");
    assert_eq!(dashboard["operation"], "Dashboard");
    assert_eq!(dashboard["client"], "");
    assert_eq!(dashboard["status"], 200);
    assert!(dashboard["duration_ms"].as_f64().is_some());
    // help_scout, message2give (web, sms), chat_tonic, plus three ConnectyCube attempts that
    // failed... counted once each: the per-request count is of distinct upstream requests.
    assert!(dashboard["upstream_calls"].as_u64().expect("a count") >= 4);
    assert_eq!(dashboard["cache_hits"], 0);
    assert!(
        dashboard["errors"]
            .as_str()
            .expect("errors")
            .contains("UPSTREAM_UNAVAILABLE="),
        "{dashboard}"
    );
    assert_eq!(lines[1]["fields"]["operation"], "");
    assert_eq!(lines[1]["fields"]["upstream_calls"], 0);
    assert_eq!(lines[1]["fields"]["errors"], "");
    assert_eq!(lines[2]["fields"]["status"], 200);
    assert!(lines[2]["fields"]["errors"]
        .as_str()
        .expect("errors")
        .starts_with("GRAPHQL_"));
    // A request refused before execution is logged too, with its code and status.
    let refused = http
        .post(binary.url("/graphql"))
        .header("content-type", "text/plain")
        .body("{ __typename }")
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 415);
    let lines = eventually(Duration::from_secs(10), "a fourth request line", || {
        let lines = request_lines(&binary);
        async move { (lines.len() >= 4).then_some(lines) }
    })
    .await;
    assert_eq!(lines[3]["fields"]["status"], 415);
    assert_eq!(lines[3]["fields"]["errors"], "BAD_USER_INPUT=1");
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_and_the_process_exits_0() {
    let mut binary = Binary::start(None, &[]);
    let sandbox = binary.sandbox_url.clone().expect("sandbox mode");
    let http = reqwest::Client::new();
    http.post(format!("{sandbox}/_sim/faults"))
        .json(&json!({"provider": "connectycube", "latency_ms": 1500}))
        .send()
        .await
        .expect("fault set");
    let url = binary.url("/graphql");
    let in_flight = tokio::spawn({
        let http = http.clone();
        async move {
            http.post(url)
                .json(&json!({"query": r#"{ workspace(id: "acme") { messages { sent(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}, provider: CONNECTYCUBE) { total } } } }"#}))
                .send()
                .await
        }
    });
    // Wait until the slow upstream call has started (the fault has seen it).
    eventually(
        Duration::from_secs(10),
        "the upstream call to start",
        || {
            let http = http.clone();
            let sandbox = sandbox.clone();
            async move {
                let faults: Value = http
                    .get(format!("{sandbox}/_sim/faults"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (faults["faults"][0]["seen"].as_u64() >= Some(1)).then_some(())
            }
        },
    )
    .await;
    binary.terminate();
    let response = in_flight
        .await
        .expect("the task runs")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_no_errors(&body);
    assert!(body["data"]["workspace"]["messages"]["sent"]["total"]
        .as_f64()
        .is_some());
    let status = binary.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(binary
        .stderr_lines()
        .iter()
        .any(|l| l.contains("shutting down")));
}

/// Distinctive wrong credentials for every provider of a second workspace.
const LEAKY_SECRETS: [&str; 6] = [
    "LEAK-m2g-token-7Hq2",
    "LEAK-m2g-mfa-3Zp9",
    "LEAK-ct-token-8Wx1",
    "LEAK-xen-token-4Kd6",
    "LEAK-cc-key-2Rb5",
    "LEAK-hs-token-9Mv3",
];

/// The sandbox's real credentials (they are secrets to chatstats all the same).
const SANDBOX_SECRETS: [&str; 9] = [
    "m2g-acme-token",
    "m2g-acme-mfa",
    "ct-acme-token",
    "xen-acme-token",
    "cc-acme-key",
    "hs-acme-token",
    "m2g-globex-token",
    "cc-globex-key",
    "hs-globex-secret",
];

#[tokio::test]
async fn no_secret_reaches_a_response_a_log_line_or_the_metrics() {
    let sandbox = chatstats::sandbox::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        chatstats::sandbox::SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let base = sandbox.base_url();
    let [m2g, mfa, ct, xen, cc, hs] = LEAKY_SECRETS;
    let config = format!(
        r#"{}
[[workspaces]]
id = "leaky"
name = "Leaky"
time_zone = "UTC"
[workspaces.message2give]
base_url = "{base}/message2give/2019-01-23"
organisation = "self"
token = "{m2g}"
mfa = "{mfa}"
[workspaces.chat_tonic]
base_url = "{base}/chat-tonic"
codename = "acme"
access_token = "{ct}"
[workspaces.xenioo]
base_url = "{base}/xenioo"
account_token = "{xen}"
[workspaces.connectycube]
base_url = "{base}/connectycube"
admin_api_key = "{cc}"
[workspaces.help_scout]
base_url = "{base}/help-scout"
access_token = "{hs}"
"#,
        sandbox.config_toml()
    );
    let dir = std::env::temp_dir().join(format!("chatstats-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.toml");
    std::fs::write(&path, config).expect("config written");
    let binary = Binary::start(
        Some(&path),
        &[("CHATSTATS_LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
    );
    let http = reqwest::Client::new();
    http.post(format!("{base}/_sim/faults"))
        .json(&json!({"provider": "help_scout", "status": 503, "times": 2}))
        .send()
        .await
        .expect("fault set");
    let mut bodies = Vec::new();
    let window = r#"window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}"#;
    for workspace in ["acme", "globex", "leaky"] {
        for query in [
            format!(
                r#"{{ workspace(id: "{workspace}") {{ sources {{ provider healthy lastError }}
                channels {{ id conversations({window}) {{ total }} }}
                messages {{ sent({window}) {{ total }} received({window}) {{ total }} }}
                dialogs {{ created({window}) {{ total }} pending({window}) {{ total }} }}
                users {{ returning({window}) {{ total }} }}
                operators({window}) {{ id }} surveys({window}) {{ id }} }} }}"#
            ),
            format!(
                r#"mutation {{ requestNpsExport(workspaceId: "{workspace}", {window}) {{ requestedAt }} }}"#
            ),
            format!(
                r#"{{ workspace(id: "{workspace}") {{ sources {{ provider healthy lastError }} }} }}"#
            ),
        ] {
            let text = http
                .post(binary.url("/graphql"))
                .header("x-chatstats-trace", "1")
                .json(&json!({ "query": query }))
                .send()
                .await
                .expect("answers")
                .text()
                .await
                .expect("body");
            bodies.push(text);
        }
    }
    let leaky_errors: usize = bodies
        .iter()
        .map(|b| b.matches("UPSTREAM_REJECTED").count())
        .sum();
    assert!(leaky_errors >= 5, "the wrong credentials were refused");
    let metrics = http
        .get(binary.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let logs = eventually(Duration::from_secs(10), "9 request lines", || {
        let lines = request_lines(&binary);
        let all = binary.stderr_lines();
        async move { (lines.len() >= 9).then_some(all) }
    })
    .await;
    let stdout = binary.stdout.lock().expect("lines").clone();
    for secret in LEAKY_SECRETS.iter().chain(&SANDBOX_SECRETS) {
        for body in &bodies {
            assert!(!body.contains(secret), "{secret} in a response: {body}");
        }
        for line in logs.iter().chain(&stdout) {
            assert!(!line.contains(secret), "{secret} in a log line: {line}");
        }
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
