//! Xenioo (SPEC §1.3, seed 002): chatbot analytics, 18 event types per bot and channel, hourly.
//!
//! Xenioo's defining rule is its throttle: ONE statistics call per account per hour; an
//! earlier call is refused. So this client never plans calls per window. It makes exactly one
//! kind of call — every bot (`*`), all 18 types, `GROUPMODE=hour`, `DAYS=30` — and every
//! Xenioo field is derived from that [`Snapshot`].
//!
//! ## The throttle guarantee
//!
//! [`Xenioo::snapshot`] never starts an upstream call within `min_interval` of the previous
//! one that may have reached Xenioo, under any number of concurrent callers, while a call is
//! in flight, after a call failed, or when a caller gives up (is cancelled) mid-call. It rests
//! on four rules, all in the private `Gate`, which is the only code that can start a call:
//!
//! 1. **One lock, held across the call.** The decision "may I call?" and the call itself
//!    happen under one `tokio::sync::Mutex`; the guard is moved into the task that performs
//!    the call and released only after the outcome is recorded. Two calls can never overlap
//!    and no caller can decide on stale state.
//! 2. **The interval is claimed before anything is sent.** The gate is closed (as of the
//!    call's start) before the request is built, so even a call that never returns (a panic,
//!    a runtime shutdown) has spent the interval.
//! 3. **The interval runs from the end of the call.** On completion the gate is re-closed as
//!    of the moment the answer (or error) arrived. The upstream registered the call somewhere
//!    between our send and our receive, so measuring from the receive means the upstream
//!    always sees at least `min_interval` between two of our calls, whatever the latency.
//!    A 429 whose `Retry-After` is longer than `min_interval` (e.g. another process called
//!    first) closes the gate for that longer time.
//! 4. **Callers cannot cancel a call.** The call runs in its own spawned task; a caller that
//!    is dropped while waiting only stops waiting. The call finishes, is recorded, and later
//!    callers share its result.
//!
//! A failure that provably never sent the request — it could not connect (DNS, TCP, the TLS
//! handshake) or the account's circuit is open — is not an upstream call: it does not spend
//! the interval, and the gate is left as it was before the call claimed it (rule 2 still
//! holds: the claim is made first and only undone once the call is known never to have left).
//! Every other failure (a timeout, a 5xx, a 4xx, an unreadable answer) may have counted at
//! Xenioo, so it spends the interval (conservative). Inside the interval, callers get the last
//! good snapshot (`stale: true` plus the error as a warning when the latest call failed), or,
//! when there is no snapshot yet, `UPSTREAM_THROTTLED` with the seconds left, in one of two
//! forms: Xenioo throttled (its own 429) or chatstats waits for the account's next allowed call
//! (our interval after a failed call; Xenioo refused nothing). [`Xenioo::next_call`] says
//! which ([`CallWait`], shown in `Source.nextCallWait`). Callers that were waiting for a call
//! share that call's own result (the snapshot, or its error).
//!
//! Monotonic [`Instant`]s decide; the wall clock only feeds [`Xenioo::next_call`], so a clock
//! step can never open the gate early.
//!
//! ## Tolerant parsing
//!
//! The public docs truncate the entry format after `GroupLabel, BotName, ChannelName,
//! EventLabel`. We assume (README) a value in `Value` (or `Count`) and a type in `EventLabel`
//! or a numeric `EventType`; `GroupLabel` may be RFC 3339 or `yyyy-MM-dd HH:mm`,
//! `yyyy-MM-dd`, `yyyy-MM`, `yyyy` (UTC; the span follows the form). Unknown fields are
//! ignored. An entry that cannot be read is skipped and counted ([`Snapshot::skipped`], one
//! warning per snapshot), never an error: only a body that is not a JSON array is
//! `UPSTREAM_INVALID`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::cache::{AccountKey, CacheKey};
use crate::catalogue::{key_text, Contributes, Contribution, Part};
use crate::config::Secret;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::fetch::Fetcher;
use crate::providers::upstream::{Upstream, COULD_NOT_CONNECT};
use crate::providers::{
    ChannelFeed, ChannelKind, ChannelMetric, ConversationFilter, Feed, Provider, Source,
};
use crate::series::Window;
use crate::series::{resample, Aggregation, Granularity, Sample, Zone};
use crate::shared::SharedTier;
use crate::workspace::{configured, Workspace};
use futures::future::BoxFuture;
use futures::FutureExt;

/// The finest granularity Xenioo offers (we always ask for hour groups).
/// The series fields this provider feeds (its rows of SPEC §2.1).
pub const FEEDS: &[Feed] = &[
    Feed {
        field: "Channel.messages",
        from: "3 Messages for that ChannelName",
    },
    Feed {
        field: "UserStats.new",
        from: "0 (new users)",
    },
    Feed {
        field: "UserStats.returning",
        from: "1 (returning users)",
    },
    Feed {
        field: "UserStats.active",
        from: "2 (active users)",
    },
    Feed {
        field: "MessageStats.sent",
        from: "3 Messages + 17 Operator Message",
    },
    Feed {
        field: "MessageStats.received",
        from: "13 Incoming Message",
    },
    Feed {
        field: "Bot.metric",
        from: "every event type, per BotName (and ChannelName when `channel` is given)",
    },
];

pub const FINEST: Granularity = Granularity::Hour;

/// The one call's endpoint name, in metrics and the request trace.
pub const ENDPOINT: &str = "statistics";

/// How many days of history one call asks for: the most Xenioo allows.
pub const SNAPSHOT_DAYS: i64 = 30;

/// The 18 Xenioo event types, codes 0..=17.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum BotMetric {
    /// 0: users seen for the first time.
    NewUser,
    /// 1: users seen before.
    ReturningUser,
    /// 2: distinct users active.
    ActiveUser,
    /// 3: messages.
    Messages,
    /// 4: action messages.
    ActionMessages,
    /// 5: fallback replies (the bot did not understand).
    FallbackReply,
    /// 6: NLP intents detected.
    NlpDetected,
    /// 7: NLP intents missed.
    NlpMissed,
    /// 8: average conversation length, seconds.
    ConversationLength,
    /// 9: average time to pick up (operator takeover), seconds.
    TimeToPickUp,
    /// 10: takeover rate, percent.
    TakeoverRate,
    /// 11: average support conversation length, seconds.
    SupportConversationLength,
    /// 12: goals reached.
    GoalReached,
    /// 13: incoming messages.
    IncomingMessage,
    /// 14: API requests.
    ApiRequest,
    /// 15: failed API requests.
    ApiRequestError,
    /// 16: average time to first message, seconds.
    TimeToFirstMessage,
    /// 17: operator messages.
    OperatorMessage,
}

impl BotMetric {
    /// Every type, in code order (the index is the code).
    pub const ALL: [BotMetric; 18] = [
        BotMetric::NewUser,
        BotMetric::ReturningUser,
        BotMetric::ActiveUser,
        BotMetric::Messages,
        BotMetric::ActionMessages,
        BotMetric::FallbackReply,
        BotMetric::NlpDetected,
        BotMetric::NlpMissed,
        BotMetric::ConversationLength,
        BotMetric::TimeToPickUp,
        BotMetric::TakeoverRate,
        BotMetric::SupportConversationLength,
        BotMetric::GoalReached,
        BotMetric::IncomingMessage,
        BotMetric::ApiRequest,
        BotMetric::ApiRequestError,
        BotMetric::TimeToFirstMessage,
        BotMetric::OperatorMessage,
    ];

    /// The Xenioo type code (0..=17).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The type with this code, `None` past 17.
    pub fn from_code(code: u8) -> Option<BotMetric> {
        BotMetric::ALL.get(usize::from(code)).copied()
    }

    /// The name Xenioo uses in `EventLabel`, e.g. "New User".
    pub fn label(self) -> &'static str {
        match self {
            BotMetric::NewUser => "New User",
            BotMetric::ReturningUser => "Returning User",
            BotMetric::ActiveUser => "Active User",
            BotMetric::Messages => "Messages",
            BotMetric::ActionMessages => "Action Messages",
            BotMetric::FallbackReply => "Fallback Reply",
            BotMetric::NlpDetected => "NLP Detected",
            BotMetric::NlpMissed => "NLP Missed",
            BotMetric::ConversationLength => "Conversation Length",
            BotMetric::TimeToPickUp => "Time To Pick Up",
            BotMetric::TakeoverRate => "Takeover Rate",
            BotMetric::SupportConversationLength => "Support Conversation Length",
            BotMetric::GoalReached => "Goal Reached",
            BotMetric::IncomingMessage => "Incoming Message",
            BotMetric::ApiRequest => "API Request",
            BotMetric::ApiRequestError => "API Request Error",
            BotMetric::TimeToFirstMessage => "Time To First Message",
            BotMetric::OperatorMessage => "Operator Message",
        }
    }

    /// The type named `label`. Tolerant, because the docs never show the exact spelling:
    /// case, spaces, `_` and `-` are ignored ("time_to_pick_up" is Time To Pick Up).
    pub fn from_label(label: &str) -> Option<BotMetric> {
        fn normalise(s: &str) -> String {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase())
                .collect()
        }
        let wanted = normalise(label);
        if wanted.is_empty() {
            return None;
        }
        BotMetric::ALL
            .into_iter()
            .find(|m| normalise(m.label()) == wanted)
    }

    /// Whether the value is an average (seconds for 8, 9, 11, 16; percent for 10) rather than
    /// a count.
    pub fn is_average(self) -> bool {
        matches!(
            self,
            BotMetric::ConversationLength
                | BotMetric::TimeToPickUp
                | BotMetric::TakeoverRate
                | BotMetric::SupportConversationLength
                | BotMetric::TimeToFirstMessage
        )
    }

    /// How this type's hourly values add up on coarser buckets (SPEC §2.1): distinct users
    /// take the largest bucket, the averages average, counts add.
    pub fn aggregation(self) -> Aggregation {
        match self {
            BotMetric::ActiveUser => Aggregation::Distinct,
            kind if kind.is_average() => Aggregation::Average,
            _ => Aggregation::Sum,
        }
    }
}

/// One readable entry of the answer: one bucket of one type for one bot (and channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Start of the UTC bucket (`GroupLabel`).
    pub start: DateTime<Utc>,
    /// End (exclusive) of the bucket; its length follows the label's form.
    pub end: DateTime<Utc>,
    /// `BotName`.
    pub bot: String,
    /// `ChannelName`; `None` when absent or empty.
    pub channel: Option<String>,
    /// The event type.
    pub kind: BotMetric,
    /// The count, or the average for [`BotMetric::is_average`] types.
    pub value: f64,
}

impl Entry {
    /// A rough size in bytes, for a byte-bounded cache.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Entry>()
            + self.bot.capacity()
            + self.channel.as_ref().map_or(0, String::capacity)
    }
}

/// One answer of the account statistics call.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// When the answer arrived.
    pub fetched_at: DateTime<Utc>,
    /// Start of the coverage: [`SNAPSHOT_DAYS`] days before `to`.
    ///
    /// Conservative when the call straddles an hour boundary (we cannot know which hour the
    /// upstream saw): the later of the two candidate starts.
    pub from: DateTime<Utc>,
    /// End (exclusive) of the coverage: the start of the hour the call was made in (that hour
    /// has no data yet). Conservative like `from`: the earlier candidate.
    pub to: DateTime<Utc>,
    /// Every readable entry, in the upstream's order.
    pub entries: Vec<Entry>,
    /// Entries that could not be read and were skipped.
    pub skipped: usize,
    /// Lookups over `entries`, built on first use (every series of a bot report reads the
    /// same snapshot: scanning all its entries per series was most of a warm report's CPU).
    pub index: LazyIndex,
}

