//! The tier that replicas of this server share: one Redis (`[shared]` in the config).
//!
//! [`SharedTier`] is a cheap handle (`Clone`) held by the chunk cache, the Xenioo gate and
//! the request path. Without `[shared]` it is [`SharedTier::none`]: every operation answers
//! "nothing" at once and the server runs on its own state, exactly as a single process.
//!
//! Contract of every operation:
//! - bounded by `fetch_timeout_ms`, never panics, never fails a request: a failure (an I/O
//!   error, a timeout, a refused password) answers `None`/`false` and marks the tier down;
//! - while the tier is down, operations answer at once without touching the network; a
//!   background task reconnects (a fresh connection every 250 ms up to every 1 s) and marks it
//!   up again; while up, it pings once a second so the state is right without traffic;
//! - one warning log line per change of state, and the gauge `chatstats_shared_tier_up`;
//! - nothing logged ever contains the URL's password (see [`redact`]).
//!
//! Keys are `{namespace}:...` ([`SharedTier::key`]); what is stored under them never holds a
//! credential (the callers store fingerprints and serialized upstream data only).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult};

use crate::config::SharedConfig;
use crate::process_metrics::Metrics;

/// How long the start may wait for Redis to answer, whatever `fetch_timeout_ms` says: a
/// connection (TCP, TLS, AUTH, SELECT) is several round trips.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnection attempts while the tier is down: the first after this, doubling...
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// ...up to this; also the interval of the health ping while the tier is up.
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// The shared tier, or none (a single process). Cheap to clone.
#[derive(Clone, Default)]
pub struct SharedTier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    client: redis::Client,
    namespace: String,
    fetch_timeout: Duration,
    /// The live connection; None until the first successful connection.
    connection: RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
    metrics: Arc<Metrics>,
    /// The URL's password, to scrub from anything logged.
    password: Option<String>,
    /// Where Redis is, without user or password, for messages.
    location: String,
    /// This process's id in lease values: which replica holds a lease.
    replica: String,
}

/// Why the server may not start (`required_to_start = true`). The message names
/// `shared.redis_url` and never the password.
#[derive(Debug, thiserror::Error)]
#[error("shared.redis_url: cannot use Redis at {location}: {reason} (required_to_start = true)")]
pub struct SharedStartError {
    location: String,
    reason: String,
}

impl SharedTier {
    /// No shared tier: every operation is a no-op answering "nothing".
    pub fn none() -> SharedTier {
        SharedTier { inner: None }
    }

    /// Connect as `config` says. With `required_to_start`, an unreachable Redis or a refused
    /// password is an error; without it, a warning, and the tier starts down and keeps
    /// trying in the background.
    pub async fn connect(
        config: &SharedConfig,
        metrics: Arc<Metrics>,
    ) -> Result<SharedTier, SharedStartError> {
        let url = config.redis_url.expose();
        let parsed = url::Url::parse(url).ok();
        let password = parsed
            .as_ref()
            .and_then(|u| u.password())
            .filter(|p| !p.is_empty())
            .map(|p| {
                // The URL form is percent-encoded; an error might show either form.
                percent_decode(p)
            });
        let location = parsed
            .as_ref()
            .map(|u| {
                format!(
                    "{}://{}:{}{}",
                    u.scheme(),
                    u.host_str().unwrap_or(""),
                    u.port().unwrap_or(6379),
                    u.path()
                )
            })
            .unwrap_or_else(|| "(invalid URL)".to_owned());
        let client = match redis::Client::open(url) {
            Ok(client) => client,
            Err(_) => {
                // Validation already checked the URL; this is for callers that skipped it.
                return Err(SharedStartError {
                    location,
                    reason: "not a valid Redis URL".to_owned(),
                });
            }
        };
        let inner = Arc::new(Inner {
            client,
            namespace: config.namespace.clone(),
            fetch_timeout: config.fetch_timeout(),
            connection: RwLock::new(None),
            up: AtomicBool::new(false),
            metrics,
            password,
            location,
            replica: replica_id(),
        });
        inner.metrics.set_shared_tier_up(false);
        match inner.open().await {
            Ok(manager) => {
                *inner
                    .connection
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(manager);
                inner.up.store(true, Ordering::Release);
                inner.metrics.set_shared_tier_up(true);
                tracing::info!(redis = %inner.location, "shared tier: connected to Redis");
            }
            Err(reason) if config.required_to_start => {
                return Err(SharedStartError {
                    location: inner.location.clone(),
                    reason,
                });
            }
            Err(reason) => {
                tracing::warn!(
                    redis = %inner.location,
                    %reason,
                    "shared.redis_url: Redis cannot be reached; running on this process's own \
                     state (as a single process) until it can"
                );
            }
        }
        tokio::spawn(watch(Arc::downgrade(&inner)));
        Ok(SharedTier { inner: Some(inner) })
    }

