//! Simulated Help Scout (seed 004): the OAuth2 client-credentials token endpoint and the
//! "volume by channel" conversations report.
//!
//! Routes (under `/help-scout`):
//! - `POST /v2/oauth2/token` — form (or JSON) `grant_type=client_credentials&client_id=&client_secret=`
//!   → `{"token_type":"bearer","access_token":"hs-oauth-<account>-<n>","expires_in":7200}`.
//! - `GET /v2/reports/conversations/volume-by-channel` — Bearer token (static or issued).
//!
//! Data: one conversation series per (mailbox, tag, folder, channel) of the account, key
//! `help_scout/{account}/m{mailbox}/t{tag}/f{folder}/{channel}`, so every filter combination is
//! a sum of series and the gateway's filtered and unfiltered views agree. The report's buckets
//! are UTC calendar days, ISO weeks (Monday) or months; the truth is [`conversations`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Datelike, Duration, Months, NaiveTime, Utc};
use serde_json::{json, Map, Value};

use super::accounts::{self, Account};
use super::{
    bearer_token, check_past_span, data, header_str, invalid_param, lock, ApiError, Params,
    SimState,
};

/// The report's channels, in the order of the response fields.
pub const CHANNELS: [&str; 3] = ["chat", "email", "phone"];

/// Lifetime of an issued OAuth token, as the real API announces it.
pub const TOKEN_LIFETIME_SECS: u64 = 7200;

/// Hourly scale of a channel's series: chat and email are busier than phone.
fn scale(channel: &str) -> u32 {
    if channel == "phone" {
        1
    } else {
        3
    }
}

/// The ids of `all` selected by a filter: all of them when the filter is empty, else those of
/// the filter that belong to the account (ids of other accounts match nothing).
fn selected(all: &[i64], filter: &[i64]) -> Vec<i64> {
    if filter.is_empty() {
        all.to_vec()
    } else {
        all.iter()
            .copied()
            .filter(|id| filter.contains(id))
            .collect()
    }
}

/// Truth: conversations of `channel` for the account in the hours starting in [from, to),
/// restricted to the given mailboxes, tags and folders (empty = all). 0 for an unknown account
/// or channel.
pub fn conversations(
    account: &str,
    channel: &str,
    mailboxes: &[i64],
    tags: &[i64],
    folders: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> u64 {
    let Some(acct) = accounts::find(account) else {
        return 0;
    };
    if !CHANNELS.contains(&channel) {
        return 0;
    }
    let hs = &acct.help_scout;
    let mut total = 0;
    for m in selected(hs.mailboxes, mailboxes) {
        for t in selected(hs.tags, tags) {
            for f in selected(hs.folders, folders) {
                let key = format!("help_scout/{account}/m{m}/t{t}/f{f}/{channel}");
                total += data::sum_hours(&key, from, to, scale(channel));
            }
        }
    }
    total
}

/// The report's resolution (`viewBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewBy {
    /// UTC calendar days; only for ranges of at most 60 days.
    Day,
    /// ISO weeks starting Monday 00:00 UTC; only for ranges of at most 366 days.
    Week,
    /// UTC calendar months; only for ranges of at least 61 days.
    Month,
}

impl ViewBy {
    fn parse(value: &str) -> Result<ViewBy, ApiError> {
        match value {
            "day" => Ok(ViewBy::Day),
            "week" => Ok(ViewBy::Week),
            "month" => Ok(ViewBy::Month),
            other => Err(invalid_param("viewBy", "one of day, week, month", other)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ViewBy::Day => "day",
            ViewBy::Week => "week",
            ViewBy::Month => "month",
        }
    }

    /// Whether Help Scout accepts this resolution for a range of this length.
    pub fn allows(self, length: Duration) -> bool {
        match self {
            ViewBy::Day => length <= Duration::days(60),
            ViewBy::Week => length <= Duration::days(366),
            ViewBy::Month => length >= Duration::days(61),
        }
    }

    /// The start of the bucket containing `t`.
    fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let date = t.date_naive();
        let start = match self {
            ViewBy::Day => date,
            ViewBy::Week => date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
            ViewBy::Month => date.with_day(1).unwrap_or(date),
        };
        start.and_time(NaiveTime::MIN).and_utc()
    }

