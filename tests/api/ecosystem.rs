//! chatstats checked by tools no one here wrote: Apollo's composition library, Hive Gateway,
//! the graphql-http audit suite and GraphiQL in a real Chromium. Each test starts its own
//! server (sandbox upstreams) and runs one Node script of `tests/ecosystem/` against it; the
//! script prints a JSON summary on stdout and exits non-zero when its check fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use chatstats::config::Scope;

use crate::helpers::{assert_no_errors, client, spawn_app, spawn_app_with, Binary, TestApp};

/// Per script; each takes a few seconds (Hive Gateway and Chromium start in about two).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// `npm ci` of the pinned lockfile (Hive Gateway is large) on a cold npm cache.
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(600);
const CHROMIUM: &str = "/usr/bin/chromium";

fn ecosystem_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ecosystem")
}

/// Installs the pinned Node packages once per test run when `node_modules` is missing;
/// parallel tests wait on the one `npm ci` instead of racing in the same folder.
fn ensure_node_modules() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let dir = ecosystem_dir();
        if dir.join("node_modules/.package-lock.json").exists() {
            return Ok(());
        }
        let mut child = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run npm (is Node.js installed?): {e}"))?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!("npm ci in {} failed: {status}", dir.display()))
                }
                Ok(None) if started.elapsed() > NPM_CI_TIMEOUT => {
                    let _ = child.kill();
                    return Err(format!("npm ci took over {NPM_CI_TIMEOUT:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(format!("waiting for npm ci: {e}")),
            }
        }
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// Run `node tests/ecosystem/<script> --url <server> <extra…>`, killed after
/// [`SCRIPT_TIMEOUT`]; returns its summary after asserting it succeeded.
async fn run_script(server: &str, script: &str, extra: &[&str]) -> Value {
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(script)
        .args(["--url", server])
        .args(extra)
        .current_dir(ecosystem_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (is Node.js installed?)");
    // On timeout the dropped future drops the child, and `kill_on_drop` kills it.
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} took over {SCRIPT_TIMEOUT:?}"))
        .expect("node's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!("{script} printed no JSON summary\nstdout: {stdout}\nstderr: {stderr}")
        });
    assert!(
        output.status.success() && summary["ok"] == true,
        "{script} failed ({})\nsummary: {summary:#}\nstderr: {stderr}",
        output.status
    );
    println!("{script}: {:.1} s", started.elapsed().as_secs_f64());
    summary
}

#[tokio::test]
async fn our_federation_sdl_composes_with_a_partner_subgraph_under_apollo_composition() {
    ensure_node_modules();
    let app = spawn_app().await;

    let summary = run_script(&app.url("/"), "compose.mjs", &[]).await;

    assert!(
        summary["federation"]
            .as_str()
            .is_some_and(|v| v.starts_with("v2.")),
        "the live SDL links federation v2: {summary}"
    );
    assert_eq!(
        summary["entities"],
        serde_json::json!(["Operator", "Workspace"])
    );
    assert_eq!(summary["workspaceExtendedByCrm"], true, "{summary}");
    assert_eq!(summary["hints"], 0, "composition hints: {summary}");
}

#[tokio::test]
async fn a_query_across_chatstats_and_a_partner_subgraph_answers_through_hive_gateway() {
    ensure_node_modules();
    let app = spawn_app().await;

    let summary = run_script(&app.url("/"), "gateway.mjs", &[]).await;

    let workspaces = summary["data"]["workspaces"]
        .as_array()
        .expect("workspaces through the gateway");
    let ids: Vec<&str> = workspaces.iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, ["acme", "globex"]);
    // The partner's part (tests/ecosystem/partner-subgraph.mjs holds these).
    assert_eq!(workspaces[0]["crmAccount"]["tier"], "ENTERPRISE");
    assert_eq!(workspaces[1]["crmAccount"]["name"], "Globex Inc.");
    // Our part equals what chatstats answers directly (the script compares every field).
    let direct = app
        .query(
            r#"{ workspace(id: "acme") { messages { sent(provider: CONNECTYCUBE,
                window: { from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z", timeZone: "UTC" })
                { total } } } }"#,
        )
        .await;
    // As f64: JavaScript prints 887.0 as 887.
    let total = direct["data"]["workspace"]["messages"]["sent"]["total"].as_f64();
    assert!(total.is_some(), "{direct}");
    assert_eq!(workspaces[0]["messages"]["sent"]["total"].as_f64(), total);
}

