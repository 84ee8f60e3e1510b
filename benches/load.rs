//! The load benchmark (issue 4): drives the real server over HTTP against the sandbox with the
//! example operations of `schema/examples` and prints one Markdown table.
//!
//! Run it with `cargo bench --bench load` (a release build; `LOAD_ONLY=overview` measures only the
//! named examples, for profiling). Everything is in this process and
//! on loopback: the sandbox and the server are started exactly as the integration tests start
//! them (`sandbox::start` + `App::build` on 127.0.0.1:0), so the numbers include the sandbox's
//! own work and the load generator competes with the server for the same cores.
//!
//! For each example it measures:
//! - **calls cold / warm**: the sandbox's call log after one run on a fresh server, and after a
//!   second run (must be 0);
//! - **cold latency**: one run on a fresh server whose upstreams all answer after
//!   [`INJECTED_LATENCY`] (`POST /_sim/faults {"provider":"*","latency_ms":100}`), median of
//!   [`COLD_SAMPLES`] fresh servers, and its ratio to the injected latency (1.0 is the floor: a
//!   ratio near 1 means the calls overlapped, near 2 means two rounds of calls);
//! - **warm throughput**: [`CLIENTS`] concurrent clients sending the operation back to back on
//!   one server whose cache is full, for [`RUN_FOR`] or [`MAX_REQUESTS`] requests, whichever
//!   comes first; requests per second, p50 and p99, and the ratio to `{ __typename }` measured
//!   on the same server in the same run (before and after the examples; the mean is used).
//!   Twice: on a default server, where a repeated request is served its kept answer
//!   (`chatstats::answers`), and on one with `answer_max_bytes = 0`, where every request is
//!   resolved from the chunk and derived caches;
//! - **peak RSS**: `VmHWM` of this process (sandbox included) after the first cache was filled
//!   and after the last load.

#[path = "../tests/api/examples/example_file.rs"]
mod example_file;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chatstats::app::App;
use chatstats::config::Config;
use chatstats::sandbox::{self, Sandbox, SandboxOptions};
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use example_file::{today, ExampleFile, PROVIDERS};

/// The latency injected at every upstream for the cold-latency measurement.
const INJECTED_LATENCY: Duration = Duration::from_millis(100);
/// Fresh servers per cold-latency measurement (the median is reported).
const COLD_SAMPLES: usize = 3;
/// Concurrent clients of the throughput measurement.
const CLIENTS: usize = 32;
/// How long each throughput measurement runs at most.
const RUN_FOR: Duration = Duration::from_secs(5);
/// How many requests each throughput measurement sends at most.
const MAX_REQUESTS: usize = 200_000;
/// Per-request timeout of the load clients: a hung request must not hang the benchmark.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server may take to finish in-flight requests.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The baseline operation: no resolver work, no upstream.
const TYPENAME: &str = "{ __typename }";
/// Names the examples to measure (comma-separated), e.g. `LOAD_ONLY=overview` when profiling;
/// all of them when unset.
const ONLY_VAR: &str = "LOAD_ONLY";
/// The cold-latency target of issue 4.
const TARGET_OVERVIEW_COLD_RATIO: f64 = 1.3;
/// The warm throughput targets of issue 14 as shares of `{ __typename }` on the same server:
/// (example, label, share, on the resolved path (else kept)).
const TARGET_SHARES: &[(&str, &str, f64, bool)] = &[
    ("dashboard", "resolved every time", 0.25, true),
    ("overview", "resolved every time", 0.40, true),
    ("dashboard", "kept answers", 0.65, false),
    ("overview", "kept answers", 0.65, false),
];

