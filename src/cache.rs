//! The shared chunk cache: one entry per provider-native chunk (a block of an endpoint's
//! history on that provider's calendar grid, or a per-range answer) per upstream account.
//!
//! Contract (what callers may rely on; a Redis tier must keep it):
//! - **Keys** are [`CacheKey`]s: the upstream account ([`AccountKey`]: the provider and a SHA-256
//!   fingerprint of its base URL, account ids and credentials), the endpoint and the request
//!   (a block index or a range) as versioned JSON ([`CacheKey::stable_text`]). Workspaces
//!   configured on the same account with the same credentials share entries; two credentials
//!   never do. No key holds a credential, `Debug` text or a process-seeded hash.
//! - **Freshness**: an entry is fresh for the live TTL when its chunk touches the present, else
//!   for the history TTL. A fresh entry is served without an upstream call.
//! - **Single flight**: concurrent misses of one key share one upstream call, also when that
//!   call fetches several blocks at once ([`ChunkCache::get_blocks`]).
//! - **Stale on error**: when a refresh fails and an older entry exists, the older entry is
//!   served, marked stale, with the error as a warning. Entries stay usable as stale for the
//!   history TTL after they stop being fresh.
//! - **Bounded by bytes**: the weigher counts each entry's approximate size; the total stays
//!   under `max_bytes` (moka evicts least-recently-used entries). Values derived from chunks
//!   (resampled series parts and whole series, [`ChunkCache::put_derived`]) are held apart, in
//!   [`DERIVED_SHARE`] of that budget: every warm series reads them, so they sit in a store
//!   whose reads cost a hash and a lock (`quick_cache`) rather than moka's bookkeeping. It has
//!   no expiry of its own: a value past its freshness is never served, and stays until its
//!   room is needed or the same key is computed again.
//! - **Shared tier** (`[shared]`, [`crate::shared`]): the second level, for callers that pass a
//!   [`Codec`]. A miss here reads Redis (the key is [`CacheKey::stable_text`] under the
//!   namespace); a value fresh there is served and kept here until the same wall-clock moment.
//!   Before fetching, a replica takes a fill lease per key and reads the keys it leased once
//!   more (another replica may have stored one and released its lease in between); keys
//!   another replica holds are waited for, at most [`FILL_LEASE`]. What is fetched is stored there for its fresh time
//!   plus the stale grace. Stale serving uses this replica's own entries only.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::notification::RemovalCause;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::CacheConfig;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::process_metrics::{CacheGauges, Metrics};
use crate::providers::Provider;
use crate::shared::SharedTier;

/// The version of the key and block-value layout. Bump it when a key's JSON or a block's
/// content changes meaning, so a shared tier never serves an entry written by older code.
pub const KEY_VERSION: u32 = 1;

/// What the account fingerprint hashes before the account's parts, so that the same strings
/// hashed elsewhere (another product, another purpose) never give the same fingerprint.
const FINGERPRINT_NAMESPACE: &[u8] = b"chatstats/upstream-account/v1";

/// Which upstream account a request is made with: the provider and a fingerprint of the
/// account's base URL, ids and credentials. Workspaces configured on the same account (same
/// parts) have equal keys and share cache entries; a different credential is a different key.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AccountKey {
    #[serde(serialize_with = "provider_slug")]
    pub provider: Provider,
    /// SHA-256 over [`FINGERPRINT_NAMESPACE`], the provider and the parts (each length-prefixed,
    /// so `["ab", "c"]` and `["a", "bc"]` differ), as hex. One-way: it cannot give back a
    /// credential, yet it is still derived from secrets and so never printed.
    #[serde(serialize_with = "as_str")]
    fingerprint: Arc<str>,
}

fn provider_slug<S: serde::Serializer>(provider: &Provider, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(provider.slug())
}

fn as_str<S: serde::Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text)
}

impl AccountKey {
    /// `parts` are the base URL, the account's ids and its credential strings; only their
    /// fingerprint is kept.
    pub fn new(provider: Provider, parts: &[&str]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_NAMESPACE);
        for part in std::iter::once(provider.slug()).chain(parts.iter().copied()) {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let fingerprint: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self {
            provider,
            fingerprint: fingerprint.into(),
        }
    }
}

impl AccountKey {
    /// `{provider}:{fingerprint}`: the account in a shared-tier key (see [`crate::shared`]).
    pub fn stable_text(&self) -> String {
        format!("{}:{}", self.provider.slug(), self.fingerprint)
    }
}

impl fmt::Debug for AccountKey {
    /// Leaves out the fingerprint: it is derived from secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} account", self.provider.slug())
    }
}

/// One upstream request (a block or a range) of one account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub account: AccountKey,
    /// The endpoint, for traces and metrics (e.g. `volume-by-channel`).
    pub endpoint: &'static str,
    /// The request's parameters as versioned JSON (see [`CacheKey::new`]).
    pub request: String,
}

