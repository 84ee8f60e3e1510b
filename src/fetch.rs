//! Request-scoped fetching: every provider request a query needs goes through [`Fetcher::get`],
//! which makes each distinct request at most once per query (a memo keyed by the request, so
//! aliases, repeated fields and series that share an upstream call collapse into one) on top of
//! the shared [`ChunkCache`] (single flight across queries, TTLs, stale serving).
//!
//! The memo lives in a [`RequestScope`] built per GraphQL request, never in the schema: a
//! schema-global loader would batch across requests and tenants and hold results past their
//! request. The scope also records the trace reported in `extensions.upstream`. A read its
//! client governs outside the chunk cache (the Xenioo snapshot) goes through
//! [`Fetcher::once`]: once per request too, and traced by its caller. The scope counts the
//! reads in flight, so what must show their outcome waits for them ([`RequestScope::settled`]).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use serde::de::DeserializeOwned;
use serde::Serialize;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};

use crate::cache::{AccountKey, CacheKey, Chunk, ChunkCache, Codec, FetchMany, Origin};
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::telemetry::traces::RequestTrace;

/// A rough in-memory size, for the cache's byte budget.
pub trait Weigh {
    fn approx_bytes(&self) -> usize;
}

/// What the chunk cache may keep as a block or a per-range chunk: weighed for the byte budget
/// and serde-serializable both ways, so a shared tier can store it under
/// [`CacheKey::stable_text`] in the versioned form [`crate::cache::encode_value`] gives. The
/// in-process cache keeps the value itself; the shared tier stores it through a
/// [`crate::cache::Codec`] of its type.
pub trait CacheValue: Weigh + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T> CacheValue for T where T: Weigh + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T> Weigh for Vec<T> {
    fn approx_bytes(&self) -> usize {
        self.len() * std::mem::size_of::<T>() + std::mem::size_of::<Self>()
    }
}

impl Weigh for f64 {
    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<f64>()
    }
}

/// One line of `extensions.upstream.calls`.
#[derive(Clone, Debug, Serialize)]
pub struct TraceCall {
    pub provider: &'static str,
    pub endpoint: &'static str,
    /// `upstream` (a call was made), `batched` (a block fetched by the same call as the
    /// block before it), `hit` (fresh cache entry), `coalesced` (joined another
    /// query's in-flight call), `stale` (a refresh failed; an older entry was served),
    /// `error` (the call failed and nothing was cached), `throttled` (the Xenioo gate refused:
    /// no call, no snapshot to serve).
    pub outcome: &'static str,
    /// When the call started, in milliseconds after the request began (calls that overlap
    /// in time ran concurrently).
    #[serde(rename = "startedMs", skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<f64>,
    #[serde(rename = "latencyMs", skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The read made (or joined) a call, so it counts in `upstreamCalls`.
    #[serde(skip)]
    pub called: bool,
}

type Memo = Shared<BoxFuture<'static, Result<Fetched<dyn Any + Send + Sync>, UpstreamError>>>;

/// What one GraphQL request has fetched so far.
pub struct RequestScope {
    memo: Mutex<HashMap<CacheKey, Memo, foldhash::fast::RandomState>>,
    trace: Mutex<Vec<TraceCall>>,
    warnings: Mutex<Vec<String>>,
    /// The earliest moment a chunk this request used stops being fresh: when a subscription
    /// emits again (see [`crate::graphql::subscription`]).
    fresh_until: Mutex<Option<std::time::Instant>>,
    /// When the request began (the origin of `startedMs`).
    began: std::time::Instant,
    /// Keys already in the trace (blocks, chunks behind derived values, the Xenioo snapshot):
    /// each is recorded once per request.
    recorded: Mutex<std::collections::HashSet<CacheKey, foldhash::fast::RandomState>>,
    /// A read failed or was served stale: the answer must not be kept (see
    /// [`RequestScope::reusable_until`]).
    failed: AtomicBool,
    /// What else the answer showed that can change without a chunk changing (see
    /// [`RequestScope::still_true_while`]).
    conditions: Mutex<Vec<Condition>>,
    /// Reads outside the chunk cache, each made at most once per request (see
    /// [`Fetcher::once`]).
    once: Mutex<HashMap<CacheKey, OnceRead, foldhash::fast::RandomState>>,
    /// Reads ([`Fetcher::get`], [`Fetcher::once`]) that a resolver is waiting on, and how many
    /// have started: what [`RequestScope::settled`] watches.
    reads_in_flight: AtomicUsize,
    reads_started: AtomicU64,
    reads_settled: tokio::sync::Notify,
    /// One batch loader per block endpoint, created on first use (see [`Fetcher::blocks`]).
    loaders: Mutex<HashMap<&'static str, Arc<BlockDataLoader>>>,
    /// The OpenTelemetry trace of the request, when it is traced: taken where the scope is
    /// made (inside the request), for the reads' spans and the fetch tasks.
    request_trace: Option<RequestTrace>,
}

