//! The process's Prometheus metrics, served as text at `GET /metrics`.
//!
//! Hand-rolled rather than a metrics crate: a dozen families with small, bounded label sets
//! need little more than a map behind a mutex, and the exposition format is a few lines of
//! text. One [`Metrics`] per [`App`](crate::app::App) (not a global), so servers started side
//! by side (the tests) count separately.
//!
//! Cardinality is bounded by construction: providers, endpoints, outcomes, error codes and
//! workspace ids come from our own code or the config; operation names come from clients, so
//! [`OperationLabels`] keeps the first [`MAX_OPERATION_LABELS`] distinct (sanitized) names and
//! files every later one under `other`. No label is ever built from a credential.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::providers::Provider;

/// Distinct operation names that get their own label value; later ones are `other`.
pub const MAX_OPERATION_LABELS: usize = 100;

/// Longest operation name kept in a label (longer ones are cut).
pub const MAX_OPERATION_LEN: usize = 64;

/// Latency buckets, in seconds: 5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain numbers behind: keep counting.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A metric family: one value per label tuple.
struct Family<V> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, V>>,
}

impl<V: Default> Family<V> {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Update the value of `labels` (created at its default).
    fn update(&self, labels: &[&str], change: impl FnOnce(&mut V)) {
        debug_assert_eq!(labels.len(), self.labels.len(), "{}", self.name);
        let key: Vec<String> = labels.iter().map(|l| (*l).to_string()).collect();
        change(lock(&self.values).entry(key).or_default());
    }
}

/// A counter family.
type Counters = Family<u64>;

impl Counters {
    fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    fn add(&self, labels: &[&str], n: u64) {
        self.update(labels, |value| *value += n);
    }

    fn get(&self, labels: &[&str]) -> u64 {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_string()).collect();
        lock(&self.values).get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (values, n) in lock(&self.values).iter() {
            let _ = writeln!(out, "{}{} {n}", self.name, label_set(self.labels, values));
        }
    }
}

