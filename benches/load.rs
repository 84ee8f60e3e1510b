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
//!   one server whose cache is full, in [`SLICES`] slices of a `{ __typename }` run followed by
//!   the operation's, each for [`RUN_FOR`] or [`MAX_REQUESTS`] requests, whichever comes first;
//!   requests per second, p50 and p99 over the slices, and the share of `{ __typename }`: the
//!   median of the slices' shares, each of two runs seconds apart on the same server (the
//!   machine's speed drifts over tens of seconds; a pair of adjacent runs shares the drift).
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
/// Slices of each warm measurement: a `{ __typename }` run then the operation's, back to
/// back, so each share compares runs a few seconds apart on this shared machine.
const SLICES: usize = 3;
/// How long each run of a slice lasts at most.
const RUN_FOR: Duration = Duration::from_millis(1500);
/// How many requests each run sends at most.
const MAX_REQUESTS: usize = 60_000;
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

/// What a throughput run (or several, merged) measured.
#[derive(Clone)]
struct Throughput {
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// CPU time this process (server, sandbox and load clients) spent during the run.
    cpu: Option<Duration>,
}

/// One run's figures and every request's latency (sorted), until the runs are merged.
type Run = (Throughput, Vec<Duration>);

impl Throughput {
    /// The runs as one: their requests over their time together, percentiles of all their
    /// latencies.
    fn merged(runs: &[Run]) -> Throughput {
        let mut latencies: Vec<Duration> = runs.iter().flat_map(|(_, l)| l).copied().collect();
        latencies.sort();
        let throughputs: Vec<&Throughput> = runs.iter().map(|(t, _)| t).collect();
        Throughput {
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            ..Throughput::summed(&throughputs)
        }
    }

