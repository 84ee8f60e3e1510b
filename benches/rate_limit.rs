//! The request-rate limiter with many distinct keys (issue 13, item 4): does a check cost the
//! same with 1,000 peers as with 100,000, and does the limiter's memory stay bounded when a
//! million distinct peers come and go?
//!
//! Run it with `cargo bench --bench rate_limit` (a release build; no server, no network). It
//! prints, per key count, the nanoseconds per check (first requests, which insert a key, and
//! repeated ones), the keys the limiter holds, and the process's RSS; then a churn run in which
//! every request comes from a new peer. Every loop is bounded in count.
//!
//! Then the check with the shared tier (issue 12): it starts its own `redis-server` (on a free
//! loopback port, persistence off; `REDIS_SERVER` names the binary, default
//! `/usr/bin/redis-server`; skipped with a note when there is none) and compares a check in
//! Redis (one Lua script round trip) with the local one, one at a time and from concurrent tasks.
//! `cargo bench --bench rate_limit -- shared` runs that case alone.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatstats::rate_limit::{RateKey, RateLimiter, MIN_CHECKS_BETWEEN_SWEEPS};
use chatstats::shared::SharedTier;

/// Checks in each repeated-request run, whatever the key count.
const REPEATED_CHECKS: u64 = 2_000_000;

/// Distinct peers in the churn run.
const CHURN_PEERS: u64 = 1_000_000;

fn peer(i: u64) -> RateKey {
    // IPv6, so a million peers are a million distinct addresses.
    RateKey::Peer(Some(IpAddr::V6(Ipv6Addr::from(
        u128::from(i) | (0xfd << 120),
    ))))
}

/// This process's resident set, in MiB (`VmRSS`), when /proc tells it.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn per_check(elapsed: Duration, checks: u64) -> f64 {
    elapsed.as_nanos() as f64 / checks as f64
}

fn mib(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

/// The same access pattern on a plain `HashMap` of a counter per key: what any per-key state
/// costs once the keys outgrow the CPU caches, to compare the limiter with.
fn hash_map_lookup(peers: u64) -> f64 {
    let mut counts: HashMap<RateKey, u64, foldhash::fast::RandomState> = HashMap::default();
    for i in 0..peers {
        counts.insert(peer(i), 0);
    }
    let started = Instant::now();
    for n in 0..REPEATED_CHECKS {
        if let Some(count) = counts.get_mut(black_box(&peer(n % peers))) {
            *count += 1;
        }
    }
    black_box(&counts);
    per_check(started.elapsed(), REPEATED_CHECKS)
}

/// The limiter this one replaced (one mutex-guarded map of token buckets, every key swept on
/// each new key once it held 10,000), kept here only to measure what it cost.
mod former {
    use std::collections::HashMap;
    use std::time::Instant;

    const MAX_KEYS: usize = 10_000;

    pub struct Bucket {
        tokens: f64,
        updated: Instant,
    }

    impl Bucket {
        fn refill(&mut self, per_minute: f64, now: Instant) {
            let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
            self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(per_minute);
            self.updated = self.updated.max(now);
        }
    }

    pub struct Limiter {
        pub per_minute: f64,
        pub buckets: HashMap<String, Bucket>,
    }

    impl Limiter {
        pub fn check(&mut self, key: &str, now: Instant) -> bool {
            let per_minute = self.per_minute;
            if self.buckets.len() >= MAX_KEYS && !self.buckets.contains_key(key) {
                self.buckets.retain(|_, b| {
                    b.refill(per_minute, now);
                    b.tokens < per_minute
                });
            }
            let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
                tokens: per_minute,
                updated: now,
            });
            bucket.refill(per_minute, now);
            let admitted = bucket.tokens >= 1.0;
            if admitted {
                bucket.tokens -= 1.0;
            }
            admitted
        }
    }
}

/// First requests of `peers` distinct peers on the former limiter, ns per check of the peers
/// after the first 10,000.
fn former_first_requests(peers: u64) -> f64 {
    let mut limiter = former::Limiter {
        per_minute: 1.0,
        buckets: HashMap::new(),
    };
    for i in 0..10_000 {
        limiter.check(&peer(i).to_string(), Instant::now());
    }
    let started = Instant::now();
    for i in 10_000..peers {
        black_box(limiter.check(&peer(i).to_string(), Instant::now()));
    }
    per_check(started.elapsed(), peers - 10_000)
}