type OnceRead = Shared<BoxFuture<'static, Arc<dyn Any + Send + Sync>>>;

/// One read a resolver is waiting on; dropping it (the read ended, or its resolver gave up)
/// ends it.
struct ReadInFlight<'a>(&'a RequestScope);

impl Drop for ReadInFlight<'_> {
    fn drop(&mut self) {
        if self.0.reads_in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reads_settled.notify_waiters();
        }
    }
}

/// A check that what an answer showed is still so (e.g. a provider's health).
pub type Condition = Arc<dyn Fn() -> bool + Send + Sync>;

impl RequestScope {
    pub fn new() -> Self {
        Self {
            began: std::time::Instant::now(),
            recorded: Mutex::new(std::collections::HashSet::default()),
            memo: Mutex::new(HashMap::default()),
            trace: Mutex::new(Vec::new()),
            warnings: Mutex::new(Vec::new()),
            fresh_until: Mutex::new(None),
            failed: AtomicBool::new(false),
            conditions: Mutex::new(Vec::new()),
            once: Mutex::new(HashMap::default()),
            reads_in_flight: AtomicUsize::new(0),
            reads_started: AtomicU64::new(0),
            reads_settled: tokio::sync::Notify::new(),
            loaders: Mutex::new(HashMap::new()),
            request_trace: RequestTrace::current(),
        }
    }