    /// Requests, time and CPU of `runs` added up; the percentiles are the medians of theirs
    /// (their latencies are gone).
    fn summed(runs: &[&Throughput]) -> Throughput {
        let middle = |of: fn(&Throughput) -> Duration| {
            let mut values: Vec<Duration> = runs.iter().map(|r| of(r)).collect();
            values.sort();
            values[values.len() / 2]
        };
        Throughput {
            requests: runs.iter().map(|r| r.requests).sum(),
            elapsed: runs.iter().map(|r| r.elapsed).sum(),
            p50: middle(|r| r.p50),
            p99: middle(|r| r.p99),
            cpu: runs.iter().map(|r| r.cpu).sum(),
        }
    }

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
) -> Result<Run, String> {
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
    let throughput = Throughput {
        requests: latencies.len(),
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        cpu,
    };
    Ok((throughput, latencies))
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

/// One operation against `{ __typename }` on the same server, slice by slice.
#[derive(Clone)]
struct Paired {
    /// The operation's runs, merged.
    load: Throughput,
    /// The `{ __typename }` runs of the same slices, merged.
    baseline: Throughput,
    /// Median over the slices of the operation's req/s over `{ __typename }`'s.
    share: f64,
    /// The same by CPU time per request (`{ __typename }`'s over the operation's).
    cpu_share: Option<f64>,
}

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// [`SLICES`] slices of `{ __typename }` then `operation`, on `url`.
async fn paired(
    http: &reqwest::Client,
    url: &str,
    operation: &Operation,
) -> Result<Paired, String> {
    let (mut loads, mut baselines) = (Vec::new(), Vec::new());
    for _ in 0..SLICES {
        baselines.push(throughput(http, url, &Operation::typename()).await?);
        loads.push(throughput(http, url, operation).await?);
    }
    let pairs = || {
        loads
            .iter()
            .map(|(l, _)| l)
            .zip(baselines.iter().map(|(b, _)| b))
    };
    let share = median(
        pairs()
            .map(|(l, b)| l.per_second() / b.per_second())
            .collect(),
    );
    let cpu_share: Option<Vec<f64>> = pairs()
        .map(|(l, b)| Some(b.cpu_micros_per_request()? / l.cpu_micros_per_request()?))
        .collect();
    Ok(Paired {
        load: Throughput::merged(&loads),
        baseline: Throughput::merged(&baselines),
        share,
        cpu_share: cpu_share.map(median),
    })
}

/// The warm measurements of one server.
struct Warm {
    /// One per example, in order.
    loads: Vec<Paired>,
    calls_during_load: u64,
    rss_filled: Option<f64>,
    rss_end: Option<f64>,
}

impl Warm {
    /// Every `{ __typename }` run of this server (see [`Throughput::summed`]).
    fn baseline(&self) -> Throughput {
        let runs: Vec<&Throughput> = self.loads.iter().map(|l| &l.baseline).collect();
        Throughput::summed(&runs)
    }
}

/// Fills a fresh server's cache with every operation, then measures each operation against
/// `{ __typename }` (see [`paired`]).
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
        let mut loads = Vec::new();
        for operation in operations {
            eprintln!("warm ({label}): {}", operation.name);
            loads.push(paired(http, &url, operation).await?);
        }
        let calls_during_load = PROVIDERS
            .iter()
            .map(|p| server.calls()[*p].saturating_sub(filled[*p]))
            .sum();
        Ok(Warm {
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
    load: Paired,
    /// Warm, every request resolved from the chunk and derived caches (answers off).
    resolved: Paired,
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
    print_targets(&rows);
    Ok(())
}

fn print_report(rows: &[Row], kept: &Warm, resolved: &Warm) {
    let injected = ms(INJECTED_LATENCY);
    println!();
    println!(
        "Cold: {COLD_SAMPLES} fresh servers each, every upstream delayed {injected:.0} ms (median). \
         Warm: {CLIENTS} clients, {SLICES} slices of a `{{ __typename }}` run then the operation's, \
         each {:.1}s or {MAX_REQUESTS} requests; the shares are the medians of the slices'; \
         \"kept\": the default configuration, where a repeated request is served its kept answer; \
         \"resolved\": a server with `answer_max_bytes = 0`, where every request is resolved from \
         the chunk and derived caches. Each is compared with `{{ __typename }}` on its own server.",
        RUN_FOR.as_secs_f64()
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
            throughput_cells(&row.load.load, Some(&row.load)),
        );
        println!(
            "| | | | | | resolved | {} |",
            throughput_cells(&row.resolved.load, Some(&row.resolved))
        );
    }
    for (server, warm) in [("kept", kept), ("resolved", resolved)] {
        println!(
            "| `{{ __typename }}` (every slice; p50, p99: the operations' median) | 0 | 0 | – | – | {server} | {} |",
            throughput_cells(&warm.baseline(), None)
        );
    }
    let total: usize = [kept, resolved]
        .iter()
        .flat_map(|w| &w.loads)
        .map(|l| l.load.requests + l.baseline.requests)
        .sum();
    println!();
    println!("{total} warm requests in all, every answer checked (status and error codes).");
}

/// req/s, its share of `{ __typename }`, p50, p99, CPU µs per request and the share by CPU
/// (`{ __typename }`'s CPU per request over this one's); the shares are `paired`'s (100% for
/// the baseline itself, `None`).
fn throughput_cells(run: &Throughput, paired: Option<&Paired>) -> String {
    let percent =
        |share: Option<f64>| share.map_or("n/a".to_string(), |s| format!("{:.1}%", 100.0 * s));
    let (share, cpu_share) = match paired {
        Some(paired) => (Some(paired.share), paired.cpu_share),
        None => (Some(1.0), Some(1.0)),
    };
    let cpu = run.cpu_micros_per_request();
    format!(
        "{:.0} | {} | {:.2} | {:.2} | {} | {}",
        run.per_second(),
        percent(share),
        ms(run.p50),
        ms(run.p99),
        cpu.map_or("n/a".to_string(), |cpu| format!("{cpu:.0}")),
        percent(cpu_share),
    )
}

fn print_targets(rows: &[Row]) {
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
        let paired = if *resolved_path {
            &row.resolved
        } else {
            &row.load
        };
        let share = paired.share;
        let by_cpu = paired.cpu_share.map_or(String::new(), |cpu| {
            format!(" (by CPU per request: {:.1}%)", 100.0 * cpu)
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