impl CacheKey {
    /// The key of `request` (any serde-serializable parameters) at `endpoint` of `account`.
    pub fn new(account: &AccountKey, endpoint: &'static str, request: &impl Serialize) -> Self {
        #[derive(Serialize)]
        struct Versioned<'a, R> {
            v: u32,
            request: &'a R,
        }
        let request = serde_json::to_string(&Versioned {
            v: KEY_VERSION,
            request,
        })
        // Serializing plain data (numbers, strings, enums, instants) into a String cannot fail.
        .expect("request parameters serialize to JSON");
        Self {
            account: account.clone(),
            endpoint,
            request,
        }
    }

    /// The key of a value derived from chunks (a part resampled on a window's buckets):
    /// `request` is text unique to it. Held by this process only, never in the shared tier.
    pub fn derived(account: &AccountKey, request: String) -> Self {
        Self {
            account: account.clone(),
            endpoint: "derived",
            request,
        }
    }

    /// The key of a whole series derived from its parts' derived values (see
    /// [`crate::catalogue::compute`]): `account` is its first part's, `request` text unique to
    /// it (which names the workspace's generation, for the other parts' accounts).
    pub fn derived_series(account: &AccountKey, request: String) -> Self {
        Self {
            endpoint: "derived-series",
            ..Self::derived(account, request)
        }
    }

    /// The key of block `index` of an endpoint whose blocks share `params` (JSON text, as
    /// [`serde_json::to_string`] gives it).
    pub fn block(account: &AccountKey, endpoint: &'static str, params: &str, index: i64) -> Self {
        Self {
            account: account.clone(),
            endpoint,
            request: format!(r#"{{"v":{KEY_VERSION},"params":{params},"block":{index}}}"#),
        }
    }

    /// The key as one stable string: `chatstats:v{KEY_VERSION}:{provider}:{fingerprint}:
    /// {endpoint}:{request JSON}`; the shared tier stores the chunk under it with the namespace
    /// instead of `chatstats` and `chunk:` after it. The value stored there is
    /// [`encode_value`]'s `{"v":KEY_VERSION,"value":...}` plus `freshUntilMs`, which every
    /// chunk value round-trips through unchanged (each provider module tests one real block).
    pub fn stable_text(&self) -> String {
        format!(
            "chatstats:v{KEY_VERSION}:{}:{}:{}:{}",
            self.account.provider.slug(),
            self.account.fingerprint,
            self.endpoint,
            self.request
        )
    }
}

/// Why a stored value could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeValueError {
    /// Written by code with another value layout: the entry is a miss, never misread.
    #[error("stored value has layout version {found}, this build reads {KEY_VERSION}")]
    Version { found: u32 },
    #[error("stored value is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// A block or per-range value as the text a shared tier stores under
/// [`CacheKey::stable_text`]: `{"v":KEY_VERSION,"value":...}`. The in-process cache keeps the
/// value itself; the shared tier (Redis) stores this form with `freshUntilMs` added, and every
/// value the chunk cache keeps ([`crate::fetch::CacheValue`]) round-trips through it unchanged.
pub fn encode_value<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(&serde_json::json!({ "v": KEY_VERSION, "value": value }))
}

/// Reads back what [`encode_value`] wrote, refusing another layout version.
pub fn decode_value<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DecodeValueError> {
    #[derive(serde::Deserialize)]
    struct Versioned<T> {
        value: T,
    }
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    // The version first, so a value of another layout is reported as such, not as bad data.
    let VersionOnly { v } = serde_json::from_str(text)?;
    if v != KEY_VERSION {
        return Err(DecodeValueError::Version { found: v });
    }
    let Versioned { value } = serde_json::from_str(text)?;
    Ok(value)
}

/// How a chunk value crosses the shared tier: encode and decode of its concrete type, chosen
/// by the caller that knows the type ([`Codec::of`]); the cache itself keeps values erased.
#[derive(Clone, Copy)]
pub struct Codec {
    /// The value as JSON (the `value` of [`encode_value`]); None if it is not of the type.
    encode: fn(&(dyn Any + Send + Sync)) -> Option<String>,
    /// A stored value read back with its weight; None if it is not valid or of another layout.
    decode: fn(&str) -> Option<Decoded>,
}

/// A value read back from the shared tier: the value, its weight, and until when it is fresh
/// (Unix ms).
type Decoded = (Arc<dyn Any + Send + Sync>, usize, u64);

/// What a group's fetch stored: its keys (with their fresh time) and chunks, in order.
type FetchedGroup<'a> = (&'a [(CacheKey, Duration)], &'a [Chunk]);

impl Codec {
    /// The codec of `T`.
    pub fn of<T: crate::fetch::CacheValue>() -> Codec {
        fn encode<T: crate::fetch::CacheValue>(value: &(dyn Any + Send + Sync)) -> Option<String> {
            serde_json::to_string(value.downcast_ref::<T>()?).ok()
        }
        fn decode<T: crate::fetch::CacheValue>(text: &str) -> Option<Decoded> {
            let (value, fresh_until_ms) = decode_shared::<T>(text).ok()?;
            let bytes = value.approx_bytes();
            Some((Arc::new(value), bytes, fresh_until_ms))
        }
        Codec {
            encode: encode::<T>,
            decode: decode::<T>,
        }
    }
}

