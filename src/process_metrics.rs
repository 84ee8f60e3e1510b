//! The process's Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Built on `prometheus-client`: one typed [`Family`] per metric, keyed by a small label struct
//! whose values are `&'static str` (providers, endpoints, outcomes come from our own code) or
//! an interned `Arc<str>` (operation names), so recording a value looks its series up under a
//! shared read lock and bumps an atomic: no label vector is built and no mutex is taken per
//! increment. (A histogram's buckets sit behind a lock of their own series, inside the crate.)
//! One [`Metrics`] per [`App`](crate::app::App) (not a global), so servers started side by side
//! (the tests) count separately.
//!
//! Cardinality is bounded by construction: providers, endpoints, outcomes, error codes and
//! workspace ids come from our own code or the config; operation names come from clients, so
//! [`OperationLabels`] keeps the first [`MAX_OPERATION_LABELS`] distinct (sanitized) names and
//! files every later one under `other`. No label is ever built from a credential.
//!
//! Adding a metric: create it, keep a clone where it is updated, and hand it to
//! [`Metrics::register`] (or register it in [`Metrics::new`] beside the others).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::providers::Provider;

/// Distinct operation names that get their own label value; later ones are `other`.
pub const MAX_OPERATION_LABELS: usize = 100;

/// Longest operation name kept in a label (longer ones are cut).
pub const MAX_OPERATION_LEN: usize = 64;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, in seconds: 5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A family of latency histograms (their buckets are [`LATENCY_BUCKETS`]).
type Latencies<S> = Family<S, Histogram, fn() -> Histogram>;

fn latencies<S: Clone + std::hash::Hash + Eq>() -> Latencies<S> {
    Family::new_with_constructor(latency_histogram)
}

/// `operation`, `status`: GraphQL requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: Arc<str>,
    status: u16,
}

/// `code`: GraphQL errors by `extensions.code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

/// `provider`, `endpoint`, `outcome`: upstream requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    provider: &'static str,
    endpoint: &'static str,
    outcome: &'static str,
}

/// `provider`, `endpoint`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    provider: &'static str,
    endpoint: &'static str,
}

/// `provider`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

/// `provider`, `workspace`: one provider account.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    provider: &'static str,
    workspace: String,
}

/// `outcome` (cache lookups, kept answers).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `executor` (executed requests).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutorLabels {
    executor: &'static str,
}

/// `cause` (cache evictions).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// `result` (configuration reloads).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The state of one provider account's circuit breaker, as the gauge reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

/// A circuit gauge the breaker writes and `/metrics` reads: the series of its (provider,
/// workspace) in `chatstats_upstream_circuit_state` once registered
/// ([`Metrics::register_circuit`]), a gauge of its own otherwise.
#[derive(Debug, Default)]
pub struct CircuitGauge(Gauge);

impl CircuitGauge {
    pub fn set(&self, state: CircuitState) {
        self.0.set(state as i64);
    }

    pub fn get(&self) -> u8 {
        u8::try_from(self.0.get()).unwrap_or(u8::MAX)
    }
}

/// Client-chosen operation names, bounded: the first [`MAX_OPERATION_LABELS`] distinct
/// sanitized names keep their own label value, later ones become `other`. Names are interned,
/// so a known name costs a read-locked set lookup and a reference count, not an allocation.
pub struct OperationLabels {
    known: RwLock<HashSet<Arc<str>>>,
    anonymous: Arc<str>,
    other: Arc<str>,
}

impl Default for OperationLabels {
    fn default() -> Self {
        Self {
            known: RwLock::new(HashSet::new()),
            anonymous: Arc::from("anonymous"),
            other: Arc::from("other"),
        }
    }
}

