//! The fan-out benchmark (issue 11): the real `chatstats` binary over a sandbox of N generated
//! accounts, for N = 10, 100 and 1,000, one workspace per account; prints one Markdown table.
//!
//! Run it with `cargo bench --bench fanout` (a release build). For each N, two processes of the
//! binary on loopback: `chatstats sandbox --accounts N --write-config FILE`, and
//! `chatstats serve --config FILE` (default `[limits]`, so an upstream concurrency cap of 16
//! per provider). It measures, on the `serve` process:
//! - **start-up**: from spawning the process until `/readyz` answers;
//! - **idle RSS**: `VmRSS` once ready, before any query;
//! - **cold fan-out**: one query over every workspace (four providers each, see [`FAN_OUT`])
//!   on the empty cache, every upstream answering after [`INJECTED_LATENCY`]; with the
//!   upstream calls it made, the most in flight at once towards each provider (from the
//!   sandbox's call log) and the floor the cap sets: for each provider, ⌈calls / 16⌉ rounds
//!   of the injected latency;
//! - **warm fan-out**: the same query again, median of [`WARM_SAMPLES`]: *kept*, as sent again
//!   (the kept answer, `chatstats::answers`), and *resolved*, with a distinct alias each time so
//!   it is resolved from the chunk cache;
//! - **peak RSS**: `VmHWM` at the end.
//!
//! The sandbox and this process share the machine's cores with the server.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chatstats::sandbox::calls::{most_in_flight, Call};
use chrono::{DurationRound, Utc};
use serde_json::{json, Value};

use support::{Process, START_LIMIT};

/// The account counts measured.
const SIZES: [usize; 3] = [10, 100, 1_000];
/// The latency injected at every upstream for the cold fan-out.
const INJECTED_LATENCY: Duration = Duration::from_millis(50);
/// The default `[limits] upstream_concurrency`, which the generated config keeps.
const CAP: usize = 16;
/// Warm runs per measurement (the median is reported).
const WARM_SAMPLES: usize = 5;
/// Per-request timeout: a hung request must not hang the benchmark.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The providers of [`FAN_OUT`], as the call log names them.
const PROVIDERS: [&str; 4] = ["connectycube", "chat_tonic", "message2give", "help_scout"];

/// Every workspace, four providers each. Xenioo is left out: each of its calls is a 30-day
/// hourly snapshot of 18 types, so a thousand of them would measure JSON volume.
const FAN_OUT: &str = r#"query ($w: Window!) {
  workspaces {
    id
    messages {
      cc: sent(window: $w, provider: CONNECTYCUBE) { total }
      ct: sent(window: $w, provider: CHAT_TONIC) { total }
      m2g: sent(window: $w, provider: MESSAGE2GIVE) { total }
    }
    dialogs { hs: created(window: $w, provider: HELP_SCOUT) { total } }
  }
}"#;

/// One row of the table.
struct Row {
    accounts: usize,
    startup: Duration,
    idle_rss: f64,
    cold: Duration,
    calls: Vec<(&'static str, usize, usize)>,
    floor: Duration,
    warm_kept: Duration,
    warm_resolved: Duration,
    peak_rss: f64,
}

async fn measure(accounts: usize, dir: &Path, http: &reqwest::Client) -> Result<Row, String> {
    let config = dir.join(format!("fanout-{accounts}.toml"));
    let config_arg = config.to_string_lossy().into_owned();
    let accounts_arg = accounts.to_string();
    let sandbox = Process::chatstats(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--accounts",
        &accounts_arg,
        "--write-config",
        &config_arg,
    ])?;
    let sandbox_url = sandbox.wait_for_line("sandbox listening on ")?;