    /// True when a tier is configured (up or down).
    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// True when the tier is configured and was reachable at its last operation.
    pub fn is_up(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|inner| inner.up.load(Ordering::Acquire))
    }

    /// The bound on every operation (`fetch_timeout_ms`); zero without a tier.
    pub fn fetch_timeout(&self) -> Duration {
        self.inner
            .as_ref()
            .map_or(Duration::ZERO, |inner| inner.fetch_timeout)
    }

    /// `{namespace}:{part}:{part}...`: every key this server writes.
    pub fn key(&self, parts: &[&str]) -> String {
        let namespace = self
            .inner
            .as_ref()
            .map_or("chatstats", |inner| inner.namespace.as_str());
        let mut key = String::with_capacity(
            namespace.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>(),
        );
        key.push_str(namespace);
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Run `op` on the connection, bounded by `fetch_timeout_ms`. `None` when there is no tier,
    /// it is down, or the operation fails or times out (which marks the tier down). The
    /// building block of every other operation, open to callers with their own commands.
    pub async fn run<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = self.inner.as_ref()?;
        if !inner.up.load(Ordering::Acquire) {
            return None;
        }
        let connection = inner
            .connection
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        match tokio::time::timeout(inner.fetch_timeout, op(connection)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) if is_reply_error(&error) => {
                // The server answered (a script error, a wrong type): the tier is up; the
                // caller treats it as nothing stored.
                tracing::debug!(error = %inner.redact(&error.to_string()), "shared tier: command refused");
                None
            }
            Ok(Err(error)) => {
                inner.mark_down(&inner.redact(&error.to_string()));
                None
            }
            Err(_elapsed) => {
                inner.mark_down(&format!(
                    "an operation took longer than fetch_timeout_ms ({} ms)",
                    inner.fetch_timeout.as_millis()
                ));
                None
            }
        }
    }

    /// The value under `key`; None when absent or the tier is down.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = key.to_owned();
        self.run(|mut c| async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
        })
        .await
        .flatten()
    }

    /// The values under `keys`, in order (one round trip); None when the tier is down.
    pub async fn get_many(&self, keys: &[String]) -> Option<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let keys = keys.to_vec();
        self.run(|mut c| async move {
            redis::cmd("MGET")
                .arg(&keys)
                .query_async::<Vec<Option<Vec<u8>>>>(&mut c)
                .await
        })
        .await
    }

    /// Store `value` under `key` for `ttl`; true when stored.
    pub async fn set_px(&self, key: &str, value: &[u8], ttl: Duration) -> bool {
        let (key, value) = (key.to_owned(), value.to_vec());
        let millis = ttl_millis(ttl);
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PX")
                .arg(millis)
                .query_async::<()>(&mut c)
                .await
        })
        .await
        .is_some()
    }

    /// Store several `(key, value)` pairs for `ttl` in one round trip; true when stored.
    pub async fn set_many_px(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> bool {
        if entries.is_empty() {
            return true;
        }
        let millis = ttl_millis(ttl);
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            for (key, value) in &entries {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(millis)
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await
        })
        .await
        .is_some()
    }

    /// `SET key value NX PX ttl`: Some(true) when this call set it (a lease taken), Some(false)
    /// when the key already existed, None when the tier is down or timed out.
    pub async fn set_nx_px(&self, key: &str, value: &[u8], ttl: Duration) -> Option<bool> {
        let (key, value) = (key.to_owned(), value.to_vec());
        let millis = ttl_millis(ttl);
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .map(|reply| reply.is_some())
    }

    /// Run a Lua `script` (by its SHA, loading it on first use) with `keys` and `args`.
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Option<T> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        self.run(|mut c| async move { invocation.invoke_async::<T>(&mut c).await })
            .await
    }
}

