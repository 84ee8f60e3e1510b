//! The simulated message2give statistics API (seed 000, SPEC §1.1).
//!
//! Two endpoints under `/message2give/2019-01-23/organisations/{org}/`:
//! - `stats/chat/{web|sms}` — per user (and per cct, a group of operators) and local day:
//!   average response time, average wait time, session count and average session length;
//! - `usage/sms/console` — per survey and local day: SMS messages and billing units.
//!
//! Both take a whole month in a fixed offset (`timezone_offset`, JavaScript sign: `-600` is
//! UTC+10) whose local midnight on the 1st is sent as `month`. The offset is fixed for the
//! whole month, so every local day is exactly 24 hours, and the day keys are the local day
//! starts as UTC instants (`2021-06-04T14:00:00.000Z`), newest first.
//!
//! The numbers come from the pure truth functions [`user_day`] and [`survey_day`], which the
//! gateway's tests call to compute what the gateway must answer; the HTTP handlers only parse,
//! authenticate and serialise.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use serde_json::{json, Map, Value};

use super::accounts::{self, Account};
use super::data::{mix, sum_hours, value_in};
use super::{header_str, ApiError, Params, SimState};

/// The chat types the chat statistics endpoint accepts.
pub const CHAT_TYPES: [&str; 2] = ["web", "sms"];

/// Smallest accepted `timezone_offset` (minutes, JavaScript sign): UTC+14.
pub const MIN_OFFSET_MINUTES: i32 = -840;
/// Largest accepted `timezone_offset` (minutes, JavaScript sign): UTC-12.
pub const MAX_OFFSET_MINUTES: i32 = 720;

/// A local day: always 24 hours, because the offset is fixed for the whole month. For offsets
/// with minutes (UTC+5:30) a day starts mid-hour and counts the 24 UTC hours that start in it.
const DAY: Duration = Duration::hours(24);

/// Scale of the hourly session series (typical busy-hour sessions per user).
const SESSIONS_SCALE: u32 = 2;
/// Scale of the hourly SMS series (typical busy-hour messages per survey).
const SMS_SCALE: u32 = 4;

/// One user's statistics for one local day, as the upstream reports them.
///
/// `None` averages are the upstream's `null` (no data that day).
#[derive(Debug, Clone, PartialEq)]
pub struct UserDay {
    /// Average first-response time in seconds (`response.{day}.average`).
    pub response: Option<f64>,
    /// Average wait time in seconds (`wait.{day}.average`).
    pub wait: Option<f64>,
    /// Average session length in seconds (`sessions.{day}.average`).
    pub sessions_average: Option<f64>,
    /// Number of sessions that day (`sessions.{day}.count`).
    pub sessions_count: u64,
}

/// A month as the upstream addresses it: a fixed offset and the UTC instant of local
/// midnight on the 1st.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMonth {
    /// `timezone_offset` in minutes, JavaScript sign (`-600` = UTC+10).
    pub offset_minutes: i32,
    /// Local midnight on the 1st, as a UTC instant (the `month` parameter).
    pub start: DateTime<Utc>,
    /// Number of days in that local month.
    pub days: u32,
}

