//! The replicas benchmark (issue 12): three `chatstats serve` processes sharing one
//! `redis-server`, next to one process alone, on one sandbox; prints one Markdown table.
//!
//! Run it with `cargo bench --bench replicas` (a release build; needs `/usr/bin/redis-server`,
//! or `REDIS_SERVER=path`). Processes, all on loopback: a redis-server (persistence off), the
//! sandbox (`chatstats sandbox --write-config`), one server on that config alone, and three
//! with `[shared]` appended. It measures:
//! - **warm throughput**: [`CLIENTS`] concurrent clients for [`WARM_FOR`] against one server,
//!   the query warm in its cache, each request with a distinct alias so it is resolved (not a
//!   kept answer): the server alone, then replica 0 of three (the others idle);
//! - **block latency**: a cold query (one Help Scout report, two 30-day blocks, a window no
//!   other request used) on replica 0, which calls the sandbox, then the same on replica 1,
//!   which reads the blocks from Redis; medians of [`LATENCY_SAMPLES`] windows, without and
//!   with [`INJECTED_LATENCY`] at the sandbox.
//!
//! The load generator (this process), the sandbox and Redis share the machine's cores with
//! the server under test.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{Process, START_LIMIT};

/// Concurrent clients of the warm throughput runs.
const CLIENTS: usize = 32;
/// Length of each warm throughput run.
const WARM_FOR: Duration = Duration::from_secs(5);
/// Cold windows per latency measurement (the median is reported).
const LATENCY_SAMPLES: usize = 15;
/// The upstream latency of the second latency measurement.
const INJECTED_LATENCY: Duration = Duration::from_millis(50);