/// Lookups over a snapshot's entries: positions by type and by type and bot (in entry order,
/// which the LAST aggregation relies on), the bots with their channels, and the channels.
#[derive(Debug, Default)]
struct Index {
    by_kind: HashMap<BotMetric, Vec<usize>>,
    by_kind_and_bot: HashMap<BotMetric, HashMap<String, Vec<usize>>>,
    bots: BTreeMap<String, BTreeSet<String>>,
    channels: BTreeSet<String>,
}

impl Index {
    fn of(entries: &[Entry]) -> Index {
        let mut index = Index::default();
        for (position, entry) in entries.iter().enumerate() {
            index.by_kind.entry(entry.kind).or_default().push(position);
            index
                .by_kind_and_bot
                .entry(entry.kind)
                .or_default()
                .entry(entry.bot.clone())
                .or_default()
                .push(position);
            let channels = index.bots.entry(entry.bot.clone()).or_default();
            if let Some(channel) = &entry.channel {
                channels.insert(channel.clone());
                index.channels.insert(channel.clone());
            }
        }
        index
    }
}

/// A snapshot's [`Index`], built once, and its [`Bucketed`] memo. Not part of the snapshot's
/// value: clones start without them and comparisons ignore them.
#[derive(Default)]
pub struct LazyIndex(OnceLock<Index>, OnceLock<BucketedMemo>);

impl Clone for LazyIndex {
    fn clone(&self) -> Self {
        LazyIndex::default()
    }
}

/// What one bot/kind/channel selection of a snapshot is on one window's buckets: the event
/// type's aggregation applied per bucket, as one sample per non-empty bucket spanning it,
/// and whether that was exact.
#[derive(Clone, Debug)]
struct OnBuckets {
    samples: Arc<[Sample]>,
    inexact: bool,
}

/// (type, bot, channel, window from, to, granularity, zone).
type BucketedKey = (
    BotMetric,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Granularity,
    Zone,
);

/// Every series of a dashboard reads the same snapshot, and a warm dashboard reads the same
/// windows again: the hourly entries of a selection are put on a window's buckets once per
/// snapshot instead of once per series and request (they were most of a warm dashboard's
/// CPU). Bounded by the samples held, since windows and names are the client's choice.
type BucketedMemo = moka::sync::Cache<BucketedKey, OnBuckets>;

/// Samples held by one snapshot's memo (an hourly month of one selection is ~720).
const MEMO_MAX_SAMPLES: u64 = 200_000;

impl PartialEq for LazyIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for LazyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyIndex")
    }
}

impl Snapshot {
    fn index(&self) -> &Index {
        self.index.0.get_or_init(|| Index::of(&self.entries))
    }

    /// [`samples`] of the selection put on `window`'s buckets with `kind`'s aggregation: one
    /// sample per non-empty bucket, spanning it, which the engine resamples on the same window
    /// to the same values; `true` when putting them there was inexact. Memoized (see
    /// [`BucketedMemo`]).
    fn on_buckets(
        &self,
        kind: BotMetric,
        bot: Option<&str>,
        channel: Option<&str>,
        window: &Window,
    ) -> (Arc<[Sample]>, bool) {
        let memo = self.index.1.get_or_init(|| {
            moka::sync::Cache::builder()
                .max_capacity(MEMO_MAX_SAMPLES)
                .weigher(|_, on: &OnBuckets| {
                    u32::try_from(on.samples.len() + 1).unwrap_or(u32::MAX)
                })
                .build()
        });
        let key = (
            kind,
            bot.map(str::to_string),
            channel.map(str::to_string),
            window.from(),
            window.to(),
            window.granularity(),
            window.zone(),
        );
        let on = memo.get_with(key, || {
            let hourly = samples(self, kind, bot, channel, (window.from(), window.to()));
            let bucketed = resample(window, kind.aggregation(), &hourly);
            let samples = bucketed
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, value)| {
                    let (start, end) = window.bucket(i);
                    value.map(|value| Sample {
                        start,
                        end,
                        value,
                        weight: None,
                    })
                })
                .collect();
            OnBuckets {
                samples,
                inexact: !bucketed.exact,
            }
        });
        (on.samples, on.inexact)
    }

    /// A rough size in bytes, for a byte-bounded cache.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Snapshot>()
            + (self.entries.capacity() - self.entries.len()) * std::mem::size_of::<Entry>()
            + self.entries.iter().map(Entry::approx_bytes).sum::<usize>()
    }
}

/// What [`Xenioo::snapshot`] serves.
#[derive(Clone, Debug)]
pub struct SnapshotRead {
    /// The snapshot (shared: every caller inside an interval gets the same one).
    pub snapshot: Arc<Snapshot>,
    /// True when the latest call failed and this is an older snapshot.
    pub stale: bool,
    /// The error of the latest call when `stale` (for a warning in `extensions`).
    pub warning: Option<UpstreamError>,
    /// When the gate opens again: until then no other snapshot can exist, so what was read
    /// from this one holds (an answer or a subscription emission built on it is current).
    pub fresh_until: Instant,
}

impl SnapshotRead {
    /// A rough size in bytes, for a byte-bounded cache.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<SnapshotRead>() + self.snapshot.approx_bytes()
    }
}

/// How one read of [`Xenioo::snapshot_served`] was served, for the request trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Served {
    /// This read made the call (it took `latency`, waiting for the lock excluded).
    Called { latency: Duration },
    /// A call was in flight; this read waited for it and shares its result.
    Joined,
    /// Inside the interval: what the gate holds (the snapshot, or why there is none); no call.
    Held,
}

/// Why a throttled provider account's next call waits until `Source.nextCallAllowedAt`.
#[derive(async_graphql::Enum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallWait {
    /// Xenioo refused a call (HTTP 429): chatstats waits for its `Retry-After`, or for the
    /// call interval when that is longer.
    ProviderThrottled,
    /// chatstats' own spacing (`min_call_interval_secs`): the account's latest call may have
    /// counted against Xenioo's one call per interval (it was answered, or failed after it was
    /// sent: a timeout, a 5xx). Xenioo refused nothing.
    #[default]
    CallInterval,
}

/// When the gate lets the account's next call through, and why not before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextCall {
    pub at: DateTime<Utc>,
    pub wait: CallWait,
}

/// Hourly samples of `kind` that overlap `[from, to)`, optionally of one bot (`BotName`)
/// and/or one channel (`ChannelName`). Entries for the same hour (several bots or channels)
/// stay separate samples; the engine adds or averages them per bucket. Weights are unknown
/// (`None`).
pub fn samples(
    snapshot: &Snapshot,
    kind: BotMetric,
    bot: Option<&str>,
    channel: Option<&str>,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> Vec<Sample> {
    let index = snapshot.index();
    let positions = match bot {
        None => index.by_kind.get(&kind),
        Some(bot) => index
            .by_kind_and_bot
            .get(&kind)
            .and_then(|bots| bots.get(bot)),
    };
    positions
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|&position| &snapshot.entries[position])
        .filter(|e| e.end > from && e.start < to)
        .filter(|e| channel.is_none_or(|c| e.channel.as_deref() == Some(c)))
        .map(|e| Sample {
            start: e.start,
            end: e.end,
            value: e.value,
            weight: None,
        })
        .collect()
}

/// Every bot name in the snapshot with the channel names it has entries on.
pub fn bots(snapshot: &Snapshot) -> &BTreeMap<String, BTreeSet<String>> {
    &snapshot.index().bots
}

/// Every channel name in the snapshot.
pub fn channels(snapshot: &Snapshot) -> &BTreeSet<String> {
    &snapshot.index().channels
}

/// The path of the one call we make: every bot, all 18 types, hour groups, 30 days.
fn snapshot_path() -> String {
    let types: Vec<String> = BotMetric::ALL
        .iter()
        .map(|m| m.code().to_string())
        .collect();
    format!(
        "/analytics/statistics/account/*/{}/hour/{SNAPSHOT_DAYS}",
        types.join(",")
    )
}

/// A Xenioo account: the HTTP client and the throttle gate in front of it.
///
/// The gate lives in this value, so build exactly ONE `Xenioo` per account for the life of
/// the process (share it behind an `Arc`; a config reload must carry it over): two values
/// for the same account would each allow a call.
pub struct Xenioo {
    client: Arc<Client>,
    gate: Arc<Gate>,
}

/// The HTTP side, shared with the task that performs a call (which must own what it uses).
struct Client {
    upstream: Upstream,
    base_url: String,
    token: Secret,
}

impl Xenioo {
    /// `base_url` is the API root, e.g. `https://publicapi.xenioo.com` (a trailing slash is
    /// ignored); `token` the account token; `min_interval` the least time between two calls
    /// (Xenioo: one hour). A zero interval disables the wait, never the single flight.
    ///
    /// `http` must have a request timeout: a call holds the gate until it ends, so a call
    /// that never ends would make every caller wait.
    pub fn new(
        http: reqwest::Client,
        base_url: String,
        token: Secret,
        min_interval: Duration,
    ) -> Self {
        Self {
            client: Arc::new(Client {
                upstream: Upstream::new(Provider::Xenioo, http),
                base_url: base_url.trim_end_matches('/').to_string(),
                token,
            }),
            gate: Arc::new(Gate::new(min_interval)),
        }
    }

    /// The account's snapshot. Never a second upstream call within `min_interval` of the
    /// previous one (see the module docs for how, and for what callers get inside the
    /// interval): concurrent callers share one call, failures that may have reached Xenioo
    /// spend the interval, and after a failed refresh the last good snapshot is served with
    /// `stale: true`.
    pub async fn snapshot(&self) -> Result<SnapshotRead, UpstreamError> {
        self.snapshot_served().await.0
    }

    /// As [`Xenioo::snapshot`], and how this read was served (for the request trace).
    pub async fn snapshot_served(&self) -> (Result<SnapshotRead, UpstreamError>, Served) {
        let client = Arc::clone(&self.client);
        self.gate.read_served(move || client.fetch()).await
    }

    /// Share this account's gate with the other replicas through `tier`: a call only under the
    /// account's lease in Redis, the snapshot stored there and served by every replica (see
    /// [`SharedGate`]). `account` names the account (its fingerprint, never a credential).
    /// Without a configured tier, nothing changes. Call once, before the first read.
    /// `call_wait`: how long a replica waits for another replica's call to end (the Xenioo
    /// upstream timeout plus a margin for storing the snapshot).
    pub fn share(&self, tier: &SharedTier, account: &AccountKey, call_wait: Duration) {
        if !tier.is_configured() {
            return;
        }
        let account = account.stable_text();
        let _ = self.gate.shared.set(SharedGate {
            call_wait,
            lease: tier.key(&[&account, "lease"]),
            snapshot: tier.key(&[&account, "snapshot"]),
            tier: tier.clone(),
        });
    }

    /// The earliest instant any snapshot of this account could cover now, without a call:
    /// the held snapshot's start, or [`SNAPSHOT_DAYS`] before the current hour (what a new
    /// call would cover), whichever is earlier. A window ending before it has no Xenioo data
    /// whatever is fetched, so asking would spend the hour for nothing.
    pub fn earliest_coverage(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let fresh = coverage_start(now);
        let held = *self
            .gate
            .held_from
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.map_or(fresh, |held| held.min(fresh))
    }

    /// When the next upstream call is allowed (for `Source.nextCallAllowedAt`); `None` before
    /// the first call. While a call is in flight: at least its start plus the interval.
    pub fn next_call_allowed_at(&self) -> Option<DateTime<Utc>> {
        self.gate.next_call_allowed_at()
    }

