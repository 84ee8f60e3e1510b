//! Start a sandbox and a chatstats server exactly as production does (`App::build`), and talk
//! to both over HTTP.

use std::net::SocketAddr;

use chatstats::app::App;
use chatstats::config::{ClientConfig, Config, Scope, Secret};
use chatstats::sandbox::{self, Sandbox, SandboxOptions};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub sandbox: Sandbox,
}

/// One upstream call as the sandbox logged it.
#[derive(Debug, Clone)]
pub struct Call {
    pub provider: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub status: u16,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn params_named(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Start a sandbox and a server whose config is the sandbox's, edited by `edit`.
pub async fn spawn_app_with(edit: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_options(SandboxOptions::default(), edit).await
}

/// An app whose Xenioo account may be called once a second (the sandbox throttles at 500 ms),
/// for tests in which the hourly interval passing is the behaviour under test.
pub async fn spawn_app_with_one_second_xenioo_interval() -> TestApp {
    let options = SandboxOptions {
        xenioo_throttle: std::time::Duration::from_millis(500),
    };
    spawn_app_with_options(options, |config| {
        config.workspaces[0]
            .xenioo
            .as_mut()
            .expect("the first sandbox workspace has Xenioo")
            .min_call_interval_secs = 1;
    })
    .await
}

/// As [`spawn_app_with`], with sandbox options (e.g. a short Xenioo throttle).
pub async fn spawn_app_with_options(
    options: SandboxOptions,
    edit: impl FnOnce(&mut Config),
) -> TestApp {
    let sandbox = sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), options)
        .await
        .expect("sandbox starts");
    let config_toml = sandbox.config_toml();
    spawn_app_on(sandbox, &config_toml, edit, reqwest::Client::new()).await
}

/// A server on `config_toml` (a config for `sandbox`'s accounts), edited by `edit`, on a free
/// loopback port; `http` is the client the test speaks through.
pub async fn spawn_app_on(
    sandbox: Sandbox,
    config_toml: &str,
    edit: impl FnOnce(&mut Config),
    http: reqwest::Client,
) -> TestApp {
    start_app(sandbox, config_toml, edit, http).await.0
}

/// As [`spawn_app_with`], with the server's reloader and the configuration it started with
/// (to edit and apply).
pub async fn spawn_reloadable_app_with(
    edit: impl FnOnce(&mut Config),
) -> (TestApp, chatstats::app::Reloader, Config) {
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let config_toml = sandbox.config_toml();
    start_app(sandbox, &config_toml, edit, reqwest::Client::new()).await
}

/// [`spawn_app_on`], with the reloader and the configuration.
async fn start_app(
    sandbox: Sandbox,
    config_toml: &str,
    edit: impl FnOnce(&mut Config),
    http: reqwest::Client,
) -> (TestApp, chatstats::app::Reloader, Config) {
    let mut config =
        Config::from_toml_str(config_toml, &|_| None).expect("the sandbox config is valid");
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Retries wait about 1 ms, not 100: tests count calls, never wait for backoff.
    config.limits.upstream_retry_backoff_ms = 1;
    edit(&mut config);
    let app = App::build(config.clone()).await.expect("app builds");
    let addr = app.local_addr();
    let reloader = app.reloader();
    tokio::spawn(app.run_until(std::future::pending()));
    let app = TestApp {
        addr,
        http,
        sandbox,
    };
    (app, reloader, config)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POST a query; returns the JSON body (any status).
    pub async fn query(&self, query: &str) -> Value {
        self.query_with(query, json!({})).await
    }

    pub async fn query_with(&self, query: &str, variables: Value) -> Value {
        self.http
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("server answers")
            .json()
            .await
            .expect("JSON body")
    }

    /// POST a JSON body with extra headers; any status.
    pub async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.post(self.url("/graphql")).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.expect("server answers")).await
    }

    /// GET /graphql with query-string parameters and extra headers; any status.
    pub async fn get(&self, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(self.url("/graphql")).query(params);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.expect("server answers")).await
    }

    /// The sandbox's call log, in order.
    pub async fn calls(&self) -> Vec<Call> {
        let body: Value = self
            .http
            .get(format!("{}/_sim/calls", self.sandbox.base_url()))
            .send()
            .await
            .expect("sandbox answers")
            .json()
            .await
            .expect("JSON call log");
        body["calls"]
            .as_array()
            .expect("calls array")
            .iter()
            .map(|c| Call {
                provider: c["provider"].as_str().unwrap_or_default().to_string(),
                path: c["path"].as_str().unwrap_or_default().to_string(),
                params: c["params"]
                    .as_array()
                    .expect("params array")
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or_default().to_string(),
                            p[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                status: c["status"].as_u64().unwrap_or_default() as u16,
            })
            .collect()
    }

    pub async fn calls_to(&self, provider: &str) -> Vec<Call> {
        self.calls()
            .await
            .into_iter()
            .filter(|c| c.provider == provider)
            .collect()
    }

    /// Inject a fault (`POST /_sim/faults`).
    pub async fn fault(&self, fault: Value) {
        inject_fault(&self.http, &self.sandbox, fault).await;
    }
}

/// `POST /_sim/faults` to `sandbox`, which must accept it.
pub async fn inject_fault(http: &reqwest::Client, sandbox: &Sandbox, fault: Value) {
    let status = http
        .post(format!("{}/_sim/faults", sandbox.base_url()))
        .json(&fault)
        .send()
        .await
        .expect("sandbox answers")
        .status();
    assert!(status.is_success(), "fault accepted: {status}");
}