    /// `fetch`, run within this request's trace: the chunk cache runs it in a task of its own,
    /// where the request's context is not current.
    fn traced<T: 'static>(&self, fetch: BoxFuture<'static, T>) -> BoxFuture<'static, T> {
        match &self.request_trace {
            Some(trace) => trace.attach(fetch).boxed(),
            None => fetch,
        }
    }

    fn read_started(&self) -> ReadInFlight<'_> {
        self.reads_started.fetch_add(1, Ordering::AcqRel);
        self.reads_in_flight.fetch_add(1, Ordering::AcqRel);
        ReadInFlight(self)
    }

    /// Resolves once this request's reads have settled: none is in flight, and none started
    /// while the request's other fields last ran. For what must show the outcome of the
    /// request's calls (`Workspace.sources`, the providers' health): its siblings run up to
    /// their next wait first (so they start their reads), then it waits for every read to
    /// end, and again if any started meanwhile (a field whose data came in asks for more).
    pub async fn settled(&self) {
        loop {
            let started = self.reads_started.load(Ordering::Acquire);
            // Let the fields resolved alongside run up to their next wait.
            tokio::task::yield_now().await;
            loop {
                let settled = self.reads_settled.notified();
                tokio::pin!(settled);
                // Registered before the check, so a read ending in between still wakes us.
                settled.as_mut().enable();
                if self.reads_in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
                settled.await;
            }
            if self.reads_started.load(Ordering::Acquire) == started {
                return;
            }
        }
    }

    /// Start over for the next emission of a subscription: forget what was fetched (the memo
    /// would otherwise serve the first emission's chunks forever), the trace, the warnings and
    /// the freshness. The shared cache still serves whatever is fresh.
    pub fn renew(&self) {
        self.memo
            .lock()
            .expect("memo lock is never poisoned")
            .clear();
        self.trace
            .lock()
            .expect("trace lock is never poisoned")
            .clear();
        self.warnings
            .lock()
            .expect("warnings lock is never poisoned")
            .clear();
        *self
            .fresh_until
            .lock()
            .expect("freshness lock is never poisoned") = None;
        self.failed.store(false, Ordering::Release);
        self.conditions
            .lock()
            .expect("conditions lock is never poisoned")
            .clear();
        self.once
            .lock()
            .expect("once lock is never poisoned")
            .clear();
        self.loaders
            .lock()
            .expect("loaders lock is never poisoned")
            .clear();
        self.recorded
            .lock()
            .expect("recorded lock is never poisoned")
            .clear();
    }

    /// Until when this request's answer may be served again to the same request (see
    /// [`crate::answers`]): the earliest freshness of every chunk it read, when every read was
    /// fresh (no failed call, no stale entry, no warning) and that moment is still ahead.
    pub fn reusable_until(&self) -> Option<std::time::Instant> {
        if self.failed.load(Ordering::Acquire) || !self.warnings().is_empty() {
            return None;
        }
        self.fresh_until()
            .filter(|until| *until > std::time::Instant::now())
    }

    /// Record that the answer showed something that can change without any chunk changing
    /// (provider health, the Xenioo throttle): `still_true` says whether it is still so. A
    /// kept answer is served only while every such check holds.
    pub fn still_true_while(&self, still_true: impl Fn() -> bool + Send + Sync + 'static) {
        self.conditions
            .lock()
            .expect("conditions lock is never poisoned")
            .push(Arc::new(still_true));
    }

    /// The checks recorded by [`RequestScope::still_true_while`].
    pub fn conditions(&self) -> Vec<Condition> {
        self.conditions
            .lock()
            .expect("conditions lock is never poisoned")
            .clone()
    }

    /// Distinct chunks this request read (from the cache or upstream).
    pub fn chunks_read(&self) -> usize {
        self.trace
            .lock()
            .expect("trace lock is never poisoned")
            .len()
    }

    /// The earliest moment a chunk used since the last [`RequestScope::renew`] stops being
    /// fresh; None when no chunk was used.
    pub fn fresh_until(&self) -> Option<std::time::Instant> {
        *self
            .fresh_until
            .lock()
            .expect("freshness lock is never poisoned")
    }

    /// Record that the request read data that holds until `fresh_until` (a chunk, a derived
    /// value, the Xenioo snapshot).
    pub fn used(&self, fresh_until: std::time::Instant) {
        let mut earliest = self
            .fresh_until
            .lock()
            .expect("freshness lock is never poisoned");
        *earliest = Some(earliest.map_or(fresh_until, |e| e.min(fresh_until)));
    }

    /// Record a warning for `extensions.warnings` (once per distinct message).
    pub fn warn(&self, message: String) {
        let mut warnings = self
            .warnings
            .lock()
            .expect("warnings lock is never poisoned");
        if !warnings.contains(&message) {
            warnings.push(message);
        }
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .expect("warnings lock is never poisoned")
            .clone()
    }

    /// Record a block read by the batch loader, once per request.
    fn record_block(&self, key: &CacheKey, origin: Result<&Origin, ()>) {
        let first = self
            .recorded
            .lock()
            .expect("recorded lock is never poisoned")
            .insert(key.clone());
        if !first {
            return;
        }
        match origin {
            Ok(Origin::Upstream { latency }) => self.record(key, "upstream", Some(*latency)),
            Ok(Origin::Hit) => self.record(key, "hit", None),
            Ok(Origin::Coalesced) => self.record(key, "coalesced", None),
            Ok(Origin::Stale { .. }) => self.record(key, "stale", None),
            Ok(Origin::Batched) => self.record(key, "batched", None),
            Err(()) => self.record(key, "error", None),
        }
    }

    /// `extensions.upstream`: the calls, and counts by outcome.
    pub fn trace_json(&self) -> serde_json::Value {
        let calls = self
            .trace
            .lock()
            .expect("trace lock is never poisoned")
            .clone();
        let count = |outcome: &str| calls.iter().filter(|c| c.outcome == outcome).count();
        serde_json::json!({
            "upstreamCalls": calls.iter().filter(|c| c.called).count(),
            "cacheHits": count("hit"),
            "staleHits": count("stale"),
            "coalesced": count("coalesced"),
            "calls": calls,
        })
    }

    /// (upstream calls, cache hits) of this request so far, for the request log line.
    pub fn upstream_counts(&self) -> (usize, usize) {
        let calls = self.trace.lock().expect("trace lock is never poisoned");
        let called = calls.iter().filter(|c| c.called).count();
        (called, calls.iter().filter(|c| c.outcome == "hit").count())
    }

    /// Record the chunks behind a derived value as cache hits, each once per request (as the
    /// memo would have served a second reader without a lookup).
    fn record_derived_hits(&self, chunks: &[CacheKey]) {
        let unseen: Vec<&CacheKey> = {
            let memo = self.memo.lock().expect("memo lock is never poisoned");
            let mut seen = self
                .recorded
                .lock()
                .expect("recorded lock is never poisoned");
            chunks
                .iter()
                // Most are seen already (parts share chunks): look before copying the key.
                .filter(|chunk| {
                    !memo.contains_key(*chunk)
                        && !seen.contains(*chunk)
                        && seen.insert((*chunk).clone())
                })
                .collect()
        };
        for chunk in unseen {
            self.record(chunk, "hit", None);
        }
    }

    /// Record that a read failed or was served stale: the answer is not kept.
    pub fn failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    fn record(&self, key: &CacheKey, outcome: &'static str, latency: Option<std::time::Duration>) {
        let called = matches!(outcome, "upstream" | "error" | "stale");
        self.trace_read(key, outcome, latency, called);
    }

    /// Add a line to the trace for a read outside the chunk cache (the Xenioo snapshot), once
    /// per request (a value derived from it may have recorded it already): `outcome` as for
    /// chunks, or `throttled` (refused without a call); `called`: the read made or joined an
    /// upstream call (it counts in `upstreamCalls`).
    pub fn record_read(
        &self,
        key: &CacheKey,
        outcome: &'static str,
        latency: Option<std::time::Duration>,
        called: bool,
    ) {
        let first = self
            .recorded
            .lock()
            .expect("recorded lock is never poisoned")
            .insert(key.clone());
        if first || called {
            self.trace_read(key, outcome, latency, called);
        } else if matches!(outcome, "error" | "stale" | "throttled") {
            self.failed();
        }
    }

    /// [`RequestScope::record_read`]'s trace line, whether or not one was added before.
    fn trace_read(
        &self,
        key: &CacheKey,
        outcome: &'static str,
        latency: Option<std::time::Duration>,
        called: bool,
    ) {
        if matches!(outcome, "error" | "stale" | "throttled") {
            self.failed();
        }
        // A call made has its own span (`providers::upstream`); a read served otherwise
        // gets one here.
        if let (Some(trace), false) = (&self.request_trace, matches!(outcome, "upstream" | "error"))
        {
            trace.read(key.account.provider.slug(), key.endpoint, outcome);
        }
        let millis = |d: std::time::Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let started_ms = latency.map(|latency| {
            millis(
                self.began
                    .elapsed()
                    .checked_sub(latency)
                    .unwrap_or_default(),
            )
        });
        self.trace
            .lock()
            .expect("trace lock is never poisoned")
            .push(TraceCall {
                provider: key.account.provider.slug(),
                endpoint: key.endpoint,
                outcome,
                started_ms,
                latency_ms: latency.map(millis),
                called,
            });
    }
}

