//! The simulated Xenioo account statistics API (seed 002, SPEC §1.3).
//!
//! One endpoint, `GET /xenioo/analytics/statistics/account/{APIKEY}/{TYPES}/{GROUPMODE}/{DAYS}`
//! with `Authorization: Bearer <account token>`: every bot (`*`) or one bot (its API key),
//! the requested event types (codes 0-17), grouped by UTC hour, day, month or year, over the
//! `DAYS`·24 hours before the current hour.
//!
//! The upstream's defining rule is its throttle: one call per account per hour. The sandbox
//! enforces it with a configurable window (`SandboxOptions::xenioo_throttle`, so tests need
//! not wait an hour): a call within the window of the previous call that was answered 200
//! gets a 429 with `Retry-After`.
//!
//! The public docs truncate the entry format after `GroupLabel, BotName, ChannelName,
//! EventLabel`; like the gateway (SPEC §1.3) we assume a numeric `Value` and an `EventType`.
//! Values come from the pure truth function [`hourly_value`], which the gateway's tests call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use super::accounts::{self, Bot, XeniooAccount};
use super::data::{hour_floor, hour_starts, hourly_count, value_in};
use super::{bearer_token, lock, ApiError, SimState};

/// The event names of type codes 0-17 (the index is the code), as `EventLabel` carries them.
pub const EVENT_LABELS: [&str; 18] = [
    "New User",
    "Returning User",
    "Active User",
    "Messages",
    "Action Messages",
    "Fallback Reply",
    "NLP Detected",
    "NLP Missed",
    "Conversation Length",
    "Time To Pick Up",
    "Takeover Rate",
    "Support Conversation Length",
    "Goal Reached",
    "Incoming Message",
    "API Request",
    "API Request Error",
    "Time To First Message",
    "Operator Message",
];

/// The `EventLabel` of a type code ("Unknown" past 17, which the handler never produces).
pub fn event_label(type_code: u8) -> &'static str {
    EVENT_LABELS
        .get(usize::from(type_code))
        .copied()
        .unwrap_or("Unknown")
}

/// The `Messages` type: averages and active users exist only in hours with messages, and
/// coarser groups weight averages by it.
pub const MESSAGES: u8 = 3;
/// The `Active User` type: a count that exists only in hours with messages.
pub const ACTIVE_USER: u8 = 2;
/// The `Takeover Rate` type: a percentage (0..100).
pub const TAKEOVER_RATE: u8 = 10;

/// The message of the throttle's 429 (the wording of the seed).
pub const THROTTLE_MESSAGE: &str =
    "Account Statistics calls are throttled at 1 call per account per hour";

/// Typical busy-hour value of every count series.
const COUNT_SCALE: u32 = 5;

/// Whether a type code is an average (seconds for 8, 9, 11, 16; percent for 10) rather than a
/// count.
pub fn is_average(type_code: u8) -> bool {
    matches!(type_code, 8 | 9 | 10 | 11 | 16)
}

/// The series keys of one (bot, channel), one per type code, built once per request because
/// the handler evaluates every hour of up to 30 days.
struct SeriesKeys([String; 18]);

impl SeriesKeys {
    fn new(account: &str, bot_key: &str, channel: &str) -> Self {
        SeriesKeys(std::array::from_fn(|t| {
            format!("xenioo/{account}/{bot_key}/{channel}/t{t}")
        }))
    }

    /// The value of type `type_code` in the UTC hour starting at `hour` (0 = no entry).
    fn value(&self, type_code: u8, hour: DateTime<Utc>) -> f64 {
        let t = usize::from(type_code);
        let Some(key) = self.0.get(t) else {
            return 0.0;
        };
        if type_code == ACTIVE_USER || is_average(type_code) {
            // Nobody was active and nothing lasted in an hour without messages.
            if hourly_count(&self.0[usize::from(MESSAGES)], hour, COUNT_SCALE) == 0 {
                return 0.0;
            }
            return match type_code {
                ACTIVE_USER => hourly_count(key, hour, COUNT_SCALE) as f64,
                TAKEOVER_RATE => value_in(key, hour, 0.0, 100.0),
                _ => value_in(key, hour, 5.0, 300.0),
            };
        }
        hourly_count(key, hour, COUNT_SCALE) as f64
    }
}

