//! The per-client request rate limit (`[limits] requests_per_minute`, SPEC §8).
//!
//! One token bucket per key ([`RateKey`]: the client's name, or the peer IP under open access
//! and for failed authentications): it holds at most `requests_per_minute` tokens, refills
//! continuously at `requests_per_minute / 60` per second, and each request takes one. A full
//! bucket lets a client burst a minute's worth of requests at once; a client that keeps to its
//! rate is never refused. Every `/graphql` request counts, and so does every operation sent
//! over a WebSocket (see [`crate::ws`]).
//!
//! Entry point: [`RateLimiter::check`]. Two stores hold the buckets, with the same arithmetic
//! (GCRA: one "theoretical arrival time" per key, which is a token bucket in one number):
//! - **Shared** (with `[shared]`, while the tier is up): one bucket per key for all replicas,
//!   in Redis, spent by an atomic Lua script ([`SHARED_GCRA`]) in one round trip, on Redis's
//!   own clock (`TIME`), so replicas' clocks need not agree. The Redis key is
//!   `{namespace}:rate:{fingerprint}`, the fingerprint a SHA-256 of the [`RateKey`] (never an
//!   API key, not even the client's name or the peer's address in clear); it expires when the
//!   bucket is full again, so an idle client holds nothing. From [`LEASE_FROM`] requests a
//!   minute, a replica takes a client's tokens in leases of a thousandth of the budget and
//!   spends them locally, so a high limit costs one round trip per lease, not per request; a
//!   lease is taken from the shared bucket before it is spent, so the replicas together never
//!   admit more than the limit (at most one lease per replica may go unspent).
//! - **Local** (this replica only): `governor`'s keyed GCRA limiter (one atomic word per key in
//!   a sharded map). Used without `[shared]`, and as the fallback whenever the shared check
//!   gives no answer: the tier is down (answered at once), the call took longer than
//!   `fetch_timeout_ms`, or Redis refused the script. The next check tries Redis again, so
//!   limits are global again as soon as the tier is up. The local buckets are spent only while
//!   falling back: when Redis fails, each replica starts its clients on a full bucket, so a
//!   client may get up to one bucket per replica during an outage.
//!
//! **Memory.** A key whose bucket is full again is indistinguishable from a key never seen, so
//! it can be forgotten: [`RateLimiter::check_local`] sweeps such keys out once as many checks
//! have passed since the last sweep as there were keys left after it (at least
//! [`MIN_CHECKS_BETWEEN_SWEEPS`]). Each sweep costs one pass over the keys and is paid for by
//! at least as many checks, so a check costs O(1) amortized however many peers there are,
//! and the map holds at most twice the keys active within the last minute (plus one token's
//! interval, which governor keeps as a margin), plus [`MIN_CHECKS_BETWEEN_SWEEPS`].
//!
//! The local clock is a parameter ([`RateLimiter::with_clock`]) so the arithmetic is tested
//! without sleeping.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;
use sha2::{Digest, Sha256};

use crate::shared::SharedTier;

/// The fewest checks between two sweeps of idle keys: below this many keys a sweep would cost
/// more than the memory it gives back.
pub const MIN_CHECKS_BETWEEN_SWEEPS: usize = 4096;

/// The shared check: GCRA on Redis's clock, atomic because Redis runs a script alone.
///
/// `KEYS[1]`: the key's bucket, holding its theoretical arrival time (TAT) in microseconds of
/// Redis's clock. `ARGV[1]`: the emission interval (microseconds per token); `ARGV[2]`: the
/// capacity (tokens). Answers 0 when the request is admitted (and stores the new TAT, expiring
/// when the bucket is full again), else the microseconds until it would be.
pub const SHARED_GCRA: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local next_tat = tat + interval * tonumber(ARGV[3])
local allowed_at = next_tat - interval * capacity
if allowed_at > now then
  return allowed_at - now
end
local ttl_ms = math.ceil((next_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.max(ttl_ms, 1))
return 0
"#;

/// Whose bucket a request spends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// An authenticated client, by its `[[clients]] name` (never its key).
    Client(Box<str>),
    /// A peer address: under open access, and for failed authentications. `None` when the
    /// connection's address is unknown (never the case behind `axum::serve`).
    Peer(Option<IpAddr>),
}

impl RateKey {
    /// The bucket of `client` when there is one, else the peer's.
    pub fn of(client: Option<&str>, peer: Option<IpAddr>) -> RateKey {
        match client {
            Some(name) => RateKey::Client(name.into()),
            None => RateKey::Peer(peer),
        }
    }

