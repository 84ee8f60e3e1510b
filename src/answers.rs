//! Whole answers of read-only requests, served again to the same request while everything
//! they were computed from is still fresh: a dashboard that polls the same screen pays for
//! resolving it once per freshness period, not once per poll.
//!
//! Contract:
//! - **Keys** are the whole request as executed ([`AnswerKey`]): the caller's permissions
//!   (which workspaces it sees, its scopes), the query text (after persisted-query
//!   resolution), the operation name and the variables. Two callers that may see different
//!   things never share an answer.
//! - **Only clean answers are kept**: a query (never a mutation) whose every upstream read
//!   was a fresh chunk (no failed call, no stale entry, no warning) and whose errors are all
//!   answers to the request itself ([`is_deterministic`]: bad input, not found, forbidden,
//!   out of retention), never an upstream failure that a later request might not meet.
//! - **Freshness**: an answer is served until the earliest moment one of its chunks stops
//!   being fresh ([`crate::fetch::RequestScope::reusable_until`]); then the next request
//!   resolves again and meets the chunk cache's own refresh and stale rules. What an answer
//!   shows that changes without any chunk changing (`Workspace.sources`: health, last
//!   success, the Xenioo throttle) is checked on every reuse
//!   ([`crate::fetch::RequestScope::still_true_while`]): it must still read the same.
//! - **Bounded by bytes** (`[cache] answer_max_bytes`; 0 turns answers off), separately from
//!   the chunk cache: an answer is a copy of data the chunk cache holds anyway, so under
//!   memory pressure answers go first without costing a single upstream call.
//! - Requests that ask for `extensions.upstream` (`x-chatstats-trace: 1`) are always resolved:
//!   their trace reports the chunk cache's real work.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::auth::Caller;
use crate::error::code;
use crate::fetch::Condition;
use crate::graphql::document_cache::RequestKey;
use crate::process_metrics::Metrics;

/// Everything an answer depends on besides the data: who asks, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerKey {
    caller: Caller,
    request: RequestKey,
}

impl AnswerKey {
    /// The key of `request` by `caller`; None for a mutation (never answered twice).
    pub fn of(caller: &Caller, request: &RequestKey, mutation: bool) -> Option<Self> {
        (!mutation).then(|| Self {
            caller: caller.clone(),
            request: request.clone(),
        })
    }

    fn bytes(&self) -> usize {
        self.request.bytes()
    }
}

impl Hash for AnswerKey {
    /// The caller's permissions are compared in full by `Eq`; its name is enough to spread
    /// the hash (equal callers have equal names, so `Hash` agrees with `Eq`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.request.hash(state);
        self.caller.client_name().hash(state);
    }
}

/// A kept answer: the encoded body, and what the request log and metrics report for it.
#[derive(Clone)]
pub struct Answer {
    pub body: Bytes,
    /// Distinct chunks behind it: reported as the cache hits a resolution would have made.
    pub cache_hits: usize,
    /// The codes of its (deterministic) errors, for the request metrics.
    pub error_codes: Vec<(String, usize)>,
    fresh_until: Instant,
    /// What it showed besides chunks, each still so (see the module docs).
    conditions: Vec<Condition>,
}

impl Answer {
    /// An answer fresh until `fresh_until`, while every one of `conditions` holds.
    pub fn new(
        body: Bytes,
        cache_hits: usize,
        error_codes: Vec<(String, usize)>,
        fresh_until: Instant,
        conditions: Vec<Condition>,
    ) -> Self {
        Self {
            body,
            cache_hits,
            error_codes,
            fresh_until,
            conditions,
        }
    }

    fn usable(&self, now: Instant) -> bool {
        now < self.fresh_until && self.conditions.iter().all(|still_true| still_true())
    }
}

/// True when an error of this code answers the request itself, whatever the upstreams do.
pub fn is_deterministic(error_code: &str) -> bool {
    [
        code::BAD_USER_INPUT,
        code::NOT_FOUND,
        code::FORBIDDEN,
        code::OUT_OF_RETENTION,
        code::QUERY_TOO_COMPLEX,
    ]
    .contains(&error_code)
}

/// Each answer lives until its data stops being fresh.
struct UntilStale;

impl moka::Expiry<AnswerKey, Answer> for UntilStale {
    fn expire_after_create(
        &self,
        _key: &AnswerKey,
        answer: &Answer,
        now: Instant,
    ) -> Option<Duration> {
        Some(answer.fresh_until.saturating_duration_since(now))
    }
}

/// The answer tier; clones share it.
#[derive(Clone)]
pub struct AnswerCache {
    /// None when `answer_max_bytes` is 0.
    /// Keyed by the request's text (see `DocumentCache` for the hasher).
    entries: Option<moka::sync::Cache<AnswerKey, Answer, foldhash::quality::RandomState>>,
    metrics: Arc<Metrics>,
}

