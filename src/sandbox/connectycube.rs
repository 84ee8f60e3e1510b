//! Simulated ConnectyCube admin statistics (seed 003): messages sent and dialogs created,
//! as totals or per UTC day with `limit`/`offset` paging.
//!
//! Routes (under `/connectycube`), all authenticated by the `CB-Administration-API-Key` header:
//! - `GET /admin/stats/messages/sent-total?start_date=&end_date=` → `{"total":n}`
//! - `GET /admin/stats/messages/sent-per-day?start_date=&end_date=&limit=&offset=`
//! - `GET /admin/stats/dialogs/created-total?start_date=&end_date=&types[]=..`
//! - `GET /admin/stats/dialogs/created-per-day?...&types[]=..&limit=&offset=`
//!
//! Dates are Unix seconds and the range is [start, end). Series keys:
//! `connectycube/{account}/messages` (scale 12) and `connectycube/{account}/dialogs/type{t}`
//! (scale 2, t = 1 broadcast, 2 group, 3 private, 4 public).
//!
//! Paging is our documented assumption (the seed only says "days in one response" and "days
//! offset"): the range covers the UTC calendar days D0..Dn-1 that intersect it; a page is the
//! days [offset, offset+limit) of that list, as `{"YYYY-MM-DD": n}` in ascending order,
//! counting only hours inside the range, with zero days omitted (the seed shows gaps).

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde_json::{json, Map, Value};

use super::accounts::{self, Account};
use super::{check_past_span, data, header_str, invalid_param, ApiError, Params, SimState};

/// The dialog types ConnectyCube knows: 1 broadcast, 2 group, 3 private, 4 public.
pub const DIALOG_TYPES: [u8; 4] = [1, 2, 3, 4];

/// Default and maximum of `limit` (days per page).
pub const MAX_LIMIT: u64 = 100;

/// The header carrying the administration API key.
const API_KEY_HEADER: &str = "CB-Administration-API-Key";

/// Truth: messages sent by the account in the hours starting in [from, to).
pub fn messages_sent(account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    if accounts::find(account).is_none() {
        return 0;
    }
    data::sum_hours(&format!("connectycube/{account}/messages"), from, to, 12)
}

/// Truth: dialogs of the given types (empty = all; duplicates and unknown types ignored)
/// created by the account in the hours starting in [from, to).
pub fn dialogs_created(account: &str, types: &[u8], from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    if accounts::find(account).is_none() {
        return 0;
    }
    DIALOG_TYPES
        .iter()
        .filter(|t| types.is_empty() || types.contains(t))
        .map(|t| {
            data::sum_hours(
                &format!("connectycube/{account}/dialogs/type{t}"),
                from,
                to,
                2,
            )
        })
        .sum()
}

/// Which statistic a request reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stat {
    Messages,
    Dialogs(Vec<u8>),
}

impl Stat {
    fn count(&self, account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        match self {
            Stat::Messages => messages_sent(account, from, to),
            Stat::Dialogs(types) => dialogs_created(account, types, from, to),
        }
    }
}

/// The page body of a per-day endpoint (see the module docs for the paging rule).
pub fn per_day_page(
    count: impl Fn(DateTime<Utc>, DateTime<Utc>) -> u64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u64,
    offset: u64,
) -> Map<String, Value> {
    let mut page = Map::new();
    let first_day = from.date_naive().and_time(NaiveTime::MIN).and_utc();
    let span = (to - first_day).num_seconds();
    if span <= 0 {
        return page;
    }
    // Days D0..Dn-1 intersecting [from, to): every day starting before `to`.
    let days = span.div_euclid(86_400) + i64::from(span.rem_euclid(86_400) > 0);
    let days = u64::try_from(days).unwrap_or(0);
    let end = offset.saturating_add(limit).min(days);
    for i in offset..end {
        let Some(day) = i64::try_from(i)
            .ok()
            .and_then(|i| first_day.checked_add_signed(Duration::days(i)))
        else {
            break;
        };
        let n = count(day.max(from), (day + Duration::days(1)).min(to));
        if n > 0 {
            page.insert(day.format("%Y-%m-%d").to_string(), n.into());
        }
    }
    page
}

/// The account of the `CB-Administration-API-Key` header; 401 `{"errors":["Unauthorized"]}`.
fn authenticate(headers: &HeaderMap) -> Result<&'static Account, ApiError> {
    header_str(headers, API_KEY_HEADER)
        .and_then(accounts::by_connectycube_key)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                json!({ "errors": ["Unauthorized"] }),
            )
        })
}

/// A required Unix-seconds parameter as an instant.
fn unix_param(params: &Params, name: &str) -> Result<DateTime<Utc>, ApiError> {
    let expected = "a Unix timestamp in seconds";
    let seconds: i64 = params.required_as(name, expected)?;
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| invalid_param(name, expected, &seconds.to_string()))
}