    let spawned = Instant::now();
    let server =
        Process::chatstats(&["serve", "--config", &config_arg, "--listen", "127.0.0.1:0"])?;
    let addr = server.wait_for_line("listening on http://")?;
    let base = format!("http://{addr}");
    ready(http, &base).await?;
    let startup = spawned.elapsed();
    let idle_rss = server.memory_mib("VmRSS:")?;

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
    let today = Utc::now()
        .duration_trunc(chrono::Duration::days(1))
        .map_err(|e| e.to_string())?;
    let window = json!({
        "from": (today - chrono::Duration::days(9)).to_rfc3339(),
        "to": (today - chrono::Duration::days(2)).to_rfc3339(),
        "timeZone": "UTC",
    });
    let cold = fan_out(http, &base, FAN_OUT, &window, accounts).await?;
    let log = sandbox_calls(http, &sandbox_url).await?;
    let calls: Vec<(&'static str, usize, usize)> = PROVIDERS
        .iter()
        .map(|p| {
            let made = log.iter().filter(|c| c.provider == *p).count();
            (*p, made, most_in_flight(&log, p))
        })
        .collect();
    let rounds = calls
        .iter()
        .map(|(_, made, _)| made.div_ceil(CAP))
        .max()
        .unwrap_or(0);
    let floor = INJECTED_LATENCY * rounds as u32;

    let mut kept = Vec::new();
    let mut resolved = Vec::new();
    for sample in 0..WARM_SAMPLES {
        kept.push(fan_out(http, &base, FAN_OUT, &window, accounts).await?);
        // A distinct alias makes a distinct request, which is resolved rather than kept.
        let distinct = FAN_OUT.replacen(
            "workspaces {",
            &format!("sample{sample}: __typename workspaces {{"),
            1,
        );
        resolved.push(fan_out(http, &base, &distinct, &window, accounts).await?);
    }
    let after = sandbox_calls(http, &sandbox_url).await?;
    if after.len() != log.len() {
        return Err(format!(
            "the warm runs called upstream: {} calls after the cold run's {}",
            after.len(),
            log.len()
        ));
    }
    let peak_rss = server.memory_mib("VmHWM:")?;
    Ok(Row {
        accounts,
        startup,
        idle_rss,
        cold,
        calls,
        floor,
        warm_kept: median(kept),
        warm_resolved: median(resolved),
        peak_rss,
    })
}

/// Polls `/readyz` until it answers 200 (bounded by [`START_LIMIT`]).
async fn ready(http: &reqwest::Client, base: &str) -> Result<(), String> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        let answered = http.get(format!("{base}/readyz")).send().await;
        if answered.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the server never became ready".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends the fan-out once and checks it answered every workspace without errors.
async fn fan_out(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    window: &Value,
    accounts: usize,
) -> Result<Duration, String> {
    let started = Instant::now();
    let body: Value = http
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": {"w": window}}))
        .send()
        .await
        .map_err(|e| format!("POST /graphql: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the answer is not JSON: {e}"))?;
    let elapsed = started.elapsed();
    if let Some(errors) = body.get("errors") {
        return Err(format!("the fan-out answered errors: {errors}"));
    }
    let answered = body["data"]["workspaces"].as_array().map_or(0, Vec::len);
    if answered != accounts {
        return Err(format!(
            "{answered} workspaces answered, {accounts} expected"
        ));
    }
    Ok(elapsed)
}

/// The sandbox's call log, as an out-of-process user reads it.
async fn sandbox_calls(http: &reqwest::Client, sandbox_url: &str) -> Result<Vec<Call>, String> {
    let body: Value = http
        .get(format!("{sandbox_url}/_sim/calls"))
        .send()
        .await
        .map_err(|e| format!("GET /_sim/calls: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the call log is not JSON: {e}"))?;
    let calls = body["calls"].as_array().ok_or("no calls in the log")?;
    Ok(calls
        .iter()
        .map(|c| Call {
            provider: PROVIDERS
                .iter()
                .copied()
                .find(|p| c["provider"] == *p)
                .unwrap_or("other"),
            method: String::new(),
            path: String::new(),
            query: String::new(),
            params: Vec::new(),
            status: c["status"].as_u64().unwrap_or(0) as u16,
            started_us: c["started_us"].as_u64().unwrap_or(0),
            ended_us: c["ended_us"].as_u64().unwrap_or(0),
        })
        .collect())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn print(rows: &[Row]) {
    println!(
        "Real binary, default `[limits]` (upstream concurrency cap {CAP} per provider); one \
         workspace per generated account, query over every workspace on ConnectyCube, \
         Chat-Tonic, message2give and Help Scout; cold: every upstream delayed {} ms; warm: \
         median of {WARM_SAMPLES}.\n",
        INJECTED_LATENCY.as_millis()
    );
    println!(
        "| accounts | start-up ms | idle RSS MiB | cold fan-out ms | floor ms (⌈calls/{CAP}⌉ × {}) | upstream calls (most in flight) | warm kept ms | warm resolved ms | peak RSS MiB |",
        INJECTED_LATENCY.as_millis()
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let calls: Vec<String> = row
            .calls
            .iter()
            .map(|(p, made, most)| format!("{p} {made} ({most})"))
            .collect();
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {:.1} |",
            row.accounts,
            ms(row.startup),
            row.idle_rss,
            ms(row.cold),
            ms(row.floor),
            calls.join(" · "),
            ms(row.warm_kept),
            ms(row.warm_resolved),
            row.peak_rss,
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let dir: PathBuf =
        std::env::temp_dir().join(format!("chatstats-fanout-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(e) => {
            eprintln!("cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    let mut failed = false;
    for accounts in SIZES {
        match measure(accounts, &dir, &http).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("{accounts} accounts: {e}");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print(&rows);
    let over_cap: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            row.calls
                .iter()
                .filter(|(_, _, most)| *most > CAP)
                .map(move |(p, _, most)| {
                    format!("{} accounts: {p} had {most} in flight", row.accounts)
                })
        })
        .collect();
    if !over_cap.is_empty() {
        eprintln!("over the cap: {}", over_cap.join("; "));
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