impl AnswerCache {
    pub fn new(max_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let entries = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &AnswerKey, answer: &Answer| {
                    let bytes = key.bytes() + answer.body.len() + 256;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .expire_after(UntilStale)
                .build_with_hasher(Default::default())
        });
        Self { entries, metrics }
    }

    /// The kept answer of `key`, when it is still usable.
    pub fn get(&self, key: &AnswerKey) -> Option<Answer> {
        let entries = self.entries.as_ref()?;
        let answer = entries.get(key)?;
        if !answer.usable(Instant::now()) {
            entries.invalidate(key);
            return None;
        }
        self.metrics.answer("hit");
        Some(answer)
    }

    /// Keep `answer` for `key` (see the module docs for what may be kept).
    pub fn put(&self, key: AnswerKey, answer: Answer) {
        let Some(entries) = &self.entries else {
            return;
        };
        if answer.usable(Instant::now()) {
            self.metrics.answer("stored");
            entries.insert(key, answer);
        }
    }

    /// Approximate bytes held (the weigher's total), for tests.
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.as_ref().map_or(0, |entries| {
            entries.run_pending_tasks();
            entries.weighted_size()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> RequestKey {
        RequestKey::of(&async_graphql::Request::new(query.to_string())).expect("a request key")
    }

    fn key(query: &str) -> AnswerKey {
        AnswerKey::of(&Caller::open(), &request(query), false).expect("a query has a key")
    }

    fn answer(body: &str, fresh_for: Duration) -> Answer {
        Answer::new(
            Bytes::from(body.to_string()),
            1,
            Vec::new(),
            Instant::now() + fresh_for,
            Vec::new(),
        )
    }

    #[test]
    fn an_answer_is_served_to_the_same_request_only() {
        let cache = AnswerCache::new(1 << 20, Arc::new(Metrics::new()));
        cache.put(key("{ a }"), answer("A", Duration::from_secs(60)));
        assert_eq!(
            cache.get(&key("{ a }")).map(|a| a.body),
            Some(Bytes::from("A"))
        );
        assert!(cache.get(&key("{ b }")).is_none());
        let mut other_variables = async_graphql::Request::new("{ a }");
        other_variables.variables =
            async_graphql::Variables::from_json(serde_json::json!({"x": 1}));
        let other_variables = RequestKey::of(&other_variables).expect("a request key");
        let other = AnswerKey::of(&Caller::open(), &other_variables, false).expect("a key");
        assert!(cache.get(&other).is_none());
        let nobody = AnswerKey::of(&Caller::nobody(), &request("{ a }"), false).expect("a key");
        assert!(cache.get(&nobody).is_none(), "another caller's answer");
    }

    #[test]
    fn mutations_have_no_key() {
        assert!(AnswerKey::of(&Caller::open(), &request("mutation { a }"), true).is_none());
    }

    #[test]
    fn an_answer_whose_data_is_no_longer_fresh_is_neither_kept_nor_served() {
        let cache = AnswerCache::new(1 << 20, Arc::new(Metrics::new()));
        cache.put(key("{ a }"), answer("A", Duration::ZERO));
        assert!(cache.get(&key("{ a }")).is_none());
    }

    #[test]
    fn an_answer_is_served_only_while_its_conditions_hold() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let cache = AnswerCache::new(1 << 20, Arc::new(Metrics::new()));
        let healthy = Arc::new(AtomicBool::new(true));
        let mut shows_health = answer("A", Duration::from_secs(60));
        let seen = healthy.clone();
        shows_health.conditions = vec![Arc::new(move || seen.load(Ordering::Acquire))];
        cache.put(key("{ a }"), shows_health);
        assert!(cache.get(&key("{ a }")).is_some());
        healthy.store(false, Ordering::Release);
        assert!(cache.get(&key("{ a }")).is_none());
        healthy.store(true, Ordering::Release);
        assert!(cache.get(&key("{ a }")).is_none(), "dropped, not hidden");
    }

    #[test]
    fn the_answers_stay_under_their_byte_budget() {
        let max_bytes = 64 * 1024;
        let cache = AnswerCache::new(max_bytes, Arc::new(Metrics::new()));
        let body = "x".repeat(1000);
        for i in 0..500 {
            cache.put(
                key(&format!("{{ a{i} }}")),
                answer(&body, Duration::from_secs(60)),
            );
        }
        let held = cache.weighted_bytes();
        assert!(held > max_bytes / 2, "filled: {held}");
        assert!(held <= max_bytes, "{held} > {max_bytes}");
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let cache = AnswerCache::new(0, Arc::new(Metrics::new()));
        cache.put(key("{ a }"), answer("A", Duration::from_secs(60)));
        assert!(cache.get(&key("{ a }")).is_none());
    }
}