    /// What names this key in Redis: the first 16 bytes of the SHA-256 of its display form,
    /// in hex. Replicas agree on it; Redis never sees the name or the address.
    pub fn fingerprint(&self) -> String {
        Sha256::digest(self.to_string().as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateKey::Client(name) => write!(f, "client:{name}"),
            RateKey::Peer(Some(ip)) => write!(f, "ip:{ip}"),
            RateKey::Peer(None) => f.write_str("ip:unknown"),
        }
    }
}

type Buckets<C> = governor::RateLimiter<
    RateKey,
    DashMapStateStore<RateKey, foldhash::fast::RandomState>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// The buckets of every key: shared by the replicas in Redis, or this replica's own.
pub struct RateLimiter<C: Clock = DefaultClock> {
    /// This replica's buckets: the only ones without a tier, the fallback with one.
    buckets: Buckets<C>,
    /// Checks since the last sweep of idle keys.
    checks_since_sweep: AtomicUsize,
    /// Checks to allow before the next sweep: the keys left by the last one, at least
    /// [`MIN_CHECKS_BETWEEN_SWEEPS`].
    checks_between_sweeps: AtomicUsize,
    /// One sweep at a time; a check that finds one running goes on without waiting.
    sweeping: AtomicBool,
    /// The shared tier ([`SharedTier::none`] without `[shared]`).
    shared: SharedTier,
    /// [`SHARED_GCRA`], with its SHA-1 computed once.
    script: redis::Script,
    /// `ARGV` of the script: microseconds per token, tokens per bucket, and the tokens one
    /// call takes: a lease of [`RateLimiter::lease`] tokens, or one.
    shared_args: [String; 3],
    shared_one: [String; 3],
    /// Tokens one shared call takes for this replica: 1 (exact) below [`LEASE_FROM`] a
    /// minute, else a thousandth of the minute's budget.
    lease: u64,
    /// Tokens this replica took from the shared bucket and has not spent yet, per key.
    leased: std::sync::Mutex<std::collections::HashMap<RateKey, u64, foldhash::fast::RandomState>>,
}

/// From this many requests a minute, a replica takes its clients' tokens from Redis in leases
/// of a thousandth of the budget instead of one per request: a limit that high is not there to
/// count single requests, and one Redis round trip per request would cost a busy replica a
/// third of its warm throughput (`cargo bench --bench replicas`). Below it, every request is
/// one atomic check in Redis, exact across replicas.
pub const LEASE_FROM: u32 = 2_000;

/// The most keys holding leased tokens in one replica; beyond, the leases are forgotten (their
/// tokens go unspent: never more requests than the limit, only fewer).
const MAX_LEASED_KEYS: usize = 100_000;