#[tokio::test]
async fn the_graphql_over_http_audit_passes_every_must() {
    ensure_node_modules();
    let app = spawn_app().await;

    let summary = run_script(&app.url("/"), "audit.mjs", &[]).await;

    println!(
        "graphql-http audit: {} audits, {} pass, {} warn (SHOULD), {} notice (MAY), {} error (MUST)",
        summary["total"], summary["pass"], summary["warn"], summary["notice"], summary["error"]
    );
    for should in summary["failingShoulds"].as_array().expect("list") {
        println!(
            "  SHOULD not met: {} {}: {}",
            should["id"], should["name"], should["reason"]
        );
    }
    assert_eq!(summary["error"], 0, "{summary:#}");
    assert!(
        summary["total"].as_u64().is_some_and(|n| n >= 60),
        "{summary}"
    );
}

fn assert_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test drives GraphiQL in a real browser. Install it with \
         `apt-get update && apt-get install -y --no-install-recommends chromium` (as .ci/run does)"
    );
}

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ecosystem").join(name)
}

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// The README's example query (between the `example-query` markers).
fn readme_example() -> String {
    let readme = std::fs::read_to_string(readme_path()).expect("README.md");
    readme
        .split("<!-- example-query")
        .nth(1)
        .and_then(|rest| rest.split("```graphql\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README example query between markers")
        .to_string()
}

/// A newcomer's first minute: `cargo run` (the real binary, sandbox mode), open GraphiQL,
/// press run, open the explorer.
#[tokio::test]
async fn graphiql_opens_on_the_readme_example_and_runs_it_in_chromium() {
    assert_chromium();
    ensure_node_modules();
    let binary = Binary::start(None, &[]);
    let screenshot = screenshot_path("graphiql.png");
    let readme = readme_path();

    let summary = run_script(
        &binary.url("/"),
        "graphiql.mjs",
        &[
            "--readme",
            readme.to_str().expect("UTF-8 path"),
            "--screenshot",
            screenshot.to_str().expect("UTF-8 path"),
        ],
    )
    .await;

    assert_eq!(summary["editorHasReadmeExample"], true, "{summary}");
    assert_eq!(summary["errorCodes"], serde_json::json!([]), "{summary}");
    assert_eq!(
        summary["blockedRequests"],
        serde_json::json!([]),
        "GraphiQL works offline"
    );
    assert!(
        summary["explorerFields"]
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f == "workspace"),
        "the explorer lists the root fields: {summary}"
    );
    assert!(
        screenshot.exists(),
        "screenshot at {}",
        screenshot.display()
    );
    // The pane shows what chatstats answers to the same README query.
    let body: Value = reqwest::Client::new()
        .post(binary.url("/graphql"))
        .json(&serde_json::json!({ "query": readme_example() }))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    let workspace = &body["data"]["workspace"];
    assert!(workspace["messages"]["sent"]["total"].is_number(), "{body}");
    let shown = &summary["data"]["workspace"];
    assert_eq!(shown["name"], workspace["name"]);
    assert_eq!(shown["channels"], workspace["channels"]);
    assert_eq!(
        shown["messages"]["sent"]["total"].as_f64(),
        workspace["messages"]["sent"]["total"].as_f64()
    );
}

/// Served mode with API keys: the Headers tab holds the placeholder, the newcomer puts their
/// key in it, and the example (the workspaces that key may see, over the last week) answers.
#[tokio::test]
async fn graphiql_with_api_keys_prefills_a_placeholder_and_its_example_answers_in_chromium() {
    assert_chromium();
    ensure_node_modules();
    let key = "newcomer-key-4f1c";
    let app = spawn_app_with(|config| {
        config.clients = vec![client("newcomer", key, &["globex"], &[Scope::Read])];
    })
    .await;
    let screenshot = screenshot_path("graphiql-keys.png");

    let summary = run_script(
        &app.url("/"),
        "graphiql.mjs",
        &[
            "--key",
            key,
            "--screenshot",
            screenshot.to_str().expect("UTF-8 path"),
        ],
    )
    .await;

    assert_eq!(
        summary["headers"],
        chatstats::graphiql::HEADERS_PLACEHOLDER,
        "{summary}"
    );
    assert_eq!(summary["errorCodes"], serde_json::json!([]), "{summary}");
    let workspaces = summary["data"]["workspaces"]
        .as_array()
        .expect("workspaces");
    let ids: Vec<&str> = workspaces.iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, ["globex"], "only what the key may see: {summary}");
    let sent = &workspaces[0]["messages"]["sent"];
    assert_eq!(sent["points"].as_array().map(Vec::len), Some(7), "{sent}");
    assert!(sent["total"].as_f64().is_some_and(|t| t > 0.0), "{sent}");
    assert_eq!(summary["blockedRequests"], serde_json::json!([]));
}