impl Default for RequestScope {
    fn default() -> Self {
        Self::new()
    }
}

/// A fetched chunk.
pub struct Fetched<T: ?Sized> {
    pub value: Arc<T>,
    /// Served past its freshness because the refresh failed.
    pub stale: bool,
    /// The refresh error, when stale.
    pub warning: Option<UpstreamError>,
    /// Until when the chunk is fresh; None when stale.
    pub fresh_until: Option<std::time::Instant>,
    /// The chunk's cache key (what a derived value records as its sources).
    pub key: CacheKey,
}

impl Fetched<dyn Any + Send + Sync> {
    /// What the cache served for `key`: stale (with its refresh error) or fresh until the
    /// chunk's freshness ends.
    fn served(chunk: Chunk, origin: Origin, key: CacheKey) -> Self {
        let warning = match origin {
            Origin::Stale { warning } => Some(warning),
            _ => None,
        };
        Fetched {
            fresh_until: warning.is_none().then(|| chunk.fresh_until()),
            value: chunk.value,
            stale: warning.is_some(),
            warning,
            key,
        }
    }
}

impl<T: ?Sized> Clone for Fetched<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            stale: self.stale,
            warning: self.warning.clone(),
            fresh_until: self.fresh_until,
            key: self.key.clone(),
        }
    }
}

/// The cache and the request's scope, handed to every provider part.
#[derive(Clone)]
pub struct Fetcher {
    pub cache: Arc<ChunkCache>,
    pub scope: Arc<RequestScope>,
}