/// A sandbox and a server on it, both on loopback ports.
struct Server {
    addr: SocketAddr,
    sandbox: Sandbox,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Starts a fresh sandbox and a server configured for it (empty cache), keeping whole
    /// answers when `answers` is on (the default configuration).
    async fn start(answers: Answers) -> Result<Server, String> {
        let sandbox = sandbox::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SandboxOptions::default(),
        )
        .await
        .map_err(|e| format!("the sandbox does not start: {e}"))?;
        let mut config = Config::from_toml_str(&sandbox.config_toml(), &|_| None)
            .map_err(|e| format!("the sandbox config is invalid: {e}"))?;
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        // One load generator on one address: the per-client rate limit would measure itself.
        config.limits.requests_per_minute = u32::MAX;
        if answers == Answers::Off {
            config.cache.answer_max_bytes = 0;
        }
        let app = App::build(config)
            .await
            .map_err(|e| format!("the server does not start: {e}"))?;
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            // A send or a dropped sender both mean "stop".
            let _ = stopped.await;
        }));
        Ok(Server {
            addr,
            sandbox,
            stop,
            task,
        })
    }

    fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// Calls per provider in the sandbox's log so far (every provider present).
    fn calls(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> =
            PROVIDERS.iter().map(|p| (p.to_string(), 0)).collect();
        for (provider, n) in self.sandbox.state().call_counts() {
            *counts.entry(provider.to_string()).or_default() += n;
        }
        counts
    }

    /// `POST /_sim/faults`, as an out-of-process user would.
    async fn fault(&self, http: &reqwest::Client, fault: Value) -> Result<(), String> {
        let response = http
            .post(format!("{}/_sim/faults", self.sandbox.base_url()))
            .json(&fault)
            .send()
            .await
            .map_err(|e| format!("POST /_sim/faults: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST /_sim/faults answered {}", response.status()))
        }
    }

    /// Stops the server (in-flight requests finish, for [`STOP_GRACE`] at most) and then the
    /// sandbox.
    async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        match tokio::time::timeout(STOP_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("the server stopped with an error: {e}"),
            Ok(Err(e)) => eprintln!("the server task ended abnormally: {e}"),
            Err(_) => task.abort(),
        }
        self.sandbox.shutdown().await;
    }
}

/// One operation to send: a document and its variables.
#[derive(Clone)]
struct Operation {
    name: String,
    /// The JSON request body, serialised once so that the load clients only copy a handle.
    body: Bytes,
    /// Error codes the answer may carry (anything else fails the run).
    errors: Vec<String>,
}

impl Operation {
    fn example(example: &ExampleFile) -> Operation {
        Operation {
            name: example.name.clone(),
            body: request_body(&json!({
                "query": example.document,
                "variables": example.variables_at(today()),
            })),
            errors: example.errors.clone(),
        }
    }

    fn typename() -> Operation {
        Operation {
            name: "{ __typename }".to_string(),
            body: request_body(&json!({ "query": TYPENAME })),
            errors: Vec::new(),
        }
    }

    /// Sends the operation once: the status and the raw body.
    async fn send_raw(
        &self,
        http: &reqwest::Client,
        url: &str,
    ) -> Result<(StatusCode, Bytes), String> {
        let response = http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.name))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.name))?;
        Ok((status, body))
    }

    /// Sends the operation once and checks the answer: an HTTP failure, a non-2xx status or an
    /// error code not in `errors` is an `Err` naming the operation. Returns the body's length.
    async fn send(&self, http: &reqwest::Client, url: &str) -> Result<usize, String> {
        let (status, raw) = self.send_raw(http, url).await?;
        let body: Value = serde_json::from_slice(&raw)
            .map_err(|e| format!("{}: the body is not JSON: {e}", self.name))?;
        if !status.is_success() {
            return Err(format!("{}: HTTP {status}: {body}", self.name));
        }
        for error in body["errors"].as_array().into_iter().flatten() {
            let code = error["extensions"]["code"].as_str().unwrap_or("<none>");
            if !self.errors.iter().any(|allowed| allowed == code) {
                return Err(format!("{}: unexpected error {code}: {error}", self.name));
            }
        }
        Ok(raw.len())
    }
}