fn main() -> ExitCode {
    // `cargo bench --bench rate_limit -- shared`: the shared-tier case only.
    if std::env::args().skip(1).any(|arg| arg == "shared") {
        return match shared_case() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shared tier case: {error}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "| peers | first request ns/check | repeated ns/check | plain HashMap ns/lookup (baseline) | keys held | RSS MiB before → after |"
    );
    println!("|---|---|---|---|---|---|");
    let mut repeated = Vec::new();
    for peers in [1_000u64, 10_000, 100_000] {
        // One request a minute: each peer's first request empties its bucket, so no key can
        // be forgotten during the run: the worst case for memory and for the map's size.
        let limiter = RateLimiter::per_minute(1);
        let before = rss_mib();
        let started = Instant::now();
        for i in 0..peers {
            if limiter.check_local(&peer(i)).is_err() {
                eprintln!("a first request of peer {i} was refused");
                return ExitCode::FAILURE;
            }
        }
        let first = per_check(started.elapsed(), peers);
        let started = Instant::now();
        let mut refused = 0u64;
        for n in 0..REPEATED_CHECKS {
            refused += u64::from(black_box(limiter.check_local(&peer(n % peers))).is_err());
        }
        let again = per_check(started.elapsed(), REPEATED_CHECKS);
        if refused != REPEATED_CHECKS {
            eprintln!(
                "{} repeated requests were admitted",
                REPEATED_CHECKS - refused
            );
            return ExitCode::FAILURE;
        }
        repeated.push(again);
        let baseline = hash_map_lookup(peers);
        println!(
            "| {peers} | {first:.0} | {again:.0} | {baseline:.0} | {} | {} → {} |",
            limiter.keys(),
            mib(before),
            mib(rss_mib())
        );
    }

    // Churn: a million peers, one request each, as fast as one core sends them, at 60,000 a
    // minute per key (a one-request bucket is full again after 1 ms): keys are forgotten as
    // they go idle, so the map holds the last few milliseconds of peers, not all of them.
    let limiter = RateLimiter::per_minute(60_000);
    let before = rss_mib();
    let mut most = 0;
    let started = Instant::now();
    for i in 0..CHURN_PEERS {
        let _ = black_box(limiter.check_local(&peer(i)));
        if i % 1024 == 0 {
            most = most.max(limiter.keys());
        }
    }
    let churn = per_check(started.elapsed(), CHURN_PEERS);
    println!();
    println!(
        "churn: {CHURN_PEERS} distinct peers, {churn:.0} ns/check, at most {most} keys held \
         (sampled every 1,024 checks; a sweep every ≥ {MIN_CHECKS_BETWEEN_SWEEPS} checks), \
         {} at the end; RSS MiB {} → {}",
        limiter.keys(),
        mib(before),
        mib(rss_mib())
    );
    let (fastest, slowest) = repeated
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    println!(
        "repeated-check cost, 100,000 peers vs 1,000: {:.2}×",
        repeated.last().copied().unwrap_or(0.0) / repeated.first().copied().unwrap_or(1.0)
    );
    println!("(range {fastest:.0}–{slowest:.0} ns/check)");
    for peers in [20_000, 40_000] {
        println!(
            "former limiter, first requests of peers 10,001..{peers}: {:.0} ns/check",
            former_first_requests(peers)
        );
    }
    if most as u64 >= CHURN_PEERS / 2 {
        eprintln!("the churn run kept {most} keys: idle keys are not forgotten");
        return ExitCode::FAILURE;
    }
    println!();
    match shared_case() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shared tier case: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Checks one at a time in each mode of the shared-tier case.
const SEQUENTIAL_CHECKS: usize = 5_000;
/// Concurrent tasks, and checks per task, of the shared-tier case.
const TASKS: usize = 32;
const CHECKS_PER_TASK: usize = 500;
/// No run of the shared-tier case may take longer (each loop also stops here).
const SHARED_CASE_LIMIT: Duration = Duration::from_secs(60);

/// A `redis-server` child on a loopback port, killed on drop.
struct RedisChild {
    child: std::process::Child,
    port: u16,
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Result<Option<RedisChild>, String> {
    let path = std::env::var_os("REDIS_SERVER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/redis-server".into());
    if !path.exists() {
        println!(
            "shared tier: skipped, no redis-server at {}",
            path.display()
        );
        return Ok(None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?
        .port();
    let child = std::process::Command::new(&path)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    Ok(Some(RedisChild { child, port }))
}

/// Microseconds at quantile `q` of sorted `samples`.
fn quantile_us(samples: &[Duration], q: f64) -> f64 {
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples
        .get(index)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// `SEQUENTIAL_CHECKS` checks of one client, one at a time: the latency of each.
async fn sequential(limiter: &RateLimiter, deadline: Instant) -> Result<Vec<Duration>, String> {
    let key = RateKey::Client("bench".into());
    let mut samples = Vec::with_capacity(SEQUENTIAL_CHECKS);
    for _ in 0..SEQUENTIAL_CHECKS {
        if Instant::now() > deadline {
            return Err("over the time limit".into());
        }
        let started = Instant::now();
        let answer = black_box(limiter.check(&key).await);
        samples.push(started.elapsed());
        if answer.is_err() {
            return Err("a check under the limit was refused".into());
        }
    }
    samples.sort();
    Ok(samples)
}

/// `TASKS` tasks of `CHECKS_PER_TASK` checks each, every task its own client: checks a second.
async fn concurrent(limiter: Arc<RateLimiter>, deadline: Instant) -> Result<f64, String> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let key = RateKey::Client(format!("bench-{task}").into());
                for _ in 0..CHECKS_PER_TASK {
                    if Instant::now() > deadline {
                        return false;
                    }
                    if limiter.check(&key).await.is_err() {
                        return false;
                    }
                }
                true
            })
        })
        .collect();
    for task in tasks {
        if !task.await.map_err(|e| e.to_string())? {
            return Err("a concurrent check was refused or ran over the time limit".into());
        }
    }
    Ok((TASKS * CHECKS_PER_TASK) as f64 / started.elapsed().as_secs_f64())
}