    /// When the next upstream call is allowed and why not before; `None` before the first
    /// call that may have reached Xenioo. The time can be past: the gate is open then.
    pub fn next_call(&self) -> Option<NextCall> {
        self.gate.next_call()
    }
}

impl Client {
    /// The one upstream call. Only [`Gate::read`] may run it.
    async fn fetch(self: Arc<Self>) -> Result<Snapshot, UpstreamError> {
        let requested_at = Utc::now();
        let request = self
            .upstream
            .http()
            .get(format!("{}{}", self.base_url, snapshot_path()))
            .bearer_auth(self.token.expose());
        // `Vec<Value>`: a body that is not a JSON array is UPSTREAM_INVALID (and recorded as
        // such in the health), while each entry is read tolerantly below.
        // `json_once`: never retried, whatever the failure — a retry would be a second call
        // inside the interval, which the throttle forbids.
        let body: Vec<Value> = self.upstream.json_once(ENDPOINT, request).await?;
        Ok(parse_snapshot(&body, requested_at, Utc::now()))
    }
}

/// The throttle state behind the lock.
#[derive(Default)]
struct GateState {
    /// When the gate was last closed: the end of the latest call (its start while in flight).
    closed_at: Option<Instant>,
    /// How long the gate stays closed after `closed_at`.
    hold: Duration,
    /// Why it is closed: Xenioo's own 429, or our interval after a call that may have counted.
    wait: CallWait,
    /// The latest good snapshot.
    good: Option<Arc<Snapshot>>,
    /// The error of the latest call; `None` when it succeeded.
    last_error: Option<UpstreamError>,
}

impl GateState {
    /// The time left before the next call is allowed at `now`; `None` when allowed.
    fn time_left(&self, now: Instant) -> Option<Duration> {
        let closed_at = self.closed_at?;
        let elapsed = now.saturating_duration_since(closed_at);
        (elapsed < self.hold).then(|| self.hold - elapsed)
    }

    /// What the latest call produced, for its caller and for everyone who waited on it.
    /// `interval`: the gate's least spacing, for the message when nothing is held.
    fn outcome(&self, interval: Duration) -> Result<SnapshotRead, UpstreamError> {
        match (&self.good, &self.last_error) {
            (Some(good), warning) => Ok(SnapshotRead {
                snapshot: Arc::clone(good),
                stale: warning.is_some(),
                warning: warning.clone(),
                fresh_until: self
                    .closed_at
                    .map_or_else(Instant::now, |closed_at| closed_at + self.hold),
            }),
            (None, Some(error)) => Err(error.clone()),
            // Only after a call that ended without recording anything (a panic); the gate
            // is closed, so say so.
            (None, None) => Err(waiting_for_next_call(Duration::ZERO, interval, None)),
        }
    }

    /// What a caller gets inside the interval when no call happened while it waited: the
    /// held snapshot, or why there is none and how long the gate stays closed.
    fn within_interval(
        &self,
        left: Duration,
        interval: Duration,
    ) -> Result<SnapshotRead, UpstreamError> {
        match (&self.good, self.wait) {
            (Some(_), _) => self.outcome(interval),
            (None, CallWait::ProviderThrottled) => Err(throttled(left)),
            (None, CallWait::CallInterval) => Err(waiting_for_next_call(
                left,
                interval,
                self.last_error.as_ref(),
            )),
        }
    }
}

/// Seconds left, rounded up (retrying after them must succeed), at least 1.
fn retry_after_secs(left: Duration) -> u64 {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    secs.max(1)
}

/// `UPSTREAM_THROTTLED`: Xenioo itself refused a call (429) and the wait it asked for runs.
fn throttled(left: Duration) -> UpstreamError {
    UpstreamError::new(
        Provider::Xenioo,
        UpstreamErrorKind::Throttled {
            retry_after_secs: retry_after_secs(left),
        },
    )
}

/// `UPSTREAM_THROTTLED` from our own gate: the latest call (which failed with `latest`) may
/// have counted against Xenioo's one call per interval, so chatstats waits; Xenioo refused
/// nothing.
fn waiting_for_next_call(
    left: Duration,
    interval: Duration,
    latest: Option<&UpstreamError>,
) -> UpstreamError {
    let latest = match latest.map(|error| &error.kind) {
        Some(UpstreamErrorKind::Unavailable(what)) => format!("failed: {what}"),
        Some(UpstreamErrorKind::Rejected { status, .. }) => {
            format!("was refused: HTTP {status}")
        }
        Some(UpstreamErrorKind::Invalid(_)) => "got an answer chatstats cannot read".into(),
        Some(_) | None => "ended without an answer".into(),
    };
    UpstreamError::new(
        Provider::Xenioo,
        UpstreamErrorKind::WaitingForNextCall {
            reason: format!(
                "one per {}; the latest call {latest}, and may have counted",
                interval_text(interval)
            ),
            retry_after_secs: retry_after_secs(left),
        },
    )
}

/// `3600 s`, or `200 ms` below a second (tests use short intervals).
fn interval_text(interval: Duration) -> String {
    if interval >= Duration::from_secs(1) {
        format!("{} s", interval.as_secs())
    } else {
        format!("{} ms", interval.as_millis())
    }
}

/// True when a failed call provably never sent its request, so Xenioo cannot have counted
/// it: it could not connect (DNS, TCP, TLS handshake) or the account's circuit is open.
fn never_sent(error: &UpstreamError) -> bool {
    match &error.kind {
        UpstreamErrorKind::CircuitOpen { .. } => true,
        UpstreamErrorKind::Unavailable(what) => what == COULD_NOT_CONNECT,
        _ => false,
    }
}

/// Why the gate holds a call back, as before a call claimed the interval: restored when that
/// call never sent its request.
#[derive(Clone, Copy)]
struct Closure {
    closed_at: Option<Instant>,
    hold: Duration,
    wait: CallWait,
    published: Option<NextCall>,
}

/// The single-flight throttle: the only place an upstream call can start (module docs).
struct Gate {
    min_interval: Duration,
    /// A tokio mutex because it is held across the upstream call, which is the point.
    state: Arc<tokio::sync::Mutex<GateState>>,
    /// Calls that have ended. Read before queueing on the lock and again after getting it:
    /// a difference means a call ended while the caller waited, and the caller shares its
    /// result. Written only under the lock.
    completed: AtomicU64,
    /// Wall-clock copy for [`Gate::next_call`], readable without awaiting. A std mutex: held
    /// for a copy, never across an await.
    next_allowed: std::sync::Mutex<Option<NextCall>>,
    /// Start of the coverage of the latest good snapshot, readable without awaiting.
    held_from: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// The lease and snapshot shared with other replicas (`[shared]`), once set.
    shared: OnceLock<SharedGate>,
}

impl Gate {
    fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            state: Arc::new(tokio::sync::Mutex::new(GateState::default())),
            completed: AtomicU64::new(0),
            next_allowed: std::sync::Mutex::new(None),
            held_from: std::sync::Mutex::new(None),
            shared: OnceLock::new(),
        }
    }

    fn next_call(&self) -> Option<NextCall> {
        *self
            .next_allowed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_call_allowed_at(&self) -> Option<DateTime<Utc>> {
        self.next_call().map(|next| next.at)
    }

    fn publish(&self, next: Option<NextCall>) {
        *self
            .next_allowed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
    }

    fn publish_next_allowed(&self, hold: Duration, wait: CallWait) {
        let at = chrono::Duration::from_std(hold)
            .ok()
            .and_then(|hold| Utc::now().checked_add_signed(hold))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.publish(Some(NextCall { at, wait }));
    }

    /// [`Gate::read_served`] without how the read was served.
    #[cfg(test)]
    async fn read<F, Fut>(self: &Arc<Self>, fetch: F) -> Result<SnapshotRead, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Snapshot, UpstreamError>> + Send + 'static,
    {
        self.read_served(fetch).await.0
    }

    /// Serves a snapshot, calling `fetch` only when the gate is open (module docs, rules 1-4),
    /// and says how it was served.
    async fn read_served<F, Fut>(
        self: &Arc<Self>,
        fetch: F,
    ) -> (Result<SnapshotRead, UpstreamError>, Served)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Snapshot, UpstreamError>> + Send + 'static,
    {
        let seen = self.completed.load(Ordering::Acquire);
        let mut state = Arc::clone(&self.state).lock_owned().await;
        if self.completed.load(Ordering::Acquire) != seen {
            // A call ended while we waited for the lock: it is as fresh as it gets.
            return (state.outcome(self.min_interval), Served::Joined);
        }
        if let Some(left) = state.time_left(Instant::now()) {
            return (state.within_interval(left, self.min_interval), Served::Held);
        }
        // Across replicas: call only under the account's lease, else serve what it holds.
        if let Some(shared) = self.shared.get() {
            if let Some(served) = self.shared_decision(shared, &mut state).await {
                return served;
            }
        }
        let before = Closure {
            closed_at: state.closed_at,
            hold: state.hold,
            wait: state.wait,
            published: self.next_call(),
        };
        // Rule 2: close the gate before the request exists.
        let started = Instant::now();
        state.closed_at = Some(started);
        state.hold = self.min_interval;
        state.wait = CallWait::CallInterval;
        self.publish_next_allowed(self.min_interval, CallWait::CallInterval);
        let call = fetch();
        let gate = Arc::clone(self);
        // Rule 4: the call and the guard live in their own task, out of the callers' reach.
        let task = tokio::spawn(async move {
            let result = call.await;
            let sent = !matches!(&result, Err(error) if never_sent(error));
            match &result {
                // Nothing reached Xenioo: the gate is as it was before the claim.
                Err(error) if never_sent(error) => {
                    state.closed_at = before.closed_at;
                    state.hold = before.hold;
                    state.wait = before.wait;
                    gate.publish(before.published);
                }
                // Rule 3: the interval runs from the end of the call.
                Err(UpstreamError {
                    kind: UpstreamErrorKind::Throttled { retry_after_secs },
                    ..
                }) => {
                    state.closed_at = Some(Instant::now());
                    state.hold = gate
                        .min_interval
                        .max(Duration::from_secs(*retry_after_secs));
                    state.wait = CallWait::ProviderThrottled;
                    gate.publish_next_allowed(state.hold, state.wait);
                }
                _ => {
                    state.closed_at = Some(Instant::now());
                    state.hold = gate.min_interval;
                    state.wait = CallWait::CallInterval;
                    gate.publish_next_allowed(state.hold, state.wait);
                }
            }
            match result {
                Ok(snapshot) => {
                    *gate
                        .held_from
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot.from);
                    state.good = Some(Arc::new(snapshot));
                    state.last_error = None;
                }
                Err(error) => state.last_error = Some(error),
            }
            if let Some(shared) = gate.shared.get() {
                gate.share_call(shared, &state, sent).await;
            }
            gate.completed.fetch_add(1, Ordering::Release);
            let outcome = state.outcome(gate.min_interval);
            drop(state);
            outcome
        });
        let result = task.await.unwrap_or_else(|_| {
            Err(UpstreamError::new(
                Provider::Xenioo,
                UpstreamErrorKind::Unavailable("the call ended without an answer".into()),
            ))
        });
        let latency = started.elapsed();
        (result, Served::Called { latency })
    }
}