/// Truth: the value of `type_code` for bot `bot_key` (its API key, e.g. "bot-acme-helper") on
/// `channel` in the UTC hour containing `hour`; 0 means the upstream sends no entry.
pub fn hourly_value(
    account: &str,
    bot_key: &str,
    channel: &str,
    type_code: u8,
    hour: DateTime<Utc>,
) -> f64 {
    SeriesKeys::new(account, bot_key, channel).value(type_code, hour_floor(hour))
}

/// The `GROUPMODE` path segment: UTC groups of the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMode {
    /// `hour`: one group per UTC hour, labelled `yyyy-MM-dd HH:mm`.
    Hour,
    /// `day`: UTC days, `yyyy-MM-dd`.
    Day,
    /// `month`: UTC calendar months, `yyyy-MM`.
    Month,
    /// `year`: UTC calendar years, `yyyy`.
    Year,
}

impl GroupMode {
    /// The mode for a `GROUPMODE` segment, `None` for anything else.
    pub fn parse(segment: &str) -> Option<Self> {
        match segment {
            "hour" => Some(GroupMode::Hour),
            "day" => Some(GroupMode::Day),
            "month" => Some(GroupMode::Month),
            "year" => Some(GroupMode::Year),
            _ => None,
        }
    }

    /// Start of the UTC group containing `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = t.date_naive();
        let first = match self {
            GroupMode::Hour => return hour_floor(t),
            GroupMode::Day => Some(d),
            GroupMode::Month => d.with_day(1),
            GroupMode::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1),
        };
        first
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(t, |d| d.and_utc())
    }

    /// Start of the group after the one containing `t`.
    pub fn next(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let start = self.floor(t);
        let d = start.date_naive();
        let next = match self {
            GroupMode::Hour => return start + Duration::hours(1),
            GroupMode::Day => d.succ_opt(),
            GroupMode::Month if d.month() == 12 => NaiveDate::from_ymd_opt(d.year() + 1, 1, 1),
            GroupMode::Month => NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1),
            GroupMode::Year => NaiveDate::from_ymd_opt(d.year() + 1, 1, 1),
        };
        // Past chrono's calendar range there is no next group; a day later ends the loop.
        next.and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(start + Duration::days(1), |d| d.and_utc())
    }

    /// The `GroupLabel` of the group starting at `start`.
    pub fn label(self, start: DateTime<Utc>) -> String {
        let pattern = match self {
            GroupMode::Hour => "%Y-%m-%d %H:%M",
            GroupMode::Day => "%Y-%m-%d",
            GroupMode::Month => "%Y-%m",
            GroupMode::Year => "%Y",
        };
        start.format(pattern).to_string()
    }
}

/// The hours a call made at `now` covers: the `days`·24 hours before the current hour (which
/// has no data yet).
pub fn snapshot_range(days: u32, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let to = hour_floor(now);
    (to - Duration::hours(24 * i64::from(days)), to)
}

/// One entry of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Start of the UTC group.
    pub group_start: DateTime<Utc>,
    /// `GroupLabel`.
    pub group_label: String,
    /// `BotName`.
    pub bot_name: &'static str,
    /// `ChannelName`.
    pub channel: &'static str,
    /// `EventType` (its `EventLabel` is `EVENT_LABELS[type_code]`).
    pub type_code: u8,
    /// `Value`: a sum for counts (and for Active User), a mean weighted by the group's
    /// Messages for averages (2 decimals).
    pub value: f64,
}

impl Entry {
    /// The wire object.
    pub fn to_json(&self) -> Value {
        let value = if is_average(self.type_code) {
            json!(self.value)
        } else {
            json!(self.value as u64)
        };
        json!({
            "GroupLabel": self.group_label,
            "BotName": self.bot_name,
            "ChannelName": self.channel,
            "EventLabel": event_label(self.type_code),
            "EventType": self.type_code,
            "Value": value,
        })
    }
}

