//! The shared chunk cache: one entry per upstream request (a provider-native chunk) per account.
//!
//! Contract (what callers may rely on; a Redis tier must keep it):
//! - **Keys** are [`CacheKey`]s: the account identity (workspace, provider, and a fingerprint of
//!   the base URL and credentials) plus the request. Two tenants never share an entry unless they
//!   are literally the same account with the same credentials.
//! - **Freshness**: an entry is fresh for the live TTL when its chunk touches the present, else
//!   for the history TTL. A fresh entry is served without an upstream call.
//! - **Single flight**: concurrent misses of one key share one upstream call.
//! - **Stale on error**: when a refresh fails and an older entry exists, the older entry is
//!   served, marked stale, with the error as a warning. Entries stay usable as stale for the
//!   history TTL after they stop being fresh.
//! - **Bounded by bytes**: the weigher counts each entry's approximate size; the total stays
//!   under `max_bytes` (moka evicts least-recently-used entries).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::notification::RemovalCause;

use crate::config::CacheConfig;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::prometheus::{CacheGauges, Metrics};
use crate::providers::Provider;

/// Which upstream account a request is made with.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AccountKey {
    pub workspace: Arc<str>,
    pub provider: Provider,
    /// A fingerprint of base URL and credentials, so a credential change never reuses entries.
    credential: u64,
}

impl AccountKey {
    /// `parts` are the base URL and the credential strings; only a hash of them is kept.
    pub fn new(workspace: &str, provider: Provider, parts: &[&str]) -> Self {
        let mut hasher = DefaultHasher::new();
        parts.hash(&mut hasher);
        Self {
            workspace: workspace.into(),
            provider,
            credential: hasher.finish(),
        }
    }
}

impl fmt::Debug for AccountKey {
    /// Leaves out the credential fingerprint: it is derived from secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workspace, self.provider.slug())
    }
}

/// One upstream request of one account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub account: AccountKey,
    /// The endpoint, for traces and metrics (e.g. `volume-by-channel`).
    pub endpoint: &'static str,
    /// The request's parameters in a canonical text form (its key type's `Debug`).
    pub request: String,
}

/// A cached chunk, type-erased.
#[derive(Clone)]
pub struct Chunk {
    pub value: Arc<dyn Any + Send + Sync>,
    bytes: u32,
    fresh_until: Instant,
    fresh_for: Duration,
    /// Kept past its freshness for stale serving (upstream chunks); derived values are not.
    keeps_stale: bool,
}

/// How a chunk was obtained.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// Fetched by this caller.
    Upstream { latency: Duration },
    /// Fresh in the cache.
    Hit,
    /// Another caller's in-flight fetch.
    Coalesced,
    /// The refresh failed; an older entry was served.
    Stale { warning: UpstreamError },
}

/// The fetch a miss runs. `'static` so concurrent callers can share it.
pub type Fetch = BoxFuture<'static, Result<(Arc<dyn Any + Send + Sync>, usize), UpstreamError>>;

/// A fetch in flight; its chunk comes with `true` when it was fetched upstream, `false` when a
/// flight that had just finished left a fresh entry (see [`ChunkCache::join_or_start`]).
type InFlight = Shared<BoxFuture<'static, Result<(Chunk, bool), UpstreamError>>>;

/// Per-entry lifetime: fresh time plus the stale grace period.
struct Lifetime {
    grace: Duration,
}

impl Chunk {
    /// When the chunk stops being fresh (the next lookup after this refreshes it).
    pub fn fresh_until(&self) -> Instant {
        self.fresh_until
    }
}

impl moka::Expiry<CacheKey, Chunk> for Lifetime {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Chunk,
        _now: Instant,
    ) -> Option<Duration> {
        Some(if value.keeps_stale {
            value.fresh_for + self.grace
        } else {
            value.fresh_for
        })
    }
}

/// The shared cache tier.
pub struct ChunkCache {
    entries: moka::future::Cache<CacheKey, Chunk, foldhash::fast::RandomState>,
    metrics: Arc<Metrics>,
    max_bytes: u64,
    inflight: Mutex<HashMap<CacheKey, InFlight>>,
    live_ttl: Duration,
    history_ttl: Duration,
}

impl ChunkCache {
    pub fn new(config: &CacheConfig) -> Self {
        Self::with_metrics(config, Arc::new(Metrics::new()))
    }