/// The options the page hands to GraphiQL (its `chatstats-graphiql` JSON data block).
async fn page_options(app: &TestApp) -> Value {
    let page = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("HTML");
    let opening = r#"<script id="chatstats-graphiql" type="application/json">"#;
    let data = page
        .split_once(opening)
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(data, _)| data)
        .unwrap_or_else(|| panic!("no options block: {page}"));
    serde_json::from_str(data).expect("the options block is JSON")
}

#[tokio::test]
async fn the_served_graphiql_example_asks_the_first_workspace_for_the_last_week_and_answers() {
    let app = spawn_app().await;

    let options = page_options(&app).await;

    let query = options["defaultQuery"].as_str().expect("a default query");
    assert!(query.contains(r#"workspace(id: "acme")"#), "{query}");
    assert!(
        options.get("defaultHeaders").is_none(),
        "open access: {options}"
    );
    let body = app.query(query).await;
    assert_no_errors(&body);
    let workspace = &body["data"]["workspace"];
    assert_eq!(workspace["id"], "acme");
    for series in [
        &workspace["dialogs"]["created"],
        &workspace["messages"]["sent"],
    ] {
        let points = series["points"].as_array().expect("points");
        // Seven whole days of the workspace's zone (Australia/Sydney).
        assert_eq!(points.len(), 7, "{series}");
        assert!(
            series["total"].as_f64().is_some_and(|t| t > 0.0),
            "{series}"
        );
        let last = points.last().and_then(|p| p["at"].as_str()).expect("at");
        let last = chrono::DateTime::parse_from_rfc3339(last).expect("an instant");
        assert!(
            chrono::Utc::now() - last.with_timezone(&chrono::Utc) < chrono::Duration::days(2),
            "a recent window: {series}"
        );
    }
}

#[tokio::test]
async fn the_graphiql_page_with_api_keys_shows_no_key_and_no_tenant() {
    let key = "k-never-in-the-page-93";
    let app = spawn_app_with(|config| {
        config.clients = vec![client("dash", key, &["acme"], &[Scope::Read])];
    })
    .await;

    let page = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("HTML");

    for hidden in [key, "acme", "globex"] {
        assert!(!page.contains(hidden), "{hidden} in the page: {page}");
    }
    let options = page_options(&app).await;
    assert_eq!(
        options["defaultHeaders"],
        chatstats::graphiql::HEADERS_PLACEHOLDER
    );
    // The same example answers for the key's own workspaces.
    let reply = app
        .post(
            &serde_json::json!({ "query": options["defaultQuery"] }),
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
    assert_no_errors(&reply.body);
    let ids: Vec<&str> = reply.body["data"]["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, ["acme"]);
}

#[tokio::test]
async fn the_graphiql_page_loads_only_assets_served_by_chatstats() {
    let app = spawn_app().await;
    let page = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("HTML");
    assert!(!page.contains("https://"), "no CDN: {page}");
    for (asset, media) in [
        ("react.production.min.js", "text/javascript"),
        ("react-dom.production.min.js", "text/javascript"),
        ("graphiql.min.js", "text/javascript"),
        ("graphiql.min.css", "text/css"),
        ("plugin-explorer.umd.js", "text/javascript"),
        ("plugin-explorer.css", "text/css"),
    ] {
        let path = format!("/assets/graphiql/{asset}");
        assert!(page.contains(&path), "the page references {path}");
        let response = app.http.get(app.url(&path)).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().expect("ASCII");
        assert!(content_type.starts_with(media), "{path}: {content_type}");
    }
    let missing = app
        .http
        .get(app.url("/assets/graphiql/nope.js"))
        .send()
        .await
        .expect("answer");
    assert_eq!(missing.status(), 404);
}