impl RateLimiter {
    /// `requests_per_minute` per key (0 counts as 1), on the monotonic clock, this replica's
    /// own buckets only (see [`RateLimiter::with_shared`]).
    pub fn per_minute(requests_per_minute: u32) -> RateLimiter {
        RateLimiter::with_clock(requests_per_minute, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// `requests_per_minute` per key (0 counts as 1), on `clock`.
    pub fn with_clock(requests_per_minute: u32, clock: C) -> RateLimiter<C> {
        let per_minute = NonZeroU32::new(requests_per_minute).unwrap_or(NonZeroU32::MIN);
        // Whole microseconds per token, rounded up (a limit above 60 million a minute is
        // 60 million a minute in Redis).
        let interval_us = 60_000_000u64.div_ceil(u64::from(per_minute.get()));
        let lease = if per_minute.get() < LEASE_FROM {
            1
        } else {
            u64::from(per_minute.get()) / 1000
        };
        RateLimiter {
            buckets: governor::RateLimiter::dashmap_with_clock_and_hasher(
                Quota::per_minute(per_minute),
                clock,
                foldhash::fast::RandomState::default(),
            ),
            checks_since_sweep: AtomicUsize::new(0),
            checks_between_sweeps: AtomicUsize::new(MIN_CHECKS_BETWEEN_SWEEPS),
            sweeping: AtomicBool::new(false),
            shared: SharedTier::none(),
            script: redis::Script::new(SHARED_GCRA),
            shared_args: [
                interval_us.to_string(),
                per_minute.get().to_string(),
                lease.to_string(),
            ],
            shared_one: [
                interval_us.to_string(),
                per_minute.get().to_string(),
                "1".to_owned(),
            ],
            lease,
            leased: std::sync::Mutex::default(),
        }
    }

    /// Keep the buckets in `shared` while it is up (one bucket per key for all replicas),
    /// falling back to this replica's own while it is not.
    pub fn with_shared(mut self, shared: SharedTier) -> RateLimiter<C> {
        self.shared = shared;
        self
    }

    /// Count one request of `key`: `Err(retry_after)` when over the limit. In Redis when the
    /// tier is up (one round trip, at most `fetch_timeout_ms`), else in this replica's buckets.
    pub async fn check(&self, key: &RateKey) -> Result<(), Duration> {
        match self.check_shared(key).await {
            Some(result) => result,
            None => self.check_local(key),
        }
    }

    /// The shared check; None when it gave no answer (no tier, down, slow, refused).
    async fn check_shared(&self, key: &RateKey) -> Option<Result<(), Duration>> {
        if !self.shared.is_up() {
            return None;
        }
        if self.lease > 1 && self.spend_leased(key) {
            return Some(Ok(()));
        }
        let redis_key = self.shared.key(&["rate", &key.fingerprint()]);
        let wait_us: u64 = self
            .shared
            .eval(
                &self.script,
                std::slice::from_ref(&redis_key),
                &self.shared_args,
            )
            .await?;
        if wait_us == 0 {
            if self.lease > 1 {
                self.keep_leased(key, self.lease - 1);
            }
            return Some(Ok(()));
        }
        if self.lease == 1 {
            return Some(Err(Duration::from_micros(wait_us)));
        }
        // Near the limit a whole lease no longer fits: one token may.
        let wait_us: u64 = self
            .shared
            .eval(&self.script, &[redis_key], &self.shared_one)
            .await?;
        Some(match wait_us {
            0 => Ok(()),
            wait => Err(Duration::from_micros(wait)),
        })
    }

    /// Spend one token leased earlier for `key`, if any is left.
    fn spend_leased(&self, key: &RateKey) -> bool {
        let mut leased = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        match leased.get_mut(key) {
            Some(left) if *left > 1 => {
                *left -= 1;
                true
            }
            Some(_) => {
                leased.remove(key);
                true
            }
            None => false,
        }
    }

    /// Keep `tokens` taken from the shared bucket for `key`'s next requests.
    fn keep_leased(&self, key: &RateKey, tokens: u64) {
        let mut leased = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        if leased.len() >= MAX_LEASED_KEYS {
            leased.clear();
        }
        leased.insert(key.clone(), tokens);
    }

    /// Count one request of `key` in this replica's buckets only (the fallback of
    /// [`RateLimiter::check`]): `Err(retry_after)` when over the limit.
    pub fn check_local(&self, key: &RateKey) -> Result<(), Duration> {
        let result = self
            .buckets
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.buckets.clock().now()));
        let checks = self.checks_since_sweep.fetch_add(1, Ordering::Relaxed) + 1;
        if checks >= self.checks_between_sweeps.load(Ordering::Relaxed) {
            self.sweep();
        }
        result
    }

    /// Keys holding a bucket in this replica now (idle ones included until the next sweep).
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }

    /// Forget every key whose bucket is full again, and give the memory back.
    fn sweep(&self) {
        if self
            .sweeping
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.checks_since_sweep.store(0, Ordering::Relaxed);
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
        let left = self.buckets.len();
        self.checks_between_sweeps
            .store(left.max(MIN_CHECKS_BETWEEN_SWEEPS), Ordering::Relaxed);
        self.sweeping.store(false, Ordering::Release);
    }
}