/// The warm query: one workspace, four providers (no Xenioo: its hourly rule is not
/// throughput), resolved from the chunk cache each time.
const WARM: &str = r#"{ workspace(id: "acme") {
    ALIAS: messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z"}, provider: CONNECTYCUBE) { total } }
    dialogs { created(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z"}) { total } } } }"#;

async fn post(http: &reqwest::Client, base: &str, query: &str) -> Result<Value, String> {
    let response = http
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .map_err(|e| format!("POST {base}/graphql: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{base} answered {}", response.status()));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if body.get("errors").is_some() {
        return Err(format!("errors: {body}"));
    }
    Ok(body)
}

/// Requests per second of [`CLIENTS`] clients sending distinct aliases of [`WARM`].
async fn warm_throughput(http: &reqwest::Client, base: &str) -> Result<f64, String> {
    post(http, base, &WARM.replace("ALIAS", "a0")).await?;
    let started = Instant::now();
    let counts = futures::future::join_all((0..CLIENTS).map(|client| async move {
        let mut answered = 0usize;
        let mut i = 0usize;
        while started.elapsed() < WARM_FOR {
            // 64 distinct aliases per client, so their documents stay in the parse cache.
            let alias = format!("c{client}a{}", i % 64);
            post(http, base, &WARM.replace("ALIAS", &alias)).await?;
            answered += 1;
            i += 1;
        }
        Ok::<usize, String>(answered)
    }))
    .await;
    let total: usize = counts
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .sum();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// One Help Scout report over the 14 days after `day` days past 2023-01-01: cold for every
/// `day`, and out of Xenioo's reach.
fn cold_query(day: i64) -> String {
    let from = chrono::DateTime::parse_from_rfc3339("2023-01-01T00:00:00Z")
        .expect("a valid instant")
        + chrono::Duration::days(day * 61);
    let to = from + chrono::Duration::days(14);
    format!(
        r#"{{ workspace(id: "acme") {{ channel(id: "help_scout:chat") {{ conversations(window: {{from: "{}", to: "{}", timeZone: "UTC"}}) {{ total }} }} }} }}"#,
        from.to_rfc3339(),
        to.to_rfc3339()
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median latency of a cold query on `upstream` (which calls the sandbox) and of the same
/// query right after on `shared` (which reads the blocks from Redis); `first_day` keeps the
/// windows of the two runs apart.
async fn block_latency(
    http: &reqwest::Client,
    upstream: &str,
    shared: &str,
    first_day: i64,
) -> Result<(Duration, Duration), String> {
    let (mut cold, mut from_redis) = (Vec::new(), Vec::new());
    for day in first_day..first_day + LATENCY_SAMPLES as i64 {
        let query = cold_query(day);
        let started = Instant::now();
        let first = post(http, upstream, &query).await?;
        cold.push(started.elapsed());
        let started = Instant::now();
        let second = post(http, shared, &query).await?;
        from_redis.push(started.elapsed());
        if first["data"] != second["data"] {
            return Err(format!("replicas disagree: {first} / {second}"));
        }
    }
    Ok((median(cold), median(from_redis)))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn run() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("chatstats-bench-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let redis_server = std::env::var("REDIS_SERVER").unwrap_or("/usr/bin/redis-server".into());
    let _redis = Process::spawn(
        &redis_server,
        &[
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    )?;

    let config: PathBuf = dir.join("sandbox.toml");
    let config_arg = config.to_string_lossy().into_owned();
    let sandbox = Process::chatstats(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--write-config",
        &config_arg,
    ])?;
    let sandbox_url = format!(
        "http://{}",
        sandbox.wait_for_line("sandbox listening on http://")?
    );
    // The load comes from one peer IP: lift the per-client rate limit for both setups.
    let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?
        + "\n[limits]\nrequests_per_minute = 100000000\n";
    std::fs::write(&config, &text).map_err(|e| e.to_string())?;
    let shared_config = dir.join("shared.toml");
    std::fs::write(
        &shared_config,
        format!(
            "{text}\n[shared]\nredis_url = \"redis://127.0.0.1:{port}/0\"\nrequired_to_start = true\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let shared_arg = shared_config.to_string_lossy().into_owned();

    let serve = |config: &str| -> Result<(Process, String), String> {
        let process =
            Process::chatstats(&["serve", "--config", config, "--listen", "127.0.0.1:0"])?;
        let addr = process.wait_for_line("listening on http://")?;
        Ok((process, format!("http://{addr}")))
    };
    // Redis needs a moment to listen; `required_to_start` would refuse to start before.
    let mut replicas = Vec::new();
    let deadline = Instant::now() + START_LIMIT;
    while replicas.len() < 3 {
        match serve(&shared_arg) {
            Ok(replica) => replicas.push(replica),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e),
        }
    }
    let (_alone, alone) = serve(&config_arg)?;

    let single = warm_throughput(&http, &alone).await?;
    let replica = warm_throughput(&http, &replicas[0].1).await?;
    let (cold, from_redis) = block_latency(&http, &replicas[0].1, &replicas[1].1, 0).await?;
    let status = http
        .post(format!("{sandbox_url}/_sim/faults"))
        .json(&json!({"provider": "*", "latency_ms": INJECTED_LATENCY.as_millis() as u64}))
        .send()
        .await
        .map_err(|e| format!("POST /_sim/faults: {e}"))?
        .status();
    if !status.is_success() {
        return Err(format!("POST /_sim/faults answered {status}"));
    }
    let (cold_slow, from_redis_slow) =
        block_latency(&http, &replicas[0].1, &replicas[1].1, 100).await?;
    let _ = std::fs::remove_dir_all(&dir);

    println!("| measure | one process | replica 0 of 3 + Redis |");
    println!("|---|---|---|");
    println!(
        "| warm throughput ({CLIENTS} clients, {} s, resolved) | {single:.0} req/s | {replica:.0} req/s ({:+.1}%) |",
        WARM_FOR.as_secs(),
        (replica / single - 1.0) * 100.0
    );
    println!();
    println!("| cold query, 2 Help Scout blocks (median of {LATENCY_SAMPLES}) | from the upstream (replica 0) | from Redis (replica 1) |");
    println!("|---|---|---|");
    println!(
        "| sandbox answering at once | {} | {} |",
        ms(cold),
        ms(from_redis)
    );
    println!(
        "| sandbox answering after {} | {} | {} |",
        ms(INJECTED_LATENCY),
        ms(cold_slow),
        ms(from_redis_slow)
    );
    Ok(())
}

fn main() -> ExitCode {
    support::run("replicas bench", run())
}