/// A GraphQL-over-WebSocket (`graphql-transport-ws`) upgrade request for `/graphql` on
/// `addr` (`host:port`), with `headers`.
pub fn ws_request(
    addr: impl std::fmt::Display,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("a valid request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    request
}

/// A response: status, headers, and the body as JSON (`Null` when it is not JSON) and text.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `extensions.code` of the first error, or `<none>`.
    pub fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("<none>")
    }
}

/// A `[[clients]]` entry.
pub fn client(name: &str, key: &str, workspaces: &[&str], scopes: &[Scope]) -> ClientConfig {
    ClientConfig {
        name: name.into(),
        key: Secret::new(key),
        workspaces: workspaces.iter().map(|w| w.to_string()).collect(),
        scopes: scopes.to_vec(),
    }
}

pub fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .expect("valid date")
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// `points` of a series as (at, value).
pub fn points(series: &Value) -> Vec<(DateTime<Utc>, Option<f64>)> {
    series["points"]
        .as_array()
        .unwrap_or_else(|| panic!("points in {series}"))
        .iter()
        .map(|p| {
            let at = DateTime::parse_from_rfc3339(p["at"].as_str().expect("at"))
                .expect("RFC 3339")
                .with_timezone(&Utc);
            (at, p["value"].as_f64())
        })
        .collect()
}

/// The errors of a response, as (code, provider, message).
pub fn errors(body: &Value) -> Vec<(String, Option<String>, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["extensions"]["code"]
                            .as_str()
                            .unwrap_or("<none>")
                            .to_string(),
                        e["extensions"]["provider"].as_str().map(str::to_string),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Only errors with these codes (e.g. `OUT_OF_RETENTION` from Xenioo for windows older than
/// its 30 days), and data.
pub fn assert_only_codes(body: &Value, codes: &[&str]) {
    for (code, _, message) in errors(body) {
        assert!(
            codes.contains(&code.as_str()),
            "unexpected {code}: {message}"
        );
    }
    assert!(body["data"].is_object(), "{body}");
}

pub fn assert_no_errors(body: &Value) {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
}

impl TestApp {
    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("server answers");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition; `labels` is the
/// exact label text inside the braces (`provider="help_scout",workspace="acme"`), empty for
/// none. None when the sample is absent.
pub fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().expect("a numeric sample"))
}

/// Poll `check` every 20 ms until it returns Some, for at most `limit`; panics with `what`
/// otherwise. For conditions that depend on time passing (a breaker's cooldown), so tests
/// wait for the condition rather than sleep a guessed duration.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The real `chatstats` binary, started with `serve --listen 127.0.0.1:0`, its stdout and
/// stderr collected line by line (drained continuously, so it never blocks on a full pipe).
pub struct Binary {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// The in-process sandbox's URL, in sandbox mode (no config).
    pub sandbox_url: Option<String>,
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    /// Start `chatstats serve` with `config` (None: sandbox mode) and extra environment.
    pub fn start(config: Option<&std::path::Path>, env: &[(&str, &str)]) -> Binary {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        use std::sync::{mpsc, Arc, Mutex};

        let mut command = Command::new(env!("CARGO_BIN_EXE_chatstats"));
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        // A known environment: the caller's `env` on top of info-level, human-readable logs.
        command
            .env_remove("CHATSTATS_CONFIG")
            .env_remove("CHATSTATS_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the chatstats binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let out_pipe = child.stdout.take().expect("piped stdout");
        let out_lines = stdout.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out_pipe)
                .lines()
                .map_while(Result::ok)
            {
                out_lines.lock().expect("lines").push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        let err_pipe = child.stderr.take().expect("piped stderr");
        let err_lines = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err_pipe)
                .lines()
                .map_while(Result::ok)
            {
                err_lines.lock().expect("lines").push(line);
            }
        });
        let mut sandbox_url = None;
        let addr = loop {
            let line = lines_rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `listening on` line; stderr: {:?}", stderr));
            if let Some(url) = line.strip_prefix("sandbox mode: simulated upstreams at ") {
                sandbox_url = Some(url.trim().to_string());
            }
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.trim().parse().expect("a socket address");
            }
        };
        Binary {
            child,
            addr,
            sandbox_url,
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Send SIGTERM (through `kill`, to this child's pid only).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Wait for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        eventually(limit, "the process to exit", || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }

    /// stderr lines so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("lines").clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `window: {from, to}` of the last two whole UTC hours-aligned days before the current hour:
/// recent enough for Xenioo's 30 days, so its parts really call the upstream.
pub fn recent_window() -> String {
    use chrono::DurationRound;
    let to = chrono::Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .expect("truncates to the hour");
    format!(
        r#"window: {{from: "{}", to: "{}"}}"#,
        rfc3339(to - chrono::Duration::days(2)),
        rfc3339(to)
    )
}

/// A loopback address where nothing listens, for as long as the returned socket lives: the
/// port is bound but never listening, so a connection to it is refused at once, and the
/// kernel hands it to no listener of a test running beside this one (a port merely released
/// can be, and then something answers there).
pub fn closed_port() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind loopback");
    let addr = socket.local_addr().expect("a bound address");
    (socket, addr)
}