/// The validated [start, end) of a request.
fn range(params: &Params) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let from = unix_param(params, "start_date")?;
    let to = unix_param(params, "end_date")?;
    if to <= from {
        return Err(ApiError::bad_request(
            "`end_date` must be after `start_date`",
        ));
    }
    check_past_span(from, to)?;
    Ok((from, to))
}

/// The `types[]` filter (also accepted without brackets); values must be 1..=4.
fn dialog_types(params: &Params) -> Result<Vec<u8>, ApiError> {
    let expected = "a dialog type: 1 (broadcast), 2 (group), 3 (private) or 4 (public)";
    params
        .pairs()
        .iter()
        .filter(|(name, _)| name == "types[]" || name == "types")
        .map(|(name, value)| {
            value
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|t| DIALOG_TYPES.contains(t))
                .ok_or_else(|| invalid_param(name, expected, value))
        })
        .collect()
}

/// `limit` (1..=100, default 100) and `offset` (>= 0, default 0).
fn paging(params: &Params) -> Result<(u64, u64), ApiError> {
    let limit_expected = "an integer in 1..=100";
    let limit = params
        .optional_as::<u64>("limit", limit_expected)?
        .unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid_param("limit", limit_expected, &limit.to_string()));
    }
    let offset = params
        .optional_as::<u64>("offset", "a non-negative integer")?
        .unwrap_or(0);
    Ok((limit, offset))
}

/// A `*-total` answer: `{"total": n}`.
fn total(account: &Account, params: &Params, stat: Stat) -> Result<Json<Value>, ApiError> {
    let (from, to) = range(params)?;
    Ok(Json(json!({ "total": stat.count(account.id, from, to) })))
}

/// A `*-per-day` answer: one page of `{"YYYY-MM-DD": n}`.
fn per_day(account: &Account, params: &Params, stat: Stat) -> Result<Json<Value>, ApiError> {
    let (from, to) = range(params)?;
    let (limit, offset) = paging(params)?;
    let page = per_day_page(|s, e| stat.count(account.id, s, e), from, to, limit, offset);
    Ok(Json(Value::Object(page)))
}

/// `GET /admin/stats/messages/sent-total`.
async fn sent_total(headers: HeaderMap, params: Params) -> Result<Json<Value>, ApiError> {
    total(authenticate(&headers)?, &params, Stat::Messages)
}

/// `GET /admin/stats/messages/sent-per-day`.
async fn sent_per_day(headers: HeaderMap, params: Params) -> Result<Json<Value>, ApiError> {
    per_day(authenticate(&headers)?, &params, Stat::Messages)
}

/// `GET /admin/stats/dialogs/created-total`.
async fn created_total(headers: HeaderMap, params: Params) -> Result<Json<Value>, ApiError> {
    let account = authenticate(&headers)?;
    total(account, &params, Stat::Dialogs(dialog_types(&params)?))
}

/// `GET /admin/stats/dialogs/created-per-day`.
async fn created_per_day(headers: HeaderMap, params: Params) -> Result<Json<Value>, ApiError> {
    let account = authenticate(&headers)?;
    per_day(account, &params, Stat::Dialogs(dialog_types(&params)?))
}