    /// The start of the bucket after the one starting at `start`.
    fn next(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            ViewBy::Day => start.checked_add_signed(Duration::days(1)),
            ViewBy::Week => start.checked_add_signed(Duration::days(7)),
            ViewBy::Month => start.checked_add_months(Months::new(1)),
        }
    }
}

/// The buckets `[bucket_start, bucket_end)` intersecting [from, to), in order.
pub fn buckets(
    view_by: ViewBy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut start = view_by.floor(from);
    while start < to {
        let Some(end) = view_by.next(start) else {
            break;
        };
        out.push((start, end));
        start = end;
    }
    out
}

/// A validated volume-by-channel request.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeQuery {
    /// Start of the current range (inclusive).
    pub start: DateTime<Utc>,
    /// End of the current range (exclusive).
    pub end: DateTime<Utc>,
    /// The previous range, when asked.
    pub previous: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Mailbox filter (empty = all).
    pub mailboxes: Vec<i64>,
    /// Tag filter (empty = all).
    pub tags: Vec<i64>,
    /// Folder filter (empty = all).
    pub folders: Vec<i64>,
    /// Channels reported (others report 0).
    pub types: Vec<&'static str>,
    /// Resolution.
    pub view_by: ViewBy,
}

/// Parses a comma-separated id list; empty or absent = no filter.
fn id_list(params: &Params, name: &str) -> Result<Vec<i64>, ApiError> {
    let Some(value) = params.optional(name) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(|part| {
            part.trim()
                .parse()
                .map_err(|_| invalid_param(name, "a comma-separated list of integer ids", value))
        })
        .collect()
}

/// Checks one range: end after start, not absurdly long, and allowed for `viewBy`.
fn check_range(
    label: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    view_by: ViewBy,
) -> Result<(), ApiError> {
    if end <= start {
        return Err(ApiError::bad_request(format!(
            "{label} range is empty: its end must be after its start"
        )));
    }
    check_past_span(start, end)?;
    let length = end - start;
    if !view_by.allows(length) {
        let rule = match view_by {
            ViewBy::Day => "day is only allowed if the time range is <= 60 days",
            ViewBy::Week => "week is only allowed if the time range is <= 1 year (366 days)",
            ViewBy::Month => "month is only allowed if the time range is >= 61 days",
        };
        return Err(ApiError::bad_request(format!(
            "viewBy={} is not allowed for the {label} range of {:.2} days: {rule}",
            view_by.name(),
            length.num_seconds() as f64 / 86_400.0
        )));
    }
    Ok(())
}