/// A value as the shared tier stores it: [`encode_value`]'s form with the wall-clock moment
/// (Unix milliseconds) it stops being fresh, `{"v":KEY_VERSION,"freshUntilMs":..,"value":..}`,
/// so every replica serves it fresh exactly as long as the one that fetched it.
fn encode_shared(value_json: &str, fresh_until_ms: u64) -> String {
    format!(r#"{{"v":{KEY_VERSION},"freshUntilMs":{fresh_until_ms},"value":{value_json}}}"#)
}

/// Reads back what [`encode_shared`] wrote: the value and its freshness bound.
fn decode_shared<T: serde::de::DeserializeOwned>(text: &str) -> Result<(T, u64), DecodeValueError> {
    #[derive(serde::Deserialize)]
    struct Stored<T> {
        #[serde(rename = "freshUntilMs")]
        fresh_until_ms: u64,
        value: T,
    }
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    let VersionOnly { v } = serde_json::from_str(text)?;
    if v != KEY_VERSION {
        return Err(DecodeValueError::Version { found: v });
    }
    let Stored {
        fresh_until_ms,
        value,
    } = serde_json::from_str(text)?;
    Ok((value, fresh_until_ms))
}

/// Now, as Unix milliseconds (the clock every replica shares, unlike `Instant`).
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long a replica holds the fill lease of a block it fetches, and so how long another
/// replica waits for that block before it fetches the block itself: the bound of single flight
/// across replicas. The lease is released as soon as the block is stored (or the fetch failed),
/// so the bound is reached only when the filler is slower than this or died mid-fetch: long
/// enough for a slow upstream with its retries (5 s made busy replicas fetch blocks another
/// replica was still fetching), short enough that a dead filler costs one wait.
pub const FILL_LEASE: Duration = Duration::from_secs(30);

/// How often a replica waiting for another's fill looks for the value.
const FILL_POLL: Duration = Duration::from_millis(15);

/// What the shared tier gave a group of keys before its fetch.
enum SharedFill {
    /// Every key had a fresh value there: no call.
    Served(Vec<Chunk>),
    /// Fetch the group; then store it there and release these leases.
    Fetch { leases: Vec<String> },
}

/// Asserts that `value` reads back equal from its stored form ([`encode_value`]).
#[cfg(test)]
pub(crate) fn assert_round_trips<T>(value: &T)
where
    T: crate::fetch::CacheValue + PartialEq + fmt::Debug,
{
    let text = encode_value(value).expect("a block value serializes");
    assert!(
        text.starts_with(&format!(r#"{{"v":{KEY_VERSION},"value":"#)),
        "{text}"
    );
    let back: T = decode_value(&text).expect("a stored value reads back");
    assert_eq!(&back, value, "{text}");
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
    /// Fetched by this caller, in the same upstream call as the block before it (the call is
    /// counted once, on its first block).
    Batched,
}

/// The fetch a miss runs. `'static` so concurrent callers can share it.
pub type Fetch = BoxFuture<'static, Result<(Arc<dyn Any + Send + Sync>, usize), UpstreamError>>;

/// The fetch of several blocks in one upstream call: one value and weight per block, in order.
pub type FetchMany =
    BoxFuture<'static, Result<Vec<(Arc<dyn Any + Send + Sync>, usize)>, UpstreamError>>;

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

/// The share of `max_bytes` that holds derived values (see [`ChunkCache::put_derived`]); the
/// chunks they are computed from have the rest.
pub const DERIVED_SHARE: f64 = 0.25;

/// The weight of a derived value: its approximate size (as the chunks' weigher).
#[derive(Clone)]
struct DerivedWeight;

impl quick_cache::Weighter<CacheKey, Chunk> for DerivedWeight {
    fn weight(&self, _key: &CacheKey, chunk: &Chunk) -> u64 {
        u64::from(chunk.bytes)
    }
}

/// Counts the derived values evicted for room in `chatstats_cache_evictions_total`.
#[derive(Clone)]
struct CountEvictions(Arc<Metrics>);

impl quick_cache::Lifecycle<CacheKey, Chunk> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _state: &mut Self::RequestState, _key: CacheKey, _chunk: Chunk) {
        self.0.cache_eviction("size");
    }
}

/// Derived values by key (see [`ChunkCache::put_derived`]).
type DerivedStore = quick_cache::sync::Cache<
    CacheKey,
    Chunk,
    DerivedWeight,
    foldhash::fast::RandomState,
    CountEvictions,
>;

/// The shared cache tier.
pub struct ChunkCache {
    entries: moka::future::Cache<CacheKey, Chunk, foldhash::fast::RandomState>,
    /// Values derived from `entries`, in their own share of the budget ([`DERIVED_SHARE`]).
    derived: DerivedStore,
    metrics: Arc<Metrics>,
    max_bytes: u64,
    inflight: Mutex<HashMap<CacheKey, InFlight>>,
    live_ttl: Duration,
    history_ttl: Duration,
    /// The Redis tier shared by replicas (a no-op without `[shared]`).
    shared: SharedTier,
}

impl ChunkCache {
    pub fn new(config: &CacheConfig) -> Self {
        Self::with_metrics(config, Arc::new(Metrics::new()))
    }

    /// As [`ChunkCache::with_metrics`], with `shared` as the second level behind this process's
    /// entries.
    pub fn with_shared_tier(
        config: &CacheConfig,
        metrics: Arc<Metrics>,
        shared: SharedTier,
    ) -> Self {
        Self {
            shared,
            ..Self::with_metrics(config, metrics)
        }
    }

    /// The shared tier (Redis) of this server, also for the request path (rate limits, APQ)
    /// and the Xenioo gate; [`SharedTier::none`] without `[shared]`.
    pub fn shared(&self) -> &SharedTier {
        &self.shared
    }

    /// As [`ChunkCache::new`], counting lookups and evictions in `metrics`.
    pub fn with_metrics(config: &CacheConfig, metrics: Arc<Metrics>) -> Self {
        let listener = metrics.clone();
        let derived_bytes = (config.max_bytes as f64 * DERIVED_SHARE) as u64;
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_bytes - derived_bytes)
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
        // A shard holds its share of the weight, and an entry heavier than that is refused: the
        // estimate (one entry per 4 KiB) keeps a small budget in one shard.
        let derived = DerivedStore::with(
            (derived_bytes / 4096).max(1) as usize,
            derived_bytes.max(1),
            DerivedWeight,
            foldhash::fast::RandomState::default(),
            CountEvictions(metrics.clone()),
        );
        Self {
            entries,
            derived,
            metrics,
            max_bytes: config.max_bytes,
            inflight: Mutex::new(HashMap::new()),
            live_ttl: config.live_ttl(),
            history_ttl: config.history_ttl(),
            shared: SharedTier::none(),
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
        self.get_with(key, live, fetch, None).await
    }

    /// As [`ChunkCache::get`]; with a `codec`, the shared tier is the second level: a miss
    /// here looks there first, and single flight extends across replicas through a fill
    /// lease (see [`FILL_LEASE`]).
    pub async fn get_with(
        self: &Arc<Self>,
        key: CacheKey,
        live: bool,
        fetch: Fetch,
        codec: Option<Codec>,
    ) -> Result<(Chunk, Origin), UpstreamError> {
        let cached = self.entries.get(&key).await;
        if let Some(chunk) = &cached {
            if Instant::now() < chunk.fresh_until {
                self.metrics.cache_lookup("hit");
                return Ok((chunk.clone(), Origin::Hit));
            }
        }
        let (shared, leader) = self.join_or_start(&key, live, fetch, codec);
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

    /// The key of `key` in the shared tier: the namespace instead of `chatstats`, then the rest
    /// of [`CacheKey::stable_text`]; `kind` is `chunk` (the value) or `fill` (the lease).
    fn shared_key(&self, kind: &str, key: &CacheKey) -> String {
        let text = key.stable_text();
        let rest = text.strip_prefix("chatstats:").unwrap_or(&text);
        self.shared.key(&[kind, rest])
    }

    /// A fresh chunk from a stored value (None when absent, unreadable or no longer fresh).
    fn chunk_from_shared(stored: Option<&[u8]>, codec: Codec) -> Option<Chunk> {
        let text = std::str::from_utf8(stored?).ok()?;
        let (value, bytes, fresh_until_ms) = (codec.decode)(text)?;
        let remaining = Duration::from_millis(fresh_until_ms.checked_sub(unix_millis())?);
        Some(Chunk {
            value,
            bytes: u32::try_from(bytes.saturating_add(256)).unwrap_or(u32::MAX),
            fresh_until: Instant::now() + remaining,
            fresh_for: remaining,
            keeps_stale: true,
        })
    }

    /// Before a group's fetch: the values the shared tier holds, or the fill leases of the
    /// missing ones; for keys another replica is filling, wait (polling, at most
    /// [`FILL_LEASE`]) for its values. Fetch when the tier is down or lacks one.
    async fn before_fetch(&self, keys: &[(CacheKey, Duration)], codec: Codec) -> SharedFill {
        let fetch_alone = SharedFill::Fetch { leases: Vec::new() };
        if !self.shared.is_up() {
            return fetch_alone;
        }
        let values: Vec<String> = keys
            .iter()
            .map(|(k, _)| self.shared_key("chunk", k))
            .collect();
        let Some(stored) = self.shared.get_many(&values).await else {
            return fetch_alone;
        };
        let mut found: Vec<Option<Chunk>> = stored
            .iter()
            .map(|s| Self::chunk_from_shared(s.as_deref(), codec))
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if missing.is_empty() {
            return SharedFill::Served(found.into_iter().flatten().collect());
        }
        let leases: Vec<String> = missing
            .iter()
            .map(|&i| self.shared_key("fill", &keys[i].0))
            .collect();
        let Some(taken) = self.shared.lease_many(&leases, FILL_LEASE).await else {
            return fetch_alone;
        };
        let leased: Vec<(usize, String)> = missing
            .iter()
            .zip(&leases)
            .zip(&taken)
            .filter(|(_, taken)| **taken)
            .map(|((&i, lease), _)| (i, lease.clone()))
            .collect();
        // Another replica may have stored a value and released its lease between the read
        // above and these leases: read what we leased again, and fetch only what is still
        // missing.
        let mut ours = Vec::new();
        if !leased.is_empty() {
            let wanted: Vec<String> = leased.iter().map(|(i, _)| values[*i].clone()).collect();
            let stored = self.shared.get_many(&wanted).await.unwrap_or_default();
            let mut filled = Vec::new();
            for (n, (i, lease)) in leased.into_iter().enumerate() {
                let stored = stored.get(n).and_then(|s| s.as_deref());
                match Self::chunk_from_shared(stored, codec) {
                    Some(chunk) => {
                        found[i] = Some(chunk);
                        filled.push(lease);
                    }
                    None => ours.push(lease),
                }
            }
            if !filled.is_empty() {
                self.shared.release(&filled).await;
            }
        }
        // Another replica is fetching these: wait for its values.
        let mut waiting: Vec<(usize, String)> = missing
            .iter()
            .zip(leases)
            .zip(&taken)
            .filter(|(_, taken)| !**taken)
            .map(|((&i, lease), _)| (i, lease))
            .collect();
        let deadline = Instant::now() + FILL_LEASE;
        while !waiting.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(FILL_POLL).await;
            let wanted: Vec<String> = waiting.iter().map(|(i, _)| values[*i].clone()).collect();
            let held: Vec<String> = waiting.iter().map(|(_, lease)| lease.clone()).collect();
            let Some((stored, exists)) = self.shared.values_and_leases(&wanted, &held).await else {
                break;
            };
            let mut still = Vec::new();
            for (((i, lease), stored), exists) in waiting.into_iter().zip(stored).zip(exists) {
                match Self::chunk_from_shared(stored.as_deref(), codec) {
                    Some(chunk) => found[i] = Some(chunk),
                    // The filler gave up (its fetch failed): stop waiting for this one.
                    None if !exists => {}
                    None => still.push((i, lease)),
                }
            }
            waiting = still;
        }
        if found.iter().all(Option::is_some) {
            self.shared.release(&ours).await;
            return SharedFill::Served(found.into_iter().flatten().collect());
        }
        SharedFill::Fetch { leases: ours }
    }

    /// After a group's fetch: store what it fetched in the shared tier (TTL: fresh time plus
    /// the stale grace, as here) and release the group's leases.
    async fn after_fetch(
        &self,
        fetched: Option<FetchedGroup<'_>>,
        leases: &[String],
        codec: Codec,
    ) {
        if let Some((keys, chunks)) = fetched {
            if self.shared.is_up() {
                let now_ms = unix_millis();
                let mut by_ttl: HashMap<Duration, Vec<(String, Vec<u8>)>> = HashMap::new();
                for ((key, fresh_for), chunk) in keys.iter().zip(chunks) {
                    let Some(json) = (codec.encode)(chunk.value.as_ref()) else {
                        continue;
                    };
                    let fresh_until_ms =
                        now_ms.saturating_add(u64::try_from(fresh_for.as_millis()).unwrap_or(0));
                    by_ttl
                        .entry(*fresh_for + self.history_ttl)
                        .or_default()
                        .push((
                            self.shared_key("chunk", key),
                            encode_shared(&json, fresh_until_ms).into_bytes(),
                        ));
                }
                for (ttl, entries) in by_ttl {
                    self.shared.set_many_px(entries, ttl).await;
                }
            }
        }
        self.shared.release(leases).await;
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
        codec: Option<Codec>,
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
            let group = [(task_key.clone(), fresh_for)];
            let mut leases = Vec::new();
            if let Some(codec) = codec {
                match this.before_fetch(&group, codec).await {
                    SharedFill::Served(chunks) => {
                        let served = chunks.into_iter().next();
                        if let Some(chunk) = &served {
                            this.entries.insert(task_key.clone(), chunk.clone()).await;
                        }
                        this.inflight
                            .lock()
                            .expect("inflight lock is never poisoned")
                            .remove(&task_key);
                        if let Some(chunk) = served {
                            return Ok((chunk, false));
                        }
                    }
                    SharedFill::Fetch { leases: ours } => leases = ours,
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
            if let Some(codec) = codec {
                let fetched = result.as_ref().ok().map(std::slice::from_ref);
                this.after_fetch(fetched.map(|c| (&group[..], c)), &leases, codec)
                    .await;
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

    /// The blocks `keys` (each with its live flag: it touches the present) of one endpoint:
    /// fresh ones from the cache, those another caller is fetching joined, and the missing rest
    /// fetched with the calls `plan` chooses: it groups the positions (in `keys`) of the missing
    /// blocks into upstream calls, and `fetch` makes one call for a group, returning one value
    /// per block in the group's order. Each block of a call is stored as its own entry and is in
    /// flight under its own key while the call runs, so concurrent callers share the call block
    /// by block (single flight), whichever blocks they ask for.
    ///
    /// One result per key, in order. The first block of a call reports the call
    /// ([`Origin::Upstream`]), the others [`Origin::Batched`].
    pub async fn get_blocks(
        self: &Arc<Self>,
        keys: &[(CacheKey, bool)],
        plan: impl FnOnce(&[usize]) -> Vec<Vec<usize>>,
        fetch: impl Fn(&[usize]) -> FetchMany,
    ) -> Vec<Result<(Chunk, Origin), UpstreamError>> {
        self.get_blocks_with(keys, plan, fetch, None).await
    }

    /// As [`ChunkCache::get_blocks`]; with a `codec`, the shared tier is the second level of
    /// each planned call's blocks: all found there (or filled meanwhile by the replica holding
    /// their lease) means no call; else the call is made, at most once per planned group.
    pub async fn get_blocks_with(
        self: &Arc<Self>,
        keys: &[(CacheKey, bool)],
        plan: impl FnOnce(&[usize]) -> Vec<Vec<usize>>,
        fetch: impl Fn(&[usize]) -> FetchMany,
        codec: Option<Codec>,
    ) -> Vec<Result<(Chunk, Origin), UpstreamError>> {
        #[derive(Clone, Copy)]
        enum Role {
            /// First block of a call this caller started.
            Leader,
            /// A later block of that call.
            Batched,
            /// A block of another caller's call.
            Joined,
        }
        let mut cached: Vec<Option<Chunk>> = Vec::with_capacity(keys.len());
        for (key, _) in keys {
            cached.push(self.entries.get(key).await);
        }
        let now = Instant::now();
        let is_fresh = |chunk: &Option<Chunk>| chunk.as_ref().is_some_and(|c| now < c.fresh_until);
        let mut waits: Vec<Option<(InFlight, Role)>> = keys.iter().map(|_| None).collect();
        {
            let mut inflight = self
                .inflight
                .lock()
                .expect("inflight lock is never poisoned");
            let mut missing = Vec::new();
            for (i, (key, _)) in keys.iter().enumerate() {
                if is_fresh(&cached[i]) {
                    continue;
                }
                match inflight.get(key) {
                    Some(shared) => waits[i] = Some((shared.clone(), Role::Joined)),
                    None => missing.push(i),
                }
            }
            let groups = if missing.is_empty() {
                Vec::new()
            } else {
                plan(&missing)
            };
            for group in groups {
                let Some(&first) = group.first() else {
                    continue;
                };
                let provider = keys[first].0.account.provider;
                let group_keys: Vec<(CacheKey, Duration)> = group
                    .iter()
                    .map(|&i| {
                        let (key, live) = &keys[i];
                        let ttl = if *live {
                            self.live_ttl
                        } else {
                            self.history_ttl
                        };
                        (key.clone(), ttl)
                    })
                    .collect();
                let call = fetch(&group);
                let this = Arc::clone(self);
                let task = tokio::spawn(async move {
                    // As in `join_or_start`: a flight of these blocks may have stored them and
                    // deregistered between this caller's lookup and its taking the lock.
                    let mut stored = Vec::with_capacity(group_keys.len());
                    for (key, _) in &group_keys {
                        match this.entries.get(key).await {
                            Some(chunk) if Instant::now() < chunk.fresh_until => stored.push(chunk),
                            _ => break,
                        }
                    }
                    let mut leases = Vec::new();
                    let mut served = None;
                    if stored.len() < group_keys.len() {
                        if let Some(codec) = codec {
                            match this.before_fetch(&group_keys, codec).await {
                                SharedFill::Served(chunks) => {
                                    for ((key, _), chunk) in group_keys.iter().zip(&chunks) {
                                        this.entries.insert(key.clone(), chunk.clone()).await;
                                    }
                                    served = Some(chunks);
                                }
                                SharedFill::Fetch { leases: ours } => leases = ours,
                            }
                        }
                    }
                    let result = if stored.len() == group_keys.len() {
                        Ok((stored, false))
                    } else if let Some(chunks) = served {
                        Ok((chunks, false))
                    } else {
                        match call.await {
                            Ok(values) if values.len() == group_keys.len() => {
                                let mut chunks = Vec::with_capacity(values.len());
                                for ((key, fresh_for), (value, bytes)) in
                                    group_keys.iter().zip(values)
                                {
                                    let chunk = Chunk {
                                        value,
                                        bytes: u32::try_from(bytes.saturating_add(256))
                                            .unwrap_or(u32::MAX),
                                        fresh_until: Instant::now() + *fresh_for,
                                        fresh_for: *fresh_for,
                                        keeps_stale: true,
                                    };
                                    this.entries.insert(key.clone(), chunk.clone()).await;
                                    chunks.push(chunk);
                                }
                                Ok((chunks, true))
                            }
                            Ok(values) => Err(UpstreamError::new(
                                provider,
                                UpstreamErrorKind::Invalid(format!(
                                    "internal: a call for {} blocks gave {}",
                                    group_keys.len(),
                                    values.len()
                                )),
                            )),
                            Err(error) => Err(error),
                        }
                    };
                    if let Some(codec) = codec {
                        let fetched = match &result {
                            Ok((chunks, true)) => Some((&group_keys[..], &chunks[..])),
                            _ => None,
                        };
                        this.after_fetch(fetched, &leases, codec).await;
                    }
                    let mut inflight = this
                        .inflight
                        .lock()
                        .expect("inflight lock is never poisoned");
                    for (key, _) in &group_keys {
                        inflight.remove(key);
                    }
                    result
                });
                let cache = Arc::clone(self);
                let stopped_keys: Vec<CacheKey> =
                    group.iter().map(|&i| keys[i].0.clone()).collect();
                let call_shared = async move {
                    task.await.unwrap_or_else(|stopped| {
                        // As in `join_or_start`: a task that panicked did not deregister its
                        // blocks, whose finished flights would answer this error forever.
                        let mut inflight = cache
                            .inflight
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        for key in &stopped_keys {
                            inflight.remove(key);
                        }
                        drop(inflight);
                        if stopped.is_panic() {
                            cache.metrics.panic_caught();
                        }
                        Err(UpstreamError::new(
                            provider,
                            UpstreamErrorKind::Unavailable(
                                "the fetch task stopped unexpectedly".into(),
                            ),
                        ))
                    })
                }
                .boxed()
                .shared();
                for (position, &i) in group.iter().enumerate() {
                    let block: InFlight = call_shared
                        .clone()
                        .map(move |result| {
                            result.map(|(chunks, fetched)| (chunks[position].clone(), fetched))
                        })
                        .boxed()
                        .shared();
                    inflight.insert(keys[i].0.clone(), block.clone());
                    let role = if position == 0 {
                        Role::Leader
                    } else {
                        Role::Batched
                    };
                    waits[i] = Some((block, role));
                }
            }
        }
        let started = Instant::now();
        let awaited = futures::future::join_all(waits.into_iter().map(|wait| async move {
            match wait {
                Some((flight, role)) => Some((flight.await, role, started.elapsed())),
                None => None,
            }
        }))
        .await;
        keys.iter()
            .zip(cached)
            .zip(awaited)
            .map(|(((key, _), cached), awaited)| {
                let Some((result, role, latency)) = awaited else {
                    return match cached {
                        Some(chunk) if now < chunk.fresh_until => {
                            self.metrics.cache_lookup("hit");
                            Ok((chunk, Origin::Hit))
                        }
                        _ => Err(UpstreamError::new(
                            key.account.provider,
                            UpstreamErrorKind::Invalid(format!(
                                "internal: no call was planned for a {} block",
                                key.endpoint
                            )),
                        )),
                    };
                };
                let (outcome, origin) = match (result, role) {
                    (Ok((chunk, true)), Role::Leader) => {
                        ("miss", Ok((chunk, Origin::Upstream { latency })))
                    }
                    (Ok((chunk, true)), Role::Batched) => ("miss", Ok((chunk, Origin::Batched))),
                    (Ok((chunk, false)), Role::Leader | Role::Batched) => {
                        ("hit", Ok((chunk, Origin::Hit)))
                    }
                    (Ok((chunk, _)), Role::Joined) => ("coalesced", Ok((chunk, Origin::Coalesced))),
                    (Err(error), _) => match cached {
                        Some(chunk) => ("stale", Ok((chunk, Origin::Stale { warning: error }))),
                        None => ("error", Err(error)),
                    },
                };
                self.metrics.cache_lookup(outcome);
                origin
            })
            .collect()
    }

    /// Bytes accounted by the weigher (after pending maintenance).
    pub async fn weighted_bytes(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size() + self.derived.weight()
    }

    /// The gauges `/metrics` reports (after pending maintenance).
    pub async fn gauges(&self) -> CacheGauges {
        self.entries.run_pending_tasks().await;
        CacheGauges {
            weighted_bytes: self.entries.weighted_size() + self.derived.weight(),
            entries: self.entries.entry_count() + self.derived.len() as u64,
            max_bytes: self.max_bytes,
        }
    }

    /// The value of a derived entry (see [`ChunkCache::put_derived`]) while it is fresh,
    /// counted as a hit. A miss is not counted: the chunk lookups that follow it are.
    pub fn get_derived(&self, key: &CacheKey) -> Option<Chunk> {
        let chunk = self.derived.get(key)?;
        let fresh = Instant::now() < chunk.fresh_until;
        if fresh {
            self.metrics.cache_lookup("hit");
        }
        fresh.then_some(chunk)
    }

    /// Store a value computed from chunks (a resampled series part, a whole series), in the
    /// derived values' share of the byte budget ([`DERIVED_SHARE`]).
    /// It is fresh until `fresh_until` (the earliest freshness of those chunks) and then gone:
    /// it is never served stale, and recomputing it goes through the chunks' own refresh.
    pub fn put_derived(
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
        self.derived.insert(key, chunk);
    }

    pub async fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count() + self.derived.len() as u64
    }

    /// Drop every entry of the `accounts` a configuration reload removed (see
    /// [`crate::app::Reloader`]); returns how many were dropped.
    pub async fn forget_accounts(&self, accounts: &std::collections::HashSet<AccountKey>) -> u64 {
        if accounts.is_empty() {
            return 0;
        }
        let doomed: Vec<Arc<CacheKey>> = self
            .entries
            .iter()
            .filter(|(key, _)| accounts.contains(&key.account))
            .map(|(key, _)| key)
            .collect();
        for key in &doomed {
            self.entries.invalidate(key.as_ref()).await;
        }
        let derived = self.derived.len();
        self.derived
            .retain(|key, _| !accounts.contains(&key.account));
        (doomed.len() + derived - self.derived.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_value_reads_back_with_its_freshness_and_refuses_another_layout() {
        let codec = Codec::of::<Vec<f64>>();
        let value: Arc<dyn Any + Send + Sync> = Arc::new(vec![1.5, 2.0]);
        let json = (codec.encode)(value.as_ref()).expect("a Vec<f64> encodes");
        let later = unix_millis() + 60_000;
        let text = encode_shared(&json, later);
        let chunk = ChunkCache::chunk_from_shared(Some(text.as_bytes()), codec).expect("fresh");
        assert_eq!(
            chunk.value.downcast_ref::<Vec<f64>>(),
            Some(&vec![1.5, 2.0])
        );
        let left = chunk
            .fresh_until()
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(60));
        // No longer fresh: a miss, so the replica fetches (or waits for a fill).
        let past = encode_shared(&json, unix_millis().saturating_sub(1));
        assert!(ChunkCache::chunk_from_shared(Some(past.as_bytes()), codec).is_none());
        // Another layout version, another type, or garbage: a miss, never a misread.
        let other = text.replacen(&format!("\"v\":{KEY_VERSION}"), "\"v\":999", 1);
        assert!(ChunkCache::chunk_from_shared(Some(other.as_bytes()), codec).is_none());
        let strings = Codec::of::<Vec<String>>();
        assert!(ChunkCache::chunk_from_shared(Some(text.as_bytes()), strings).is_none());
        assert!(ChunkCache::chunk_from_shared(Some(b"\xff{"), codec).is_none());
        assert!((strings.encode)(value.as_ref()).is_none());
    }

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
            account: AccountKey::new(Provider::ConnectyCube, &["http://x", "secret"]),
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
        let (flight, leader) = cache.join_or_start(&key(1), true, fetch, None);
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
        let account = AccountKey::new(Provider::HelpScout, &["http://x", "hs-secret-token"]);
        assert_eq!(format!("{account:?}"), "help_scout account");
        assert_ne!(
            account,
            AccountKey::new(Provider::HelpScout, &["http://x", "another-token"])
        );
        let key = CacheKey::new(&account, "volume-by-channel", &7);
        assert!(!key.stable_text().contains("hs-secret-token"));
        assert!(!format!("{key:?}").contains(&*account.fingerprint));
    }

    #[tokio::test]
    async fn a_derived_value_is_served_while_fresh_and_never_after() {
        let cache = ChunkCache::new(&config(1 << 20));
        let value = || Arc::new(42u64) as Arc<dyn Any + Send + Sync>;
        cache.put_derived(key(1), value(), 8, Instant::now() + Duration::from_secs(60));
        let served = cache.get_derived(&key(1)).expect("fresh");
        assert_eq!(served.value.downcast::<u64>().ok().as_deref(), Some(&42));
        // Already past its freshness: not kept at all (no stale serving for derived values).
        cache.put_derived(key(2), value(), 8, Instant::now());
        assert!(cache.get_derived(&key(2)).is_none());
        assert!(cache.get_derived(&key(3)).is_none());
        // Weighed in the cache's byte budget.
        assert!(cache.weighted_bytes().await >= 8);
    }

    /// Derived values have their own share of the budget: past it, the least useful are
    /// evicted and counted; a reload that removes an account drops that account's values.
    #[tokio::test]
    async fn derived_values_stay_in_their_share_and_go_with_their_account() {
        let metrics = Arc::new(Metrics::new());
        let cache = ChunkCache::with_metrics(&config(40_000), metrics.clone());
        let fresh = Instant::now() + Duration::from_secs(60);
        let value = || Arc::new(0u64) as Arc<dyn Any + Send + Sync>;
        // Each weighs 1,000 + 256 bytes: a quarter of 40,000 bytes holds 7 of them.
        for i in 0..20 {
            cache.put_derived(key(i), value(), 1_000, fresh);
        }
        let held = (0..20)
            .filter(|i| cache.get_derived(&key(*i)).is_some())
            .count();
        assert!((1..=7).contains(&held), "{held} held");
        assert!(cache.weighted_bytes().await <= (40_000.0 * DERIVED_SHARE) as u64);
        let text = metrics.render(cache.gauges().await);
        assert!(
            text.contains("chatstats_cache_evictions_total{cause=\"size\"} 13"),
            "{text}"
        );

        let other = AccountKey::new(Provider::HelpScout, &["http://y", "other"]);
        let kept = CacheKey::derived(&other, "kept".into());
        cache.put_derived(kept.clone(), value(), 8, fresh);
        let removed = std::collections::HashSet::from([key(0).account]);
        assert_eq!(cache.forget_accounts(&removed).await, held as u64);
        assert!((0..20).all(|i| cache.get_derived(&key(i)).is_none()));
        assert!(cache.get_derived(&kept).is_some());
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

    fn block_key(i: i64) -> (CacheKey, bool) {
        let account = AccountKey::new(Provider::ConnectyCube, &["http://x", "secret"]);
        (CacheKey::block(&account, "test-blocks", "{}", i), false)
    }

    /// A fetch of the blocks at `positions` of `keys` (each block's value is its index),
    /// counting calls and the blocks asked for.
    fn counting_fetch(
        keys: &[(CacheKey, bool)],
        calls: &Arc<Mutex<Vec<Vec<i64>>>>,
        fail: bool,
    ) -> impl Fn(&[usize]) -> FetchMany {
        let indices: Vec<i64> = keys
            .iter()
            .map(|(key, _)| {
                key.request
                    .rsplit(':')
                    .next()
                    .and_then(|tail| tail.trim_end_matches('}').parse().ok())
                    .expect("a block key")
            })
            .collect();
        let calls = calls.clone();
        move |positions: &[usize]| {
            let blocks: Vec<i64> = positions.iter().map(|&p| indices[p]).collect();
            calls.lock().expect("test lock").push(blocks.clone());
            async move {
                tokio::task::yield_now().await;
                if fail {
                    return Err(UpstreamError::new(
                        Provider::ConnectyCube,
                        UpstreamErrorKind::Unavailable("down".into()),
                    ));
                }
                Ok(blocks
                    .into_iter()
                    .map(|b| (Arc::new(b) as Arc<dyn Any + Send + Sync>, 8))
                    .collect())
            }
            .boxed()
        }
    }

    fn all_in_one_call(missing: &[usize]) -> Vec<Vec<usize>> {
        vec![missing.to_vec()]
    }

    fn value_of(result: &Result<(Chunk, Origin), UpstreamError>) -> i64 {
        let (chunk, _) = result.as_ref().expect("a block");
        *chunk.value.clone().downcast::<i64>().expect("an i64 block")
    }

    #[tokio::test]
    async fn blocks_of_one_call_are_stored_one_by_one_and_concurrent_callers_share_it_block_by_block(
    ) {
        let cache = Arc::new(ChunkCache::new(&config(1 << 20)));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let first: Vec<_> = (1..=3).map(block_key).collect();
        let second: Vec<_> = (2..=4).map(block_key).collect();
        let (a, b) = futures::join!(
            cache.get_blocks(
                &first,
                all_in_one_call,
                counting_fetch(&first, &calls, false)
            ),
            cache.get_blocks(
                &second,
                all_in_one_call,
                counting_fetch(&second, &calls, false)
            ),
        );
        assert_eq!(
            *calls.lock().expect("test lock"),
            vec![vec![1, 2, 3], vec![4]],
            "the second caller joined blocks 2 and 3 and fetched only 4"
        );
        assert_eq!(a.iter().map(value_of).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(b.iter().map(value_of).collect::<Vec<_>>(), [2, 3, 4]);
        let origins: Vec<Origin> = a.into_iter().map(|r| r.expect("a block").1).collect();
        assert!(matches!(origins[0], Origin::Upstream { .. }));
        assert_eq!(origins[1..], [Origin::Batched, Origin::Batched]);
        assert_eq!(b[0].as_ref().expect("a block").1, Origin::Coalesced);

        let all: Vec<_> = (1..=4).map(block_key).collect();
        let warm = cache
            .get_blocks(&all, all_in_one_call, counting_fetch(&all, &calls, false))
            .await;
        assert!(warm
            .iter()
            .all(|r| r.as_ref().expect("a block").1 == Origin::Hit));
        assert_eq!(
            calls.lock().expect("test lock").len(),
            2,
            "no call when warm"
        );
    }

    #[tokio::test]
    async fn a_failed_call_serves_its_older_blocks_as_stale_and_fails_the_new_ones() {
        let cache = Arc::new(ChunkCache::new(&CacheConfig {
            live_ttl_secs: 0,
            ..config(1 << 20)
        }));
        let calls = Arc::new(Mutex::new(Vec::new()));
        // Live blocks with a zero TTL: stored, but no longer fresh.
        let old: Vec<_> = (1..=2).map(|i| (block_key(i).0, true)).collect();
        cache
            .get_blocks(&old, all_in_one_call, counting_fetch(&old, &calls, false))
            .await;
        let wider: Vec<_> = (1..=3).map(|i| (block_key(i).0, true)).collect();
        let results = cache
            .get_blocks(
                &wider,
                all_in_one_call,
                counting_fetch(&wider, &calls, true),
            )
            .await;
        assert_eq!(
            calls.lock().expect("test lock").len(),
            2,
            "the refresh was tried"
        );
        for result in &results[..2] {
            assert!(matches!(result, Ok((_, Origin::Stale { .. }))));
        }
        assert_eq!(value_of(&results[1]), 2);
        assert!(results[2].is_err(), "block 3 was never fetched");
    }

    #[test]
    fn keys_are_stable_versioned_text_and_an_account_is_shared_by_equal_credentials_only() {
        let account = AccountKey::new(Provider::ConnectyCube, &["http://x", "secret"]);
        // The contract a shared tier stores: the same on every process and every run.
        assert_eq!(
            CacheKey::new(&account, "messages/sent-total", &("a", 1)).stable_text(),
            "chatstats:v1:connectycube:\
             4968a662913a975a67afeb6eee352e7e9177aa3d73cf30eac43cd3c89715735d:\
             messages/sent-total:{\"v\":1,\"request\":[\"a\",1]}"
        );
        assert_eq!(
            block_key(7).0.stable_text(),
            "chatstats:v1:connectycube:\
             4968a662913a975a67afeb6eee352e7e9177aa3d73cf30eac43cd3c89715735d:\
             test-blocks:{\"v\":1,\"params\":{},\"block\":7}"
        );
        // Two workspaces on one account share; parts that only concatenate alike do not.
        assert_eq!(
            account,
            AccountKey::new(Provider::ConnectyCube, &["http://x", "secret"])
        );
        assert_ne!(
            AccountKey::new(Provider::ConnectyCube, &["http://xs", "ecret"]),
            account
        );
        assert_ne!(
            AccountKey::new(Provider::HelpScout, &["http://x", "secret"]),
            account
        );
    }

    #[test]
    fn a_stored_value_of_another_layout_version_is_refused_not_misread() {
        let current = encode_value(&vec![1.5_f64, 2.0]).expect("serializes");
        assert_eq!(
            current,
            format!(r#"{{"v":{KEY_VERSION},"value":[1.5,2.0]}}"#)
        );
        let read: Vec<f64> = decode_value(&current).expect("reads back");
        assert_eq!(read, vec![1.5, 2.0]);

        let older = format!(r#"{{"v":{},"value":[1.5,2.0]}}"#, KEY_VERSION + 1);
        assert!(matches!(
            decode_value::<Vec<f64>>(&older),
            Err(DecodeValueError::Version { found }) if found == KEY_VERSION + 1
        ));
        assert!(matches!(
            decode_value::<Vec<f64>>(&format!(r#"{{"v":{KEY_VERSION}}}"#)),
            Err(DecodeValueError::Invalid(_))
        ));
    }
}