/// Routes under `/connectycube`.
pub fn router() -> Router<SimState> {
    Router::new()
        .route("/admin/stats/messages/sent-total", get(sent_total))
        .route("/admin/stats/messages/sent-per-day", get(sent_per_day))
        .route("/admin/stats/dialogs/created-total", get(created_total))
        .route("/admin/stats/dialogs/created-per-day", get(created_per_day))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{start, SandboxOptions};
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn dialog_types_add_up_and_an_empty_filter_means_all() {
        let (from, to) = (utc(2024, 1, 1, 0), utc(2024, 2, 1, 0));
        let all = dialogs_created("acme", &[], from, to);
        let parts: u64 = DIALOG_TYPES
            .iter()
            .map(|t| dialogs_created("acme", &[*t], from, to))
            .sum();
        assert!(all > 0);
        assert_eq!(all, parts);
        assert_eq!(
            dialogs_created("acme", &[2, 2], from, to),
            dialogs_created("acme", &[2], from, to)
        );
        assert_eq!(messages_sent("initech", from, to), 0);
    }

    #[test]
    fn a_page_lists_the_days_intersecting_the_range_clipped_to_it() {
        // From 18:00 on Jan 1 to 06:00 on Jan 4: days Jan 1..=Jan 4.
        let (from, to) = (utc(2024, 1, 1, 18), utc(2024, 1, 4, 6));
        let count = |s, e| messages_sent("acme", s, e);
        let page = per_day_page(count, from, to, 100, 0);
        let keys: Vec<&str> = page.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
        );
        assert_eq!(
            page["2024-01-01"],
            messages_sent("acme", from, utc(2024, 1, 2, 0))
        );
        let sum: u64 = page.values().filter_map(Value::as_u64).sum();
        assert_eq!(sum, messages_sent("acme", from, to));
        let second = per_day_page(count, from, to, 2, 2);
        assert_eq!(
            second.keys().collect::<Vec<_>>(),
            vec!["2024-01-03", "2024-01-04"]
        );
        assert!(per_day_page(count, from, to, 2, 4).is_empty());
        assert!(per_day_page(count, from, to, 100, u64::MAX).is_empty());
    }

    #[test]
    fn days_without_events_are_omitted() {
        let (from, to) = (utc(2024, 1, 1, 0), utc(2024, 3, 1, 0));
        // Broadcast dialogs at scale 2 have quiet days; none may appear with a 0.
        let page = per_day_page(|s, e| dialogs_created("acme", &[1], s, e), from, to, 100, 0);
        assert!(page.values().all(|v| v.as_u64().is_some_and(|n| n > 0)));
    }

    async fn get(client: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = client.get(url);
        if let Some(key) = key {
            request = request.header("CB-Administration-API-Key", key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    #[tokio::test]
    async fn a_250_day_range_takes_three_pages_that_sum_to_the_total() {
        let sandbox = start(
            "127.0.0.1:0".parse().expect("addr"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts");
        let client = reqwest::Client::new();
        let (from, to) = (utc(2023, 3, 1, 0), utc(2023, 3, 1, 0) + Duration::days(250));
        let base = format!(
            "{}/connectycube/admin/stats/messages/sent-per-day?start_date={}&end_date={}",
            sandbox.base_url(),
            from.timestamp(),
            to.timestamp()
        );
        let mut days = 0;
        let mut sum = 0;
        for offset in [0, 100, 200] {
            let (status, page) = get(
                &client,
                &format!("{base}&offset={offset}"),
                Some("cc-acme-key"),
            )
            .await;
            assert_eq!(status, 200);
            let page = page.as_object().expect("object").clone();
            days += page.len();
            sum += page.values().filter_map(Value::as_u64).sum::<u64>();
        }
        assert_eq!(days, 250, "busy message series have no empty day");
        assert_eq!(sum, messages_sent("acme", from, to));
        let (_, beyond) = get(&client, &format!("{base}&offset=250"), Some("cc-acme-key")).await;
        assert_eq!(beyond, json!({}));
        let total_url = format!(
            "{}/connectycube/admin/stats/messages/sent-total?start_date={}&end_date={}",
            sandbox.base_url(),
            from.timestamp(),
            to.timestamp()
        );
        let (_, total) = get(&client, &total_url, Some("cc-globex-key")).await;
        assert_eq!(total, json!({ "total": messages_sent("globex", from, to) }));
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn bad_keys_are_401_and_bad_parameters_400_naming_them() {
        let sandbox = start(
            "127.0.0.1:0".parse().expect("addr"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts");
        let client = reqwest::Client::new();
        let base = format!("{}/connectycube/admin/stats", sandbox.base_url());
        let ok = "start_date=1704067200&end_date=1704153600";
        let (status, body) = get(&client, &format!("{base}/messages/sent-total?{ok}"), None).await;
        assert_eq!((status, body), (401, json!({"errors":["Unauthorized"]})));
        let (status, _) = get(
            &client,
            &format!("{base}/messages/sent-total?{ok}"),
            Some("cc-nope"),
        )
        .await;
        assert_eq!(status, 401);
        for (query, needle) in [
            ("messages/sent-total?end_date=1704153600", "start_date"),
            (
                "messages/sent-total?start_date=x&end_date=1704153600",
                "start_date",
            ),
            (
                "messages/sent-total?start_date=1704153600&end_date=1704067200",
                "after",
            ),
            (
                "messages/sent-total?start_date=99999999999999&end_date=999999999999999",
                "start_date",
            ),
            (
                "messages/sent-total?start_date=0&end_date=1704067200",
                "days of the past",
            ),
            (&format!("messages/sent-per-day?{ok}&limit=0"), "limit"),
            (&format!("messages/sent-per-day?{ok}&limit=101"), "limit"),
            (&format!("messages/sent-per-day?{ok}&offset=-1"), "offset"),
            (&format!("dialogs/created-total?{ok}&types[]=5"), "types[]"),
            (
                &format!("dialogs/created-per-day?{ok}&types%5B%5D=two"),
                "types[]",
            ),
        ] {
            let (status, body) =
                get(&client, &format!("{base}/{query}"), Some("cc-acme-key")).await;
            assert_eq!(status, 400, "{query}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{query}: {message}");
        }
        let (status, body) = get(
            &client,
            &format!("{base}/dialogs/created-total?{ok}&types[]=2&types[]=3"),
            Some("cc-acme-key"),
        )
        .await;
        assert_eq!(status, 200);
        let (from, to) = (utc(2024, 1, 1, 0), utc(2024, 1, 2, 0));
        assert_eq!(body["total"], dialogs_created("acme", &[2, 3], from, to));
        sandbox.shutdown().await;
    }
}