/// The shared-tier case: local vs Redis, one at a time and concurrently, and the exactness of
/// the shared limit.
fn shared_case() -> Result<(), String> {
    let Some(redis) = start_redis()? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let deadline = Instant::now() + SHARED_CASE_LIMIT;
        let config = chatstats::config::SharedConfig {
            redis_url: chatstats::config::Secret::new(format!(
                "redis://127.0.0.1:{}/0",
                redis.port
            )),
            namespace: "bench".to_owned(),
            // Generous: on a busy machine a slow answer must not be taken for Redis down.
            fetch_timeout_ms: 2_000,
            required_to_start: true,
        };
        // The server needs a moment to listen: connect until it answers, within 10 s.
        let started = Instant::now();
        let tier = loop {
            let metrics = Arc::new(chatstats::process_metrics::Metrics::new());
            match SharedTier::connect(&config, metrics).await {
                Ok(tier) => break tier,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => return Err(error.to_string()),
            }
        };
        // A limit no run reaches: every check is admitted and costs the same.
        let per_minute = u32::MAX;
        let local = Arc::new(RateLimiter::per_minute(per_minute));
        let shared = Arc::new(RateLimiter::per_minute(per_minute).with_shared(tier.clone()));
        let local_one = sequential(&local, deadline).await?;
        let shared_one = sequential(&shared, deadline).await?;
        let local_many = concurrent(local.clone(), deadline).await?;
        let shared_many = concurrent(shared.clone(), deadline).await?;
        if !tier.is_up() || shared.keys() != 0 {
            return Err("the tier went down during the run: the figures are not Redis's".into());
        }
        // Exactness: 60 a minute, 90 checks from 3 "replicas" (limiters on one tier).
        let replicas: Vec<RateLimiter> = (0..3)
            .map(|_| RateLimiter::per_minute(60).with_shared(tier.clone()))
            .collect();
        let key = RateKey::Client("exact".into());
        let begun = Instant::now();
        let mut admitted = 0;
        for n in 0..90 {
            admitted += usize::from(replicas[n % 3].check(&key).await.is_ok());
        }
        let took = begun.elapsed();
        let most = 60 + took.as_secs() as usize;
        if !(60..=most).contains(&admitted) {
            return Err(format!(
                "{admitted} of 90 admitted at 60 a minute in {took:?}"
            ));
        }
        println!("| check (runtime: tokio, 2 workers on this machine) | local | shared (Redis) |");
        println!("|---|---|---|");
        println!(
            "| one at a time, p50 µs | {:.2} | {:.1} |",
            quantile_us(&local_one, 0.5),
            quantile_us(&shared_one, 0.5)
        );
        println!(
            "| one at a time, p99 µs | {:.2} | {:.1} |",
            quantile_us(&local_one, 0.99),
            quantile_us(&shared_one, 0.99)
        );
        println!("| {TASKS} concurrent clients, checks/s | {local_many:.0} | {shared_many:.0} |");
        println!(
            "shared limit at 60 a minute over 3 limiters on one Redis: {admitted} of 90 \
             admitted (in {took:?})"
        );
        Ok(())
    })
}