impl LocalMonth {
    /// Parses the two query parameters; the error message names the parameter and says
    /// what is allowed.
    pub fn parse(timezone_offset: Option<&str>, month: Option<&str>) -> Result<Self, String> {
        let raw_offset = timezone_offset
            .ok_or("missing query parameter `timezone_offset` (integer minutes, e.g. -600)")?;
        let offset_minutes: i32 = raw_offset.trim().parse().map_err(|_| {
            format!("`timezone_offset` must be an integer number of minutes, got {raw_offset:?}")
        })?;
        if !(MIN_OFFSET_MINUTES..=MAX_OFFSET_MINUTES).contains(&offset_minutes) {
            return Err(format!(
                "`timezone_offset` must be within {MIN_OFFSET_MINUTES}..={MAX_OFFSET_MINUTES} \
                 minutes, got {offset_minutes}"
            ));
        }
        let raw_month = month.ok_or(
            "missing query parameter `month` (local midnight on the 1st as an RFC 3339 instant)",
        )?;
        let start = DateTime::parse_from_rfc3339(raw_month.trim())
            .map_err(|e| format!("`month` must be an RFC 3339 instant, got {raw_month:?}: {e}"))?
            .with_timezone(&Utc);
        let local = (start - Duration::minutes(i64::from(offset_minutes))).naive_utc();
        let is_midnight = local.hour() == 0
            && local.minute() == 0
            && local.second() == 0
            && local.nanosecond() == 0;
        if local.day() != 1 || !is_midnight {
            return Err(format!(
                "`month` must be local midnight on the 1st of a month at timezone_offset \
                 {offset_minutes} (local = UTC - offset), but {raw_month} is local {local}"
            ));
        }
        let days = days_in_month(local.year(), local.month())
            .ok_or_else(|| format!("`month` {raw_month} is outside the supported calendar"))?;
        Ok(LocalMonth {
            offset_minutes,
            start,
            days,
        })
    }

    /// The `month` instant for a local calendar month at a fixed offset (what a client
    /// sends); `None` for an invalid year/month.
    pub fn new(year: i32, month: u32, offset_minutes: i32) -> Option<Self> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let start =
            first.and_hms_opt(0, 0, 0)?.and_utc() + Duration::minutes(offset_minutes.into());
        Some(LocalMonth {
            offset_minutes,
            start,
            days: days_in_month(year, month)?,
        })
    }

    /// The UTC instants of the local day starts, newest first (the upstream's key order).
    pub fn day_starts_newest_first(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        (0..self.days)
            .rev()
            .map(|d| self.start + Duration::days(i64::from(d)))
    }
}

/// Days in a calendar month (`None` for an invalid month).
fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    u32::try_from((next - first).num_days()).ok()
}

/// The key prefix of one user's series (per chat type, and per cct for the cct tree, which has
/// its own data).
fn user_key(account: &str, chat_type: &str, cct: Option<&str>, user: &str) -> String {
    match cct {
        Some(cct) => format!("message2give/{account}/{chat_type}/{cct}/{user}"),
        None => format!("message2give/{account}/{chat_type}/{user}"),
    }
}

/// An average that the upstream reports as `null` on about 10% of the days with sessions
/// (deterministically), so the gateway's null handling is exercised.
fn sometimes_null(key: &str, day_start: DateTime<Utc>, lo: f64, hi: f64) -> Option<f64> {
    if mix(&format!("{key}/null"), day_start.timestamp()).is_multiple_of(10) {
        None
    } else {
        Some(value_in(key, day_start, lo, hi))
    }
}

/// Truth: what the upstream reports for `user` on the local day starting at `day_start`
/// (`chat_type` "web" or "sms"; `cct` selects the per-cct tree). `None` = the day is absent.
///
/// A day with no sessions is absent on about half the days and present with count 0 and
/// null averages on the others, as in the seed.
pub fn user_day(
    account: &str,
    chat_type: &str,
    cct: Option<&str>,
    user: &str,
    day_start: DateTime<Utc>,
) -> Option<UserDay> {
    let base = user_key(account, chat_type, cct, user);
    let sessions_key = format!("{base}/sessions");
    let count = sum_hours(&sessions_key, day_start, day_start + DAY, SESSIONS_SCALE);
    if count == 0 {
        if mix(&sessions_key, day_start.timestamp()).is_multiple_of(2) {
            return None;
        }
        return Some(UserDay {
            response: None,
            wait: None,
            sessions_average: None,
            sessions_count: 0,
        });
    }
    Some(UserDay {
        response: sometimes_null(&format!("{base}/response"), day_start, 10.0, 120.0),
        wait: sometimes_null(&format!("{base}/wait"), day_start, 5.0, 60.0),
        sessions_average: Some(value_in(&format!("{base}/session"), day_start, 60.0, 600.0)),
        sessions_count: count,
    })
}