/// Releases the leases in KEYS still held by ARGV[1] (a lease that expired and was taken by
/// another replica is left alone).
const RELEASE_SCRIPT: &str = r"
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
";

impl SharedTier {
    /// This process's id as lease holder (random per start; empty without a tier).
    pub fn replica(&self) -> &str {
        self.inner
            .as_ref()
            .map_or("", |inner| inner.replica.as_str())
    }

    /// Take the leases `keys` for `ttl` where free (`SET NX PX`, one round trip): per key,
    /// true when this replica took it. None when the tier is down.
    pub async fn lease_many(&self, keys: &[String], ttl: Duration) -> Option<Vec<bool>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let keys = keys.to_vec();
        let holder = self.replica().to_owned();
        let millis = ttl_millis(ttl);
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(&holder)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis);
            }
            pipe.query_async::<Vec<Option<String>>>(&mut c).await
        })
        .await
        .map(|replies| replies.into_iter().map(|r| r.is_some()).collect())
    }

    /// Release the leases `keys` this replica holds; true when the command ran.
    pub async fn release(&self, keys: &[String]) -> bool {
        if keys.is_empty() {
            return true;
        }
        let script = redis::Script::new(RELEASE_SCRIPT);
        let holder = [self.replica().to_owned()];
        self.eval::<i64>(&script, keys, &holder).await.is_some()
    }

    /// The values under `values` and whether each lease of `leases` still exists, in one
    /// round trip: what a replica waiting for another's fill polls.
    pub async fn values_and_leases(
        &self,
        values: &[String],
        leases: &[String],
    ) -> Option<(Vec<Option<Vec<u8>>>, Vec<bool>)> {
        let (values, leases) = (values.to_vec(), leases.to_vec());
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            pipe.cmd("MGET").arg(&values);
            for lease in &leases {
                pipe.cmd("EXISTS").arg(lease);
            }
            let mut replies: Vec<redis::Value> = pipe.query_async(&mut c).await?;
            let exists = replies
                .split_off(1)
                .into_iter()
                .map(|reply| matches!(reply, redis::Value::Int(n) if n > 0))
                .collect();
            let found = match replies.pop() {
                Some(reply) => redis::from_redis_value::<Vec<Option<Vec<u8>>>>(reply)?,
                None => Vec::new(),
            };
            Ok((found, exists))
        })
        .await
    }
}

/// A process id for lease values: the pid and the start time, so two replicas (even on two
/// hosts with equal pids) differ.
fn replica_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// An answer from a reachable server that refused one command (not a sign the tier is down).
fn is_reply_error(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        redis::ErrorKind::Server(_)
            | redis::ErrorKind::UnexpectedReturnType
            | redis::ErrorKind::Extension
    ) && !matches!(
        error.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
    )
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={text}").as_bytes())
        .next()
        .map_or_else(|| text.to_owned(), |(_, value)| value.into_owned())
}

/// `text` with `password` replaced by `[redacted]` (both as written and as decoded).
pub fn redact(text: &str, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() => text.replace(password, "[redacted]"),
        _ => text.to_owned(),
    }
}