/// Truth: the entries of a call for `bots` of `account` and `types` (in the given order),
/// grouped by `mode`, over the hours that start in `[from, to)`. Only non-zero values make an
/// entry. Order: group, then bot, channel and type as given.
pub fn entries(
    account: &str,
    bots: &[&'static Bot],
    types: &[u8],
    mode: GroupMode,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Entry> {
    let series: Vec<(&'static Bot, &'static str, SeriesKeys)> = bots
        .iter()
        .flat_map(|bot| {
            bot.channels
                .iter()
                .map(move |ch| (*bot, *ch, SeriesKeys::new(account, bot.api_key, ch)))
        })
        .collect();
    let mut out = Vec::new();
    let mut start = mode.floor(from);
    while start < to {
        let next = mode.next(start);
        let hours: Vec<DateTime<Utc>> = hour_starts(start.max(from), next.min(to)).collect();
        for (bot, channel, keys) in &series {
            for &t in types {
                let value = if is_average(t) {
                    let (mut weighted, mut weight) = (0.0, 0.0);
                    for &h in &hours {
                        let messages = keys.value(MESSAGES, h);
                        weighted += messages * keys.value(t, h);
                        weight += messages;
                    }
                    if weight > 0.0 {
                        (weighted / weight * 100.0).round() / 100.0
                    } else {
                        0.0
                    }
                } else {
                    hours.iter().map(|&h| keys.value(t, h)).sum()
                };
                if value != 0.0 {
                    out.push(Entry {
                        group_start: start,
                        group_label: mode.label(start),
                        bot_name: bot.name,
                        channel,
                        type_code: t,
                        value,
                    });
                }
            }
        }
        start = next;
    }
    out
}

/// Xenioo's error body: `{"error": message}`.
fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, json!({ "error": message.into() }))
}

/// Parses `TYPES`: a comma list of codes 0-17, duplicates dropped, order kept.
fn parse_types(segment: &str) -> Result<Vec<u8>, ApiError> {
    let mut types = Vec::new();
    for part in segment.split(',') {
        let code = part
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|t| usize::from(*t) < EVENT_LABELS.len())
            .ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "TYPES must be a comma-separated list of type codes 0-17, \
                         got `{segment}` (bad item `{part}`)"
                    ),
                )
            })?;
        if !types.contains(&code) {
            types.push(code);
        }
    }
    Ok(types)
}

/// The routes of this provider, relative to `Provider::Xenioo.prefix()`.
pub fn router() -> Router<SimState> {
    Router::new().route(
        "/analytics/statistics/account/{api_key}/{types}/{group_mode}/{days}",
        get(statistics),
    )
}

/// `GET /analytics/statistics/account/{APIKEY}/{TYPES}/{GROUPMODE}/{DAYS}`.
///
/// Checks, in order: the account token (401), the path segments (400), the bot (404), then
/// the throttle (429), so that a malformed call never consumes the account's hour.
async fn statistics(
    State(state): State<SimState>,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Vec<Value>>, ApiError> {
    let account = bearer_token(&headers)
        .and_then(accounts::by_xenioo_token)
        .ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid account token (Authorization: Bearer <token>)",
            )
        })?;
    let xenioo: &XeniooAccount = account
        .xenioo
        .as_ref()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "account not found"))?;
    let Path((api_key, types, group_mode, days)) =
        path.map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid path: {e}")))?;
    let types = parse_types(&types)?;
    let mode = GroupMode::parse(&group_mode).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!("GROUPMODE must be one of hour, day, month, year, got `{group_mode}`"),
        )
    })?;
    let days = days
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=30).contains(d))
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("DAYS must be an integer from 1 to 30, got `{days}`"),
            )
        })?;
    let bots: Vec<&'static Bot> = if api_key == "*" {
        xenioo.bots.iter().collect()
    } else {
        let bot = xenioo.bots.iter().find(|b| b.api_key == api_key);
        vec![bot.ok_or_else(|| error(StatusCode::NOT_FOUND, "bot not found"))?]
    };
    let window = state.options().xenioo_throttle;
    if let Err(left) = try_claim(state.xenioo_last_ok(), window, account.id, Instant::now()) {
        // Round up: retrying after the advertised delay must succeed.
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        return Err(error(StatusCode::TOO_MANY_REQUESTS, THROTTLE_MESSAGE)
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds.max(1))));
    }
    let (from, to) = snapshot_range(days, Utc::now());
    let mut body: Vec<Value> = entries(account.id, &bots, &types, mode, from, to)
        .iter()
        .map(Entry::to_json)
        .collect();
    // Deliberately unreadable (no channel, no value, a label that is no date): the public
    // docs truncate the entry format, so the gateway must parse tolerantly, skip entries it
    // cannot read and count them. This entry makes that path run in every test against the
    // sandbox.
    if let Some(bot) = bots.first() {
        body.push(json!({ "GroupLabel": "n/a", "BotName": bot.name, "EventLabel": "Messages" }));
    }
    Ok(Json(body))
}