impl Fetcher {
    /// The value of the upstream request `request` of `account`, fetched with `fetch` at most
    /// once per query and shared across queries through the cache. `live`: the request's range
    /// touches the present (short TTL).
    pub async fn get<K, T, F, Fut>(
        &self,
        account: &AccountKey,
        endpoint: &'static str,
        request: &K,
        live: bool,
        fetch: F,
    ) -> Result<Fetched<T>, UpstreamError>
    where
        K: Serialize,
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>> + Send + 'static,
    {
        let _in_flight = self.scope.read_started();
        let key = CacheKey::new(account, endpoint, request);
        let memo = {
            let mut memo = self.scope.memo.lock().expect("memo lock is never poisoned");
            match memo.get(&key) {
                Some(existing) => existing.clone(),
                None => {
                    let cache = self.cache.clone();
                    let scope = self.scope.clone();
                    let cache_key = key.clone();
                    let upstream = fetch();
                    let erased = self.scope.traced(
                        async move {
                            upstream.await.map(|value| {
                                let bytes = value.approx_bytes();
                                (Arc::new(value) as Arc<dyn Any + Send + Sync>, bytes)
                            })
                        }
                        .boxed(),
                    );
                    let future = async move {
                        let result = cache
                            .get_with(cache_key.clone(), live, erased, Some(Codec::of::<T>()))
                            .await;
                        match &result {
                            Ok((_, Origin::Upstream { latency })) => {
                                scope.record(&cache_key, "upstream", Some(*latency))
                            }
                            Ok((_, Origin::Hit)) => scope.record(&cache_key, "hit", None),
                            Ok((_, Origin::Coalesced)) => {
                                scope.record(&cache_key, "coalesced", None)
                            }
                            Ok((_, Origin::Stale { .. })) => {
                                scope.record(&cache_key, "stale", None)
                            }
                            Ok((_, Origin::Batched)) => scope.record(&cache_key, "batched", None),
                            Err(_) => scope.record(&cache_key, "error", None),
                        }
                        result.map(|(chunk, origin)| {
                            scope.used(chunk.fresh_until());
                            Fetched::served(chunk, origin, cache_key)
                        })
                    }
                    .boxed()
                    .shared();
                    memo.insert(key.clone(), future.clone());
                    future
                }
            }
        };
        let fetched = memo.await?;
        let value = fetched.value.downcast::<T>().map_err(|_| {
            UpstreamError::new(
                account.provider,
                UpstreamErrorKind::Invalid(format!(
                    "internal: cached {endpoint} chunk has an unexpected type"
                )),
            )
        })?;
        Ok(Fetched {
            value,
            stale: fetched.stale,
            warning: fetched.warning,
            fresh_until: fetched.fresh_until,
            key: fetched.key,
        })
    }