/// `value` as a request body.
fn request_body(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// Calls of one cold run on a fresh server, then of a second (warm) run.
async fn cold_and_warm_calls(
    http: &reqwest::Client,
    operation: &Operation,
) -> Result<(BTreeMap<String, u64>, u64), String> {
    let server = Server::start(Answers::On).await?;
    let result = async {
        operation.send(http, &server.graphql_url()).await?;
        let cold = server.calls();
        operation.send(http, &server.graphql_url()).await?;
        let warm = server.calls();
        let warm_calls = PROVIDERS
            .iter()
            .map(|p| warm[*p].saturating_sub(cold[*p]))
            .sum();
        Ok((cold, warm_calls))
    }
    .await;
    server.stop().await;
    result
}

/// Median latency of one cold run, each on a fresh server with every upstream delayed.
async fn cold_latency(http: &reqwest::Client, operation: &Operation) -> Result<Duration, String> {
    let mut samples = Vec::with_capacity(COLD_SAMPLES);
    for _ in 0..COLD_SAMPLES {
        let server = Server::start(Answers::On).await?;
        let result = async {
            let latency_ms = u64::try_from(INJECTED_LATENCY.as_millis())
                .map_err(|_| "the injected latency does not fit in u64 ms".to_string())?;
            server
                .fault(http, json!({"provider": "*", "latency_ms": latency_ms}))
                .await?;
            let started = Instant::now();
            operation.send(http, &server.graphql_url()).await?;
            Ok::<Duration, String>(started.elapsed())
        }
        .await;
        server.stop().await;
        samples.push(result?);
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

/// What a throughput run measured.
#[derive(Clone)]
struct Throughput {
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// CPU time this process (server, sandbox and load clients) spent during the run.
    cpu: Option<Duration>,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU microseconds per request: steadier than req/s on a shared machine, where other
    /// tenants take cores away but not CPU time.
    fn cpu_micros_per_request(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// [`CLIENTS`] clients sending `operation` back to back until [`RUN_FOR`] has passed or
/// [`MAX_REQUESTS`] were started. One answer is checked in full ([`Operation::send`]); every
/// other must have its status class and length.
async fn throughput(
    http: &reqwest::Client,
    url: &str,
    operation: &Operation,
) -> Result<Throughput, String> {
    let expected_len = operation.send(http, url).await?;
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let deadline = started + RUN_FOR;
    let issued = Arc::new(AtomicUsize::new(0));
    let clients: Vec<JoinHandle<Result<Vec<Duration>, String>>> = (0..CLIENTS)
        .map(|_| {
            let http = http.clone();
            let url = url.to_string();
            let operation = operation.clone();
            let issued = issued.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline
                    && issued.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
                {
                    let sent = Instant::now();
                    let (status, body) = operation.send_raw(&http, &url).await?;
                    latencies.push(sent.elapsed());
                    // Parsing every answer would load the shared cores more than the server
                    // does; a warm answer is the checked reference answer again, so its length
                    // (unchanged even if errors came in another order) is checked instead.
                    if !status.is_success() || body.len() != expected_len {
                        return Err(format!(
                            "{}: HTTP {status}, {} bytes where the checked answer has {expected_len}",
                            operation.name,
                            body.len()
                        ));
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        let client_latencies = client
            .await
            .map_err(|e| format!("{}: a load client failed: {e}", operation.name))??;
        latencies.extend(client_latencies);
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    if latencies.is_empty() {
        return Err(format!("{}: no request completed", operation.name));
    }
    latencies.sort();
    Ok(Throughput {
        requests: latencies.len(),
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        cpu,
    })
}

/// Nearest-rank percentile of sorted, non-empty `values`.
fn percentile(values: &[Duration], p: f64) -> Duration {
    let rank = (p * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// `VmHWM` (peak resident set) of this process, in MiB, from `/proc/self/status`.
/// User + system CPU time of this process so far (`/proc/self/stat`, in clock ticks of 10 ms).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `help_scout=2 ...` → `hs 2 · cc 4 · …` (providers with calls only) and the total.
fn calls_cell(calls: &BTreeMap<String, u64>) -> String {
    fn short(provider: &str) -> &str {
        match provider {
            "help_scout" => "hs",
            "connectycube" => "cc",
            "message2give" => "m2g",
            "chat_tonic" => "ct",
            "xenioo" => "xen",
            other => other,
        }
    }
    let parts: Vec<String> = PROVIDERS
        .iter()
        .filter(|p| calls[**p] > 0)
        .map(|p| format!("{} {}", short(p), calls[*p]))
        .collect();
    format!("{} = {}", parts.join(" · "), calls.values().sum::<u64>())
}

/// The warm measurements of one server.
struct Warm {
    /// `{ __typename }` before and after the examples.
    before: Throughput,
    after: Throughput,
    /// One per example, in order.
    loads: Vec<Throughput>,
    calls_during_load: u64,
    rss_filled: Option<f64>,
    rss_end: Option<f64>,
}

impl Warm {
    /// The `{ __typename }` throughput the examples are compared with: the mean of the runs
    /// before and after them.
    fn baseline(&self) -> f64 {
        (self.before.per_second() + self.after.per_second()) / 2.0
    }

    /// `{ __typename }`'s CPU µs per request, the mean of the runs before and after.
    fn cpu_baseline(&self) -> Option<f64> {
        let before = self.before.cpu_micros_per_request()?;
        let after = self.after.cpu_micros_per_request()?;
        Some((before + after) / 2.0)
    }
}

/// Fills a fresh server's cache with every operation, then measures `{ __typename }`, each
/// operation, and `{ __typename }` again.
async fn warm(
    http: &reqwest::Client,
    operations: &[Operation],
    answers: Answers,
) -> Result<Warm, String> {
    let server = Server::start(answers).await?;
    let url = server.graphql_url();
    let result = async {
        for operation in operations {
            operation.send(http, &url).await?;
        }
        let filled = server.calls();
        let rss_filled = peak_rss_mib();
        let label = match answers {
            Answers::On => "answers kept",
            Answers::Off => "resolved every time",
        };
        eprintln!("warm ({label}): {TYPENAME}");
        let before = throughput(http, &url, &Operation::typename()).await?;
        let mut loads = Vec::new();
        for operation in operations {
            eprintln!("warm ({label}): {}", operation.name);
            loads.push(throughput(http, &url, operation).await?);
        }
        eprintln!("warm ({label}): {TYPENAME}");
        let after = throughput(http, &url, &Operation::typename()).await?;
        let calls_during_load = PROVIDERS
            .iter()
            .map(|p| server.calls()[*p].saturating_sub(filled[*p]))
            .sum();
        Ok(Warm {
            before,
            after,
            loads,
            calls_during_load,
            rss_filled,
            rss_end: peak_rss_mib(),
        })
    }
    .await;
    server.stop().await;
    result
}

/// One row of the table.
struct Row {
    example: ExampleFile,
    cold_calls: BTreeMap<String, u64>,
    warm_calls: u64,
    cold_latency: Duration,
    /// Warm, repeated requests served their kept answer (the default configuration).
    load: Throughput,
    /// Warm, every request resolved from the chunk and derived caches (answers off).
    resolved: Throughput,
}

/// Whether the server keeps whole answers (`[cache] answer_max_bytes`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answers {
    On,
    Off,
}

async fn run() -> Result<(), String> {
    let mut examples = ExampleFile::all()?;
    if let Ok(only) = std::env::var(ONLY_VAR) {
        examples.retain(|e| only.split(',').any(|name| name.trim() == e.name));
    }
    if examples.is_empty() {
        return Err(format!(
            "no example in {} (or none named in {ONLY_VAR})",
            ExampleFile::dir().display()
        ));
    }
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;

    // 1. Calls and cold latency, each on fresh servers.
    let mut cold = Vec::new();
    for example in &examples {
        let operation = Operation::example(example);
        eprintln!("cold: {}", example.name);
        let (calls, warm_calls) = cold_and_warm_calls(&http, &operation).await?;
        let latency = cold_latency(&http, &operation).await?;
        cold.push((calls, warm_calls, latency));
    }

    // 2. Warm throughput on one server whose cache holds every example: repeated requests
    //    served their kept answers (the default), then on a server that resolves every
    //    request (answers off), each against `{ __typename }` on the same server.
    let operations: Vec<Operation> = examples.iter().map(Operation::example).collect();
    let kept = warm(&http, &operations, Answers::On).await?;
    let resolved = warm(&http, &operations, Answers::Off).await?;

    let rows: Vec<Row> = examples
        .into_iter()
        .zip(cold)
        .zip(
            kept.loads
                .iter()
                .cloned()
                .zip(resolved.loads.iter().cloned()),
        )
        .map(
            |((example, (cold_calls, warm_calls, cold_latency)), (load, resolved))| Row {
                example,
                cold_calls,
                warm_calls,
                cold_latency,
                load,
                resolved,
            },
        )
        .collect();
    print_report(&rows, &kept, &resolved);
    println!();
    println!(
        "Peak RSS (VmHWM, whole process incl. the in-process sandbox): {} MiB with the cache full, {} MiB after the load. Upstream calls during the warm loads: {}.",
        kept.rss_filled.map_or("n/a".to_string(), |m| format!("{m:.1}")),
        resolved.rss_end.map_or("n/a".to_string(), |m| format!("{m:.1}")),
        kept.calls_during_load + resolved.calls_during_load,
    );
    print_targets(&rows, &kept, &resolved);
    Ok(())
}

fn print_report(rows: &[Row], kept: &Warm, resolved: &Warm) {
    let injected = ms(INJECTED_LATENCY);
    println!();
    println!(
        "Cold: {COLD_SAMPLES} fresh servers each, every upstream delayed {injected:.0} ms (median). \
         Warm: {CLIENTS} clients, {}s or {MAX_REQUESTS} requests per operation; \
         \"kept\": the default configuration, where a repeated request is served its kept answer; \
         \"resolved\": a server with `answer_max_bytes = 0`, where every request is resolved from \
         the chunk and derived caches. Each is compared with `{{ __typename }}` on its own server.",
        RUN_FOR.as_secs()
    );
    println!();
    println!("| operation | upstream calls cold (documented minimum) | warm calls | cold ms | cold / {injected:.0} ms | warm | req/s | vs `{{ __typename }}` | p50 ms | p99 ms | CPU µs/req | vs `{{ __typename }}` by CPU |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let documented = if row.cold_calls == row.example.calls {
            String::new()
        } else {
            format!(" ≠ header {}", calls_cell(&row.example.calls))
        };
        println!(
            "| {} | {}{documented} (min {}) | {} | {:.0} | {:.2} | kept | {} |",
            row.example.name,
            calls_cell(&row.cold_calls),
            row.example.total_minimum(),
            row.warm_calls,
            ms(row.cold_latency),
            ms(row.cold_latency) / injected,
            throughput_cells(&row.load, kept),
        );
        println!(
            "| | | | | | resolved | {} |",
            throughput_cells(&row.resolved, resolved)
        );
    }
    for (server, warm) in [("kept", kept), ("resolved", resolved)] {
        for (label, run) in [("before", &warm.before), ("after", &warm.after)] {
            println!(
                "| `{{ __typename }}` ({label}) | 0 | 0 | – | – | {server} | {} |",
                throughput_cells(run, warm)
            );
        }
    }
    let total: usize = [kept, resolved]
        .iter()
        .map(|w| {
            w.loads.iter().map(|l| l.requests).sum::<usize>() + w.before.requests + w.after.requests
        })
        .sum();
    println!();
    println!("{total} warm requests in all, every answer checked (status and error codes).");
}

/// req/s, share of `baseline`, p50 and p99.
/// req/s and its share of `warm`'s `{ __typename }`, p50, p99, CPU µs per request and the
/// share by CPU (`{ __typename }`'s CPU per request over this one's).
fn throughput_cells(run: &Throughput, warm: &Warm) -> String {
    let cpu = run.cpu_micros_per_request();
    let cpu_share = cpu
        .zip(warm.cpu_baseline())
        .map_or("n/a".to_string(), |(cpu, base)| {
            format!("{:.1}%", 100.0 * base / cpu)
        });
    format!(
        "{:.0} | {:.1}% | {:.2} | {:.2} | {} | {cpu_share}",
        run.per_second(),
        100.0 * run.per_second() / warm.baseline(),
        ms(run.p50),
        ms(run.p99),
        cpu.map_or("n/a".to_string(), |cpu| format!("{cpu:.0}")),
    )
}

fn print_targets(rows: &[Row], kept: &Warm, resolved: &Warm) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    if let Some(overview) = rows.iter().find(|r| r.example.name == "overview") {
        let ratio = ms(overview.cold_latency) / ms(INJECTED_LATENCY);
        println!(
            "Target: overview cold latency ≤ {TARGET_OVERVIEW_COLD_RATIO} × injected: {ratio:.2} × → {}.",
            verdict(ratio <= TARGET_OVERVIEW_COLD_RATIO)
        );
    }
    for (name, label, target, resolved_path) in TARGET_SHARES {
        let Some(row) = rows.iter().find(|r| r.example.name == *name) else {
            println!("No `{name}` example: its target was not evaluated.");
            continue;
        };
        let (load, warm) = if *resolved_path {
            (&row.resolved, resolved)
        } else {
            (&row.load, kept)
        };
        let share = load.per_second() / warm.baseline();
        let by_cpu = load
            .cpu_micros_per_request()
            .zip(warm.cpu_baseline())
            .map_or(String::new(), |(cpu, base)| {
                format!(" (by CPU per request: {:.1}%)", 100.0 * base / cpu)
            });
        println!(
            "Target: {name} warm throughput ≥ {:.0}% of `{{ __typename }}` ({label}): {:.1}%{by_cpu} → {}.",
            100.0 * target,
            100.0 * share,
            verdict(share >= *target)
        );
    }
}

fn main() -> ExitCode {
    support::run("load benchmark", run())
}