impl OperationLabels {
    /// The label value for `name` (`anonymous` when the operation has none).
    pub fn label(&self, name: Option<&str>) -> Arc<str> {
        let Some(name) = name else {
            return self.anonymous.clone();
        };
        // Most names are already clean and known: look them up as they are.
        if is_clean(name) {
            if let Some(known) = self.read().get(name) {
                return known.clone();
            }
        }
        let name = sanitize(name);
        if name.is_empty() {
            return self.anonymous.clone();
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = known.get(name.as_str()) {
            return known.clone();
        }
        if known.len() < MAX_OPERATION_LABELS {
            let name: Arc<str> = Arc::from(name);
            known.insert(name.clone());
            return name;
        }
        self.other.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashSet<Arc<str>>> {
        // A panic while holding the lock leaves a plain set behind: keep using it.
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// True when `name` is what [`sanitize`] would make of it.
fn is_clean(name: &str) -> bool {
    name.len() <= MAX_OPERATION_LEN
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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
    /// Every family below, registered once; read (encoded) by [`Metrics::render`].
    registry: RwLock<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Latencies<RequestLabels>,
    graphql_errors: Family<CodeLabels, Counter>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_seconds: Latencies<EndpointLabels>,
    upstream_retries: Family<EndpointLabels, Counter>,
    upstream_queue_seconds: Latencies<ProviderLabels>,
    retry_budget_exhausted: Family<AccountLabels, Counter>,
    circuit_rejections: Family<AccountLabels, Counter>,
    circuits: Family<AccountLabels, Gauge>,
    cache_lookups: Family<OutcomeLabels, Counter>,
    /// `cache_lookups` of `hit`, held: a warm query counts dozens per request.
    cache_hits: Counter,
    answers: Family<OutcomeLabels, Counter>,
    executions: Family<ExecutorLabels, Counter>,
    cache_evictions: Family<CauseLabels, Counter>,
    cache_weighted_bytes: Gauge,
    cache_entries: Gauge,
    cache_max_bytes: Gauge,
    /// Operations running over graphql-transport-ws connections (see [`crate::ws`]).
    subscriptions: Gauge,
    /// Panics caught: in a request (answered 500) or in a task it waited on.
    panics: Counter,
    config_reloads: Family<ResultLabels, Counter>,
    operations: OperationLabels,
    /// `chatstats_shared_tier_up` ([`crate::shared`]), registered the first time it is set, so
    /// a server without `[shared]` does not show it.
    shared_tier_up: Gauge,
    shared_tier_registered: std::sync::Once,
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

/// A gauge value from a count (saturating: no count of ours comes near `i64::MAX`).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new() -> Self {
        let cache_lookups = Family::<OutcomeLabels, Counter>::default();
        let cache_hits = cache_lookups
            .get_or_create(&OutcomeLabels { outcome: "hit" })
            .clone();
        let metrics = Self {
            registry: RwLock::new(Registry::default()),
            requests: Family::default(),
            request_seconds: latencies(),
            graphql_errors: Family::default(),
            upstream_requests: Family::default(),
            upstream_seconds: latencies(),
            upstream_retries: Family::default(),
            upstream_queue_seconds: latencies(),
            retry_budget_exhausted: Family::default(),
            circuit_rejections: Family::default(),
            circuits: Family::default(),
            cache_lookups,
            cache_hits,
            answers: Family::default(),
            executions: Family::default(),
            cache_evictions: Family::default(),
            cache_weighted_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            cache_max_bytes: Gauge::default(),
            subscriptions: Gauge::default(),
            panics: Counter::default(),
            config_reloads: Family::default(),
            operations: OperationLabels::default(),
            shared_tier_up: Gauge::default(),
            shared_tier_registered: std::sync::Once::new(),
        };
        // Counters are named without `_total`: the encoder adds it to their samples.
        // Help texts without a final full stop: the encoder adds one.
        metrics.register(
            "chatstats_graphql_requests",
            "GraphQL requests answered, by operation name and HTTP status",
            metrics.requests.clone(),
        );
        metrics.register(
            "chatstats_graphql_request_duration_seconds",
            "Time to answer a GraphQL request, by operation name and HTTP status",
            metrics.request_seconds.clone(),
        );
        metrics.register(
            "chatstats_graphql_errors",
            "Errors in GraphQL responses, by extensions.code",
            metrics.graphql_errors.clone(),
        );
        metrics.register(
            "chatstats_upstream_requests",
            "HTTP requests sent to providers (each attempt, retries included), by provider, \
             endpoint and outcome (ok or the error code)",
            metrics.upstream_requests.clone(),
        );
        metrics.register(
            "chatstats_upstream_request_duration_seconds",
            "Latency of HTTP requests sent to providers, by provider and endpoint",
            metrics.upstream_seconds.clone(),
        );
        metrics.register(
            "chatstats_upstream_retries",
            "Retries of idempotent upstream requests, by provider and endpoint",
            metrics.upstream_retries.clone(),
        );
        metrics.register(
            "chatstats_upstream_queue_seconds",
            "Time an upstream request waited for a place under its provider's cap on calls in \
             flight ([limits] upstream_concurrency), by provider",
            metrics.upstream_queue_seconds.clone(),
        );
        metrics.register(
            "chatstats_upstream_retry_budget_exhausted",
            "Retries not made because the provider account's retry budget was spent",
            metrics.retry_budget_exhausted.clone(),
        );
        metrics.register(
            "chatstats_upstream_circuit_rejections",
            "Upstream calls refused without a request because the circuit was open",
            metrics.circuit_rejections.clone(),
        );
        metrics.register(
            "chatstats_upstream_circuit_state",
            "Circuit breaker per provider account: 0 closed, 1 half-open (probing), 2 open",
            metrics.circuits.clone(),
        );
        metrics.register(
            "chatstats_cache_lookups",
            "Chunk-cache lookups by outcome: hit, miss (fetched), coalesced (joined an \
             in-flight fetch), stale (served after a failed refresh), error",
            metrics.cache_lookups.clone(),
        );
        metrics.register(
            "chatstats_cache_evictions",
            "Entries removed from the chunk cache, by cause: size (over max_bytes), expired, \
             replaced, explicit",
            metrics.cache_evictions.clone(),
        );
        metrics.register(
            "chatstats_answers",
            "Whole answers of repeated read-only requests: stored (kept for reuse), hit \
             (served without resolving)",
            metrics.answers.clone(),
        );
        metrics.register(
            "chatstats_executions",
            "Requests executed (neither refused nor served a kept answer), by executor: plan (a \
             compiled plan of a request validated before) or async_graphql",
            metrics.executions.clone(),
        );
        metrics.register(
            "chatstats_cache_weighted_bytes",
            "Approximate bytes held by the chunk cache (its weigher's total)",
            metrics.cache_weighted_bytes.clone(),
        );
        metrics.register(
            "chatstats_cache_entries",
            "Entries in the chunk cache",
            metrics.cache_entries.clone(),
        );
        metrics.register(
            "chatstats_cache_max_bytes",
            "The chunk cache's byte bound ([cache] max_bytes)",
            metrics.cache_max_bytes.clone(),
        );
        metrics.register(
            "chatstats_subscriptions_active",
            "Operations running over graphql-transport-ws connections on /graphql: \
             subscriptions, and queries sent over a socket until they answer",
            metrics.subscriptions.clone(),
        );
        metrics.register(
            "chatstats_panics",
            "Panics caught: in a request (answered HTTP 500, INTERNAL_SERVER_ERROR) or in an \
             upstream fetch a request waited on",
            metrics.panics.clone(),
        );
        metrics.register(
            "chatstats_config_reloads",
            "Configuration reloads (SIGHUP), by result: applied, or invalid (the old \
             configuration stays)",
            metrics.config_reloads.clone(),
        );
        metrics
    }

    /// Add a metric to `/metrics`. `name` is its family name (a counter's without `_total`,
    /// which the encoder adds); `help` without a final full stop (the encoder adds one). Keep a
    /// clone of `metric` to update it: clones share their values.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, metric);
    }

    /// The bounded label value for an operation name.
    pub fn operation_label(&self, name: Option<&str>) -> Arc<str> {
        self.operations.label(name)
    }

    /// One answered GraphQL request. `operation`: a label from [`Metrics::operation_label`]
    /// (any other text is bounded the same way).
    pub fn graphql_request(
        &self,
        operation: &str,
        status: u16,
        duration: Duration,
        error_codes: &[(String, usize)],
    ) {
        let labels = RequestLabels {
            operation: self.operations.label(Some(operation)),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        for (code, n) in error_codes {
            let labels = CodeLabels { code: code.clone() };
            self.graphql_errors.get_or_create(&labels).inc_by(*n as u64);
        }
    }

    /// One HTTP request sent upstream. `outcome`: `ok` or an error code.
    pub fn upstream_request(
        &self,
        provider: Provider,
        endpoint: &'static str,
        outcome: &'static str,
        latency: Duration,
    ) {
        let provider = provider.slug();
        self.upstream_requests
            .get_or_create(&UpstreamLabels {
                provider,
                endpoint,
                outcome,
            })
            .inc();
        self.upstream_seconds
            .get_or_create(&EndpointLabels { provider, endpoint })
            .observe(latency.as_secs_f64());
    }

    pub fn upstream_retry(&self, provider: Provider, endpoint: &'static str) {
        let provider = provider.slug();
        self.upstream_retries
            .get_or_create(&EndpointLabels { provider, endpoint })
            .inc();
    }

    /// How long one request waited for a place under `provider`'s concurrency cap.
    pub fn upstream_queue_wait(&self, provider: Provider, waited: Duration) {
        let provider = provider.slug();
        self.upstream_queue_seconds
            .get_or_create(&ProviderLabels { provider })
            .observe(waited.as_secs_f64());
    }

    pub fn retry_budget_exhausted(&self, provider: Provider, workspace: &str) {
        self.retry_budget_exhausted
            .get_or_create(&account(provider, workspace))
            .inc();
    }

    pub fn circuit_rejection(&self, provider: Provider, workspace: &str) {
        self.circuit_rejections
            .get_or_create(&account(provider, workspace))
            .inc();
    }

    /// One chunk-cache lookup: `hit`, `miss`, `coalesced`, `stale` or `error`.
    pub fn cache_lookup(&self, outcome: &'static str) {
        match outcome {
            "hit" => self.cache_hits.inc(),
            outcome => self
                .cache_lookups
                .get_or_create(&OutcomeLabels { outcome })
                .inc(),
        };
    }

    /// One kept answer: `stored` or `hit` (see [`crate::answers`]).
    pub fn answer(&self, outcome: &'static str) {
        self.answers.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// One request executed by `executor`: `plan` or `async_graphql` (see
    /// [`crate::graphql::plan`]).
    pub fn execution(&self, executor: &'static str) {
        self.executions
            .get_or_create(&ExecutorLabels { executor })
            .inc();
    }

    /// One entry removed from the cache: `size`, `expired`, `replaced` or `explicit`.
    pub fn cache_eviction(&self, cause: &'static str) {
        self.cache_evictions
            .get_or_create(&CauseLabels { cause })
            .inc();
    }

    /// Report this breaker's state under (provider, workspace id) — never a credential. A
    /// breaker registered again under the same pair (a reloaded workspace) takes over its
    /// series rather than adding a second one.
    pub fn register_circuit(&self, provider: Provider, workspace: &str) -> Arc<CircuitGauge> {
        let gauge = self
            .circuits
            .get_or_create_owned(&account(provider, workspace));
        Arc::new(CircuitGauge(gauge))
    }

    /// Stop reporting the circuits of a workspace that is no longer configured.
    pub fn forget_workspace(&self, workspace: &str) {
        for provider in [
            Provider::Message2Give,
            Provider::ChatTonic,
            Provider::Xenioo,
            Provider::ConnectyCube,
            Provider::HelpScout,
        ] {
            self.circuits.remove(&account(provider, workspace));
        }
    }

    /// One configuration reload: `applied` or `invalid`.
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Requests counted for (operation, status), for tests.
    pub fn requests_of(&self, operation: &str, status: u16) -> u64 {
        let labels = RequestLabels {
            operation: Arc::from(operation),
            status,
        };
        self.requests
            .get(&labels)
            .map_or(0, |counter| counter.get())
    }

    /// A WebSocket operation started (`+1`) or ended (`-1`).
    pub fn subscription_started(&self) {
        self.subscriptions.inc();
    }

    pub fn subscription_ended(&self) {
        self.subscriptions.dec();
    }

    /// Operations running over WebSocket connections now.
    pub fn subscriptions_active(&self) -> u64 {
        u64::try_from(self.subscriptions.get()).unwrap_or(0)
    }

    /// The OpenMetrics text exposition (served as [`CONTENT_TYPE`]), ending in `# EOF`.
    pub fn render(&self, cache: CacheGauges) -> String {
        self.cache_weighted_bytes
            .set(gauge_value(cache.weighted_bytes));
        self.cache_entries.set(gauge_value(cache.entries));
        self.cache_max_bytes.set(gauge_value(cache.max_bytes));
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail, and every metric here has a text form; should the
        // encoder refuse one all the same, serve what it wrote rather than fail the scrape.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(%error, "encoding the metrics failed");
        }
        out
    }

    /// Record the shared tier's state (see `chatstats_shared_tier_up`).
    pub fn set_shared_tier_up(&self, up: bool) {
        self.shared_tier_registered.call_once(|| {
            self.register(
                "chatstats_shared_tier_up",
                "The Redis tier shared by replicas ([shared]): 1 reachable, 0 down (each \
                 replica then runs on its own state). Absent without [shared]",
                self.shared_tier_up.clone(),
            );
        });
        self.shared_tier_up.set(i64::from(up));
    }

    /// One panic caught (see `chatstats_panics_total`).
    pub fn panic_caught(&self) {
        self.panics.inc();
    }

    /// Panics caught so far.
    pub fn panics_caught(&self) -> u64 {
        self.panics.get()
    }
}

fn account(provider: Provider, workspace: &str) -> AccountLabels {
    AccountLabels {
        provider: provider.slug(),
        workspace: workspace.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_sanitized_and_capped() {
        let labels = OperationLabels::default();
        assert_eq!(&*labels.label(None), "anonymous");
        assert_eq!(&*labels.label(Some("Dash\"board{}\n")), "Dashboard");
        for i in 0..MAX_OPERATION_LABELS - 1 {
            assert_eq!(&*labels.label(Some(&format!("Op{i}"))), format!("Op{i}"));
        }
        assert_eq!(&*labels.label(Some("OneTooMany")), "other");
        assert_eq!(
            &*labels.label(Some("Dashboard")),
            "Dashboard",
            "known names stay"
        );
        assert_eq!(&*labels.label(Some(&"x".repeat(500))), "other");
        assert_eq!(sanitize(&"x".repeat(500)).len(), MAX_OPERATION_LEN);
    }

    #[test]
    fn a_known_operation_name_is_interned_not_copied() {
        let labels = OperationLabels::default();
        let first = labels.label(Some("Dashboard"));
        let again = labels.label(Some("Dashboard"));
        assert!(Arc::ptr_eq(&first, &again));
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
        assert!(text.contains("# TYPE chatstats_upstream_requests counter"));
        assert!(text.contains(
            "chatstats_upstream_requests_total{provider=\"help_scout\",endpoint=\"volume-by-channel\",outcome=\"ok\"} 1"
        ));
        assert!(text.contains(
            "chatstats_upstream_request_duration_seconds_bucket{le=\"0.025\",provider=\"help_scout\",endpoint=\"volume-by-channel\"} 1"
        ) || text.contains(
            "chatstats_upstream_request_duration_seconds_bucket{provider=\"help_scout\",endpoint=\"volume-by-channel\",le=\"0.025\"} 1"
        ), "{text}");
        assert!(text.contains(
            "chatstats_upstream_circuit_state{provider=\"xenioo\",workspace=\"acme\\\"x\"} 0"
        ));
        assert!(
            text.contains("chatstats_graphql_requests_total{operation=\"Dash\",status=\"200\"} 1")
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(metrics.requests_of("Dash", 200), 1);
    }

    #[test]
    fn a_breaker_registered_again_takes_over_its_series_and_a_forgotten_workspace_leaves() {
        let metrics = Metrics::new();
        let old = metrics.register_circuit(Provider::Xenioo, "acme");
        let new = metrics.register_circuit(Provider::Xenioo, "acme");
        new.set(CircuitState::Open);
        assert_eq!(old.get(), 2, "one series, shared");
        metrics.register_circuit(Provider::HelpScout, "globex");
        let text = metrics.render(CacheGauges::default());
        assert_eq!(
            text.matches(
                "chatstats_upstream_circuit_state{provider=\"xenioo\",workspace=\"acme\"}"
            )
            .count(),
            1,
            "{text}"
        );
        metrics.forget_workspace("acme");
        let text = metrics.render(CacheGauges::default());
        assert!(!text.contains("workspace=\"acme\""), "{text}");
        assert!(text.contains("workspace=\"globex\""), "{text}");
    }
}