    /// `read`'s value for `key`, computed at most once per request (later callers share it),
    /// for reads outside the chunk cache that their client governs (the Xenioo snapshot) and
    /// that trace themselves ([`RequestScope::record_read`]). `None` only if `key` was read
    /// as another type (a bug).
    pub async fn once<T, F, Fut>(&self, key: CacheKey, read: F) -> Option<T>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let _in_flight = self.scope.read_started();
        let shared = {
            let mut once = self.scope.once.lock().expect("once lock is never poisoned");
            once.entry(key)
                .or_insert_with(|| {
                    read()
                        .map(|value| Arc::new(value) as Arc<dyn Any + Send + Sync>)
                        .boxed()
                        .shared()
                })
                .clone()
        };
        shared.await.downcast_ref::<T>().cloned()
    }

    /// Blocks `indices` of `series`, through this request's batch loader of the series'
    /// endpoint: the blocks every field asks for in the same tick are planned together (see
    /// [`BlockLoader`]). `source` is asked for only the first time the request uses the series.
    pub async fn blocks<T: CacheValue>(
        &self,
        series: &SeriesKey,
        indices: &[i64],
        source: impl FnOnce() -> Arc<dyn BlockSource>,
    ) -> Result<Vec<Fetched<T>>, UpstreamError> {
        let _in_flight = self.scope.read_started();
        let loader = {
            let mut loaders = self
                .scope
                .loaders
                .lock()
                .expect("loaders lock is never poisoned");
            loaders
                .entry(series.endpoint)
                .or_insert_with(|| {
                    let loader = BlockLoader {
                        cache: self.cache.clone(),
                        scope: Arc::downgrade(&self.scope),
                        sources: Mutex::new(HashMap::new()),
                    };
                    Arc::new(DataLoader::with_cache(
                        loader,
                        tokio::spawn,
                        HashMapCache::default(),
                    ))
                })
                .clone()
        };
        loader
            .loader()
            .sources
            .lock()
            .expect("sources lock is never poisoned")
            .entry(series.clone())
            .or_insert_with(|| (source(), Codec::of::<T>()));
        let keys = indices.iter().map(|index| BlockKey {
            series: series.clone(),
            index: *index,
        });
        let mut loaded = match loader.load_many(keys).await {
            Ok(loaded) => loaded,
            Err(never) => match never {},
        };
        indices
            .iter()
            .map(|index| {
                let key = BlockKey {
                    series: series.clone(),
                    index: *index,
                };
                let fetched = loaded.remove(&key).unwrap_or_else(|| {
                    Err(UpstreamError::new(
                        series.account.provider,
                        UpstreamErrorKind::Invalid(format!(
                            "internal: the {} loader left a block out",
                            series.endpoint
                        )),
                    ))
                })?;
                let value = fetched.value.downcast::<T>().map_err(|_| {
                    UpstreamError::new(
                        series.account.provider,
                        UpstreamErrorKind::Invalid(format!(
                            "internal: cached {} block has an unexpected type",
                            series.endpoint
                        )),
                    )
                })?;
                Ok(Fetched {
                    value,
                    stale: fetched.stale,
                    warning: fetched.warning,
                    fresh_until: fetched.fresh_until,
                    key: fetched.key,
                })
            })
            .collect()
    }

    /// A value derived from chunks (see [`Derived`]) while every chunk behind it is fresh; the
    /// chunks are recorded in the trace as cache hits, as reading them would have been.
    pub fn derived<T: Send + Sync + 'static>(&self, key: &CacheKey) -> Option<Arc<Derived<T>>> {
        let entry = self.cache.get_derived(key)?;
        let derived = entry.value.downcast::<Derived<T>>().ok()?;
        self.scope.record_derived_hits(&derived.chunks);
        // A subscription's next emission is due when this stops being fresh.
        self.scope.used(derived.fresh_until);
        Some(derived)
    }

    /// Keep `value`, computed from the fresh `chunks`, until `fresh_until`.
    pub fn put_derived<T: Send + Sync + 'static>(
        &self,
        key: CacheKey,
        value: T,
        bytes: usize,
        chunks: Arc<[CacheKey]>,
        fresh_until: std::time::Instant,
    ) {
        let bytes = bytes
            + chunks
                .iter()
                .map(|c| c.request.len() + std::mem::size_of::<CacheKey>())
                .sum::<usize>();
        let derived = Arc::new(Derived {
            value,
            chunks,
            fresh_until,
        });
        self.cache.put_derived(key, derived, bytes, fresh_until);
    }
}

/// One endpoint of one account whose history is cached in blocks on a fixed calendar grid,
/// with the parameters all its blocks share (e.g. Help Scout's filters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub account: AccountKey,
    pub endpoint: &'static str,
    /// The shared parameters as JSON: part of every block's cache key.
    params: Arc<str>,
}

impl SeriesKey {
    pub fn new(account: &AccountKey, endpoint: &'static str, params: &impl Serialize) -> Self {
        Self {
            account: account.clone(),
            endpoint,
            // Plain data (ids, enums) into a String: cannot fail.
            params: serde_json::to_string(params)
                .expect("series parameters serialize to JSON")
                .into(),
        }
    }

    /// The cache key of block `index`.
    pub fn block(&self, index: i64) -> CacheKey {
        CacheKey::block(&self.account, self.endpoint, &self.params, index)
    }
}

/// What the batch loader needs of one block endpoint. The grid and the call planning live in
/// the provider's module (e.g. [`crate::providers::help_scout::plan_blocks`]); the loader only
/// groups, caches and records.
pub trait BlockSource: Send + Sync + 'static {
    /// True when block `index` touches the present (and so gets the live TTL).
    fn live(&self, index: i64) -> bool;
    /// The upstream calls that fetch the missing blocks `indices` (ascending, distinct): one
    /// group per call, each within the upstream's limits.
    fn plan(&self, indices: &[i64]) -> Vec<Vec<i64>>;
    /// One planned call: one value (and its weight in bytes) per block of `group`, in order.
    fn fetch(&self, group: Vec<i64>) -> FetchMany;
    /// Blocks worth fetching beside `asked` (ascending, distinct) when a call is made anyway:
    /// [`plan_reading_ahead`] stretches a planned call over those that directly follow it and
    /// are missing, never adding a call. None by default.
    fn read_ahead(&self, _asked: &[i64]) -> Vec<i64> {
        Vec::new()
    }
}

