//! Reloading the configuration without a restart (SIGHUP): a key added and revoked while a
//! bounded load runs, with no request dropped; an invalid file that changes nothing; requests
//! in flight finishing on the configuration they started with; the cache entries of a removed
//! account dropped while the kept workspaces keep theirs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatstats::app::App;
use chatstats::config::{Config, Scope};
use chatstats::sandbox::{self, SandboxOptions};
use serde_json::{json, Value};

use crate::helpers::{client, eventually, sample, Binary};
use crate::observability::assert_openmetrics;

const ALPHA_KEY: &str = "reload-alpha-key-51f0";
const BETA_KEY: &str = "reload-beta-key-9c2e";

/// A query every workspace-reading client may run, with no upstream call.
const WORKSPACES: &str = "{ workspaces { id name } }";

/// A fresh directory for one test's config file.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatstats-reload-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The sandbox's config with `[[clients]]` for `keys` (named after their second word), and
/// GraphiQL on or off; a request rate the load never reaches.
fn config_text(sandbox_toml: &str, keys: &[&str], graphiql: bool) -> String {
    let mut text =
        sandbox_toml.replace("[server]\n", &format!("[server]\ngraphiql = {graphiql}\n"));
    text.push_str("[limits]\nrequests_per_minute = 1000000\n");
    for key in keys {
        let name = key.split('-').nth(1).expect("a key names its client");
        text.push_str(&format!(
            "[[clients]]\nname = \"{name}\"\nkey = \"{key}\"\nworkspaces = [\"*\"]\nscopes = [\"read\"]\n"
        ));
    }
    text
}

/// Replace the file in one step (write aside, rename), as an editor or a deploy tool does,
/// so the server never reads half a file.
fn write_config(path: &Path, text: &str) {
    let aside = path.with_extension("toml.new");
    std::fs::write(&aside, text).expect("config written");
    std::fs::rename(&aside, path).expect("config replaced");
}