/// Claims `account`'s call at `now` against the throttle state `last_ok` (per account, the
/// instant of the last call answered 200; `SimState::xenioo_last_ok`): `Ok` (and remembered)
/// when that call is at least `window` old, else `Err(time left)`.
///
/// Check and set happen under one lock, so two concurrent calls can never both pass: the
/// property the gateway must guarantee on its side too.
pub fn try_claim(
    last_ok: &Mutex<HashMap<String, Instant>>,
    window: StdDuration,
    account: &str,
    now: Instant,
) -> Result<(), StdDuration> {
    let mut last_ok = lock(last_ok);
    if let Some(last) = last_ok.get(account) {
        let elapsed = now.saturating_duration_since(*last);
        if elapsed < window {
            return Err(window - elapsed);
        }
    }
    last_ok.insert(account.to_string(), now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid test date")
    }

    const HELPER: &str = "bot-acme-helper";

    #[test]
    fn group_modes_parse_label_and_step_in_utc_calendar_groups() {
        assert_eq!(GroupMode::parse("hour"), Some(GroupMode::Hour));
        assert_eq!(GroupMode::parse("week"), None);
        let t = utc(2024, 12, 31, 14) + Duration::minutes(20);
        assert_eq!(
            GroupMode::Hour.label(GroupMode::Hour.floor(t)),
            "2024-12-31 14:00"
        );
        assert_eq!(GroupMode::Day.label(GroupMode::Day.floor(t)), "2024-12-31");
        assert_eq!(GroupMode::Month.next(t), utc(2025, 1, 1, 0));
        assert_eq!(GroupMode::Year.floor(t), utc(2024, 1, 1, 0));
        assert_eq!(GroupMode::Year.label(GroupMode::Year.next(t)), "2025");
    }

    #[test]
    fn a_call_covers_the_days_before_the_current_hour() {
        let now = utc(2024, 5, 10, 9) + Duration::minutes(59);
        let (from, to) = snapshot_range(30, now);
        assert_eq!(to, utc(2024, 5, 10, 9));
        assert_eq!(from, utc(2024, 4, 10, 9));
    }

    #[test]
    fn active_users_and_averages_exist_only_in_hours_with_messages() {
        let start = utc(2024, 3, 4, 0);
        let (mut quiet, mut busy) = (0, 0);
        for k in 0..24 * 14 {
            let h = start + Duration::hours(k);
            let messages = hourly_value("acme", HELPER, "Telegram", MESSAGES, h);
            let takeover = hourly_value("acme", HELPER, "Telegram", TAKEOVER_RATE, h);
            let length = hourly_value("acme", HELPER, "Telegram", 8, h);
            if messages == 0.0 {
                quiet += 1;
                assert_eq!(
                    hourly_value("acme", HELPER, "Telegram", ACTIVE_USER, h),
                    0.0
                );
                assert_eq!((takeover, length), (0.0, 0.0));
            } else {
                busy += 1;
                assert!((0.0..100.0).contains(&takeover), "{takeover}");
                assert!((5.0..300.0).contains(&length), "{length}");
            }
        }
        assert!(quiet > 0 && busy > 0, "{quiet} {busy}");
        assert_eq!(hourly_value("acme", HELPER, "Telegram", 18, start), 0.0);
    }

    #[test]
    fn hourly_entries_are_the_hourly_values_and_days_sum_or_weight_them() {
        let helper = &accounts::ACME
            .xenioo
            .as_ref()
            .expect("acme uses Xenioo")
            .bots[0];
        let from = utc(2024, 3, 5, 0);
        let to = utc(2024, 3, 6, 0);
        let hourly = entries("acme", &[helper], &[MESSAGES, 9], GroupMode::Hour, from, to);
        for e in &hourly {
            let truth = hourly_value("acme", HELPER, e.channel, e.type_code, e.group_start);
            assert_eq!(e.value, truth, "{e:?}");
        }
        let daily = entries("acme", &[helper], &[MESSAGES, 9], GroupMode::Day, from, to);
        assert_eq!(daily.len(), 6, "3 channels x 2 types");
        for e in &daily {
            let of_channel = |t: u8| {
                hourly
                    .iter()
                    .filter(move |h| h.channel == e.channel && h.type_code == t)
            };
            if e.type_code == MESSAGES {
                assert_eq!(e.value, of_channel(MESSAGES).map(|h| h.value).sum::<f64>());
            } else {
                let weighted: f64 = of_channel(9)
                    .map(|h| {
                        let m = hourly_value("acme", HELPER, e.channel, MESSAGES, h.group_start);
                        m * h.value
                    })
                    .sum();
                let weight: f64 = of_channel(MESSAGES).map(|h| h.value).sum();
                assert_eq!(e.value, (weighted / weight * 100.0).round() / 100.0);
            }
        }
    }

    #[test]
    fn count_entries_are_integers_and_averages_decimals_on_the_wire() {
        let entry = Entry {
            group_start: utc(2024, 3, 5, 14),
            group_label: "2024-03-05 14:00".into(),
            bot_name: "Acme Helper",
            channel: "Facebook",
            type_code: MESSAGES,
            value: 12.0,
        };
        assert_eq!(
            entry.to_json().to_string(),
            concat!(
                r#"{"GroupLabel":"2024-03-05 14:00","BotName":"Acme Helper","#,
                r#""ChannelName":"Facebook","EventLabel":"Messages","EventType":3,"Value":12}"#
            )
        );
        let average = Entry {
            type_code: 16,
            value: 42.5,
            ..entry
        };
        assert_eq!(average.to_json()["Value"], json!(42.5));
        assert_eq!(average.to_json()["EventLabel"], "Time To First Message");
    }

    #[test]
    fn the_throttle_allows_one_call_per_account_per_window() {
        let state = Mutex::new(HashMap::new());
        let hour = StdDuration::from_secs(3600);
        let t0 = Instant::now();
        let claim = |account: &str, after: u64| {
            try_claim(&state, hour, account, t0 + StdDuration::from_secs(after))
        };
        assert_eq!(claim("acme", 0), Ok(()));
        assert_eq!(claim("acme", 600), Err(StdDuration::from_secs(3000)));
        assert_eq!(claim("globex", 600), Ok(()), "accounts are independent");
        assert_eq!(claim("acme", 3600), Ok(()));
        assert_eq!(claim("acme", 3601), Err(StdDuration::from_secs(3599)));
    }

    // ---- over HTTP ----

    use crate::sandbox::{start, Sandbox, SandboxOptions};

    async fn spawn(throttle: StdDuration) -> Sandbox {
        start(
            "127.0.0.1:0".parse().expect("valid address"),
            SandboxOptions {
                xenioo_throttle: throttle,
            },
        )
        .await
        .expect("sandbox starts")
    }

    /// GET `{base}/xenioo/analytics/statistics/account/{path}`: (status, Retry-After, body).
    async fn get(
        sandbox: &Sandbox,
        path: &str,
        token: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let url = format!(
            "{}/xenioo/analytics/statistics/account/{path}",
            sandbox.base_url()
        );
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request succeeds");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (
            status,
            retry_after,
            response.json().await.expect("a JSON body"),
        )
    }

    const TOKEN: Option<&str> = Some("xen-acme-token");
    const HOUR: StdDuration = StdDuration::from_secs(3600);

    #[tokio::test]
    async fn bad_tokens_get_401_bad_segments_400_and_unknown_bots_404() {
        let sandbox = spawn(HOUR).await;
        for token in [None, Some("xen-other"), Some("ct-acme-token")] {
            let (status, _, body) = get(&sandbox, "*/3/hour/1", token).await;
            assert_eq!(status, 401, "{token:?}");
            assert!(body["error"].is_string());
        }
        for (path, named) in [
            ("*/3,18/hour/1", "TYPES"),
            ("*/3,a/hour/1", "TYPES"),
            ("*/,/hour/1", "TYPES"),
            ("*/3/week/1", "GROUPMODE"),
            ("*/3/hour/0", "DAYS"),
            ("*/3/hour/31", "DAYS"),
            ("*/3/hour/x", "DAYS"),
        ] {
            let (status, _, body) = get(&sandbox, path, TOKEN).await;
            assert_eq!(status, 400, "{path}");
            let message = body["error"].as_str().unwrap_or_default();
            assert!(message.contains(named), "{path}: {message}");
        }
        let (status, _, body) = get(&sandbox, "bot-nope/3/hour/1", TOKEN).await;
        assert_eq!((status, body), (404, json!({ "error": "bot not found" })));
        // None of the failed calls used the account's hour.
        assert_eq!(get(&sandbox, "*/3/hour/1", TOKEN).await.0, 200);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_second_call_within_the_hour_is_throttled_and_logged() {
        let sandbox = spawn(HOUR).await;
        let (status, _, body) = get(&sandbox, "bot-acme-sales/3,8/day/2", TOKEN).await;
        assert_eq!(status, 200);
        let entries = body.as_array().expect("an array of entries");
        assert!(entries.len() > 1);
        let last = entries.last().expect("the unreadable entry");
        assert_eq!(
            *last,
            json!({ "GroupLabel": "n/a", "BotName": "Acme Sales", "EventLabel": "Messages" })
        );
        assert!(entries[..entries.len() - 1]
            .iter()
            .all(|e| e["BotName"] == "Acme Sales" && e["Value"].is_number()));
        let (status, retry_after, body) = get(&sandbox, "*/0/hour/1", TOKEN).await;
        assert_eq!(status, 429);
        assert_eq!(body, json!({ "error": THROTTLE_MESSAGE }));
        let seconds: u64 = retry_after
            .and_then(|v| v.parse().ok())
            .expect("a numeric Retry-After");
        assert!((3500..=3600).contains(&seconds), "{seconds}");
        let statuses: Vec<(String, u16)> = sandbox
            .state()
            .calls()
            .into_iter()
            .map(|c| (c.provider.to_string(), c.status))
            .collect();
        assert_eq!(
            statuses,
            [("xenioo".to_string(), 200), ("xenioo".to_string(), 429)]
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn with_a_short_throttle_a_call_after_the_window_passes() {
        let window = StdDuration::from_millis(300);
        let sandbox = spawn(window).await;
        assert_eq!(get(&sandbox, "*/3/hour/1", TOKEN).await.0, 200);
        // Waiting out the throttle window is the behaviour under test, not synchronisation.
        tokio::time::sleep(window + StdDuration::from_millis(50)).await;
        assert_eq!(get(&sandbox, "*/3/hour/1", TOKEN).await.0, 200);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn hourly_entries_over_http_are_the_truth() {
        let sandbox = spawn(HOUR).await;
        let (status, _, body) = get(&sandbox, "*/3,10,2,13/hour/2", TOKEN).await;
        assert_eq!(status, 200);
        let entries = body.as_array().expect("an array of entries");
        let readable = &entries[..entries.len() - 1];
        assert!(readable.len() > 20);
        let bots = &accounts::ACME
            .xenioo
            .as_ref()
            .expect("acme uses Xenioo")
            .bots;
        let mut labels = std::collections::BTreeSet::new();
        for e in readable {
            let bot = bots
                .iter()
                .find(|b| e["BotName"] == b.name)
                .expect("a known bot");
            let label = e["GroupLabel"].as_str().expect("a label");
            labels.insert(label.to_string());
            let hour = chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%d %H:%M")
                .expect("an hour label")
                .and_utc();
            let channel = e["ChannelName"].as_str().expect("a channel");
            let code = e["EventType"]
                .as_u64()
                .and_then(|t| u8::try_from(t).ok())
                .expect("a type");
            assert_eq!(e["EventLabel"], EVENT_LABELS[usize::from(code)]);
            let truth = hourly_value("acme", bot.api_key, channel, code, hour);
            assert_eq!(e["Value"].as_f64(), Some(truth), "{e}");
        }
        assert!(labels.len() <= 48 && labels.len() > 24, "{}", labels.len());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_faulted_call_does_not_use_the_accounts_hour() {
        let sandbox = spawn(HOUR).await;
        let fault = reqwest::Client::new()
            .post(format!("{}/_sim/faults", sandbox.base_url()))
            .json(&json!({ "provider": "xenioo", "status": 503, "times": 1 }))
            .send()
            .await
            .expect("request succeeds");
        assert!(fault.status().is_success());
        assert_eq!(get(&sandbox, "*/3/hour/1", TOKEN).await.0, 503);
        assert_eq!(get(&sandbox, "*/3/hour/1", TOKEN).await.0, 200);
        assert_eq!(get(&sandbox, "*/3/hour/1", TOKEN).await.0, 429);
        sandbox.shutdown().await;
    }
}