/// The calls `plan` makes for the missing blocks `wanted`, each then stretched forward over the
/// missing blocks of `ahead` that directly follow it, one at a time, as long as `plan` still
/// makes the stretched run one call. Never more calls than `plan(wanted)`: with nothing wanted,
/// nothing is read ahead.
pub fn plan_reading_ahead(
    plan: &dyn Fn(&[i64]) -> Vec<Vec<i64>>,
    wanted: &[i64],
    ahead: &[i64],
) -> Vec<Vec<i64>> {
    let mut groups = if wanted.is_empty() {
        Vec::new()
    } else {
        plan(wanted)
    };
    let mut taken: Vec<i64> = Vec::new();
    for group in &mut groups {
        while let Some(next) = group.last().map(|last| last + 1) {
            if !ahead.contains(&next) || wanted.contains(&next) || taken.contains(&next) {
                break;
            }
            let mut longer = group.clone();
            longer.push(next);
            if plan(&longer).len() != 1 {
                break;
            }
            *group = longer;
            taken.push(next);
        }
    }
    groups
}

/// Groups ascending, distinct block indices into runs of contiguous blocks of at most `max`
/// blocks each: the calls an upstream that takes one range per call needs for them.
pub fn contiguous_runs(indices: &[i64], max: usize) -> Vec<Vec<i64>> {
    let mut runs: Vec<Vec<i64>> = Vec::new();
    for &index in indices {
        match runs.last_mut() {
            Some(run) if run.len() < max.max(1) && run.last() == Some(&(index - 1)) => {
                run.push(index)
            }
            _ => runs.push(vec![index]),
        }
    }
    runs
}

/// A provider's planning of missing blocks into calls (see [`BlockSource::plan`]).
pub type PlanBlocks = dyn Fn(&[i64]) -> Vec<Vec<i64>> + Send + Sync;

/// A [`BlockSource`] made of a provider module's grid and planning functions and a fetch
/// closure over its client.
pub struct FnBlockSource<F> {
    /// The end of block `index` (it is live when that is after now).
    pub block_end: fn(i64) -> chrono::DateTime<chrono::Utc>,
    pub plan: Box<PlanBlocks>,
    pub fetch: F,
}

impl<F> BlockSource for FnBlockSource<F>
where
    F: Fn(Vec<i64>) -> FetchMany + Send + Sync + 'static,
{
    fn live(&self, index: i64) -> bool {
        (self.block_end)(index) > chrono::Utc::now()
    }

    fn plan(&self, indices: &[i64]) -> Vec<Vec<i64>> {
        (self.plan)(indices)
    }

    fn fetch(&self, group: Vec<i64>) -> FetchMany {
        (self.fetch)(group)
    }
}

/// A block of a [`SeriesKey`]: what the batch loader is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub series: SeriesKey,
    pub index: i64,
}

/// The per-request batch loader of one block endpoint: async-graphql's [`DataLoader`] hands
/// it every block the query's fields asked for in one tick, and it plans the fewest upstream
/// calls for the missing ones through [`ChunkCache::get_blocks`] (which keeps single flight
/// across requests). Request-scoped on purpose: a schema-global loader would batch across
/// requests and tenants.
pub struct BlockLoader {
    cache: Arc<ChunkCache>,
    /// Weak: the scope owns the loader.
    scope: std::sync::Weak<RequestScope>,
    /// The source of each series asked for in this request, and how its blocks cross the
    /// shared tier.
    sources: Mutex<HashMap<SeriesKey, SourceOf>>,
}

type BlockDataLoader = DataLoader<BlockLoader, HashMapCache>;

/// A series' block source and the codec of its blocks.
type SourceOf = (Arc<dyn BlockSource>, Codec);

/// A loaded block, or why it could not be.
type LoadedBlock = Result<Fetched<dyn Any + Send + Sync>, UpstreamError>;

impl Loader<BlockKey> for BlockLoader {
    type Value = LoadedBlock;
    /// Failures are per block, inside the value.
    type Error = std::convert::Infallible;