#[derive(Clone, Default)]
struct HistogramData {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// A latency histogram family.
type Histograms = Family<HistogramData>;

impl Histograms {
    fn observe(&self, labels: &[&str], duration: Duration) {
        let seconds = duration.as_secs_f64();
        self.update(labels, |data| {
            for (bucket, bound) in data.buckets.iter_mut().zip(LATENCY_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            data.count += 1;
            data.sum += seconds;
        });
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        for (values, data) in lock(&self.values).iter() {
            let mut names: Vec<&str> = self.labels.to_vec();
            names.push("le");
            for (bound, n) in LATENCY_BUCKETS.iter().zip(data.buckets) {
                let mut with_le = values.clone();
                with_le.push(bound.to_string());
                let _ = writeln!(
                    out,
                    "{}_bucket{} {n}",
                    self.name,
                    label_set(&names, &with_le)
                );
            }
            let mut with_le = values.clone();
            with_le.push("+Inf".into());
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                label_set(&names, &with_le),
                data.count
            );
            let labels = label_set(self.labels, values);
            let _ = writeln!(out, "{}_sum{labels} {}", self.name, data.sum);
            let _ = writeln!(out, "{}_count{labels} {}", self.name, data.count);
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn label_set(names: &[&str], values: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// Label-value escaping of the text format: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The state of one provider account's circuit breaker, as the gauge reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

/// A circuit gauge the breaker writes and `/metrics` reads.
#[derive(Debug, Default)]
pub struct CircuitGauge(AtomicU8);

impl CircuitGauge {
    pub fn set(&self, state: CircuitState) {
        self.0.store(state as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Client-chosen operation names, bounded: the first [`MAX_OPERATION_LABELS`] distinct
/// sanitized names keep their own label value, later ones become `other`.
#[derive(Default)]
pub struct OperationLabels {
    known: Mutex<HashSet<String>>,
}

impl OperationLabels {
    /// The label value for `name` (`anonymous` when the operation has none).
    pub fn label(&self, name: Option<&str>) -> String {
        let Some(name) = name.map(sanitize).filter(|n| !n.is_empty()) else {
            return "anonymous".into();
        };
        let mut known = lock(&self.known);
        if known.contains(&name) {
            return name;
        }
        if known.len() < MAX_OPERATION_LABELS {
            known.insert(name.clone());
            return name;
        }
        "other".into()
    }
}

/// Keeps GraphQL name characters (`[A-Za-z0-9_]`), at most [`MAX_OPERATION_LEN`] of them.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(MAX_OPERATION_LEN)
        .collect()
}

/// Every metric of one server. Cheap to share (`Arc`); every method takes `&self`.
pub struct Metrics {
    requests: Counters,
    request_seconds: Histograms,
    graphql_errors: Counters,
    upstream_requests: Counters,
    upstream_seconds: Histograms,
    upstream_retries: Counters,
    upstream_queue_seconds: Histograms,
    retry_budget_exhausted: Counters,
    circuit_rejections: Counters,
    cache_lookups: Counters,
    answers: Counters,
    cache_evictions: Counters,
    circuits: Mutex<Vec<(Provider, String, Arc<CircuitGauge>)>>,
    operations: OperationLabels,
    /// Operations running over graphql-transport-ws connections (see [`crate::ws`]).
    subscriptions: std::sync::atomic::AtomicU64,
    /// Panics caught: in a request (answered 500) or in a task it waited on.
    panics: std::sync::atomic::AtomicU64,
    /// The Redis tier ([`crate::shared`]): 0 not configured, 1 down, 2 up.
    shared_tier: AtomicU8,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Gauges read at render time from other components (the cache).
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheGauges {
    pub weighted_bytes: u64,
    pub entries: u64,
    pub max_bytes: u64,
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            requests: Counters::new(
                "chatstats_graphql_requests_total",
                "GraphQL requests answered, by operation name and HTTP status.",
                &["operation", "status"],
            ),
            request_seconds: Histograms::new(
                "chatstats_graphql_request_duration_seconds",
                "Time to answer a GraphQL request, by operation name and HTTP status.",
                &["operation", "status"],
            ),
            graphql_errors: Counters::new(
                "chatstats_graphql_errors_total",
                "Errors in GraphQL responses, by extensions.code.",
                &["code"],
            ),
            upstream_requests: Counters::new(
                "chatstats_upstream_requests_total",
                "HTTP requests sent to providers (each attempt, retries included), by provider, endpoint and outcome (ok or the error code).",
                &["provider", "endpoint", "outcome"],
            ),
            upstream_seconds: Histograms::new(
                "chatstats_upstream_request_duration_seconds",
                "Latency of HTTP requests sent to providers, by provider and endpoint.",
                &["provider", "endpoint"],
            ),
            upstream_retries: Counters::new(
                "chatstats_upstream_retries_total",
                "Retries of idempotent upstream requests, by provider and endpoint.",
                &["provider", "endpoint"],
            ),
            upstream_queue_seconds: Histograms::new(
                "chatstats_upstream_queue_seconds",
                "Time an upstream request waited for a place under its provider's cap on calls in flight ([limits] upstream_concurrency), by provider.",
                &["provider"],
            ),
            retry_budget_exhausted: Counters::new(
                "chatstats_upstream_retry_budget_exhausted_total",
                "Retries not made because the provider account's retry budget was spent.",
                &["provider", "workspace"],
            ),
            circuit_rejections: Counters::new(
                "chatstats_upstream_circuit_rejections_total",
                "Upstream calls refused without a request because the circuit was open.",
                &["provider", "workspace"],
            ),
            cache_lookups: Counters::new(
                "chatstats_cache_lookups_total",
                "Chunk-cache lookups by outcome: hit, miss (fetched), coalesced (joined an in-flight fetch), stale (served after a failed refresh), error.",
                &["outcome"],
            ),
            answers: Counters::new(
                "chatstats_answers_total",
                "Whole answers of repeated read-only requests: stored (kept for reuse), hit (served without resolving).",
                &["outcome"],
            ),
            cache_evictions: Counters::new(
                "chatstats_cache_evictions_total",
                "Entries removed from the chunk cache, by cause: size (over max_bytes), expired, replaced, explicit.",
                &["cause"],
            ),
            circuits: Mutex::new(Vec::new()),
            operations: OperationLabels::default(),
            subscriptions: std::sync::atomic::AtomicU64::new(0),
            panics: std::sync::atomic::AtomicU64::new(0),
            shared_tier: AtomicU8::new(0),
        }
    }

    /// The bounded label value for an operation name.
    pub fn operation_label(&self, name: Option<&str>) -> String {
        self.operations.label(name)
    }

    /// One answered GraphQL request.
    pub fn graphql_request(
        &self,
        operation: &str,
        status: u16,
        duration: Duration,
        error_codes: &[(String, usize)],
    ) {
        let status = status.to_string();
        self.requests.inc(&[operation, &status]);
        self.request_seconds
            .observe(&[operation, &status], duration);
        for (code, n) in error_codes {
            self.graphql_errors.add(&[code], *n as u64);
        }
    }

    /// One HTTP request sent upstream. `outcome`: `ok` or an error code.
    pub fn upstream_request(
        &self,
        provider: Provider,
        endpoint: &str,
        outcome: &str,
        latency: Duration,
    ) {
        self.upstream_requests
            .inc(&[provider.slug(), endpoint, outcome]);
        self.upstream_seconds
            .observe(&[provider.slug(), endpoint], latency);
    }

    pub fn upstream_retry(&self, provider: Provider, endpoint: &str) {
        self.upstream_retries.inc(&[provider.slug(), endpoint]);
    }

    /// How long one request waited for a place under `provider`'s concurrency cap.
    pub fn upstream_queue_wait(&self, provider: Provider, waited: Duration) {
        self.upstream_queue_seconds
            .observe(&[provider.slug()], waited);
    }

    pub fn retry_budget_exhausted(&self, provider: Provider, workspace: &str) {
        self.retry_budget_exhausted
            .inc(&[provider.slug(), workspace]);
    }

    pub fn circuit_rejection(&self, provider: Provider, workspace: &str) {
        self.circuit_rejections.inc(&[provider.slug(), workspace]);
    }

    /// One chunk-cache lookup: `hit`, `miss`, `coalesced`, `stale` or `error`.
    pub fn cache_lookup(&self, outcome: &str) {
        self.cache_lookups.inc(&[outcome]);
    }

    /// One kept answer: `stored` or `hit` (see [`crate::answers`]).
    pub fn answer(&self, outcome: &str) {
        self.answers.inc(&[outcome]);
    }

    /// One entry removed from the cache: `size`, `expired`, `replaced` or `explicit`.
    pub fn cache_eviction(&self, cause: &str) {
        self.cache_evictions.inc(&[cause]);
    }

    /// Report this breaker's state under (provider, workspace id) — never a credential.
    pub fn register_circuit(&self, provider: Provider, workspace: &str) -> Arc<CircuitGauge> {
        let gauge = Arc::new(CircuitGauge::default());
        lock(&self.circuits).push((provider, workspace.to_string(), gauge.clone()));
        gauge
    }

    /// Upstream requests counted for `provider` (all endpoints and outcomes), for tests.
    pub fn upstream_requests_of(&self, provider: Provider) -> u64 {
        lock(&self.upstream_requests.values)
            .iter()
            .filter(|(labels, _)| labels[0] == provider.slug())
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests counted for (operation, status), for tests.
    pub fn requests_of(&self, operation: &str, status: u16) -> u64 {
        self.requests.get(&[operation, &status.to_string()])
    }

    /// A WebSocket operation started (`+1`) or ended (`-1`).
    pub fn subscription_started(&self) {
        self.subscriptions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn subscription_ended(&self) {
        self.subscriptions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Operations running over WebSocket connections now.
    pub fn subscriptions_active(&self) -> u64 {
        self.subscriptions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self, cache: CacheGauges) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        self.request_seconds.render(&mut out);
        self.graphql_errors.render(&mut out);
        self.upstream_requests.render(&mut out);
        self.upstream_seconds.render(&mut out);
        self.upstream_retries.render(&mut out);
        self.upstream_queue_seconds.render(&mut out);
        self.retry_budget_exhausted.render(&mut out);
        self.circuit_rejections.render(&mut out);
        header(
            &mut out,
            "chatstats_upstream_circuit_state",
            "Circuit breaker per provider account: 0 closed, 1 half-open (probing), 2 open.",
            "gauge",
        );
        for (provider, workspace, gauge) in lock(&self.circuits).iter() {
            let labels = label_set(
                &["provider", "workspace"],
                &[provider.slug().to_string(), workspace.clone()],
            );
            let _ = writeln!(
                out,
                "chatstats_upstream_circuit_state{labels} {}",
                gauge.get()
            );
        }
        self.cache_lookups.render(&mut out);
        self.cache_evictions.render(&mut out);
        self.answers.render(&mut out);
        for (name, help, value) in [
            (
                "chatstats_cache_weighted_bytes",
                "Approximate bytes held by the chunk cache (its weigher's total).",
                cache.weighted_bytes,
            ),
            (
                "chatstats_cache_entries",
                "Entries in the chunk cache.",
                cache.entries,
            ),
            (
                "chatstats_cache_max_bytes",
                "The chunk cache's byte bound ([cache] max_bytes).",
                cache.max_bytes,
            ),
            (
                "chatstats_subscriptions_active",
                "Operations running over graphql-transport-ws connections on /graphql: \
                 subscriptions, and queries sent over a socket until they answer.",
                self.subscriptions_active(),
            ),
        ] {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "chatstats_panics_total",
            "Panics caught: in a request (answered HTTP 500, INTERNAL_SERVER_ERROR) or in an \
             upstream fetch a request waited on.",
            "counter",
        );
        let _ = writeln!(out, "chatstats_panics_total {}", self.panics_caught());
        if let Some(up) = self.shared_tier_up() {
            header(
                &mut out,
                "chatstats_shared_tier_up",
                "The Redis tier shared by replicas ([shared]): 1 reachable, 0 down (each \
                 replica then runs on its own state). Absent without [shared].",
                "gauge",
            );
            let _ = writeln!(out, "chatstats_shared_tier_up {}", u8::from(up));
        }
        out
    }

    /// Record the shared tier's state (see `chatstats_shared_tier_up`).
    pub fn set_shared_tier_up(&self, up: bool) {
        self.shared_tier
            .store(if up { 2 } else { 1 }, Ordering::Relaxed);
    }

    /// The shared tier's state; None when none is configured.
    pub fn shared_tier_up(&self) -> Option<bool> {
        match self.shared_tier.load(Ordering::Relaxed) {
            0 => None,
            state => Some(state == 2),
        }
    }

    /// One panic caught (see `chatstats_panics_total`).
    pub fn panic_caught(&self) {
        self.panics
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Panics caught so far.
    pub fn panics_caught(&self) -> u64 {
        self.panics.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_sanitized_and_capped() {
        let labels = OperationLabels::default();
        assert_eq!(labels.label(None), "anonymous");
        assert_eq!(labels.label(Some("Dash\"board{}\n")), "Dashboard");
        for i in 0..MAX_OPERATION_LABELS - 1 {
            assert_eq!(labels.label(Some(&format!("Op{i}"))), format!("Op{i}"));
        }
        assert_eq!(labels.label(Some("OneTooMany")), "other");
        assert_eq!(
            labels.label(Some("Dashboard")),
            "Dashboard",
            "known names stay"
        );
        assert_eq!(labels.label(Some(&"x".repeat(500))), "other");
        assert_eq!(sanitize(&"x".repeat(500)).len(), MAX_OPERATION_LEN);
    }

    #[test]
    fn the_exposition_has_help_type_and_escaped_labels() {
        let metrics = Metrics::new();
        metrics.upstream_request(
            Provider::HelpScout,
            "volume-by-channel",
            "ok",
            Duration::from_millis(20),
        );
        metrics.graphql_request("Dash", 200, Duration::from_millis(3), &[]);
        metrics.register_circuit(Provider::Xenioo, "acme\"x");
        let text = metrics.render(CacheGauges::default());
        assert!(text.contains("# TYPE chatstats_upstream_requests_total counter"));
        assert!(text.contains(
            "chatstats_upstream_requests_total{provider=\"help_scout\",endpoint=\"volume-by-channel\",outcome=\"ok\"} 1"
        ));
        assert!(text.contains(
            "chatstats_upstream_request_duration_seconds_bucket{provider=\"help_scout\",endpoint=\"volume-by-channel\",le=\"0.025\"} 1"
        ));
        assert!(text.contains(
            "chatstats_upstream_request_duration_seconds_bucket{provider=\"help_scout\",endpoint=\"volume-by-channel\",le=\"0.01\"} 0"
        ));
        assert!(text.contains(
            "chatstats_upstream_circuit_state{provider=\"xenioo\",workspace=\"acme\\\"x\"} 0"
        ));
        assert!(
            text.contains("chatstats_graphql_requests_total{operation=\"Dash\",status=\"200\"} 1")
        );
        assert_eq!(metrics.upstream_requests_of(Provider::HelpScout), 1);
    }
}