fn hangup(binary: &Binary) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &binary.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The status `/graphql` answers [`WORKSPACES`] with under `key`.
async fn status_with(http: &reqwest::Client, url: &str, key: &str) -> u16 {
    http.post(url)
        .bearer_auth(key)
        .json(&json!({ "query": WORKSPACES }))
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

async fn reloads(http: &reqwest::Client, binary: &Binary, result: &str) -> Option<f64> {
    let text = http
        .get(binary.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    assert_openmetrics(&text);
    sample(
        &text,
        "chatstats_config_reloads_total",
        &format!("result=\"{result}\""),
    )
}

/// Wait until `chatstats_config_reloads_total{result}` reaches `n`.
async fn wait_reloads(http: &reqwest::Client, binary: &Binary, result: &str, n: f64) {
    eventually(
        Duration::from_secs(20),
        &format!("{n} {result} reloads"),
        || async move { (reloads(http, binary, result).await == Some(n)).then_some(()) },
    )
    .await;
}

/// A bounded load under the alpha key: `workers` tasks send [`WORKSPACES`] until `stop` (or
/// their count or time bound); every answer that is not a 200 with both workspaces is a
/// dropped request, recorded in `failures`.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

const LOAD_WORKERS: usize = 4;
const LOAD_MAX_PER_WORKER: u64 = 50_000;
const LOAD_MAX_TIME: Duration = Duration::from_secs(90);

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::new();
        let workers = (0..LOAD_WORKERS)
            .map(|_| {
                let (stop, answered, failures) = (stop.clone(), answered.clone(), failures.clone());
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    for _ in 0..LOAD_MAX_PER_WORKER {
                        if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_MAX_TIME {
                            break;
                        }
                        let outcome = http
                            .post(&url)
                            .bearer_auth(ALPHA_KEY)
                            .json(&json!({ "query": WORKSPACES }))
                            .send()
                            .await;
                        let verdict = match outcome {
                            Err(error) => Err(format!("transport: {error}")),
                            Ok(response) => {
                                let status = response.status();
                                let body: Value = response.json().await.unwrap_or(Value::Null);
                                let ids = body["data"]["workspaces"].as_array().map(Vec::len);
                                if status == 200 && ids == Some(2) && body.get("errors").is_none() {
                                    Ok(())
                                } else {
                                    Err(format!("{status}: {body}"))
                                }
                            }
                        };
                        match verdict {
                            Ok(()) => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(failure) => failures.lock().expect("failures").push(failure),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            answered,
            failures,
            workers,
        }
    }

    /// Wait until the load has answered `more` requests beyond `from`.
    async fn advance(&self, from: u64, more: u64, what: &str) -> u64 {
        let answered = self.answered.clone();
        eventually(Duration::from_secs(30), what, || {
            let now = answered.load(Ordering::Relaxed);
            async move { (now >= from + more).then_some(now) }
        })
        .await
    }

    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("a load worker does not panic");
        }
        let failures = self.failures.lock().expect("failures").clone();
        (self.answered.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test]
async fn sighup_adds_then_revokes_a_key_without_dropping_a_request_and_refuses_an_invalid_file() {
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let base = sandbox.config_toml();
    let dir = temp_dir("keys");
    let path = dir.join("config.toml");
    write_config(&path, &config_text(&base, &[ALPHA_KEY], true));
    let binary = Binary::start(Some(&path), &[("CHATSTATS_LOG_FORMAT", "json")]);
    let http = reqwest::Client::new();
    let graphql = binary.url("/graphql");
    assert_eq!(status_with(&http, &graphql, ALPHA_KEY).await, 200);
    assert_eq!(status_with(&http, &graphql, BETA_KEY).await, 401);
    assert_eq!(reloads(&http, &binary, "applied").await, None);

    let load = Load::start(graphql.clone());
    let before = load.advance(0, 50, "the load to run").await;

    // Add beta; GraphiQL off in the file, which needs a restart.
    write_config(&path, &config_text(&base, &[ALPHA_KEY, BETA_KEY], false));
    hangup(&binary);
    eventually(
        Duration::from_secs(20),
        "the beta key to be admitted",
        || {
            let (http, graphql) = (http.clone(), graphql.clone());
            async move { (status_with(&http, &graphql, BETA_KEY).await == 200).then_some(()) }
        },
    )
    .await;
    wait_reloads(&http, &binary, "applied", 1.0).await;
    let graphiql = http.get(binary.url("/")).send().await.expect("answers");
    assert_eq!(graphiql.status(), 200, "GraphiQL stays until a restart");
    let after_add = load
        .advance(before, 50, "the load to go on after the reload")
        .await;

    // An invalid file changes nothing.
    let invalid = config_text(&base, &[ALPHA_KEY], false).replace(
        "time_zone = \"Europe/Madrid\"",
        "time_zone = \"Mars/Olympus_Mons\"",
    );
    write_config(&path, &invalid);
    hangup(&binary);
    wait_reloads(&http, &binary, "invalid", 1.0).await;
    assert_eq!(
        status_with(&http, &graphql, BETA_KEY).await,
        200,
        "beta stays"
    );
    assert_eq!(reloads(&http, &binary, "applied").await, Some(1.0));
    let refused = binary
        .stderr_lines()
        .into_iter()
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("reload refused"))
        })
        .expect("the refused reload is logged");
    assert_eq!(refused["level"], "ERROR", "{refused}");
    assert_eq!(
        refused["fields"]["key"], "workspaces[1].time_zone",
        "{refused}"
    );

    // Revoke beta.
    write_config(&path, &config_text(&base, &[ALPHA_KEY], true));
    hangup(&binary);
    eventually(
        Duration::from_secs(20),
        "the beta key to be refused",
        || {
            let (http, graphql) = (http.clone(), graphql.clone());
            async move { (status_with(&http, &graphql, BETA_KEY).await == 401).then_some(()) }
        },
    )
    .await;
    wait_reloads(&http, &binary, "applied", 2.0).await;
    load.advance(after_add, 50, "the load to go on after the revocation")
        .await;
    let (answered, failures) = load.stop().await;
    assert!(failures.is_empty(), "dropped requests: {failures:?}");
    assert!(answered >= before + 100, "{answered} answered");

    let logs = binary.stderr_lines();
    assert!(
        logs.iter()
            .any(|l| l.contains("server.graphiql") && l.contains("applies only at restart")),
        "the restart-only change is named: {logs:#?}"
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("\"setting\":\"server.listen\"")),
        "--listen overrides the file at a reload as at start"
    );
    for secret in [ALPHA_KEY, BETA_KEY] {
        assert!(!logs.iter().any(|l| l.contains(secret)), "{secret} logged");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server on the sandbox's config, edited, and its reloader.
async fn reloadable(
    sandbox: &sandbox::Sandbox,
    edit: impl FnOnce(&mut Config),
) -> (String, chatstats::app::Reloader, Config) {
    let mut config =
        Config::from_toml_str(&sandbox.config_toml(), &|_| None).expect("the sandbox config");
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.limits.upstream_retry_backoff_ms = 1;
    edit(&mut config);
    let app = App::build(config.clone()).await.expect("app builds");
    let url = format!("http://{}", app.local_addr());
    let reloader = app.reloader();
    tokio::spawn(app.run_until(std::future::pending()));
    (url, reloader, config)
}

async fn post(http: &reqwest::Client, url: &str, key: Option<&str>, query: &str) -> (u16, Value) {
    let mut request = http
        .post(format!("{url}/graphql"))
        .json(&json!({ "query": query }));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const WINDOW: &str = r#"window: {from: "2025-02-01T00:00:00Z", to: "2025-02-03T00:00:00Z"}"#;

fn sent(workspace: &str) -> String {
    format!(
        r#"{{ workspace(id: "{workspace}") {{ messages {{ sent({WINDOW}, provider: CONNECTYCUBE) {{ total }} }} }} }}"#
    )
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_configuration_it_started_with() {
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let (url, reloader, config) = reloadable(&sandbox, |config| {
        config.clients = vec![client("alpha", ALPHA_KEY, &["*"], &[Scope::Read])];
    })
    .await;
    let http = reqwest::Client::new();
    http.post(format!("{}/_sim/faults", sandbox.base_url()))
        .json(&json!({"provider": "connectycube", "latency_ms": 1500}))
        .send()
        .await
        .expect("fault set");
    let in_flight = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { post(&http, &url, Some(ALPHA_KEY), &sent("acme")).await }
    });
    eventually(
        Duration::from_secs(10),
        "the slow upstream call to start",
        || {
            let (http, faults) = (http.clone(), format!("{}/_sim/faults", sandbox.base_url()));
            async move {
                let faults: Value = http.get(faults).send().await.ok()?.json().await.ok()?;
                (faults["faults"][0]["seen"].as_u64() >= Some(1)).then_some(())
            }
        },
    )
    .await;
    // Alpha is revoked and acme removed while its request waits on the upstream.
    let mut next = config.clone();
    next.clients = vec![client("beta", BETA_KEY, &["*"], &[Scope::Read])];
    next.workspaces.retain(|w| w.id != "acme");
    let report = reloader.apply(next).await.expect("a valid config applies");
    assert_eq!(report.removed, vec!["acme".to_string()]);
    assert_eq!(post(&http, &url, Some(ALPHA_KEY), WORKSPACES).await.0, 401);
    let (status, body) = in_flight.await.expect("the task runs");
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["data"]["workspace"]["messages"]["sent"]["total"]
        .as_f64()
        .is_some());
    let (status, body) = post(&http, &url, Some(BETA_KEY), WORKSPACES).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["workspaces"],
        json!([{"id": "globex", "name": "Globex Helpdesk"}])
    );
}