/// Whole seconds a client should wait, as sent in `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The message of a `RATE_LIMITED` error for a client that should wait `seconds`.
pub fn rate_limited_message(seconds: u64) -> String {
    format!(
        "too many requests: this client's limit ([limits] requests_per_minute) is spent; \
         retry after {seconds} s"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(per_minute: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimiter::with_clock(per_minute, clock.clone()), clock)
    }

    fn client(name: &str) -> RateKey {
        RateKey::Client(name.into())
    }

    #[test]
    fn a_full_bucket_allows_a_minute_of_requests_then_refuses() {
        let (limiter, _) = limiter(3);
        for _ in 0..3 {
            assert_eq!(limiter.check_local(&client("a")), Ok(()));
        }
        let wait = limiter
            .check_local(&client("a"))
            .expect_err("over the limit");
        // 3 per minute: one token every 20 s.
        assert_eq!(retry_after_secs(wait), 20);
        // Another key has its own bucket.
        assert_eq!(limiter.check_local(&client("b")), Ok(()));
        // A client and a peer never share one.
        let peer = RateKey::Peer(Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(limiter.check_local(&peer), Ok(()));
    }

    #[test]
    fn tokens_come_back_at_the_configured_rate() {
        let (limiter, clock) = limiter(60);
        for _ in 0..60 {
            limiter.check_local(&client("a")).expect("within the burst");
        }
        assert!(limiter.check_local(&client("a")).is_err());
        clock.advance(Duration::from_millis(500));
        let half = limiter.check_local(&client("a")).expect_err("half a token");
        assert_eq!(half, Duration::from_millis(500));
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check_local(&client("a")), Ok(()));
        assert!(limiter.check_local(&client("a")).is_err());
        // Refill stops at the capacity: an hour idle is still one minute's burst.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..60 {
            limiter.check_local(&client("a")).expect("refilled");
        }
        assert!(limiter.check_local(&client("a")).is_err());
    }

    /// A tier configured at a loopback port nothing listens on: down from the start.
    async fn unreachable_tier() -> SharedTier {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let config = crate::config::SharedConfig {
            redis_url: crate::config::Secret::new(format!("redis://127.0.0.1:{port}/0")),
            namespace: "unit".to_owned(),
            fetch_timeout_ms: 100,
            required_to_start: false,
        };
        let metrics = std::sync::Arc::new(crate::process_metrics::Metrics::new());
        SharedTier::connect(&config, metrics)
            .await
            .expect("not required to start")
    }

    #[tokio::test]
    async fn with_the_tier_down_checks_spend_this_replicas_buckets() {
        let tier = unreachable_tier().await;
        assert!(tier.is_configured() && !tier.is_up());
        let (limiter, clock) = limiter(3);
        let limiter = limiter.with_shared(tier);
        for _ in 0..3 {
            assert_eq!(limiter.check(&client("a")).await, Ok(()));
        }
        // The local arithmetic, answered at once: 3 a minute is a token every 20 s.
        let wait = limiter
            .check(&client("a"))
            .await
            .expect_err("over the limit");
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(limiter.keys(), 1, "the local buckets were spent");
        clock.advance(Duration::from_secs(20));
        assert_eq!(limiter.check(&client("a")).await, Ok(()));
    }

    #[tokio::test]
    async fn without_a_tier_check_is_check_local() {
        let (limiter, _) = limiter(1);
        assert_eq!(limiter.check(&client("a")).await, Ok(()));
        assert!(limiter.check_local(&client("a")).is_err());
        assert!(limiter.check(&client("a")).await.is_err());
    }

    #[test]
    fn the_fingerprint_names_neither_the_client_nor_the_peer() {
        let named = client("partner").fingerprint();
        assert_eq!(named.len(), 32);
        assert!(named.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!named.contains("partner"));
        assert_eq!(named, client("partner").fingerprint(), "stable");
        let peer = RateKey::Peer(Some(IpAddr::from([127, 0, 0, 1])));
        assert_ne!(peer.fingerprint(), named);
        assert_ne!(client("127.0.0.1").fingerprint(), peer.fingerprint());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    fn peer(i: u32) -> RateKey {
        RateKey::Peer(Some(IpAddr::from(i.to_be_bytes())))
    }

    #[test]
    fn idle_keys_are_forgotten_and_active_ones_kept() {
        let (limiter, clock) = limiter(1);
        for i in 0..10_000 {
            limiter.check_local(&peer(i)).expect("first request");
        }
        // Every bucket was spent within the minute: nothing can be forgotten yet, and the
        // limit still holds for each of them.
        assert!(limiter.keys() >= 10_000 - MIN_CHECKS_BETWEEN_SWEEPS);
        assert!(limiter.check_local(&peer(7)).is_err());
        // Two minutes later every bucket is full again (governor keeps a key one token's
        // interval longer, 60 s at this rate): the next sweep forgets them.
        clock.advance(Duration::from_secs(121));
        for i in 0..MIN_CHECKS_BETWEEN_SWEEPS as u32 * 3 {
            limiter.check_local(&client(&format!("c{}", i % 10))).ok();
        }
        assert!(
            limiter.keys() <= 10,
            "{} keys left, 10 active",
            limiter.keys()
        );
    }

    #[test]
    fn many_distinct_peers_keep_the_key_count_bounded() {
        // One request a minute: a peer's one request empties its bucket, which is kept until
        // it is full again, 60 s later, plus governor's margin of one token's interval (60 s).
        let (limiter, clock) = limiter(1);
        // 100,000 peers, one request each, 1,000 every 6 s: at any time the last 120 s of
        // peers (21,000) are active.
        let active = 21_000;
        for i in 0..100_000 {
            if i % 1000 == 0 {
                clock.advance(Duration::from_secs(6));
            }
            limiter.check_local(&peer(i)).expect("a first request");
            assert!(
                limiter.keys() <= 2 * active + MIN_CHECKS_BETWEEN_SWEEPS,
                "{} keys after {i} peers",
                limiter.keys()
            );
        }
        // The active ones are still limited: their buckets were not forgotten.
        assert!(limiter.keys() >= active - 2000, "{}", limiter.keys());
        assert!(limiter.check_local(&peer(99_999)).is_err(), "still limited");
    }
}