/// The account's gate shared by replicas (`[shared]`): two keys in Redis.
///
/// - `lease`: taken with `SET NX PX min_interval` before a call (rule 2 across replicas), its
///   value the caller's replica id while the call runs; when it ends, rewritten as
///   [`LeaseDone`] with the expiry of the interval from the end of the call (rule 3), or
///   deleted when the call provably never left (as the local gate undoes its claim).
/// - `snapshot`: the latest good snapshot ([`StoredSnapshot`]), kept [`SNAPSHOT_KEEP`].
///
/// A replica whose local gate is open reads the lease: none, it takes it and calls; another
/// replica's call in flight, it waits (at most `call_wait`: the Xenioo upstream timeout plus
/// [`SHARED_CALL_MARGIN`]) for its end; ended, it
/// adopts the interval and the snapshot (so `nextCallAllowedAt` is equal on every replica) and
/// serves it. It never calls without the lease: when the tier is down, it serves its last
/// snapshot as stale, or `UPSTREAM_THROTTLED` with `retryAfter` ([`SHARED_DOWN_RETRY`]).
struct SharedGate {
    tier: SharedTier,
    call_wait: Duration,
    lease: String,
    snapshot: String,
}

/// A replica waits for another replica's Xenioo call to end for the upstream timeout plus
/// this (reading and storing a snapshot of tens of thousands of entries takes time), then
/// answers without it. It never calls itself after waiting.
pub const SHARED_CALL_MARGIN: Duration = Duration::from_secs(5);

/// The `retryAfter` of a Xenioo read refused because the shared tier is down: the tier is
/// retried about every second, so a few seconds is a fair hint.
pub const SHARED_DOWN_RETRY: Duration = Duration::from_secs(5);

/// How long the shared snapshot is kept: long past its interval, as the stale fallback.
const SNAPSHOT_KEEP: Duration = Duration::from_secs(31 * 24 * 3600);

/// How often a replica waiting for another's call looks at the lease.
const LEASE_POLL: Duration = Duration::from_millis(25);

/// The lease of an ended call: when the next call is allowed (wall clock, Unix ms), why not
/// before, whether the call failed, and which snapshot is the latest.
#[derive(serde::Serialize, serde::Deserialize)]
struct LeaseDone {
    #[serde(rename = "atMs")]
    at_ms: i64,
    #[serde(rename = "providerThrottled")]
    provider_throttled: bool,
    failed: bool,
    #[serde(rename = "fetchedAtMs")]
    fetched_at_ms: Option<i64>,
}

/// A snapshot as stored in Redis (entries as tuples: this is the largest value we store).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSnapshot {
    v: u32,
    #[serde(rename = "fetchedAtMs")]
    fetched_at_ms: i64,
    #[serde(rename = "fromMs")]
    from_ms: i64,
    #[serde(rename = "toMs")]
    to_ms: i64,
    skipped: usize,
    /// start ms, end ms, bot, channel, type code, value.
    entries: Vec<(i64, i64, String, Option<String>, u8, f64)>,
}

fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

impl StoredSnapshot {
    fn of(snapshot: &Snapshot) -> StoredSnapshot {
        StoredSnapshot {
            v: crate::cache::KEY_VERSION,
            fetched_at_ms: snapshot.fetched_at.timestamp_millis(),
            from_ms: snapshot.from.timestamp_millis(),
            to_ms: snapshot.to.timestamp_millis(),
            skipped: snapshot.skipped,
            entries: snapshot
                .entries
                .iter()
                .map(|e| {
                    (
                        e.start.timestamp_millis(),
                        e.end.timestamp_millis(),
                        e.bot.clone(),
                        e.channel.clone(),
                        e.kind.code(),
                        e.value,
                    )
                })
                .collect(),
        }
    }

    fn snapshot(self) -> Option<Snapshot> {
        if self.v != crate::cache::KEY_VERSION {
            return None;
        }
        let entries = self
            .entries
            .into_iter()
            .map(|(start, end, bot, channel, code, value)| {
                Some(Entry {
                    start: from_millis(start)?,
                    end: from_millis(end)?,
                    bot,
                    channel,
                    kind: BotMetric::from_code(code)?,
                    value,
                })
            })
            .collect::<Option<Vec<Entry>>>()?;
        Some(Snapshot {
            fetched_at: from_millis(self.fetched_at_ms)?,
            from: from_millis(self.from_ms)?,
            to: from_millis(self.to_ms)?,
            entries,
            skipped: self.skipped,
            index: LazyIndex::default(),
        })
    }
}

/// `UPSTREAM_THROTTLED` when the shared tier cannot be used: no lease, no call.
fn shared_down() -> UpstreamError {
    UpstreamError::new(
        Provider::Xenioo,
        UpstreamErrorKind::WaitingForNextCall {
            reason: "the replicas' shared tier (Redis) cannot be reached, and Xenioo is called \
                     only under the account's lease there"
                .into(),
            retry_after_secs: retry_after_secs(SHARED_DOWN_RETRY),
        },
    )
}

impl Gate {
    /// Under the local lock, with the local gate open: take the account's shared lease (None:
    /// go on and call), or serve what the other replicas' latest call left.
    async fn shared_decision(
        &self,
        shared: &SharedGate,
        state: &mut GateState,
    ) -> Option<(Result<SnapshotRead, UpstreamError>, Served)> {
        let deadline = Instant::now() + shared.call_wait;
        let mut waited = false;
        loop {
            let key = shared.lease.clone();
            let lease = shared
                .tier
                .run(|mut c| async move {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<String>>(&mut c)
                        .await
                })
                .await;
            let Some(lease) = lease else {
                return Some((self.fail_closed(state), Served::Held));
            };
            let Some(lease) = lease else {
                let holder = shared.tier.replica().as_bytes().to_vec();
                match shared
                    .tier
                    .set_nx_px(&shared.lease, &holder, self.min_interval)
                    .await
                {
                    Some(true) => return None,
                    // Another replica took it just now: read it again.
                    Some(false) => continue,
                    None => return Some((self.fail_closed(state), Served::Held)),
                }
            };
            match serde_json::from_str::<LeaseDone>(&lease) {
                Ok(done) => {
                    if !self.adopt(shared, state, &done).await {
                        return Some((self.fail_closed(state), Served::Held));
                    }
                    let served = if waited { Served::Joined } else { Served::Held };
                    let result = match state.time_left(Instant::now()) {
                        Some(left) => state.within_interval(left, self.min_interval),
                        None => state.outcome(self.min_interval),
                    };
                    return Some((result, served));
                }
                // A replica id: its call is in flight. Wait for its end, never call instead.
                Err(_) if Instant::now() < deadline => {
                    waited = true;
                    tokio::time::sleep(LEASE_POLL).await;
                }
                Err(_) => {
                    // That call did not end in time (its replica may have died mid-call): it
                    // may have counted, so close this replica's gate until its lease expires
                    // rather than make every later read wait again.
                    let key = shared.lease.clone();
                    let left_ms = shared
                        .tier
                        .run(|mut c| async move {
                            redis::cmd("PTTL")
                                .arg(&key)
                                .query_async::<i64>(&mut c)
                                .await
                        })
                        .await
                        .filter(|ms| *ms > 0)
                        .map_or(SHARED_DOWN_RETRY, |ms| {
                            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                        });
                    state.closed_at = Some(Instant::now());
                    state.hold = left_ms;
                    state.wait = CallWait::CallInterval;
                    state.last_error = Some(UpstreamError::new(
                        Provider::Xenioo,
                        UpstreamErrorKind::Unavailable(
                            "another replica's call did not end in time".into(),
                        ),
                    ));
                    self.publish_next_allowed(state.hold, state.wait);
                    return Some((
                        state.within_interval(left_ms, self.min_interval),
                        Served::Held,
                    ));
                }
            }
        }
    }

    /// Take over the interval and the snapshot of another replica's ended call; false when
    /// the snapshot it names cannot be read (the tier went down meanwhile).
    async fn adopt(&self, shared: &SharedGate, state: &mut GateState, done: &LeaseDone) -> bool {
        let held = state.good.as_ref().map(|g| g.fetched_at.timestamp_millis());
        if done.fetched_at_ms.is_some() && done.fetched_at_ms != held {
            let key = shared.snapshot.clone();
            let stored = shared
                .tier
                .run(|mut c| async move {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<Vec<u8>>>(&mut c)
                        .await
                })
                .await;
            let Some(stored) = stored else {
                return false;
            };
            let snapshot = stored
                .and_then(|bytes| serde_json::from_slice::<StoredSnapshot>(&bytes).ok())
                .and_then(StoredSnapshot::snapshot);
            if let Some(snapshot) = snapshot {
                *self
                    .held_from
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot.from);
                state.good = Some(Arc::new(snapshot));
            }
        }
        let left_ms = done
            .at_ms
            .saturating_sub(Utc::now().timestamp_millis())
            .max(0);
        state.closed_at = Some(Instant::now());
        state.hold = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        state.wait = if done.provider_throttled {
            CallWait::ProviderThrottled
        } else {
            CallWait::CallInterval
        };
        state.last_error = done.failed.then(|| {
            UpstreamError::new(
                Provider::Xenioo,
                UpstreamErrorKind::Unavailable(
                    "the latest call (by another replica) failed".into(),
                ),
            )
        });
        if let Some(at) = from_millis(done.at_ms) {
            self.publish(Some(NextCall {
                at,
                wait: state.wait,
            }));
        }
        true
    }

    /// The tier cannot be used: no lease, so no call. The last snapshot, stale, or
    /// `UPSTREAM_THROTTLED`.
    fn fail_closed(&self, state: &GateState) -> Result<SnapshotRead, UpstreamError> {
        match &state.good {
            Some(good) => Ok(SnapshotRead {
                snapshot: Arc::clone(good),
                stale: true,
                warning: Some(shared_down()),
                fresh_until: Instant::now(),
            }),
            None => Err(shared_down()),
        }
    }

    /// After this replica's call (state already updated): publish it to the other replicas.
    /// A call that never left releases the lease; any other stores the snapshot (if good) and
    /// rewrites the lease as ended, expiring with the local interval.
    async fn share_call(&self, shared: &SharedGate, state: &GateState, sent: bool) {
        if !sent {
            shared
                .tier
                .release(std::slice::from_ref(&shared.lease))
                .await;
            return;
        }
        let fetched_at_ms = state.good.as_ref().map(|g| g.fetched_at.timestamp_millis());
        if state.last_error.is_none() {
            if let Some(good) = &state.good {
                if let Ok(text) = serde_json::to_vec(&StoredSnapshot::of(good)) {
                    shared
                        .tier
                        .set_px(&shared.snapshot, &text, SNAPSHOT_KEEP)
                        .await;
                }
            }
        }
        let at_ms = self.next_call().map_or_else(
            || Utc::now().timestamp_millis(),
            |next| next.at.timestamp_millis(),
        );
        let done = LeaseDone {
            at_ms,
            provider_throttled: state.wait == CallWait::ProviderThrottled,
            failed: state.last_error.is_some(),
            fetched_at_ms,
        };
        // Millisecond precision, as the other replicas read it: `nextCallAllowedAt` is equal.
        if let Some(at) = from_millis(at_ms) {
            self.publish(Some(NextCall {
                at,
                wait: state.wait,
            }));
        }
        if let Ok(text) = serde_json::to_vec(&done) {
            shared.tier.set_px(&shared.lease, &text, state.hold).await;
        }
    }
}

/// Where the hourly data of a snapshot answered at `at` starts: [`SNAPSHOT_DAYS`] before the
/// start of that hour.
fn coverage_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Granularity::Hour.floor(at, Zone::utc()) - chrono::Duration::days(SNAPSHOT_DAYS)
}