/// Truth: SMS usage of `survey` on the local day starting at `day_start`:
/// `(messages, units)`, where units = messages + ceil(messages / 3) (long messages cost more).
pub fn survey_day(account: &str, survey: &str, day_start: DateTime<Utc>) -> (u64, u64) {
    let key = format!("message2give/{account}/sms/{survey}");
    let messages = sum_hours(&key, day_start, day_start + DAY, SMS_SCALE);
    (messages, messages + messages.div_ceil(3))
}

/// The day key the upstream uses: `2021-06-04T14:00:00.000Z`.
pub fn day_key(day_start: DateTime<Utc>) -> String {
    day_start.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One user's `{response, wait, sessions}` object for a month.
fn user_tree(
    account: &str,
    chat_type: &str,
    cct: Option<&str>,
    user: &str,
    month: &LocalMonth,
) -> Value {
    let mut response = Map::new();
    let mut wait = Map::new();
    let mut sessions = Map::new();
    for day_start in month.day_starts_newest_first() {
        if let Some(day) = user_day(account, chat_type, cct, user, day_start) {
            let key = day_key(day_start);
            response.insert(key.clone(), json!({ "average": day.response }));
            wait.insert(key.clone(), json!({ "average": day.wait }));
            sessions.insert(
                key,
                json!({ "average": day.sessions_average, "count": day.sessions_count }),
            );
        }
    }
    json!({ "response": response, "wait": wait, "sessions": sessions })
}

/// The body of `stats/chat/{chat_type}` for one account and month.
pub fn chat_stats_body(account: &Account, chat_type: &str, month: &LocalMonth) -> Value {
    let m2g = &account.message2give;
    let mut users = Map::new();
    for user in m2g.users {
        users.insert(
            (*user).to_string(),
            user_tree(account.id, chat_type, None, user, month),
        );
    }
    let mut ccts = Map::new();
    for cct in m2g.ccts {
        let mut cct_users = Map::new();
        for user in cct.users {
            cct_users.insert(
                (*user).to_string(),
                user_tree(account.id, chat_type, Some(cct.id), user, month),
            );
        }
        ccts.insert(cct.id.to_string(), json!({ "users": cct_users }));
    }
    json!({ "stats": { "users": users, "ccts": ccts }, "status": "OK" })
}

/// The body of `usage/sms/console` for one account and month: every day present, zeros
/// included, newest first.
pub fn sms_usage_body(account: &Account, month: &LocalMonth) -> Value {
    let mut surveys = Map::new();
    for survey in account.message2give.surveys {
        let mut messages = Map::new();
        let mut units = Map::new();
        for day_start in month.day_starts_newest_first() {
            let (m, u) = survey_day(account.id, survey, day_start);
            messages.insert(day_key(day_start), json!(m));
            units.insert(day_key(day_start), json!(u));
        }
        surveys.insert(
            (*survey).to_string(),
            json!({ "messages": messages, "units": units }),
        );
    }
    json!({ "usage": { "surveys": surveys }, "status": "OK" })
}

/// message2give's error body: `{"status":"ERROR","message": ...}`.
fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(
        status,
        json!({ "status": "ERROR", "message": message.into() }),
    )
}

/// The account of the request: `x-token` (and `x-mfa` when the organisation requires MFA)
/// must match (401), and `{org}` must be "self" or the token's organisation (404).
fn authenticate(headers: &HeaderMap, org: &str) -> Result<&'static Account, ApiError> {
    let token = header_str(headers, "x-token").ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing x-token header: these endpoints only work with token authentication",
        )
    })?;
    let account = accounts::by_message2give_token(token)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "invalid or expired x-token"))?;
    if let Some(mfa) = account.message2give.mfa {
        if header_str(headers, "x-mfa") != Some(mfa) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "this organisation requires MFA: send a valid x-mfa header",
            ));
        }
    }
    if org != "self" && org != account.message2give.org {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("organisation `{org}` not found"),
        ));
    }
    Ok(account)
}