#[tokio::test]
async fn a_reload_drops_the_cache_entries_of_removed_accounts_and_keeps_the_rest() {
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let (url, reloader, config) = reloadable(&sandbox, |_| {}).await;
    let http = reqwest::Client::new();
    let metrics = || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let text = http
                .get(format!("{url}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            assert_openmetrics(&text);
            text
        }
    };
    for workspace in ["acme", "globex"] {
        let (status, body) = post(&http, &url, None, &sent(workspace)).await;
        assert_eq!(status, 200);
        assert!(body.get("errors").is_none(), "{body}");
    }
    let calls = |sandbox: &sandbox::Sandbox| sandbox.state().calls().len();
    let calls_before = calls(&sandbox);
    let text = metrics().await;
    let entries_before = sample(&text, "chatstats_cache_entries", "").expect("entries");
    assert!(sample(
        &text,
        "chatstats_upstream_circuit_state",
        "provider=\"connectycube\",workspace=\"globex\""
    )
    .is_some());

    // The same config again: nothing is rebuilt, nothing dropped.
    let report = reloader.apply(config.clone()).await.expect("applies");
    assert!(
        report.rebuilt.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.dropped_entries, 0);

    let mut next = config.clone();
    next.workspaces.retain(|w| w.id != "globex");
    next.limits.max_depth = 4;
    let report = reloader.apply(next).await.expect("applies");
    assert_eq!(report.removed, vec!["globex".to_string()]);
    assert!(report.rebuilt.is_empty(), "acme is kept: {report:?}");
    let text = metrics().await;
    let entries_after = sample(&text, "chatstats_cache_entries", "").expect("entries");
    assert!(
        entries_after < entries_before,
        "{entries_after} of {entries_before} left"
    );
    assert!(report.dropped_entries > 0, "{report:?}");
    assert_eq!(
        entries_after,
        entries_before - report.dropped_entries as f64
    );
    assert!(!text.contains("workspace=\"globex\""), "{text}");
    assert_eq!(
        sample(
            &text,
            "chatstats_config_reloads_total",
            "result=\"applied\""
        ),
        Some(2.0)
    );

    // globex is gone; acme answers from the entries it kept, with no upstream call.
    let (_, body) = post(&http, &url, None, &sent("globex")).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
    let (_, body) = post(&http, &url, None, &sent("acme")).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(calls(&sandbox), calls_before, "acme's entries were kept");
    // The new [limits] apply: depth 4 passes (above), depth 5 is refused now.
    let deep = format!(
        r#"{{ workspace(id: "acme") {{ channel(id: "help_scout:chat") {{ conversations({WINDOW}) {{ points {{ at }} }} }} }} }}"#
    );
    let (_, body) = post(&http, &url, None, &deep).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{body}"
    );
    assert!(body["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("max_depth")));
}

/// A graphql-transport-ws connection to `url`'s `/graphql`, acknowledged; `headers` on the
/// upgrade, `payload` in `connection_init`.
async fn socket(
    addr: &str,
    headers: &[(&str, &str)],
    payload: Value,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(crate::helpers::ws_request(addr, headers))
        .await
        .expect("the upgrade is accepted");
    let init = json!({"type": "connection_init", "payload": payload});
    ws.send(Message::Text(init.to_string().into()))
        .await
        .expect("sent");
    let ack = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer in time");
    assert!(
        matches!(&ack, Some(Ok(Message::Text(text))) if text.contains("connection_ack")),
        "{ack:?}"
    );
    ws
}

/// Run [`WORKSPACES`] as operation `id` over `ws`; the payload of its `next`.
async fn ws_query(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    id: &str,
) -> Value {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let subscribe = json!({"id": id, "type": "subscribe", "payload": {"query": WORKSPACES}});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("sent");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time");
        let Some(Ok(Message::Text(text))) = frame else {
            panic!("expected a message, got {frame:?}");
        };
        let message: Value = serde_json::from_str(&text).expect("JSON");
        if message["type"] == "next" && message["id"] == id {
            return message["payload"].clone();
        }
    }
}