/// The snapshot in `body`, the answer to a call made at `requested_at` and received at
/// `fetched_at`. Entries that cannot be read are skipped, counted and logged once.
fn parse_snapshot(
    body: &[Value],
    requested_at: DateTime<Utc>,
    fetched_at: DateTime<Utc>,
) -> Snapshot {
    let mut entries = Vec::with_capacity(body.len());
    let mut skipped = 0;
    let mut first_problem = None;
    for item in body {
        match parse_entry(item) {
            Ok(entry) => entries.push(entry),
            Err(problem) => {
                skipped += 1;
                first_problem.get_or_insert(problem);
            }
        }
    }
    if let Some(first_problem) = first_problem {
        tracing::warn!(
            provider = Provider::Xenioo.slug(),
            skipped,
            total = body.len(),
            first_problem,
            "skipped Xenioo statistics entries that could not be read"
        );
    }
    let to = Granularity::Hour.floor(requested_at, Zone::utc());
    let from = coverage_start(fetched_at.max(requested_at));
    Snapshot {
        fetched_at,
        from,
        to,
        entries,
        skipped,
        index: LazyIndex::default(),
    }
}

/// One entry, or why it cannot be read (for the log; never shown to clients).
fn parse_entry(item: &Value) -> Result<Entry, &'static str> {
    let fields = item.as_object().ok_or("an entry is not a JSON object")?;
    let value = ["Value", "Count"]
        .iter()
        .find_map(|name| number(fields.get(*name)?))
        .ok_or("no finite numeric Value or Count")?;
    let kind = fields
        .get("EventLabel")
        .and_then(Value::as_str)
        .and_then(BotMetric::from_label)
        .or_else(|| {
            let code = number(fields.get("EventType")?)?;
            let code = (code.fract() == 0.0 && (0.0..=17.0).contains(&code)).then_some(code)?;
            BotMetric::from_code(code as u8)
        })
        .ok_or("no known EventLabel or EventType 0-17")?;
    let label = fields
        .get("GroupLabel")
        .and_then(Value::as_str)
        .ok_or("no GroupLabel")?;
    let (start, end) = parse_group_label(label)
        .ok_or("GroupLabel is not RFC 3339, yyyy-MM-dd HH:mm, yyyy-MM-dd, yyyy-MM or yyyy")?;
    let bot = text(fields, "BotName").ok_or("no BotName")?;
    Ok(Entry {
        start,
        end,
        bot,
        channel: text(fields, "ChannelName"),
        kind,
        value,
    })
}

/// A finite number given as a JSON number or a numeric string.
fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A non-empty string field, trimmed.
fn text(fields: &Map<String, Value>, name: &str) -> Option<String> {
    let s = fields.get(name)?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The UTC bucket a `GroupLabel` names. An RFC 3339 instant starts an hour (we ask for hour
/// groups); the other forms name their own hour, day, month or year.
fn parse_group_label(label: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let label = label.trim();
    let utc = Zone::utc();
    let span = |granularity: Granularity, start: DateTime<Utc>| {
        Some((start, granularity.next(start, utc)))
    };
    if let Ok(instant) = DateTime::parse_from_rfc3339(label) {
        return span(Granularity::Hour, instant.with_timezone(&Utc));
    }
    if let Ok(hour) = NaiveDateTime::parse_from_str(label, "%Y-%m-%d %H:%M") {
        return span(Granularity::Hour, hour.and_utc());
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let midnight = |date: NaiveDate| date.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    if let Ok(day) = NaiveDate::parse_from_str(label, "%Y-%m-%d") {
        return span(Granularity::Day, midnight(day)?);
    }
    match label.split_once('-') {
        Some((year, month)) if year.len() == 4 && month.len() == 2 => {
            if !(digits(year) && digits(month)) {
                return None;
            }
            let first = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
            span(Granularity::Month, midnight(first)?)
        }
        None if label.len() == 4 && digits(label) => {
            let first = NaiveDate::from_ymd_opt(label.parse().ok()?, 1, 1)?;
            span(Granularity::Year, midnight(first)?)
        }
        _ => None,
    }
}

impl Source for Xenioo {
    fn upstream(&self) -> &Upstream {
        &self.client.upstream
    }

    fn feeds(&self) -> &'static [Feed] {
        FEEDS
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn next_call(&self) -> Option<NextCall> {
        Xenioo::next_call(self)
    }

    /// The channel names of the snapshot (reading it: one call per interval at most).
    fn channels<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
    ) -> BoxFuture<'a, Result<Vec<Arc<dyn ChannelFeed>>, UpstreamError>> {
        async move {
            let read = snapshot_read(workspace, fetcher).await?;
            Ok(channels(&read.snapshot)
                .iter()
                .map(|name| Arc::new(XeniooChannel(name.clone())) as Arc<dyn ChannelFeed>)
                .collect())
        }
        .boxed()
    }
}

/// A Xenioo channel: a `ChannelName` of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XeniooChannel(pub String);

impl ChannelFeed for XeniooChannel {
    fn provider(&self) -> Provider {
        Provider::Xenioo
    }

    fn key(&self) -> String {
        self.0.clone()
    }

    fn kind(&self) -> ChannelKind {
        if self.0.eq_ignore_ascii_case("webchat") {
            ChannelKind::Web
        } else if self.0.eq_ignore_ascii_case("sms") {
            ChannelKind::Sms
        } else {
            ChannelKind::Messaging
        }
    }

    fn name(&self) -> String {
        format!("Xenioo {}", self.0)
    }

    /// Messages only: event type "Messages" of this channel, from the hourly snapshot.
    fn part(
        &self,
        _workspace: &Workspace,
        metric: ChannelMetric,
        _filter: &ConversationFilter,
    ) -> Option<Part> {
        (metric == ChannelMetric::Messages)
            .then(|| events(BotMetric::Messages, None, Some(self.0.clone())))
    }
}

/// The Xenioo snapshot. Not through the chunk cache: the client itself guarantees one call per
/// interval and serves its last snapshot, stale when a refresh failed. Read once per request
/// (every Xenioo field of an answer shows the same snapshot) and traced like a chunk: how the
/// client served it (`upstream`, `coalesced`, `hit`, `stale`, `error`, or `throttled` when
/// the gate refused without a call). The request's scope learns how long the snapshot holds,
/// or that the read failed or was stale, as it would from a chunk.
pub async fn snapshot_read(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
) -> Result<SnapshotRead, UpstreamError> {
    let key = snapshot_key(workspace)?;
    let (workspace, scope, traced) = (workspace.clone(), fetcher.scope.clone(), key.clone());
    let read = fetcher.once(key, move || async move {
        let (read, served) = configured(workspace.xenioo.as_ref(), Provider::Xenioo)?
            .snapshot_served()
            .await;
        let stale = matches!(&read, Ok(read) if read.stale);
        let (outcome, latency, called) = match (&read, served) {
            (Ok(_), Served::Called { latency }) if !stale => ("upstream", Some(latency), true),
            (Ok(_), Served::Called { latency }) => ("stale", Some(latency), true),
            (Err(_), Served::Called { latency }) => ("error", Some(latency), true),
            (Ok(_), Served::Joined) if !stale => ("coalesced", None, true),
            (Ok(_), Served::Joined) => ("stale", None, true),
            (Err(_), Served::Joined) => ("error", None, true),
            // Inside the interval: no call, whatever the gate holds.
            (Ok(_), Served::Held) if !stale => ("hit", None, false),
            (Ok(_), Served::Held) => ("stale", None, false),
            (Err(_), Served::Held) => ("throttled", None, false),
        };
        scope.record_read(&traced, outcome, latency, called);
        match &read {
            Ok(read) if !read.stale => scope.used(read.fresh_until),
            _ => scope.failed(),
        }
        read
    });
    read.await.unwrap_or_else(|| {
        Err(UpstreamError::new(
            Provider::Xenioo,
            UpstreamErrorKind::Invalid("internal: the snapshot was read as another type".into()),
        ))
    })
}

/// The snapshot's key in request traces (it is held by the Xenioo client, not the chunk cache).
fn snapshot_key(workspace: &Workspace) -> Result<CacheKey, UpstreamError> {
    Ok(CacheKey {
        account: workspace.account(Provider::Xenioo)?.clone(),
        endpoint: ENDPOINT,
        request: String::new(),
    })
}

/// Xenioo's contribution to a series of event type `kind`, optionally of one bot and/or
/// channel, from the hourly snapshot; the part of `window` before the snapshot's start is
/// reported as out of retention.
pub(crate) async fn contribute(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
    kind: BotMetric,
    bot: Option<&str>,
    channel: Option<&str>,
) -> Result<Contribution, UpstreamError> {
    let xenioo = configured(workspace.xenioo.as_ref(), Provider::Xenioo)?;
    let earliest = xenioo.earliest_coverage(Utc::now());
    if window.to() <= earliest {
        // No snapshot, held or new, has any of the window: do not spend the hour.
        return Err(out_of_retention(earliest));
    }
    let read = snapshot_read(workspace, fetcher).await?;
    let snapshot = &read.snapshot;
    let (on_buckets, inexact) = snapshot.on_buckets(kind, bot, channel, window);
    let mut contribution = Contribution {
        samples: on_buckets.to_vec(),
        total: None,
        stale: read.stale,
        warnings: read.warning.clone().into_iter().collect(),
        partial: Vec::new(),
        inexact,
        // A value derived from the snapshot holds until the gate opens: no other snapshot can
        // exist before, so the held one, whose start decides what is out of retention, stays.
        chunks: vec![snapshot_key(workspace)?],
        fresh_until: (!read.stale).then_some(read.fresh_until),
    };
    if window.to() <= snapshot.from {
        // Nothing of the window is in the snapshot: Xenioo contributes nothing.
        return Err(out_of_retention(snapshot.from));
    }
    if window.from() < snapshot.from {
        contribution.partial.push(out_of_retention(snapshot.from));
    }
    Ok(contribution)
}

/// Xenioo's part of a series: one event type, optionally of one bot and/or channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Events {
    pub kind: BotMetric,
    pub bot: Option<String>,
    pub channel: Option<String>,
}

/// The part of a series that counts event type `kind` (of `bot` and `channel` when given).
pub fn events(kind: BotMetric, bot: Option<String>, channel: Option<String>) -> Part {
    Part::new(Events { kind, bot, channel })
}

impl Contributes for Events {
    fn provider(&self) -> Provider {
        Provider::Xenioo
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn key_text(&self) -> String {
        key_text("xenioo.events", self)
    }

    fn contribute<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
        window: &'a Window,
        _span: &'a Window,
        _total_only: bool,
    ) -> BoxFuture<'a, Result<Contribution, UpstreamError>> {
        contribute(
            workspace,
            fetcher,
            window,
            self.kind,
            self.bot.as_deref(),
            self.channel.as_deref(),
        )
        .boxed()
    }
}