impl VolumeQuery {
    /// Validates the query parameters (400 naming the parameter or the violated rule).
    pub fn parse(params: &Params) -> Result<VolumeQuery, ApiError> {
        let start = params.required_instant("start")?;
        let end = params.required_instant("end")?;
        let view_by = match params.optional("viewBy") {
            Some(value) => ViewBy::parse(value)?,
            None => ViewBy::Day,
        };
        check_range("current", start, end, view_by)?;
        let previous = match (
            params.optional_instant("previousStart")?,
            params.optional_instant("previousEnd")?,
        ) {
            (Some(s), Some(e)) => {
                check_range("previous", s, e, view_by)?;
                Some((s, e))
            }
            (None, None) => None,
            _ => {
                return Err(ApiError::bad_request(
                    "parameters `previousStart` and `previousEnd` must be given together",
                ))
            }
        };
        let types = match params.optional("types") {
            None => CHANNELS.to_vec(),
            Some(value) => value
                .split(',')
                .map(|part| {
                    CHANNELS
                        .iter()
                        .copied()
                        .find(|c| *c == part.trim())
                        .ok_or_else(|| {
                            invalid_param(
                                "types",
                                "a comma-separated list of email, chat, phone",
                                value,
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(VolumeQuery {
            start,
            end,
            previous,
            mailboxes: id_list(params, "mailboxes")?,
            tags: id_list(params, "tags")?,
            folders: id_list(params, "folders")?,
            types,
            view_by,
        })
    }
}

/// One report series: a row per bucket of [from, to) with the three channel counts.
fn series(account: &str, query: &VolumeQuery, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let rows: Vec<Value> = buckets(query.view_by, from, to)
        .into_iter()
        .map(|(bucket_start, bucket_end)| {
            let (s, e) = (bucket_start.max(from), bucket_end.min(to));
            let mut row = Map::new();
            row.insert(
                "date".into(),
                bucket_start.format("%Y-%m-%dT%H:%M:%SZ").to_string().into(),
            );
            for channel in CHANNELS {
                let n = if query.types.contains(&channel) {
                    conversations(
                        account,
                        channel,
                        &query.mailboxes,
                        &query.tags,
                        &query.folders,
                        s,
                        e,
                    )
                } else {
                    0
                };
                row.insert(channel.into(), n.into());
            }
            Value::Object(row)
        })
        .collect();
    Value::Array(rows)
}

/// The response body for a validated query: `current`, and `previous` when asked.
pub fn volume_body(account: &str, query: &VolumeQuery) -> Value {
    let mut body = Map::new();
    body.insert(
        "current".into(),
        series(account, query, query.start, query.end),
    );
    if let Some((s, e)) = query.previous {
        body.insert("previous".into(), series(account, query, s, e));
    }
    Value::Object(body)
}

/// Help Scout OAuth tokens issued by the sandbox: token → (account id, expiry).
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: Mutex<HashMap<String, (&'static str, Instant)>>,
    /// Makes every issued token distinct, so a test can tell a refreshed token from the old one.
    issued: AtomicU64,
}

impl TokenStore {
    /// Issues a new token for the account, valid for [`TOKEN_LIFETIME_SECS`].
    pub fn issue(&self, account: &'static str) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!("hs-oauth-{account}-{n}");
        let expiry = Instant::now() + StdDuration::from_secs(TOKEN_LIFETIME_SECS);
        let mut tokens = lock(&self.tokens);
        // Forget expired tokens here, so the map cannot grow without bound.
        let now = Instant::now();
        tokens.retain(|_, (_, expires)| *expires > now);
        tokens.insert(token.clone(), (account, expiry));
        token
    }

    /// The account of an issued, unexpired token.
    pub fn account(&self, token: &str) -> Option<&'static str> {
        lock(&self.tokens)
            .get(token)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(account, _)| *account)
    }
}

/// The account of the request's Bearer token (static or issued); 401 `{"error":"invalid_token"}`.
fn authenticate(state: &SimState, headers: &HeaderMap) -> Result<&'static Account, ApiError> {
    bearer_token(headers)
        .and_then(|token| {
            accounts::by_help_scout_static_token(token).or_else(|| {
                state
                    .help_scout_tokens()
                    .account(token)
                    .and_then(accounts::find)
            })
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "invalid_token" }),
            )
        })
}

/// `GET /v2/reports/conversations/volume-by-channel`.
async fn volume_by_channel(
    State(state): State<SimState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let account = authenticate(&state, &headers)?;
    let query = VolumeQuery::parse(&params)?;
    Ok(Json(volume_body(account.id, &query)))
}

/// Reads the token request's fields from a form body or, when the content type says so, JSON.
fn token_fields(headers: &HeaderMap, body: &[u8]) -> Result<Params, ApiError> {
    let is_json = header_str(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return Ok(Params::parse(&String::from_utf8_lossy(body)));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request("the JSON body must be an object"));
    };
    // Re-encode as a query string so both body kinds share one reader.
    let encoded: Vec<String> = object
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={}", encode(v))))
        .collect();
    Ok(Params::parse(&encoded.join("&")))
}

