//! chatstats checked by tools no one here wrote: Apollo's composition library, Hive Gateway,
//! the graphql-http audit suite and GraphiQL in a real Chromium. Each test starts its own
//! server (sandbox upstreams) and runs one Node script of `tests/ecosystem/` against it; the
//! script prints a JSON summary on stdout and exits non-zero when its check fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{spawn_app, TestApp};

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
async fn run_script(app: &TestApp, script: &str, extra: &[&str]) -> Value {
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(script)
        .args(["--url", &app.url("/")])
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

    let summary = run_script(&app, "compose.mjs", &[]).await;

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

    let summary = run_script(&app, "gateway.mjs", &[]).await;

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

    let summary = run_script(&app, "audit.mjs", &[]).await;

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

#[tokio::test]
async fn graphiql_runs_the_readme_example_query_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test drives GraphiQL in a real browser. Install it with \
         `apt-get update && apt-get install -y --no-install-recommends chromium` (as .ci/run does)"
    );
    ensure_node_modules();
    let app = spawn_app().await;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let screenshot = target.join("ecosystem/graphiql.png");
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");

    let summary = run_script(
        &app,
        "graphiql.mjs",
        &[
            "--readme",
            readme.to_str().expect("UTF-8 path"),
            "--screenshot",
            screenshot.to_str().expect("UTF-8 path"),
        ],
    )
    .await;

    assert_eq!(
        summary["blockedRequests"],
        serde_json::json!([]),
        "GraphiQL works offline"
    );
    assert!(
        summary["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .any(|c| c == "help_scout:chat"),
        "{summary}"
    );
    assert!(
        screenshot.exists(),
        "screenshot at {}",
        screenshot.display()
    );
    // The pane shows what chatstats answers to the same README query.
    let readme_text = std::fs::read_to_string(&readme).expect("README.md");
    let query = readme_text
        .split("<!-- example-query")
        .nth(1)
        .and_then(|rest| rest.split("```graphql\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README example query between markers");
    let direct = app.query(query).await;
    let total = direct["data"]["workspace"]["messages"]["sent"]["total"].as_f64();
    assert!(total.is_some(), "{direct}");
    assert_eq!(summary["messagesSentTotal"].as_f64(), total);
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