/// Xenioo keeps 30 days: the part of a window before `from` has no Xenioo data.
fn out_of_retention(from: DateTime<Utc>) -> UpstreamError {
    UpstreamError::new(
        Provider::Xenioo,
        UpstreamErrorKind::OutOfRetention(format!(
            "{} (Xenioo keeps 30 days of history)",
            from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{self, accounts, Sandbox, SandboxOptions};
    use chrono::TimeZone;
    use serde_json::json;
    use std::sync::Mutex;

    /// Every instant: samples without a window filter.
    const ALL_TIME: (DateTime<Utc>, DateTime<Utc>) =
        (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);

    const TOKEN: &str = "xen-acme-token";
    const HOUR: Duration = Duration::from_secs(3600);

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid test date")
    }

    async fn start_sandbox(throttle: Duration) -> Sandbox {
        sandbox::start(
            "127.0.0.1:0".parse().expect("loopback address"),
            SandboxOptions {
                xenioo_throttle: throttle,
            },
        )
        .await
        .expect("the sandbox starts")
    }

    fn client(sandbox: &Sandbox, token: &str, interval: Duration) -> Xenioo {
        Xenioo::new(
            reqwest::Client::new(),
            format!("{}/xenioo/", sandbox.base_url()),
            Secret::new(token),
            interval,
        )
    }

    fn xenioo_statuses(sandbox: &Sandbox) -> Vec<u16> {
        sandbox
            .state()
            .calls()
            .iter()
            .filter(|c| c.provider == "xenioo")
            .map(|c| c.status)
            .collect()
    }

    fn set_fault(sandbox: &Sandbox, spec: Value) {
        let spec = serde_json::from_value(spec).expect("a valid fault spec");
        sandbox.state().faults().set(spec);
    }

    fn empty_snapshot(marker: usize) -> Snapshot {
        let t = utc(2024, 1, 1, 0);
        Snapshot {
            fetched_at: t,
            from: t,
            to: t,
            entries: Vec::new(),
            skipped: marker,
            index: LazyIndex::default(),
        }
    }

    fn unavailable() -> UpstreamError {
        UpstreamError::new(
            Provider::Xenioo,
            UpstreamErrorKind::Unavailable("HTTP 503".into()),
        )
    }

    fn could_not_connect() -> UpstreamError {
        UpstreamError::new(
            Provider::Xenioo,
            UpstreamErrorKind::Unavailable(COULD_NOT_CONNECT.into()),
        )
    }

    /// The wait of Xenioo's own 429.
    fn retry_after(error: &UpstreamError) -> Option<u64> {
        match error.kind {
            UpstreamErrorKind::Throttled { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        }
    }

    /// The wait of our own interval after a call that may have counted.
    fn waiting_secs(error: &UpstreamError) -> Option<u64> {
        match error.kind {
            UpstreamErrorKind::WaitingForNextCall {
                retry_after_secs, ..
            } => Some(retry_after_secs),
            _ => None,
        }
    }

    // ---- pure parts ----

    #[test]
    fn metric_codes_labels_and_averages_match_the_upstream() {
        for (code, metric) in BotMetric::ALL.iter().enumerate() {
            let code = u8::try_from(code).expect("18 codes fit a u8");
            assert_eq!(metric.code(), code);
            assert_eq!(BotMetric::from_code(code), Some(*metric));
            assert_eq!(
                metric.label(),
                sandbox::xenioo::EVENT_LABELS[usize::from(code)]
            );
            assert_eq!(BotMetric::from_label(metric.label()), Some(*metric));
            assert_eq!(metric.is_average(), sandbox::xenioo::is_average(code));
        }
        assert_eq!(BotMetric::from_code(18), None);
        assert_eq!(
            BotMetric::from_label(" time_to_pick-up "),
            Some(BotMetric::TimeToPickUp)
        );
        assert_eq!(BotMetric::from_label("Unknown"), None);
        assert_eq!(BotMetric::from_label(""), None);
        let averages: Vec<u8> = BotMetric::ALL
            .iter()
            .filter(|m| m.is_average())
            .map(|m| m.code())
            .collect();
        assert_eq!(averages, vec![8, 9, 10, 11, 16]);
    }

    #[test]
    fn the_one_call_asks_for_every_bot_and_type_by_hour_over_30_days() {
        assert_eq!(
            snapshot_path(),
            "/analytics/statistics/account/*/0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17/hour/30"
        );
    }

    #[test]
    fn group_labels_name_a_utc_bucket_whose_span_follows_the_form() {
        let cases = [
            ("2024-03-05 14:00", utc(2024, 3, 5, 14), utc(2024, 3, 5, 15)),
            (
                "2024-03-05T14:00:00+02:00",
                utc(2024, 3, 5, 12),
                utc(2024, 3, 5, 13),
            ),
            ("2024-02-29", utc(2024, 2, 29, 0), utc(2024, 3, 1, 0)),
            ("2024-12", utc(2024, 12, 1, 0), utc(2025, 1, 1, 0)),
            ("2024", utc(2024, 1, 1, 0), utc(2025, 1, 1, 0)),
        ];
        for (label, start, end) in cases {
            assert_eq!(parse_group_label(label), Some((start, end)), "{label}");
        }
        for bad in [
            "n/a",
            "",
            "2024-13",
            "2024-1",
            "24",
            "2024-02-30",
            "2024-ab",
        ] {
            assert_eq!(parse_group_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn entries_are_read_tolerantly_and_unreadable_ones_are_skipped_and_counted() {
        let body = vec![
            // The sandbox's shape.
            json!({"GroupLabel":"2024-03-05 14:00","BotName":"Acme Helper","ChannelName":"Facebook",
                   "EventLabel":"Messages","EventType":3,"Value":12}),
            // Count instead of Value, EventType only, a numeric string, unknown fields, no channel.
            json!({"GroupLabel":"2024-03-05","BotName":"B","EventType":"9","Count":"42.5","Extra":[1]}),
            // An unknown label falls back to EventType.
            json!({"GroupLabel":"2024","BotName":"B","ChannelName":"","EventLabel":"Renamed","EventType":17,"Value":1}),
            // Unreadable: the sandbox's deliberate entry (no value, label not a date).
            json!({"GroupLabel":"n/a","BotName":"Acme Helper","EventLabel":"Messages"}),
            json!({"GroupLabel":"2024-03-05 14:00","BotName":"B","EventType":18,"Value":1}),
            json!({"GroupLabel":"2024-03-05 14:00","BotName":"B","EventType":2.5,"Value":1}),
            json!({"GroupLabel":"2024-03-05 14:00","EventType":3,"Value":1}),
            json!({"GroupLabel":"2024-03-05 14:00","BotName":"B","EventType":3,"Value":"NaN"}),
            json!({"BotName":"B","EventType":3,"Value":1}),
            json!([1, 2]),
            json!(null),
        ];
        let at = utc(2024, 4, 1, 10) + chrono::Duration::minutes(5);
        let snapshot = parse_snapshot(&body, at, at);
        assert_eq!(snapshot.skipped, 8);
        assert_eq!(snapshot.entries.len(), 3);
        assert_eq!(
            snapshot.entries[0],
            Entry {
                start: utc(2024, 3, 5, 14),
                end: utc(2024, 3, 5, 15),
                bot: "Acme Helper".into(),
                channel: Some("Facebook".into()),
                kind: BotMetric::Messages,
                value: 12.0,
            }
        );
        let second = &snapshot.entries[1];
        assert_eq!(
            (second.kind, second.value, second.channel.as_deref()),
            (BotMetric::TimeToPickUp, 42.5, None)
        );
        assert_eq!(second.end - second.start, chrono::Duration::days(1));
        assert_eq!(snapshot.entries[2].kind, BotMetric::OperatorMessage);
        assert_eq!(snapshot.entries[2].channel, None);
        assert_eq!(snapshot.to, utc(2024, 4, 1, 10));
        assert_eq!(snapshot.from, utc(2024, 3, 2, 10));
        assert!(snapshot.approx_bytes() > 3 * std::mem::size_of::<Entry>());
    }

    #[test]
    fn coverage_is_conservative_when_the_call_straddles_an_hour() {
        let sent = utc(2024, 4, 1, 10) - chrono::Duration::seconds(1);
        let received = utc(2024, 4, 1, 10) + chrono::Duration::seconds(1);
        let snapshot = parse_snapshot(&[], sent, received);
        assert_eq!(snapshot.to, utc(2024, 4, 1, 9));
        assert_eq!(snapshot.from, utc(2024, 3, 2, 10));
        assert_eq!(snapshot.fetched_at, received);
    }

    #[test]
    fn a_selection_on_buckets_resamples_to_what_its_hourly_entries_resample_to() {
        // Two bots on two channels, every hour of three days, values that differ per entry,
        // and one entry spanning two hours (inexact on hour buckets), so `exact` is compared
        // too.
        let mut entries = Vec::new();
        for hour in 0..72 {
            let start = utc(2024, 3, 4, 0) + chrono::Duration::hours(hour);
            for (b, bot) in ["A", "B"].into_iter().enumerate() {
                for (c, channel) in ["Web", "Fb"].into_iter().enumerate() {
                    for kind in [
                        BotMetric::Messages,
                        BotMetric::ActiveUser,
                        BotMetric::TimeToPickUp,
                    ] {
                        entries.push(Entry {
                            start,
                            end: start + chrono::Duration::hours(1),
                            bot: bot.into(),
                            channel: Some(channel.into()),
                            kind,
                            value: (hour * 7 + b as i64 * 3 + c as i64) as f64 / 2.0,
                        });
                    }
                }
            }
        }
        entries.push(Entry {
            start: utc(2024, 3, 5, 10),
            end: utc(2024, 3, 5, 12),
            bot: "A".into(),
            channel: Some("Web".into()),
            kind: BotMetric::Messages,
            value: 5.0,
        });
        let snapshot = Snapshot {
            entries,
            ..empty_snapshot(0)
        };
        let sydney = Zone::parse("Australia/Sydney").expect("a zone");
        let windows = [
            (Granularity::Hour, Zone::utc()),
            (Granularity::Day, Zone::utc()),
            (Granularity::Day, sydney),
            (Granularity::Week, sydney),
        ]
        .map(|(granularity, zone)| {
            Window::new(utc(2024, 3, 4, 5), utc(2024, 3, 7, 0), granularity, zone)
                .expect("a window")
        });
        let mut inexact_seen = false;
        for window in &windows {
            for kind in [
                BotMetric::Messages,
                BotMetric::ActiveUser,
                BotMetric::TimeToPickUp,
            ] {
                for (bot, channel) in [
                    (None, None),
                    (Some("A"), None),
                    (Some("B"), Some("Fb")),
                    (None, Some("Web")),
                    (Some("C"), None),
                ] {
                    let hourly =
                        samples(&snapshot, kind, bot, channel, (window.from(), window.to()));
                    let expected = resample(window, kind.aggregation(), &hourly);
                    // Twice: computed, then from the memo.
                    for _ in 0..2 {
                        let (on_buckets, inexact) = snapshot.on_buckets(kind, bot, channel, window);
                        let mut got = resample(window, kind.aggregation(), &on_buckets);
                        got.exact &= !inexact;
                        assert_eq!(got, expected, "{kind:?} {bot:?} {channel:?} {window:?}");
                        inexact_seen |= inexact;
                    }
                }
            }
        }
        assert!(
            inexact_seen,
            "some selection was inexact (the check covers `exact`)"
        );
    }

    #[test]
    fn samples_filter_by_kind_bot_and_channel_and_keep_entries_separate() {
        let entry = |bot: &str, channel: Option<&str>, kind, value| Entry {
            start: utc(2024, 3, 5, 14),
            end: utc(2024, 3, 5, 15),
            bot: bot.into(),
            channel: channel.map(Into::into),
            kind,
            value,
        };
        let snapshot = Snapshot {
            entries: vec![
                entry("A", Some("Web"), BotMetric::Messages, 1.0),
                entry("A", Some("Fb"), BotMetric::Messages, 2.0),
                entry("B", Some("Web"), BotMetric::Messages, 4.0),
                entry("B", None, BotMetric::Messages, 8.0),
                entry("A", Some("Web"), BotMetric::NewUser, 16.0),
            ],
            ..empty_snapshot(0)
        };
        let total = |bot, channel| -> Vec<f64> {
            samples(&snapshot, BotMetric::Messages, bot, channel, ALL_TIME)
                .iter()
                .map(|s| s.value)
                .collect()
        };
        assert_eq!(total(None, None), vec![1.0, 2.0, 4.0, 8.0]);
        assert_eq!(total(Some("A"), None), vec![1.0, 2.0]);
        assert_eq!(total(None, Some("Web")), vec![1.0, 4.0]);
        assert_eq!(total(Some("B"), Some("Web")), vec![4.0]);
        assert_eq!(total(Some("C"), None), Vec::<f64>::new());
        let bots = bots(&snapshot);
        assert_eq!(bots["A"], BTreeSet::from(["Fb".into(), "Web".into()]));
        assert_eq!(bots["B"], BTreeSet::from(["Web".into()]));
        assert_eq!(
            *channels(&snapshot),
            BTreeSet::from(["Fb".into(), "Web".into()])
        );
    }

    // ---- the gate, with a fake upstream ----

    type FakeCall = std::pin::Pin<Box<dyn Future<Output = Result<Snapshot, UpstreamError>> + Send>>;

    /// A fake upstream that records when each call started and ended.
    #[derive(Default)]
    struct FakeUpstream {
        calls: Mutex<Vec<(Instant, Instant)>>,
    }

    impl FakeUpstream {
        fn count(&self) -> usize {
            self.calls.lock().expect("test lock").len()
        }

        /// A call that takes `latency` and then returns `result`.
        fn call(
            self: &Arc<Self>,
            latency: Duration,
            result: Result<Snapshot, UpstreamError>,
        ) -> impl FnOnce() -> FakeCall {
            let fake = Arc::clone(self);
            move || {
                Box::pin(async move {
                    let started = Instant::now();
                    tokio::time::sleep(latency).await;
                    fake.calls
                        .lock()
                        .expect("test lock")
                        .push((started, Instant::now()));
                    result
                })
            }
        }

        /// Asserts the guarantee: each call started at least `interval` after the previous
        /// one ended (so also never two at once).
        fn assert_spaced(&self, interval: Duration) {
            let calls = self.calls.lock().expect("test lock");
            for pair in calls.windows(2) {
                let gap = pair[1].0.saturating_duration_since(pair[0].1);
                assert!(
                    pair[1].0 >= pair[0].1 && gap >= interval,
                    "a call started {gap:?} after the previous one ended"
                );
            }
        }
    }

    #[tokio::test]
    async fn fifty_concurrent_readers_of_a_cold_gate_share_one_call() {
        let gate = Arc::new(Gate::new(HOUR));
        let fake = Arc::new(FakeUpstream::default());
        let readers = (0..50).map(|_| {
            let (gate, fake) = (Arc::clone(&gate), Arc::clone(&fake));
            tokio::spawn(async move {
                gate.read(fake.call(Duration::from_millis(50), Ok(empty_snapshot(7))))
                    .await
            })
        });
        let reads = futures::future::join_all(readers).await;
        assert_eq!(fake.count(), 1);
        let first = reads[0].as_ref().expect("task").as_ref().expect("snapshot");
        for read in &reads {
            let read = read.as_ref().expect("task").as_ref().expect("snapshot");
            assert!(Arc::ptr_eq(&read.snapshot, &first.snapshot));
            assert!(!read.stale && read.warning.is_none());
        }
    }

    #[tokio::test]
    async fn readers_waiting_on_a_failed_call_share_its_error_and_later_ones_wait_for_the_next_allowed_call(
    ) {
        let gate = Arc::new(Gate::new(HOUR));
        let fake = Arc::new(FakeUpstream::default());
        let readers = (0..10).map(|_| {
            let (gate, fake) = (Arc::clone(&gate), Arc::clone(&fake));
            tokio::spawn(async move {
                gate.read(fake.call(Duration::from_millis(50), Err(unavailable())))
                    .await
            })
        });
        for read in futures::future::join_all(readers).await {
            assert_eq!(read.expect("task").expect_err("failed"), unavailable());
        }
        let later = gate
            .read(fake.call(Duration::ZERO, Ok(empty_snapshot(0))))
            .await
            .expect_err("inside the interval");
        // The 503 may have counted at Xenioo, so the interval is spent; but Xenioo throttled
        // no one, and the error says it is chatstats that waits.
        assert_eq!(later.code(), crate::error::code::UPSTREAM_THROTTLED);
        let secs = waiting_secs(&later).expect("waiting for the next allowed call");
        assert!((3590..=3600).contains(&secs), "{secs}");
        let message = later.message();
        assert!(
            message.contains("chatstats waits for this account's next allowed call")
                && message.contains("HTTP 503")
                && !message.contains("throttling"),
            "{message}"
        );
        let next = gate.next_call().expect("a call was made");
        assert_eq!(next.wait, CallWait::CallInterval);
        assert_eq!(fake.count(), 1);
    }

    #[tokio::test]
    async fn a_call_that_never_left_spends_no_interval_and_the_next_reader_calls_again() {
        let circuit_open = UpstreamError::new(
            Provider::Xenioo,
            UpstreamErrorKind::CircuitOpen {
                failures: 5,
                last: COULD_NOT_CONNECT.into(),
                retry_after_secs: 30,
            },
        );
        for never_left in [could_not_connect(), circuit_open] {
            let gate = Arc::new(Gate::new(HOUR));
            let fake = Arc::new(FakeUpstream::default());
            let readers = (0..5).map(|_| {
                let (gate, fake, error) =
                    (Arc::clone(&gate), Arc::clone(&fake), never_left.clone());
                tokio::spawn(async move {
                    gate.read(fake.call(Duration::from_millis(30), Err(error)))
                        .await
                })
            });
            for read in futures::future::join_all(readers).await {
                assert_eq!(read.expect("task").expect_err("failed"), never_left);
            }
            assert_eq!(
                fake.count(),
                1,
                "concurrent readers still share one attempt"
            );
            assert_eq!(gate.next_call(), None, "as before the attempt: no call yet");
            let read = gate
                .read(fake.call(Duration::ZERO, Ok(empty_snapshot(4))))
                .await
                .expect("the gate was still open");
            assert_eq!(read.snapshot.skipped, 4);
            assert_eq!(fake.count(), 2);
            assert_eq!(
                gate.next_call().map(|next| next.wait),
                Some(CallWait::CallInterval)
            );
        }
    }

    #[tokio::test]
    async fn a_refresh_that_could_not_connect_serves_the_snapshot_stale_and_leaves_the_gate_open() {
        let interval = Duration::from_millis(100);
        let gate = Arc::new(Gate::new(interval));
        let fake = Arc::new(FakeUpstream::default());
        gate.read(fake.call(Duration::ZERO, Ok(empty_snapshot(1))))
            .await
            .expect("snapshot");
        // The interval passing is the behaviour under test.
        tokio::time::sleep(interval + Duration::from_millis(20)).await;
        let before = gate.next_call();
        let stale = gate
            .read(fake.call(Duration::ZERO, Err(could_not_connect())))
            .await
            .expect("the last good snapshot");
        assert!(stale.stale);
        assert_eq!(stale.warning, Some(could_not_connect()));
        assert_eq!(gate.next_call(), before, "the gate is as it was");
        let fresh = gate
            .read(fake.call(Duration::ZERO, Ok(empty_snapshot(2))))
            .await
            .expect("a new snapshot at once");
        assert!(!fresh.stale && fresh.snapshot.skipped == 2);
        assert_eq!(fake.count(), 3);
        fake.assert_spaced(Duration::ZERO);
    }

    #[tokio::test]
    async fn a_read_says_whether_it_called_joined_a_call_or_was_held() {
        let gate = Arc::new(Gate::new(HOUR));
        let fake = Arc::new(FakeUpstream::default());
        let readers = (0..5).map(|_| {
            let (gate, fake) = (Arc::clone(&gate), Arc::clone(&fake));
            tokio::spawn(async move {
                gate.read_served(fake.call(Duration::from_millis(50), Ok(empty_snapshot(0))))
                    .await
                    .1
            })
        });
        let mut served: Vec<Served> = futures::future::join_all(readers)
            .await
            .into_iter()
            .map(|r| r.expect("task"))
            .collect();
        let called = served
            .iter()
            .position(|s| matches!(s, Served::Called { .. }))
            .expect("one reader called");
        match served.remove(called) {
            Served::Called { latency } => assert!(latency >= Duration::from_millis(50)),
            other => panic!("{other:?}"),
        }
        assert_eq!(served, vec![Served::Joined; 4]);
        let (read, how) = gate
            .read_served(fake.call(Duration::ZERO, Ok(empty_snapshot(1))))
            .await;
        assert!(read.is_ok());
        assert_eq!(how, Served::Held);
        assert_eq!(fake.count(), 1);
    }

    #[tokio::test]
    async fn a_caller_dropped_mid_call_neither_cancels_the_call_nor_frees_the_interval() {
        let gate = Arc::new(Gate::new(HOUR));
        let fake = Arc::new(FakeUpstream::default());
        let impatient = tokio::time::timeout(
            Duration::from_millis(20),
            gate.read(fake.call(Duration::from_millis(150), Ok(empty_snapshot(3)))),
        )
        .await;
        assert!(impatient.is_err(), "the caller gave up before the answer");
        // The abandoned call still completes, and the next reader gets its snapshot.
        let read = gate
            .read(fake.call(Duration::ZERO, Ok(empty_snapshot(9))))
            .await
            .expect("the abandoned call's snapshot");
        assert_eq!(read.snapshot.skipped, 3);
        assert_eq!(fake.count(), 1);
    }

    #[tokio::test]
    async fn the_interval_runs_from_the_end_of_a_slow_call() {
        let interval = Duration::from_millis(100);
        let gate = Arc::new(Gate::new(interval));
        let fake = Arc::new(FakeUpstream::default());
        // The call takes longer than the interval: measured from its start, the gate would
        // already be open when it returns.
        gate.read(fake.call(Duration::from_millis(150), Ok(empty_snapshot(1))))
            .await
            .expect("snapshot");
        let read = gate
            .read(fake.call(Duration::ZERO, Ok(empty_snapshot(2))))
            .await
            .expect("the first snapshot");
        assert_eq!(read.snapshot.skipped, 1);
        assert_eq!(fake.count(), 1);
    }

    #[tokio::test]
    async fn an_upstream_retry_after_longer_than_the_interval_is_honoured() {
        let gate = Arc::new(Gate::new(Duration::from_millis(10)));
        let fake = Arc::new(FakeUpstream::default());
        let upstream_429 = UpstreamError::new(
            Provider::Xenioo,
            UpstreamErrorKind::Throttled {
                retry_after_secs: 120,
            },
        );
        let first = gate
            .read(fake.call(Duration::from_millis(20), Err(upstream_429.clone())))
            .await;
        assert_eq!(first.expect_err("429"), upstream_429);
        let next = gate
            .read(fake.call(Duration::from_millis(20), Ok(empty_snapshot(0))))
            .await
            .expect_err("still closed long after the 10 ms interval");
        let secs = retry_after(&next).expect("throttled");
        assert!((110..=120).contains(&secs), "{secs}");
        let next = gate.next_call().expect("a call was made");
        assert!(
            next.at > Utc::now() + chrono::Duration::seconds(100),
            "{next:?}"
        );
        assert_eq!(next.wait, CallWait::ProviderThrottled);
        assert_eq!(fake.count(), 1);
    }

    #[tokio::test]
    async fn under_sustained_load_with_failures_and_cancellations_calls_stay_spaced() {
        let interval = Duration::from_millis(40);
        let gate = Arc::new(Gate::new(interval));
        let fake = Arc::new(FakeUpstream::default());
        let until = Instant::now() + Duration::from_millis(600);
        let readers = (0..16u64).map(|reader| {
            let (gate, fake) = (Arc::clone(&gate), Arc::clone(&fake));
            tokio::spawn(async move {
                let mut round = 0u64;
                while Instant::now() < until {
                    round += 1;
                    let mix = reader * 7 + round * 13;
                    let result = if mix.is_multiple_of(3) {
                        Err(unavailable())
                    } else {
                        Ok(empty_snapshot(0))
                    };
                    let latency = Duration::from_millis(mix % 30);
                    let read = gate.read(fake.call(latency, result));
                    // Every fourth read is abandoned after 5 ms.
                    if mix.is_multiple_of(4) {
                        let _ = tokio::time::timeout(Duration::from_millis(5), read).await;
                    } else {
                        let _ = read.await;
                    }
                    // Load generation, not synchronisation: readers arrive at uneven times.
                    tokio::time::sleep(Duration::from_millis(1 + mix % 7)).await;
                }
            })
        });
        for reader in futures::future::join_all(readers).await {
            reader.expect("reader task");
        }
        // Let a call abandoned at the very end finish before inspecting the record.
        drop(gate.state.lock().await);
        let calls = fake.count();
        assert!(
            calls >= 5,
            "only {calls} calls: the test exercised too little"
        );
        assert!(calls <= 600 / 40 + 1, "{calls} calls in 600 ms");
        fake.assert_spaced(interval);
    }

    #[tokio::test]
    async fn next_call_allowed_at_is_unknown_before_the_first_call_then_an_interval_after_it() {
        let gate = Arc::new(Gate::new(HOUR));
        assert_eq!(gate.next_call_allowed_at(), None);
        let fake = Arc::new(FakeUpstream::default());
        gate.read(fake.call(Duration::ZERO, Ok(empty_snapshot(0))))
            .await
            .expect("snapshot");
        let at = gate.next_call_allowed_at().expect("after a call");
        let expected = Utc::now() + chrono::Duration::hours(1);
        assert!(
            (expected - at).num_seconds().abs() <= 2,
            "{at} vs {expected}"
        );
    }

    // ---- against the real sandbox ----

    #[tokio::test]
    async fn fifty_concurrent_snapshots_on_a_cold_client_make_exactly_one_sandbox_call() {
        let sandbox = start_sandbox(HOUR).await;
        let xenioo = Arc::new(client(&sandbox, TOKEN, HOUR));
        let readers = (0..50).map(|_| {
            let xenioo = Arc::clone(&xenioo);
            tokio::spawn(async move { xenioo.snapshot().await })
        });
        let reads = futures::future::join_all(readers).await;
        let calls = sandbox.state().calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(
            calls[0].path,
            "/analytics/statistics/account/*/0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17/hour/30"
        );
        assert_eq!(calls[0].status, 200);
        let first = reads[0].as_ref().expect("task").as_ref().expect("snapshot");
        assert!(!first.snapshot.entries.is_empty());
        for read in &reads {
            let read = read.as_ref().expect("task").as_ref().expect("snapshot");
            assert!(Arc::ptr_eq(&read.snapshot, &first.snapshot) && !read.stale);
        }
        let at = xenioo.next_call_allowed_at().expect("after the call");
        assert!(at > Utc::now() + chrono::Duration::minutes(59), "{at}");
        assert!(xenioo.upstream().health().healthy());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn the_sandboxs_unreadable_entry_is_skipped_and_counted() {
        let sandbox = start_sandbox(HOUR).await;
        let read = client(&sandbox, TOKEN, HOUR)
            .snapshot()
            .await
            .expect("snapshot");
        assert_eq!(read.snapshot.skipped, 1);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn hourly_samples_equal_the_sandbox_truth() {
        let sandbox = start_sandbox(HOUR).await;
        let read = client(&sandbox, TOKEN, HOUR)
            .snapshot()
            .await
            .expect("snapshot");
        let snapshot = &read.snapshot;
        let xenioo = accounts::by_xenioo_token(TOKEN)
            .and_then(|account| account.xenioo.as_ref())
            .expect("the sandbox's acme account uses Xenioo");
        let api_key = |name: &str| {
            xenioo
                .bots
                .iter()
                .find(|b| b.name == name)
                .map(|b| b.api_key)
                .expect("a known bot name")
        };
        // Every entry is the truth of its hour.
        for entry in &snapshot.entries {
            let channel = entry
                .channel
                .as_deref()
                .expect("sandbox entries have channels");
            let truth = sandbox::xenioo::hourly_value(
                "acme",
                api_key(&entry.bot),
                channel,
                entry.kind.code(),
                entry.start,
            );
            assert_eq!(entry.value, truth, "{entry:?}");
            assert_eq!(entry.end - entry.start, chrono::Duration::hours(1));
        }
        // And every non-zero truth hour of the coverage is a sample, for each bot, channel and
        // a count and an average type.
        for bot in xenioo.bots {
            for channel in bot.channels {
                for kind in [BotMetric::Messages, BotMetric::TimeToPickUp] {
                    let got: BTreeMap<DateTime<Utc>, f64> =
                        samples(snapshot, kind, Some(bot.name), Some(channel), ALL_TIME)
                            .into_iter()
                            .filter(|s| s.start >= snapshot.from && s.start < snapshot.to)
                            .map(|s| (s.start, s.value))
                            .collect();
                    let mut expected = BTreeMap::new();
                    let mut hour = snapshot.from;
                    while hour < snapshot.to {
                        let truth = sandbox::xenioo::hourly_value(
                            "acme",
                            bot.api_key,
                            channel,
                            kind.code(),
                            hour,
                        );
                        if truth != 0.0 {
                            expected.insert(hour, truth);
                        }
                        hour += chrono::Duration::hours(1);
                    }
                    assert!(!expected.is_empty());
                    assert_eq!(got, expected, "{} {channel} {kind:?}", bot.name);
                }
            }
        }
        let names: Vec<&str> = xenioo.bots.iter().map(|b| b.name).collect();
        let bots = bots(snapshot);
        assert_eq!(bots.keys().map(String::as_str).collect::<Vec<_>>(), names);
        for bot in xenioo.bots {
            let channels: BTreeSet<String> = bot.channels.iter().map(|c| c.to_string()).collect();
            assert_eq!(bots[bot.name], channels);
        }
        assert_eq!(
            *channels(snapshot),
            BTreeSet::from(["Facebook", "Telegram", "WebChat", "WhatsApp"].map(String::from))
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_503_on_the_first_call_is_unavailable_and_the_next_caller_waits_for_the_interval() {
        let sandbox = start_sandbox(HOUR).await;
        set_fault(&sandbox, json!({"provider": "xenioo", "status": 503}));
        let xenioo = client(&sandbox, TOKEN, HOUR);
        let first = xenioo.snapshot().await.expect_err("503");
        assert_eq!(first.code(), crate::error::code::UPSTREAM_UNAVAILABLE);
        let next = xenioo.snapshot().await.expect_err("inside the interval");
        assert_eq!(next.code(), crate::error::code::UPSTREAM_THROTTLED);
        let secs = waiting_secs(&next).expect("chatstats waits");
        assert!((3590..=3600).contains(&secs), "{secs}");
        assert_eq!(xenioo_statuses(&sandbox), vec![503]);
        assert_eq!(
            xenioo.next_call().map(|next| next.wait),
            Some(CallWait::CallInterval)
        );
        assert!(!xenioo.upstream().health().healthy());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn after_the_interval_a_failed_refresh_serves_the_last_snapshot_as_stale() {
        let interval = Duration::from_millis(200);
        let sandbox = start_sandbox(interval).await;
        let xenioo = client(&sandbox, TOKEN, interval);
        let fresh = xenioo.snapshot().await.expect("snapshot");
        assert!(!fresh.stale);
        set_fault(&sandbox, json!({"provider": "xenioo", "status": 503}));
        // The behaviour under test is what happens once the interval has passed.
        tokio::time::sleep(interval + Duration::from_millis(50)).await;
        let stale = xenioo.snapshot().await.expect("the last good snapshot");
        assert!(stale.stale);
        assert!(Arc::ptr_eq(&stale.snapshot, &fresh.snapshot));
        let warning = stale.warning.expect("the refresh error");
        assert_eq!(warning.code(), crate::error::code::UPSTREAM_UNAVAILABLE);
        // Inside the new interval: still stale, and no call.
        let again = xenioo.snapshot().await.expect("the last good snapshot");
        assert!(again.stale && again.warning.is_some());
        assert_eq!(xenioo_statuses(&sandbox), vec![200, 503]);
        sandbox.state().faults().clear();
        tokio::time::sleep(interval + Duration::from_millis(50)).await;
        let refreshed = xenioo.snapshot().await.expect("a new snapshot");
        assert!(!refreshed.stale && refreshed.warning.is_none());
        assert!(!Arc::ptr_eq(&refreshed.snapshot, &fresh.snapshot));
        assert_eq!(xenioo_statuses(&sandbox), vec![200, 503, 200]);
        sandbox.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_hammering_the_sandbox_never_gets_its_throttle_429() {
        let interval = Duration::from_millis(150);
        let sandbox = start_sandbox(interval).await;
        let xenioo = Arc::new(client(&sandbox, TOKEN, interval));
        // Hammer until the sandbox has answered a few refreshes (a debug-build sandbox takes
        // a while per answer, so a fixed time window would prove little on a slow machine).
        let deadline = Instant::now() + Duration::from_secs(60);
        let readers = (0..8u64).map(|reader| {
            let xenioo = Arc::clone(&xenioo);
            let state = sandbox.state().clone();
            tokio::spawn(async move {
                let mut served = 0;
                while state.calls().len() < 4 && Instant::now() < deadline {
                    if xenioo.snapshot().await.is_ok() {
                        served += 1;
                    }
                    // Load generation: callers arrive at uneven times.
                    tokio::time::sleep(Duration::from_millis(3 + reader * 2)).await;
                }
                served
            })
        });
        let served: usize = futures::future::join_all(readers)
            .await
            .into_iter()
            .map(|r| r.expect("reader task"))
            .sum();
        let statuses = xenioo_statuses(&sandbox);
        assert!(statuses.len() >= 4, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        assert!(served > statuses.len() * 5, "{served} reads");
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_closed_port_is_could_not_connect_and_does_not_spend_the_interval() {
        // A loopback port bound but not listening (and so given to no other test's listener):
        // a connection to it is refused.
        let reserved = tokio::net::TcpSocket::new_v4().expect("a socket");
        reserved
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind loopback");
        let addr = reserved.local_addr().expect("a bound address");
        let xenioo = Xenioo::new(
            reqwest::Client::new(),
            format!("http://{addr}"),
            Secret::new(TOKEN),
            HOUR,
        );
        for attempt in 0..2 {
            let error = xenioo.snapshot().await.expect_err("nothing listens");
            assert_eq!(error, could_not_connect(), "attempt {attempt}");
            assert_eq!(xenioo.next_call(), None, "attempt {attempt}");
        }
        assert!(!xenioo.upstream().health().healthy());
    }

    #[tokio::test]
    async fn a_refused_token_is_rejected() {
        let sandbox = start_sandbox(HOUR).await;
        let error = client(&sandbox, "not-a-token", HOUR)
            .snapshot()
            .await
            .expect_err("401");
        assert!(matches!(
            error.kind,
            UpstreamErrorKind::Rejected { status: 401, .. }
        ));
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_malformed_body_is_invalid() {
        let sandbox = start_sandbox(HOUR).await;
        set_fault(&sandbox, json!({"provider": "xenioo", "malformed": true}));
        let error = client(&sandbox, TOKEN, HOUR)
            .snapshot()
            .await
            .expect_err("malformed");
        assert_eq!(error.code(), crate::error::code::UPSTREAM_INVALID);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_array_is_invalid() {
        // The sandbox always answers an array, so a two-line server answers an object.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let app = axum::Router::new().fallback(|| async { axum::Json(json!({"data": []})) });
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let xenioo = Xenioo::new(
            reqwest::Client::new(),
            format!("http://{addr}"),
            Secret::new(TOKEN),
            HOUR,
        );
        let error = xenioo.snapshot().await.expect_err("an object");
        assert_eq!(error.code(), crate::error::code::UPSTREAM_INVALID);
        server.abort();
    }
}