/// Percent-encodes everything but unreserved characters.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /v2/oauth2/token`: the client-credentials grant.
async fn token(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let fields = token_fields(&headers, &body)?;
    let grant = fields.required("grant_type")?;
    if grant != "client_credentials" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "unsupported_grant_type",
                "message": format!("grant_type must be client_credentials, got `{grant}`"),
            }),
        ));
    }
    let account = match (
        fields.optional("client_id"),
        fields.optional("client_secret"),
    ) {
        (Some(id), Some(secret)) => accounts::by_help_scout_client(id, secret),
        _ => None,
    };
    let Some(account) = account else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            json!({ "error": "invalid_client", "message": "unknown client_id or wrong client_secret" }),
        ));
    };
    let access_token = state.help_scout_tokens().issue(account.id);
    Ok(Json(json!({
        "token_type": "bearer",
        "access_token": access_token,
        "expires_in": TOKEN_LIFETIME_SECS,
    })))
}

/// Routes under `/help-scout`.
pub fn router() -> Router<SimState> {
    Router::new().route("/v2/oauth2/token", post(token)).route(
        "/v2/reports/conversations/volume-by-channel",
        get(volume_by_channel),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{start, SandboxOptions};
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("valid test date")
    }

    fn params(q: &str) -> Params {
        Params::parse(q)
    }

    #[test]
    fn view_by_rules_follow_the_range_length() {
        assert!(ViewBy::Day.allows(Duration::days(60)));
        assert!(!ViewBy::Day.allows(Duration::days(60) + Duration::seconds(1)));
        assert!(ViewBy::Week.allows(Duration::days(366)));
        assert!(!ViewBy::Week.allows(Duration::days(367)));
        assert!(!ViewBy::Month.allows(Duration::days(60)));
        assert!(ViewBy::Month.allows(Duration::days(61)));
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2024-01-03 is a Wednesday.
        let b = buckets(ViewBy::Week, utc(2024, 1, 3), utc(2024, 1, 9));
        assert_eq!(
            b,
            vec![
                (utc(2024, 1, 1), utc(2024, 1, 8)),
                (utc(2024, 1, 8), utc(2024, 1, 15))
            ]
        );
        let m = buckets(ViewBy::Month, utc(2024, 1, 31), utc(2024, 3, 1));
        assert_eq!(
            m,
            vec![
                (utc(2024, 1, 1), utc(2024, 2, 1)),
                (utc(2024, 2, 1), utc(2024, 3, 1))
            ]
        );
    }

    #[test]
    fn filters_narrow_the_total_and_foreign_ids_match_nothing() {
        let (from, to) = (utc(2024, 1, 1), utc(2024, 2, 1));
        let all = conversations("acme", "chat", &[], &[], &[], from, to);
        let one = conversations("acme", "chat", &[101], &[], &[], from, to);
        let rest = conversations("acme", "chat", &[102, 103], &[], &[], from, to);
        assert!(one > 0 && one < all);
        assert_eq!(one + rest, all);
        assert_eq!(conversations("acme", "chat", &[201], &[], &[], from, to), 0);
        assert_eq!(conversations("acme", "fax", &[], &[], &[], from, to), 0);
    }

    #[test]
    fn a_query_with_half_a_previous_range_is_rejected() {
        let err = VolumeQuery::parse(&params(
            "start=2024-01-01T00:00:00Z&end=2024-01-10T00:00:00Z&previousStart=2023-12-01T00:00:00Z",
        ))
        .expect_err("half a previous range");
        assert!(err.message().contains("previousEnd"), "{}", err.message());
    }

    #[test]
    fn every_bad_parameter_is_a_400_naming_it() {
        let base = "start=2024-01-01T00:00:00Z&end=2024-01-10T00:00:00Z";
        for (query, needle) in [
            ("end=2024-01-10T00:00:00Z".to_string(), "start"),
            (
                "start=yesterday&end=2024-01-10T00:00:00Z".to_string(),
                "start",
            ),
            (
                "start=2024-01-10T00:00:00Z&end=2024-01-01T00:00:00Z".to_string(),
                "end must be after",
            ),
            (format!("{base}&viewBy=hour"), "viewBy"),
            (format!("{base}&viewBy=month"), "month is only allowed"),
            (format!("{base}&mailboxes=101,abc"), "mailboxes"),
            (format!("{base}&types=fax"), "types"),
            (
                "start=2024-01-01T00:00:00Z&end=2024-12-31T00:00:00Z".to_string(),
                "day is only allowed",
            ),
        ] {
            let err = VolumeQuery::parse(&params(&query)).expect_err(&query);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(err.message().contains(needle), "{query}: {}", err.message());
        }
    }

    #[test]
    fn buckets_partition_the_range_and_clip_to_it() {
        let query = VolumeQuery::parse(&params(
            "start=2024-01-03T05:00:00Z&end=2024-03-20T00:00:00Z&viewBy=week&mailboxes=101&types=chat,phone",
        ))
        .expect("valid query");
        let body = volume_body("acme", &query);
        let rows = body["current"].as_array().expect("current is an array");
        assert_eq!(rows[0]["date"], "2024-01-01T00:00:00Z");
        let chat: u64 = rows.iter().map(|r| r["chat"].as_u64().unwrap_or(0)).sum();
        assert_eq!(
            chat,
            conversations("acme", "chat", &[101], &[], &[], query.start, query.end)
        );
        assert!(rows.iter().all(|r| r["email"] == 0));
        assert!(body.get("previous").is_none());
    }

    #[test]
    fn issued_tokens_belong_to_their_account_and_are_distinct() {
        let store = TokenStore::default();
        let a = store.issue("globex");
        let b = store.issue("globex");
        assert_ne!(a, b);
        assert!(a.starts_with("hs-oauth-globex-"));
        assert_eq!(store.account(&a), Some("globex"));
        assert_eq!(store.account("hs-oauth-globex-999"), None);
    }

    const REPORT: &str = "/help-scout/v2/reports/conversations/volume-by-channel";

    #[tokio::test]
    async fn the_oauth_flow_issues_a_token_that_the_report_accepts() {
        let sandbox = start(
            "127.0.0.1:0".parse().expect("addr"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts");
        let client = reqwest::Client::new();
        let base = sandbox.base_url();
        let bad = client
            .post(format!("{base}/help-scout/v2/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=hs-globex-client&client_secret=nope")
            .send()
            .await
            .expect("request");
        assert_eq!(bad.status(), 401);
        let granted: Value = client
            .post(format!("{base}/help-scout/v2/oauth2/token"))
            .json(&json!({"grant_type":"client_credentials","client_id":"hs-globex-client","client_secret":"hs-globex-secret"}))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(granted["token_type"], "bearer");
        assert_eq!(granted["expires_in"], 7200);
        let token = granted["access_token"].as_str().expect("token").to_string();
        let url = format!("{base}{REPORT}?start=2024-01-01T00:00:00Z&end=2024-01-03T00:00:00Z&previousStart=2023-12-30T00:00:00Z&previousEnd=2024-01-01T00:00:00Z");
        let report = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(report.status(), 200);
        let body: Value = report.json().await.expect("json");
        let first = &body["current"][0];
        let expected = conversations(
            "globex",
            "email",
            &[],
            &[],
            &[],
            utc(2024, 1, 1),
            utc(2024, 1, 2),
        );
        assert_eq!(first["email"], expected);
        assert_eq!(body["previous"].as_array().map(Vec::len), Some(2));
        let unauthorized = client
            .get(&url)
            .bearer_auth("hs-acme-wrong")
            .send()
            .await
            .expect("request");
        assert_eq!(unauthorized.status(), 401);
        let body: Value = unauthorized.json().await.expect("json");
        assert_eq!(body, json!({"error":"invalid_token"}));
        sandbox.shutdown().await;
    }
}