    /// As [`ChunkCache::new`], counting lookups and evictions in `metrics`.
    pub fn with_metrics(config: &CacheConfig, metrics: Arc<Metrics>) -> Self {
        let listener = metrics.clone();
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &CacheKey, chunk: &Chunk| chunk.bytes)
            .expire_after(Lifetime {
                grace: config.history_ttl(),
            })
            .eviction_listener(move |_key, _chunk, cause| {
                listener.cache_eviction(match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    RemovalCause::Replaced => "replaced",
                    RemovalCause::Explicit => "explicit",
                })
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            entries,
            metrics,
            max_bytes: config.max_bytes,
            inflight: Mutex::new(HashMap::new()),
            live_ttl: config.live_ttl(),
            history_ttl: config.history_ttl(),
        }
    }

    /// The chunk for `key`: fresh from the cache, joined to an in-flight fetch, or fetched with
    /// `fetch` (`live`: the chunk touches the present and gets the short TTL).
    pub async fn get(
        self: &Arc<Self>,
        key: CacheKey,
        live: bool,
        fetch: Fetch,
    ) -> Result<(Chunk, Origin), UpstreamError> {
        let cached = self.entries.get(&key).await;
        if let Some(chunk) = &cached {
            if Instant::now() < chunk.fresh_until {
                self.metrics.cache_lookup("hit");
                return Ok((chunk.clone(), Origin::Hit));
            }
        }
        let (shared, leader) = self.join_or_start(&key, live, fetch);
        let started = Instant::now();
        let result = shared.await;
        self.metrics.cache_lookup(match (&result, leader, &cached) {
            (Ok((_, true)), true, _) => "miss",
            (Ok((_, false)), true, _) => "hit",
            (Ok(_), false, _) => "coalesced",
            (Err(_), _, Some(_)) => "stale",
            (Err(_), _, None) => "error",
        });
        match result {
            Ok((chunk, true)) if leader => Ok((
                chunk,
                Origin::Upstream {
                    latency: started.elapsed(),
                },
            )),
            Ok((chunk, false)) if leader => Ok((chunk, Origin::Hit)),
            Ok((chunk, _)) => Ok((chunk, Origin::Coalesced)),
            Err(error) => match cached {
                Some(chunk) => Ok((chunk, Origin::Stale { warning: error })),
                None => Err(error),
            },
        }
    }

    /// The live TTL (`[cache] live_ttl_secs`).
    pub fn live_ttl(&self) -> Duration {
        self.live_ttl
    }

    /// Join the in-flight fetch of `key`, or start one. The fetch runs in its own task, which
    /// stores the result and then deregisters itself: a caller that gives up (a client that
    /// disconnects) neither cancels the fetch for the others nor leaves a dangling entry.
    ///
    /// The task first looks at the entries again: a caller that read an expired entry just
    /// before another flight of the same key stored its result and deregistered would
    /// otherwise start a second upstream call (many subscribers wake at the same expiry).
    fn join_or_start(
        self: &Arc<Self>,
        key: &CacheKey,
        live: bool,
        fetch: Fetch,
    ) -> (InFlight, bool) {
        let mut inflight = self
            .inflight
            .lock()
            .expect("inflight lock is never poisoned");
        if let Some(shared) = inflight.get(key) {
            return (shared.clone(), false);
        }
        let fresh_for = if live {
            self.live_ttl
        } else {
            self.history_ttl
        };
        let this = Arc::clone(self);
        let task_key = key.clone();
        let provider = key.account.provider;
        let task = tokio::spawn(async move {
            if let Some(chunk) = this.entries.get(&task_key).await {
                if Instant::now() < chunk.fresh_until {
                    this.inflight
                        .lock()
                        .expect("inflight lock is never poisoned")
                        .remove(&task_key);
                    return Ok((chunk, false));
                }
            }
            let result = fetch.await.map(|(value, bytes)| Chunk {
                value,
                bytes: u32::try_from(bytes.saturating_add(256)).unwrap_or(u32::MAX),
                fresh_until: Instant::now() + fresh_for,
                fresh_for,
                keeps_stale: true,
            });
            if let Ok(chunk) = &result {
                this.entries.insert(task_key.clone(), chunk.clone()).await;
            }
            this.inflight
                .lock()
                .expect("inflight lock is never poisoned")
                .remove(&task_key);
            result.map(|chunk| (chunk, true))
        });
        let cache = Arc::clone(self);
        let stopped_key = key.clone();
        let shared = async move {
            task.await.unwrap_or_else(|stopped| {
                // The task did not finish (a panic in the fetch), so it did not deregister
                // itself: its finished flight would answer this error to the key forever.
                cache
                    .inflight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&stopped_key);
                if stopped.is_panic() {
                    cache.metrics.panic_caught();
                }
                Err(UpstreamError::new(
                    provider,
                    UpstreamErrorKind::Unavailable("the fetch task stopped unexpectedly".into()),
                ))
            })
        }
        .boxed()
        .shared();
        inflight.insert(key.clone(), shared.clone());
        (shared, true)
    }

    /// Bytes accounted by the weigher (after pending maintenance).
    pub async fn weighted_bytes(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
    }

    /// The gauges `/metrics` reports (after pending maintenance).
    pub async fn gauges(&self) -> CacheGauges {
        self.entries.run_pending_tasks().await;
        CacheGauges {
            weighted_bytes: self.entries.weighted_size(),
            entries: self.entries.entry_count(),
            max_bytes: self.max_bytes,
        }
    }

    /// The value of a derived entry (see [`ChunkCache::put_derived`]) while it is fresh,
    /// counted as a hit. A miss is not counted: the chunk lookups that follow it are.
    pub async fn get_derived(&self, key: &CacheKey) -> Option<Chunk> {
        let chunk = self.entries.get(key).await?;
        let fresh = Instant::now() < chunk.fresh_until;
        if fresh {
            self.metrics.cache_lookup("hit");
        }
        fresh.then_some(chunk)
    }

    /// Store a value computed from chunks (a resampled series part), in the same byte budget.
    /// It is fresh until `fresh_until` (the earliest freshness of those chunks) and then gone:
    /// it is never served stale, and recomputing it goes through the chunks' own refresh.
    pub async fn put_derived(
        &self,
        key: CacheKey,
        value: Arc<dyn Any + Send + Sync>,
        bytes: usize,
        fresh_until: Instant,
    ) {
        let fresh_for = fresh_until.saturating_duration_since(Instant::now());
        if fresh_for.is_zero() {
            return;
        }
        let chunk = Chunk {
            value,
            bytes: u32::try_from(bytes.saturating_add(256)).unwrap_or(u32::MAX),
            fresh_until,
            fresh_for,
            keeps_stale: false,
        };
        self.entries.insert(key, chunk).await;
    }

    pub async fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_bytes: u64) -> CacheConfig {
        CacheConfig {
            max_bytes,
            live_ttl_secs: 60,
            history_ttl_secs: 3600,
            ..CacheConfig::default()
        }
    }

    fn key(i: usize) -> CacheKey {
        CacheKey {
            account: AccountKey::new("acme", Provider::ConnectyCube, &["http://x", "secret"]),
            endpoint: "test",
            request: format!("chunk {i}"),
        }
    }

    fn chunk_of(bytes: usize) -> Fetch {
        async move {
            Ok((
                Arc::new(vec![0u8; bytes]) as Arc<dyn Any + Send + Sync>,
                bytes,
            ))
        }
        .boxed()
    }

    /// The race many subscribers waking at one expiry can hit: a caller read the expired entry,
    /// another flight then stored a fresh one and deregistered, and only then does the first
    /// caller start its flight. That flight must use the fresh entry, not call upstream.
    #[tokio::test]
    async fn a_flight_started_just_after_another_finished_uses_its_fresh_entry() {
        let cache = Arc::new(ChunkCache::new(&config(1_000_000)));
        let (_, origin) = cache
            .get(key(1), true, chunk_of(10))
            .await
            .expect("fetch succeeds");
        assert!(matches!(origin, Origin::Upstream { .. }));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let fetch = async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok((Arc::new(0u8) as Arc<dyn Any + Send + Sync>, 1))
        }
        .boxed();
        let (flight, leader) = cache.join_or_start(&key(1), true, fetch);
        assert!(leader);
        let (_, fetched) = flight.await.expect("the fresh entry");
        assert!(!fetched);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_cache_stays_under_max_bytes_when_filled_past_it() {
        let cache = Arc::new(ChunkCache::new(&config(100_000)));
        for i in 0..200 {
            cache
                .get(key(i), false, chunk_of(4_000))
                .await
                .expect("fetch succeeds");
        }
        let bytes = cache.weighted_bytes().await;
        assert!(bytes <= 100_000, "{bytes} bytes accounted");
        assert!(bytes > 50_000, "the cache is in use: {bytes}");
        assert!(
            cache.entry_count().await < 200,
            "older entries were evicted"
        );
    }

    #[tokio::test]
    async fn evictions_and_lookups_are_counted_and_the_gauges_report_the_weight() {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(ChunkCache::with_metrics(&config(100_000), metrics.clone()));
        for i in 0..60 {
            cache
                .get(key(i), false, chunk_of(4_000))
                .await
                .expect("fetch succeeds");
        }
        cache
            .get(key(59), false, chunk_of(4_000))
            .await
            .expect("hit");
        let gauges = cache.gauges().await;
        assert!(gauges.weighted_bytes <= 100_000 && gauges.weighted_bytes > 50_000);
        assert_eq!(gauges.max_bytes, 100_000);
        let text = metrics.render(gauges);
        assert!(
            text.contains("chatstats_cache_lookups_total{outcome=\"miss\"} 60"),
            "{text}"
        );
        assert!(
            text.contains("chatstats_cache_lookups_total{outcome=\"hit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chatstats_cache_evictions_total{cause=\"size\"}"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "chatstats_cache_weighted_bytes {}",
            gauges.weighted_bytes
        )));
    }

    #[tokio::test]
    async fn a_fresh_entry_is_a_hit_and_concurrent_misses_share_one_fetch() {
        let cache = Arc::new(ChunkCache::new(&config(1 << 20)));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = |fetches: Arc<std::sync::atomic::AtomicUsize>| -> Fetch {
            async move {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok((Arc::new(1u8) as Arc<dyn Any + Send + Sync>, 1))
            }
            .boxed()
        };
        let results = futures::future::join_all(
            (0..20).map(|_| cache.get(key(1), false, counted(fetches.clone()))),
        )
        .await;
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        let leaders = results
            .iter()
            .filter(|r| matches!(r, Ok((_, Origin::Upstream { .. }))))
            .count();
        assert_eq!(leaders, 1);
        let (_, origin) = cache
            .get(key(1), false, counted(fetches.clone()))
            .await
            .expect("cached");
        assert_eq!(origin, Origin::Hit);
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn an_account_key_never_prints_its_credential_fingerprint() {
        let account = AccountKey::new(
            "acme",
            Provider::HelpScout,
            &["http://x", "hs-secret-token"],
        );
        assert_eq!(format!("{account:?}"), "acme/help_scout");
        assert_ne!(
            account,
            AccountKey::new("acme", Provider::HelpScout, &["http://x", "another-token"])
        );
    }

    #[tokio::test]
    async fn a_derived_value_is_served_while_fresh_and_never_after() {
        let cache = ChunkCache::new(&config(1 << 20));
        let value = || Arc::new(42u64) as Arc<dyn Any + Send + Sync>;
        cache
            .put_derived(key(1), value(), 8, Instant::now() + Duration::from_secs(60))
            .await;
        let served = cache.get_derived(&key(1)).await.expect("fresh");
        assert_eq!(served.value.downcast::<u64>().ok().as_deref(), Some(&42));
        // Already past its freshness: not kept at all (no stale serving for derived values).
        cache.put_derived(key(2), value(), 8, Instant::now()).await;
        assert!(cache.get_derived(&key(2)).await.is_none());
        assert!(cache.get_derived(&key(3)).await.is_none());
        // Weighed in the same byte budget as the chunks.
        assert!(cache.weighted_bytes().await >= 8);
    }

    /// A fetch runs in its own task; a panic there must fail its callers with a coded error,
    /// be counted, and leave the key free for the next fetch rather than answer the same
    /// error forever.
    #[tokio::test]
    async fn a_fetch_that_panics_fails_its_callers_once_and_the_next_get_fetches_again() {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(ChunkCache::with_metrics(&config(1 << 20), metrics.clone()));
        let panicking: Fetch = async { panic!("a bug in a provider's mapping") }.boxed();
        let Err(error) = cache.get(key(1), false, panicking).await else {
            panic!("the fetch panicked, yet the get succeeded");
        };
        assert!(
            matches!(error.kind, UpstreamErrorKind::Unavailable(_)),
            "{error:?}"
        );
        assert_eq!(metrics.panics_caught(), 1);
        let (_, origin) = cache
            .get(key(1), false, chunk_of(10))
            .await
            .expect("the next fetch runs");
        assert!(matches!(origin, Origin::Upstream { .. }), "{origin:?}");
    }
}