/// The month of the request, or a 400 naming the bad parameter.
fn local_month(params: &Params) -> Result<LocalMonth, ApiError> {
    LocalMonth::parse(params.optional("timezone_offset"), params.optional("month"))
        .map_err(|message| error(StatusCode::BAD_REQUEST, message))
}

/// The routes of this provider, relative to `Provider::Message2give.prefix()`.
pub fn router() -> Router<SimState> {
    Router::new()
        .route(
            "/organisations/{org}/stats/chat/{chat_type}",
            get(chat_stats),
        )
        .route("/organisations/{org}/usage/sms/console", get(sms_usage))
}

/// `GET /organisations/{org}/stats/chat/{chat_type}?timezone_offset=&month=`.
async fn chat_stats(
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let Path((org, chat_type)) =
        path.map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid path: {e}")))?;
    let account = authenticate(&headers, &org)?;
    if !CHAT_TYPES.contains(&chat_type.as_str()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("chat_type must be `web` or `sms`, got `{chat_type}`"),
        ));
    }
    let month = local_month(&params)?;
    Ok(Json(chat_stats_body(account, &chat_type, &month)))
}

/// `GET /organisations/{org}/usage/sms/console?timezone_offset=&month=`.
async fn sms_usage(
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let Path(org) =
        path.map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid path: {e}")))?;
    let account = authenticate(&headers, &org)?;
    let month = local_month(&params)?;
    Ok(Json(sms_usage_body(account, &month)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::data::current_hour;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn june_2021_at_utc_plus_10_starts_on_may_31_at_14h_and_has_30_days() {
        let month = LocalMonth::parse(Some("-600"), Some("2021-05-31T14:00:00.000Z"))
            .expect("the seed's example is valid");
        assert_eq!(month.start, utc(2021, 5, 31, 14, 0));
        assert_eq!(month.days, 30);
        assert_eq!(LocalMonth::new(2021, 6, -600), Some(month));
    }

    #[test]
    fn an_offset_outside_minus_840_to_720_is_rejected_naming_the_parameter() {
        for bad in ["-841", "721", "abc", "1.5", ""] {
            let err = LocalMonth::parse(Some(bad), Some("2021-06-01T00:00:00Z"))
                .expect_err("invalid offset");
            assert!(err.contains("timezone_offset"), "{bad}: {err}");
        }
        assert!(LocalMonth::parse(Some("-840"), Some("2021-05-31T10:00:00Z")).is_ok());
        assert!(LocalMonth::parse(Some("720"), Some("2021-06-01T12:00:00Z")).is_ok());
    }

    #[test]
    fn a_month_that_is_not_local_midnight_on_the_first_is_rejected() {
        for bad in [
            "2021-06-01T00:00:00Z",     // UTC midnight, but the offset is UTC+10
            "2021-06-01T14:00:00Z",     // local midnight on the 2nd
            "2021-05-31T14:00:00.001Z", // a millisecond late
            "June 2021",
        ] {
            let err = LocalMonth::parse(Some("-600"), Some(bad)).expect_err("invalid month");
            assert!(err.contains("month"), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_parameters_are_named_in_the_error() {
        let err = LocalMonth::parse(None, Some("2021-06-01T00:00:00Z")).expect_err("missing");
        assert!(err.contains("timezone_offset"), "{err}");
        let err = LocalMonth::parse(Some("0"), None).expect_err("missing");
        assert!(err.contains("month"), "{err}");
    }

    #[test]
    fn days_are_24_hours_apart_even_across_a_dst_change_newest_first() {
        // March 2024 in Madrid starts at UTC+1; the fixed offset holds for the whole month.
        let month = LocalMonth::new(2024, 3, -60).expect("valid month");
        let days: Vec<_> = month.day_starts_newest_first().collect();
        assert_eq!(days.len(), 31);
        assert_eq!(day_key(days[0]), "2024-03-30T23:00:00.000Z");
        assert_eq!(day_key(days[30]), "2024-02-29T23:00:00.000Z");
        assert!(days.windows(2).all(|w| w[0] - w[1] == DAY));
    }

    #[test]
    fn a_half_hour_offset_counts_the_24_hours_that_start_in_the_local_day() {
        // UTC+5:30 (JS offset -330): the day starts at 18:30 UTC.
        let month = LocalMonth::new(2024, 2, -330).expect("valid month");
        assert_eq!(month.start, utc(2024, 1, 31, 18, 30));
        let (messages, _) = survey_day("acme", "sv-acme-feedback", month.start);
        let by_hour = sum_hours(
            "message2give/acme/sms/sv-acme-feedback",
            utc(2024, 1, 31, 19, 0),
            utc(2024, 2, 1, 19, 0),
            SMS_SCALE,
        );
        assert_eq!(messages, by_hour);
    }

    #[test]
    fn days_with_sessions_have_averages_in_range_and_sometimes_null() {
        let (mut busy, mut null_response) = (0, 0);
        let start = utc(2024, 1, 1, 0, 0);
        for d in 0..400 {
            let day = user_day("acme", "sms", None, "u-acme-cal", start + Duration::days(d))
                .expect("a past day always has sessions at this scale");
            assert!(day.sessions_count > 0);
            busy += 1;
            let s = day
                .sessions_average
                .expect("a day with sessions has an average");
            assert!((60.0..600.0).contains(&s), "{s}");
            match day.response {
                Some(r) => assert!((10.0..120.0).contains(&r), "{r}"),
                None => null_response += 1,
            }
            if let Some(w) = day.wait {
                assert!((5.0..60.0).contains(&w), "{w}");
            }
        }
        assert!(
            null_response > 10 && null_response < busy / 5,
            "{null_response} of {busy}"
        );
    }

    #[test]
    fn days_without_sessions_are_either_absent_or_present_with_nulls() {
        // Days from tomorrow on have no data yet.
        let tomorrow = current_hour() + Duration::days(1);
        let (mut absent, mut empty) = (0, 0);
        for d in 0..60 {
            match user_day(
                "acme",
                "web",
                None,
                "u-acme-ana",
                tomorrow + Duration::days(d),
            ) {
                None => absent += 1,
                Some(day) => {
                    let expected = UserDay {
                        response: None,
                        wait: None,
                        sessions_average: None,
                        sessions_count: 0,
                    };
                    assert_eq!(day, expected);
                    empty += 1;
                }
            }
        }
        assert!(absent > 10 && empty > 10, "{absent} absent, {empty} empty");
    }

    #[test]
    fn the_cct_tree_has_its_own_data() {
        let start = utc(2024, 1, 1, 0, 0);
        let differs = (0..30).any(|d| {
            let day = start + Duration::days(d);
            user_day("acme", "web", None, "u-acme-ben", day)
                != user_day("acme", "web", Some("cct-acme-front"), "u-acme-ben", day)
        });
        assert!(differs);
    }

    #[test]
    fn sms_units_are_messages_plus_a_third_rounded_up() {
        let start = utc(2024, 1, 1, 0, 0);
        let mut seen = 0;
        for d in 0..60 {
            let (m, u) = survey_day("globex", "sv-globex-main", start + Duration::days(d));
            assert_eq!(u, m + m.div_ceil(3));
            seen += m;
        }
        assert!(seen > 0);
    }

    #[test]
    fn the_chat_body_lists_every_user_and_cct_with_keys_newest_first() {
        let month = LocalMonth::new(2024, 2, 0).expect("valid month");
        let body = chat_stats_body(&accounts::ACME, "web", &month);
        assert_eq!(body["status"], "OK");
        let users = body["stats"]["users"].as_object().expect("users object");
        assert_eq!(users.len(), 3);
        let keys: Vec<&String> = users["u-acme-ana"]["sessions"]
            .as_object()
            .expect("sessions object")
            .keys()
            .collect();
        assert!(!keys.is_empty());
        assert!(keys.windows(2).all(|w| w[0] > w[1]), "{keys:?}");
        let ccts = body["stats"]["ccts"].as_object().expect("ccts object");
        assert_eq!(ccts.len(), 2);
        assert!(ccts["cct-acme-back"]["users"]["u-acme-cal"]["wait"].is_object());
    }

    #[test]
    fn the_sms_body_has_every_day_of_the_month_for_every_survey() {
        let month = LocalMonth::new(2024, 2, -600).expect("valid month");
        let body = sms_usage_body(&accounts::ACME, &month);
        let promo = &body["usage"]["surveys"]["sv-acme-promo"];
        assert_eq!(promo["messages"].as_object().map(|m| m.len()), Some(29));
        assert_eq!(promo["units"].as_object().map(|m| m.len()), Some(29));
        let first = promo["messages"]
            .as_object()
            .and_then(|m| m.keys().next().cloned());
        assert_eq!(first.as_deref(), Some("2024-02-28T14:00:00.000Z"));
    }

    // ---- over HTTP ----

    use crate::sandbox::{start, Sandbox, SandboxOptions};

    async fn spawn() -> Sandbox {
        start(
            "127.0.0.1:0".parse().expect("valid address"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts")
    }

    /// GET `{base}/message2give/2019-01-23{path}` with the given headers: (status, body).
    async fn get(sandbox: &Sandbox, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(format!(
            "{}/message2give/2019-01-23{path}",
            sandbox.base_url()
        ));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request succeeds");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    const ACME_AUTH: [(&str, &str); 2] = [("x-token", "m2g-acme-token"), ("x-mfa", "m2g-acme-mfa")];
    const JUNE_SYDNEY: &str = "timezone_offset=-600&month=2024-05-31T14:00:00.000Z";

    #[tokio::test]
    async fn requests_without_valid_token_and_mfa_get_401_and_other_orgs_404() {
        let sandbox = spawn().await;
        let path = format!("/organisations/self/stats/chat/web?{JUNE_SYDNEY}");
        for headers in [
            &[][..],
            &[("x-token", "nope")][..],
            &[("x-token", "m2g-acme-token")][..],
            &[("x-token", "m2g-acme-token"), ("x-mfa", "wrong")][..],
        ] {
            let (status, body) = get(&sandbox, &path, headers).await;
            assert_eq!(status, 401, "{headers:?}");
            assert_eq!(body["status"], "ERROR");
            assert!(body["message"].is_string());
        }
        let (status, _) = get(&sandbox, &path, &ACME_AUTH).await;
        assert_eq!(status, 200);
        let own = format!("/organisations/org-acme/usage/sms/console?{JUNE_SYDNEY}");
        assert_eq!(get(&sandbox, &own, &ACME_AUTH).await.0, 200);
        let other = format!("/organisations/org-globex/usage/sms/console?{JUNE_SYDNEY}");
        let (status, body) = get(&sandbox, &other, &ACME_AUTH).await;
        assert_eq!((status, body["status"].as_str()), (404, Some("ERROR")));
        // globex needs no MFA.
        let globex = [("x-token", "m2g-globex-token")];
        assert_eq!(get(&sandbox, &path, &globex).await.0, 200);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn bad_chat_type_offset_or_month_get_400_naming_the_parameter() {
        let sandbox = spawn().await;
        let chat = "/organisations/self/stats/chat";
        let sms = "/organisations/self/usage/sms/console";
        for (path, named) in [
            (format!("{chat}/voice?{JUNE_SYDNEY}"), "chat_type"),
            (
                format!("{chat}/web?month=2024-05-31T14:00:00Z"),
                "timezone_offset",
            ),
            (
                format!("{chat}/web?timezone_offset=-900&month=2024-05-31T09:00:00Z"),
                "timezone_offset",
            ),
            (format!("{chat}/sms?timezone_offset=-600"), "month"),
            (
                format!("{chat}/sms?timezone_offset=-600&month=2024-06-01T00:00:00Z"),
                "month",
            ),
            (
                format!("{sms}?timezone_offset=0&month=2024-06-02T00:00:00Z"),
                "month",
            ),
            (
                format!("{sms}?timezone_offset=ten&month=2024-06-01T00:00:00Z"),
                "timezone_offset",
            ),
        ] {
            let (status, body) = get(&sandbox, &path, &ACME_AUTH).await;
            assert_eq!(status, 400, "{path}");
            assert_eq!(body["status"], "ERROR");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains(named), "{path}: {message}");
        }
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn chat_stats_over_http_are_the_truth_with_24_hour_day_keys() {
        let sandbox = spawn().await;
        // March 2024 in Madrid: UTC+1 all month for message2give, although DST starts on
        // the 31st; every key is 23:00Z.
        let query = "timezone_offset=-60&month=2024-02-29T23:00:00.000Z";
        let path = format!("/organisations/self/stats/chat/sms?{query}");
        let (status, body) = get(&sandbox, &path, &[("x-token", "m2g-globex-token")]).await;
        assert_eq!(status, 200);
        let month = LocalMonth::new(2024, 3, -60).expect("valid month");
        let sessions = body["stats"]["users"]["u-globex-eva"]["sessions"]
            .as_object()
            .expect("sessions object");
        let expected: Vec<String> = month
            .day_starts_newest_first()
            .filter(|d| user_day("globex", "sms", None, "u-globex-eva", *d).is_some())
            .map(day_key)
            .collect();
        let keys: Vec<String> = sessions.keys().cloned().collect();
        assert_eq!(keys, expected);
        assert!(
            keys.iter().all(|k| k.ends_with("T23:00:00.000Z")),
            "{keys:?}"
        );
        let day = month.start + Duration::days(10);
        let truth = user_day("globex", "sms", Some("cct-globex-all"), "u-globex-dan", day)
            .expect("a past day has sessions");
        let tree = &body["stats"]["ccts"]["cct-globex-all"]["users"]["u-globex-dan"];
        assert_eq!(
            tree["sessions"][day_key(day)]["count"],
            truth.sessions_count
        );
        assert_eq!(
            tree["response"][day_key(day)]["average"],
            json!(truth.response)
        );
        assert_eq!(tree["wait"][day_key(day)]["average"], json!(truth.wait));
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn sms_usage_over_http_is_the_truth_and_the_call_is_logged() {
        let sandbox = spawn().await;
        let path = format!("/organisations/self/usage/sms/console?{JUNE_SYDNEY}");
        let (status, body) = get(&sandbox, &path, &ACME_AUTH).await;
        assert_eq!(status, 200);
        let month = LocalMonth::new(2024, 6, -600).expect("valid month");
        let survey = &body["usage"]["surveys"]["sv-acme-feedback"];
        for day in month.day_starts_newest_first() {
            let (messages, units) = survey_day("acme", "sv-acme-feedback", day);
            assert_eq!(survey["messages"][day_key(day)], messages);
            assert_eq!(survey["units"][day_key(day)], units);
        }
        let calls = sandbox.state().calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].provider, "message2give");
        assert_eq!(calls[0].path, "/organisations/self/usage/sms/console");
        assert_eq!(
            calls[0].params[1],
            ("month".into(), "2024-05-31T14:00:00.000Z".into())
        );
        sandbox.shutdown().await;
    }
}