    async fn load(
        &self,
        keys: &[BlockKey],
    ) -> Result<HashMap<BlockKey, LoadedBlock>, std::convert::Infallible> {
        let mut by_series: HashMap<&SeriesKey, Vec<i64>> = HashMap::new();
        for key in keys {
            by_series.entry(&key.series).or_default().push(key.index);
        }
        let loads = by_series
            .into_iter()
            .map(|(series, mut indices)| async move {
                indices.sort_unstable();
                indices.dedup();
                let source = self
                    .sources
                    .lock()
                    .expect("sources lock is never poisoned")
                    .get(series)
                    .cloned();
                let Some((source, codec)) = source else {
                    let missing = UpstreamError::new(
                        series.account.provider,
                        UpstreamErrorKind::Invalid(format!(
                            "internal: no block source for {}",
                            series.endpoint
                        )),
                    );
                    return indices
                        .into_iter()
                        .map(|index| {
                            let key = BlockKey {
                                series: series.clone(),
                                index,
                            };
                            (key, Err(missing.clone()))
                        })
                        .collect::<Vec<_>>();
                };
                // The asked blocks first, then those read ahead (not asked: their results are
                // stored by the call that fetched them and not handed out here).
                let asked = indices.len();
                let blocks: Vec<i64> = indices
                    .iter()
                    .copied()
                    .chain(
                        source
                            .read_ahead(&indices)
                            .into_iter()
                            .filter(|index| indices.binary_search(index).is_err()),
                    )
                    .collect();
                let cache_keys: Vec<(CacheKey, bool)> = blocks
                    .iter()
                    .map(|index| (series.block(*index), source.live(*index)))
                    .collect();
                // The fetch tasks run in the request's trace; the scope itself is upgraded only
                // once the blocks are in.
                let trace = self
                    .scope
                    .upgrade()
                    .and_then(|scope| scope.request_trace.clone());
                let position = |index: &i64| blocks.iter().position(|block| block == index);
                let results = self
                    .cache
                    .get_blocks_with(
                        &cache_keys,
                        |missing| {
                            let (wanted, ahead): (Vec<usize>, Vec<usize>) =
                                missing.iter().partition(|&&at| at < asked);
                            let wanted: Vec<i64> = wanted.iter().map(|&at| blocks[at]).collect();
                            let ahead: Vec<i64> = ahead.iter().map(|&at| blocks[at]).collect();
                            plan_reading_ahead(&|run| source.plan(run), &wanted, &ahead)
                                .into_iter()
                                .map(|group| group.iter().filter_map(position).collect())
                                .collect()
                        },
                        |group| {
                            let call = source.fetch(group.iter().map(|&at| blocks[at]).collect());
                            match &trace {
                                Some(trace) => trace.attach(call).boxed(),
                                None => call,
                            }
                        },
                        Some(codec),
                    )
                    .await;
                let scope = self.scope.upgrade();
                indices
                    .into_iter()
                    .zip(cache_keys)
                    .zip(results)
                    .map(|((index, (cache_key, _)), result)| {
                        if let Some(scope) = &scope {
                            scope.record_block(
                                &cache_key,
                                result.as_ref().map(|(_, o)| o).map_err(|_| ()),
                            );
                        }
                        let loaded = result.map(|(chunk, origin)| {
                            if let Some(scope) = &scope {
                                scope.used(chunk.fresh_until());
                            }
                            Fetched::served(chunk, origin, cache_key)
                        });
                        let key = BlockKey {
                            series: series.clone(),
                            index,
                        };
                        (key, loaded)
                    })
                    .collect()
            });
        Ok(futures::future::join_all(loads)
            .await
            .into_iter()
            .flatten()
            .collect())
    }
}

/// A value computed from cached chunks (e.g. one provider's part of a series, resampled onto a
/// window), shared across queries while those chunks are fresh: a warm query skips the
/// sample extraction and resampling, not only the upstream call.
pub struct Derived<T> {
    pub value: T,
    /// The chunks it was computed from.
    pub chunks: Arc<[CacheKey]>,
    /// When the first of them stops being fresh, and this with it.
    pub fresh_until: std::time::Instant,
}

/// Erases a provider call's blocks for [`ChunkCache::get_blocks`].
pub fn erase_blocks<T: CacheValue>(blocks: Vec<T>) -> Vec<(Arc<dyn Any + Send + Sync>, usize)> {
    blocks
        .into_iter()
        .map(|block| {
            let bytes = block.approx_bytes();
            (Arc::new(block) as Arc<dyn Any + Send + Sync>, bytes)
        })
        .collect()
}