impl Inner {
    fn redact(&self, text: &str) -> String {
        redact(text, self.password.as_deref())
    }

    /// A fresh connection, checked with PING; the reason (redacted) when it fails.
    async fn open(&self) -> Result<ConnectionManager, String> {
        let timeout = CONNECT_TIMEOUT.max(self.fetch_timeout);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(RECONNECT_MAX);
        let attempt = async {
            let mut manager =
                ConnectionManager::new_with_config(self.client.clone(), config).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut manager)
                .await?;
            Ok::<_, redis::RedisError>(manager)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(manager)) => Ok(manager),
            Ok(Err(error)) => Err(self.redact(&describe(&error))),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    fn mark_down(&self, reason: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.set_shared_tier_up(false);
            tracing::warn!(
                redis = %self.location,
                %reason,
                "shared tier down: each replica runs on its own state until Redis is back"
            );
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.set_shared_tier_up(true);
            tracing::warn!(redis = %self.location, "shared tier up again: sharing resumes");
        }
    }
}

/// The error as a short reason: its kind first (a refused password says so).
fn describe(error: &redis::RedisError) -> String {
    match error.kind() {
        redis::ErrorKind::AuthenticationFailed => "the password was refused".to_owned(),
        redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => {
            "the user lacks permission".to_owned()
        }
        _ if error.is_connection_refusal() => "connection refused".to_owned(),
        _ if error.is_timeout() => "timed out".to_owned(),
        _ => {
            let text = error.to_string();
            // A server that wants a password answers NOAUTH, one given a wrong one WRONGPASS.
            if text.contains("WRONGPASS") || text.contains("NOAUTH") || text.contains("AUTH") {
                format!("the password was refused ({text})")
            } else {
                text
            }
        }
    }
}

/// The background task of a tier: while up, a PING a second; while down, a fresh connection
/// with a growing pause. Ends when the tier is dropped.
async fn watch(tier: Weak<Inner>) {
    let mut pause = RECONNECT_MIN;
    loop {
        tokio::time::sleep(pause).await;
        let Some(inner) = tier.upgrade() else {
            return;
        };
        if inner.up.load(Ordering::Acquire) {
            pause = RECONNECT_MAX;
            let connection = inner
                .connection
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let Some(mut connection) = connection else {
                continue;
            };
            let ping = tokio::time::timeout(
                inner.fetch_timeout.max(Duration::from_millis(500)),
                redis::cmd("PING").query_async::<String>(&mut connection),
            )
            .await;
            match ping {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => inner.mark_down(&inner.redact(&describe(&error))),
                Err(_) => inner.mark_down("the health ping timed out"),
            }
            if !inner.up.load(Ordering::Acquire) {
                pause = RECONNECT_MIN;
            }
            continue;
        }
        match inner.open().await {
            Ok(manager) => {
                *inner
                    .connection
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(manager);
                inner.mark_up();
                pause = RECONNECT_MAX;
            }
            Err(reason) => {
                tracing::debug!(redis = %inner.location, %reason, "shared tier: still down");
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("WRONGPASS for pw-1 at host", Some("pw-1")),
            "WRONGPASS for [redacted] at host"
        );
        assert_eq!(redact("nothing", None), "nothing");
    }

    #[tokio::test]
    async fn without_a_tier_every_operation_answers_nothing_at_once() {
        let tier = SharedTier::none();
        assert!(!tier.is_up());
        assert!(!tier.is_configured());
        assert_eq!(tier.key(&["a", "b"]), "chatstats:a:b");
        assert_eq!(tier.get("k").await, None);
        assert_eq!(
            tier.set_nx_px("k", b"v", Duration::from_secs(1)).await,
            None
        );
        assert!(!tier.set_px("k", b"v", Duration::from_secs(1)).await);
    }
}