#[tokio::test]
async fn a_key_revoked_by_a_reload_stops_working_on_open_websockets_too() {
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let (url, reloader, config) = reloadable(&sandbox, |config| {
        config.clients = vec![
            client("alpha", ALPHA_KEY, &["*"], &[Scope::Read]),
            client("beta", BETA_KEY, &["*"], &[Scope::Read]),
        ];
    })
    .await;
    let addr = url.trim_start_matches("http://");
    // Beta's key in `connection_init` (a browser's way), alpha's on the upgrade (a server's).
    let mut beta = socket(
        addr,
        &[],
        json!({"authorization": format!("Bearer {BETA_KEY}")}),
    )
    .await;
    let mut alpha = socket(addr, &[("x-api-key", ALPHA_KEY)], json!({})).await;
    for (ws, who) in [(&mut beta, "beta"), (&mut alpha, "alpha")] {
        let payload = ws_query(ws, "before").await;
        assert!(payload.get("errors").is_none(), "{who}: {payload}");
    }
    let mut next = config.clone();
    next.clients.retain(|c| c.name == "alpha");
    reloader.apply(next).await.expect("applies");
    let refused = ws_query(&mut beta, "after").await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    assert!(!refused.to_string().contains(BETA_KEY));
    let kept = ws_query(&mut alpha, "after").await;
    assert!(kept.get("errors").is_none(), "{kept}");
    assert_eq!(kept["data"]["workspaces"].as_array().map(Vec::len), Some(2));
}

/// A series is kept whole (`catalogue::compute`) under its workspace's generation: once a reload
/// gives message2give another token, the same series is computed again and asks message2give
/// with the new token, instead of being served what the old token's account answered. The
/// kept entry's own account is its first part's (ConnectyCube here), which did not change.
#[tokio::test]
async fn a_kept_series_is_not_served_after_a_reload_changed_one_of_its_accounts() {
    let (app, reloader, config) =
        crate::helpers::spawn_reloadable_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let query = format!(
        r#"{{ workspace(id: "acme") {{ messages {{ sent({WINDOW}) {{ total sources }} }} }} }}"#
    );
    let message2give_calls = || async { app.calls_to("message2give").await.len() };
    let first = app.query(&query).await;
    let sources = &first["data"]["workspace"]["messages"]["sent"]["sources"];
    assert!(
        sources.as_array().is_some_and(
            |s| s.contains(&json!("CONNECTYCUBE")) && s.contains(&json!("MESSAGE2GIVE"))
        ),
        "ConnectyCube and message2give contribute: {first}"
    );
    let after_first = message2give_calls().await;
    assert!(after_first > 0);
    // Kept: the same series again asks nobody.
    let again = app.query(&query).await;
    assert_eq!(again, first);
    assert_eq!(message2give_calls().await, after_first);

    let mut next = config;
    let acme = next
        .workspaces
        .iter_mut()
        .find(|w| w.id == "acme")
        .expect("the sandbox has acme");
    let message2give = acme.message2give.as_mut().expect("acme has message2give");
    message2give.token = chatstats::config::Secret::new("another-token");
    let report = reloader.apply(next).await.expect("applies");
    assert_eq!(report.rebuilt, vec!["acme".to_string()], "{report:?}");
    let after = app.query(&query).await;
    assert!(after["data"].is_object(), "{after}");
    assert!(
        message2give_calls().await > after_first,
        "the series was computed again, with the new token"
    );
}
