//! The simulated Chat-Tonic statistics API (seed 001, SPEC §1.2).
//!
//! Three endpoints under `/chat-tonic/api/v1/{codename}/stats/`, all with
//! `Authorization: Bearer <token of that codename>` and a `[startDate, endDate)` window of
//! RFC 3339 instants:
//! - `operator` — one summary per operator over the window (no series);
//! - `bigquery?queryName=dashboard&dateFormatGroup=` — a whole-window row (`"date":"0"`) and
//!   one row per UTC hour, day or month group;
//! - `nps/export?typeUser=` — a side effect upstream (an email), here only validated.
//!
//! Every number comes from the pure truth functions [`dashboard`] (or [`dashboard_row`]),
//! [`operator_stats`] and [`query_pending`], which the gateway's tests call to compute
//! expected values. An hour belongs to a window when it *starts* inside it, so windows that
//! are not hour-aligned (the seed's `02:55:00`) are well defined.
//!
//! `activeUsers` is a distinct count on purpose: it is computed from per-hour probabilities of
//! a user being active, so a day's value is less than the sum of its hours, and a gateway
//! that sums hourly rows instead of asking for daily groups gets it wrong.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use serde_json::{json, Map, Value};

use super::accounts::{self, Account, ChatTonicAccount, Operator};
use super::data::{hour_starts, hourly_count, sum_hours, value_in};
use super::{bearer_token, ApiError, Params, SimState};

/// Size of the user pool behind `activeUsers`: an hour's active count is read as the chance
/// that any one of these users was active, which makes the distinct count over several hours
/// well defined.
pub const ACTIVE_POOL: f64 = 400.0;

/// The longest window the sandbox computes (about ten years): every request walks its hours,
/// so an absurd window would tie the server up instead of answering.
pub const MAX_WINDOW_DAYS: i64 = 3660;

/// The `typeUser` values of the NPS export.
pub const NPS_TYPE_USERS: [&str; 4] = ["all", "promoter", "passive", "detractor"];

/// `(field, scale)` of the dashboard's additive counters, in wire order.
const SUM_FIELDS: [(&str, u32); 7] = [
    ("newUsers", 6),
    ("messagesReceived", 40),
    ("messagesSent", 50),
    ("pending", 2),
    ("progress", 3),
    ("resolved", 8),
    ("failed", 1),
];

/// `(field, lo, hi)` of the dashboard's scores: means of hourly values weighted by that
/// hour's `resolved` count.
const MEAN_FIELDS: [(&str, f64, f64); 6] = [
    ("userEfficiency", 0.0, 100.0),
    ("attention", 0.0, 100.0),
    ("resolution", 0.0, 100.0),
    ("attentionAndResolution", 0.0, 100.0),
    ("nps", -100.0, 100.0),
    ("csat", 1.0, 5.0),
];

/// `(metric, scale)` of the per-operator hourly series. Times are seconds per hour.
const OPERATOR_METRICS: [(&str, u32); 8] = [
    ("onlineTime", 1800),
    ("awayTime", 300),
    ("freeTime", 600),
    ("queriesResolved", 3),
    ("queriesAssigned", 4),
    ("queryInProgress", 1),
    ("sumDuration", 900),
    ("numberOfResponsesNps", 1),
];

/// The `dateFormatGroup` values the dashboard accepts: UTC hour, day or month groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateGroup {
    /// `%Y-%m-%d %H`
    Hour,
    /// `%Y-%m-%d`
    Day,
    /// `%Y-%m`
    Month,
}

impl DateGroup {
    /// Every group, finest first.
    pub const ALL: [DateGroup; 3] = [DateGroup::Hour, DateGroup::Day, DateGroup::Month];

    /// The group for a `dateFormatGroup` pattern, `None` for any other pattern.
    pub fn parse(pattern: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.pattern() == pattern)
    }

    /// The strftime pattern of this group (also the format of its row's `date`).
    pub fn pattern(self) -> &'static str {
        match self {
            DateGroup::Hour => "%Y-%m-%d %H",
            DateGroup::Day => "%Y-%m-%d",
            DateGroup::Month => "%Y-%m",
        }
    }

    /// Start of the UTC group containing `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = t.date_naive();
        let start = match self {
            DateGroup::Hour => day.and_hms_opt(t.hour(), 0, 0),
            DateGroup::Day => day.and_hms_opt(0, 0, 0),
            DateGroup::Month => day.with_day(1).and_then(|d| d.and_hms_opt(0, 0, 0)),
        };
        // Every input names a valid calendar hour, day and month, so this never falls back.
        start.map_or(t, |s| s.and_utc())
    }

    /// Start of the group after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            DateGroup::Hour => start + Duration::hours(1),
            DateGroup::Day => start + Duration::days(1),
            DateGroup::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map_or(start + Duration::days(31), |d| d.and_utc())
            }
        }
    }

    /// The row's `date` for the group starting at `start`.
    pub fn label(self, start: DateTime<Utc>) -> String {
        start.format(self.pattern()).to_string()
    }

    /// The groups intersecting `[from, to)`, in order, each clipped to the window.
    pub fn groups(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
        let mut out = Vec::new();
        let mut start = self.floor(from);
        while start < to {
            let next = self.next(start);
            out.push((self.label(start), start.max(from), next.min(to)));
            start = next;
        }
        out
    }
}

/// One dashboard row, as numbers (field names are the wire names in snake_case).
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardRow {
    /// `totalUsers`: 30000 + 3 per whole hour from 2020-01-01T00:00Z to the row's end.
    pub total_users: f64,
    /// `newUsers`: sum over the row's hours.
    pub new_users: f64,
    /// `activeUsers`: distinct users over the row's hours (not additive).
    pub active_users: f64,
    /// `totalMessagesReceived`: 400000 + 40 per whole hour since 2020 to the row's end.
    pub total_messages_received: f64,
    /// `messagesReceived`: sum.
    pub messages_received: f64,
    /// `totalMessagesSent`: 500000 + 50 per whole hour since 2020 to the row's end.
    pub total_messages_sent: f64,
    /// `messagesSent`: sum.
    pub messages_sent: f64,
    /// `pending`: sum.
    pub pending: f64,
    /// `progress`: sum.
    pub progress: f64,
    /// `resolved`: sum.
    pub resolved: f64,
    /// `failed`: sum.
    pub failed: f64,
    /// `userEfficiency` (0..100): mean weighted by `resolved`, 2 decimals.
    pub user_efficiency: f64,
    /// `attention` (0..100): weighted mean.
    pub attention: f64,
    /// `resolution` (0..100): weighted mean.
    pub resolution: f64,
    /// `attentionAndResolution` (0..100): weighted mean.
    pub attention_and_resolution: f64,
    /// `nps` (-100..100): weighted mean.
    pub nps: f64,
    /// `csat` (1..5): weighted mean.
    pub csat: f64,
}

impl DashboardRow {
    /// The wire object of this row with its `date`.
    pub fn to_json(&self, date: &str) -> Value {
        // Counters go out as integers, like the seed; scores as decimals.
        let count = |v: f64| json!(v as u64);
        json!({
            "date": date,
            "totalUsers": count(self.total_users),
            "newUsers": count(self.new_users),
            "activeUsers": count(self.active_users),
            "totalMessagesReceived": count(self.total_messages_received),
            "messagesReceived": count(self.messages_received),
            "totalMessagesSent": count(self.total_messages_sent),
            "messagesSent": count(self.messages_sent),
            "pending": count(self.pending),
            "progress": count(self.progress),
            "resolved": count(self.resolved),
            "failed": count(self.failed),
            "userEfficiency": self.user_efficiency,
            "attention": self.attention,
            "resolution": self.resolution,
            "attentionAndResolution": self.attention_and_resolution,
            "nps": self.nps,
            "csat": self.csat,
        })
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Whole hours from 2020-01-01T00:00Z to `end` (0 before then): the growth clock of the
/// running totals.
fn hours_since_2020(end: DateTime<Utc>) -> f64 {
    let epoch = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).single();
    epoch.map_or(0.0, |e| ((end - e).num_hours().max(0)) as f64)
}

/// Index of `resolved` in [`SUM_FIELDS`]: the weight of the scores.
const RESOLVED: usize = 5;

/// What one hour contributes to a dashboard row.
struct HourSample {
    hour: DateTime<Utc>,
    /// The [`SUM_FIELDS`] counts.
    sums: [u64; 7],
    /// Chance that any one user of the pool was active this hour.
    active: f64,
    /// The [`MEAN_FIELDS`] scores (only computed when the hour resolved something, because
    /// they are weighted by `resolved`).
    scores: [f64; 6],
}

/// The series keys of an account's dashboard, built once per request.
struct DashboardKeys {
    sums: [(String, u32); 7],
    scores: [(String, f64, f64); 6],
    active: String,
}

impl DashboardKeys {
    fn new(account: &str) -> Self {
        let key = |name: &str| format!("chat_tonic/{account}/{name}");
        DashboardKeys {
            sums: SUM_FIELDS.map(|(name, scale)| (key(name), scale)),
            scores: MEAN_FIELDS.map(|(name, lo, hi)| (key(name), lo, hi)),
            active: key("active"),
        }
    }

    fn sample(&self, hour: DateTime<Utc>) -> HourSample {
        let sums = self
            .sums
            .each_ref()
            .map(|(k, scale)| hourly_count(k, hour, *scale));
        let active = (hourly_count(&self.active, hour, 30) as f64 / ACTIVE_POOL).min(1.0);
        let scores = if sums[RESOLVED] > 0 {
            self.scores
                .each_ref()
                .map(|(k, lo, hi)| value_in(k, hour, *lo, *hi))
        } else {
            [0.0; 6]
        };
        HourSample {
            hour,
            sums,
            active,
            scores,
        }
    }

    /// The samples of the hours that start in `[from, to)`, in order.
    fn samples(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<HourSample> {
        hour_starts(from, to).map(|h| self.sample(h)).collect()
    }
}

/// The row made of `samples`, whose running totals are taken at `end`.
fn row_of(samples: &[HourSample], end: DateTime<Utc>) -> DashboardRow {
    let mut sums = [0u64; 7];
    let mut inactive_probability = 1.0f64;
    let mut weight = 0.0f64;
    let mut weighted = [0.0f64; 6];
    for sample in samples {
        for (total, v) in sums.iter_mut().zip(sample.sums) {
            *total += v;
        }
        inactive_probability *= 1.0 - sample.active;
        let w = sample.sums[RESOLVED] as f64;
        weight += w;
        for (total, v) in weighted.iter_mut().zip(sample.scores) {
            *total += w * v;
        }
    }
    let mean = |i: usize| {
        if weight > 0.0 {
            round2(weighted[i] / weight)
        } else {
            0.0
        }
    };
    let hours = hours_since_2020(end);
    DashboardRow {
        total_users: 30000.0 + 3.0 * hours,
        new_users: sums[0] as f64,
        active_users: (ACTIVE_POOL * (1.0 - inactive_probability)).round(),
        total_messages_received: 400_000.0 + 40.0 * hours,
        messages_received: sums[1] as f64,
        total_messages_sent: 500_000.0 + 50.0 * hours,
        messages_sent: sums[2] as f64,
        pending: sums[3] as f64,
        progress: sums[4] as f64,
        resolved: sums[RESOLVED] as f64,
        failed: sums[6] as f64,
        user_efficiency: mean(0),
        attention: mean(1),
        resolution: mean(2),
        attention_and_resolution: mean(3),
        nps: mean(4),
        csat: mean(5),
    }
}

/// Truth: the dashboard row covering the hours that start in `[from, to)`.
pub fn dashboard_row(account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> DashboardRow {
    row_of(&DashboardKeys::new(account).samples(from, to), to)
}

/// Truth: the whole dashboard answer: the `"0"` row for the whole window, then one row per
/// group intersecting `[from, to)`, each covering only the window's hours in that group.
/// Equal to calling [`dashboard_row`] per row, but samples every hour once.
pub fn dashboard(
    account: &str,
    group: DateGroup,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(String, DashboardRow)> {
    let samples = DashboardKeys::new(account).samples(from, to);
    let mut rows = vec![("0".to_string(), row_of(&samples, to))];
    let mut rest = &samples[..];
    for (label, _, end) in group.groups(from, to) {
        let n = rest.iter().take_while(|s| s.hour < end).count();
        let (these, tail) = rest.split_at(n);
        rows.push((label, row_of(these, end)));
        rest = tail;
    }
    rows
}

/// One operator's summary over a window (field names are the wire names in snake_case).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorStats {
    /// `onlineTime`, seconds.
    pub online_time: u64,
    /// `awayTime`, seconds.
    pub away_time: u64,
    /// `freeTime`, seconds.
    pub free_time: u64,
    /// `queriesResolved`.
    pub queries_resolved: u64,
    /// `queriesAssigned`.
    pub queries_assigned: u64,
    /// `queryInProgress`.
    pub query_in_progress: u64,
    /// `sumDuration`: seconds spent on resolved queries.
    pub sum_duration: u64,
    /// `numberOfResponsesNps`.
    pub number_of_responses_nps: u64,
    /// `avgDurationResolved` = sum_duration / queries_resolved (0 when none), 2 decimals.
    pub avg_duration_resolved: f64,
    /// `nps` (-100..100): hourly scores weighted by that hour's NPS responses (0 when none),
    /// 2 decimals.
    pub nps: f64,
    /// `lastConnection`: start of the last hour of the window with online or away time.
    pub last_connection: Option<DateTime<Utc>>,
}

/// Truth: the summary of `operator_id` over the hours that start in `[from, to)`.
pub fn operator_stats(
    account: &str,
    operator_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> OperatorStats {
    let keys = OPERATOR_METRICS
        .map(|(m, scale)| (format!("chat_tonic/{account}/op/{operator_id}/{m}"), scale));
    // Sums are the bulk of the work: `sum_hours` hashes each key once for the whole window.
    let sums = keys
        .each_ref()
        .map(|(k, scale)| sum_hours(k, from, to, *scale));
    let (responses_key, responses_scale) = &keys[7];
    let nps_key = format!("chat_tonic/{account}/op/{operator_id}/nps");
    let nps_weighted: f64 = hour_starts(from, to)
        .map(|h| (hourly_count(responses_key, h, *responses_scale), h))
        .filter(|(n, _)| *n > 0)
        .map(|(n, h)| n as f64 * value_in(&nps_key, h, -100.0, 100.0))
        .sum();
    // The last hour with online or away time, searched from the end (usually found at once).
    let last_connection = if sums[0] + sums[1] > 0 {
        let hours: Vec<DateTime<Utc>> = hour_starts(from, to).collect();
        hours.into_iter().rev().find(|h| {
            hourly_count(&keys[0].0, *h, keys[0].1) + hourly_count(&keys[1].0, *h, keys[1].1) > 0
        })
    } else {
        None
    };
    // In OPERATOR_METRICS order.
    let [online_time, away_time, free_time, queries_resolved, queries_assigned] =
        [sums[0], sums[1], sums[2], sums[3], sums[4]];
    let [query_in_progress, sum_duration, number_of_responses_nps] = [sums[5], sums[6], sums[7]];
    OperatorStats {
        online_time,
        away_time,
        free_time,
        queries_resolved,
        queries_assigned,
        query_in_progress,
        sum_duration,
        number_of_responses_nps,
        avg_duration_resolved: if queries_resolved > 0 {
            round2(sum_duration as f64 / queries_resolved as f64)
        } else {
            0.0
        },
        nps: if number_of_responses_nps > 0 {
            round2(nps_weighted / number_of_responses_nps as f64)
        } else {
            0.0
        },
        last_connection,
    }
}

/// Truth: `queryPending` of the operator report: the dashboard's `pending` over the window.
pub fn query_pending(account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let key = format!("chat_tonic/{account}/pending");
    hour_starts(from, to)
        .map(|h| hourly_count(&key, h, 2))
        .sum()
}

/// `origins` and `originsName` of an operator: the seed's values for the seed's operator,
/// "all origins" for everyone else.
fn origins(operator: &Operator) -> (Vec<&'static str>, &'static str) {
    if operator.id == "5ed96d95aef725fdfb" {
        (
            vec!["5ed94dd1fdda89cee4cb61"],
            "Tengo otro tipo de consultas",
        )
    } else {
        (Vec::new(), "all")
    }
}

/// The instant format of the seed (`2021-11-01T03:00:00.000Z`).
fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The body of `stats/operator` for one account and window, in the seed's shape and order.
pub fn operator_body(
    account: &Account,
    tenant: &ChatTonicAccount,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Value {
    let operators: Vec<Value> = tenant
        .operators
        .iter()
        .map(|op| {
            let s = operator_stats(account.id, op.id, from, to);
            let (origins, origins_name) = origins(op);
            let mut o = Map::new();
            o.insert(
                "name".into(),
                json!({ "givenName": op.given_name, "familyName": op.family_name }),
            );
            o.insert("origins".into(), json!(origins));
            o.insert("profile".into(), json!(500));
            o.insert("_id".into(), json!(op.id));
            o.insert(
                "displayName".into(),
                json!(format!("{} {}", op.given_name, op.family_name)),
            );
            // The seed omits `status` for some operators; the gateway must read that as unknown.
            if let Some(status) = op.status {
                o.insert("status".into(), json!(status));
            }
            o.insert("onlineTime".into(), json!(s.online_time));
            o.insert("awayTime".into(), json!(s.away_time));
            o.insert("freeTime".into(), json!(s.free_time));
            o.insert("queriesResolved".into(), json!(s.queries_resolved));
            o.insert("avgDurationResolved".into(), json!(s.avg_duration_resolved));
            o.insert("queriesAssigned".into(), json!(s.queries_assigned));
            o.insert("sumDuration".into(), json!(s.sum_duration));
            o.insert("nps".into(), json!(s.nps));
            o.insert(
                "lastConnection".into(),
                json!(s.last_connection.map(instant)),
            );
            o.insert(
                "numberOfResponsesNps".into(),
                json!(s.number_of_responses_nps),
            );
            o.insert("queryInProgress".into(), json!(s.query_in_progress));
            o.insert("originsName".into(), json!(origins_name));
            Value::Object(o)
        })
        .collect();
    json!({
        "status": true,
        "operators": operators,
        "queryPending": query_pending(account.id, from, to),
    })
}

/// Chat-Tonic's error body: `{"status":false,"message": ...}`.
fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(
        status,
        json!({ "status": false, "message": message.into() }),
    )
}

/// The tenant of the request: the codename must exist (404) and the Bearer token must be
/// that codename's (401).
fn authenticate(
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> Result<(&'static Account, &'static ChatTonicAccount), ApiError> {
    let Path(codename) =
        path.map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid path: {e}")))?;
    let (account, tenant) = accounts::by_chat_tonic_codename(&codename)
        .and_then(|a| a.chat_tonic.as_ref().map(|t| (a, t)))
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("unknown codename `{codename}`"),
            )
        })?;
    if bearer_token(headers) != Some(tenant.token) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid access token (Authorization: Bearer <accessToken>)",
        ));
    }
    Ok((account, tenant))
}

/// The `[startDate, endDate)` window: both RFC 3339 (with or without millis), end after
/// start, at most [`MAX_WINDOW_DAYS`] long; else a 400 naming the parameter.
fn window(params: &Params) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let remap = |e: ApiError| error(e.status(), e.message());
    let from = params.required_instant("startDate").map_err(remap)?;
    let to = params.required_instant("endDate").map_err(remap)?;
    if to <= from {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("`endDate` ({to}) must be after `startDate` ({from})"),
        ));
    }
    if to - from > Duration::days(MAX_WINDOW_DAYS) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "the window from `startDate` to `endDate` may span at most {MAX_WINDOW_DAYS} days"
            ),
        ));
    }
    Ok((from, to))
}

/// The routes of this provider, relative to `Provider::ChatTonic.prefix()`.
pub fn router() -> Router<SimState> {
    Router::new()
        .route("/api/v1/{codename}/stats/operator", get(operators))
        .route("/api/v1/{codename}/stats/bigquery", get(bigquery))
        .route("/api/v1/{codename}/stats/nps/export", get(nps_export))
}

/// `GET /api/v1/{codename}/stats/operator?startDate=&endDate=`.
async fn operators(
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let (account, tenant) = authenticate(path, &headers)?;
    let (from, to) = window(&params)?;
    Ok(Json(operator_body(account, tenant, from, to)))
}

/// `GET /api/v1/{codename}/stats/bigquery?queryName=dashboard&dateFormatGroup=&startDate=&endDate=`
/// (the dashboard query of the seed).
async fn bigquery(
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Vec<Value>>, ApiError> {
    let (account, _) = authenticate(path, &headers)?;
    let query_name = params.optional("queryName").unwrap_or_default();
    if query_name != "dashboard" {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("`queryName` must be `dashboard`, got `{query_name}`"),
        ));
    }
    let pattern = params.optional("dateFormatGroup").unwrap_or_default();
    let group = DateGroup::parse(pattern).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "`dateFormatGroup` must be one of `%Y-%m-%d %H`, `%Y-%m-%d`, `%Y-%m`, \
                 got `{pattern}`"
            ),
        )
    })?;
    let (from, to) = window(&params)?;
    let rows = dashboard(account.id, group, from, to)
        .iter()
        .map(|(date, row)| row.to_json(date))
        .collect();
    Ok(Json(rows))
}

/// `GET /api/v1/{codename}/stats/nps/export?typeUser=&startDate=&endDate=`: upstream this
/// emails a report; the sandbox validates and acknowledges (the call log shows it was made).
async fn nps_export(
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    authenticate(path, &headers)?;
    let type_user = params.optional("typeUser").unwrap_or_default();
    if !NPS_TYPE_USERS.contains(&type_user) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "`typeUser` must be one of all, promoter, passive, detractor, got `{type_user}`"
            ),
        ));
    }
    window(&params)?;
    Ok(Json(json!({ "status": true, "message": "report sent" })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn only_the_three_documented_patterns_are_date_groups() {
        assert_eq!(DateGroup::parse("%Y-%m-%d %H"), Some(DateGroup::Hour));
        assert_eq!(DateGroup::parse("%Y-%m-%d"), Some(DateGroup::Day));
        assert_eq!(DateGroup::parse("%Y-%m"), Some(DateGroup::Month));
        assert_eq!(DateGroup::parse("%Y"), None);
        assert_eq!(DateGroup::parse("%Y-%m-%d %H:%M"), None);
    }

    #[test]
    fn groups_cover_the_window_in_order_and_are_clipped_to_it() {
        let from = utc(2024, 1, 30, 22, 30);
        let to = utc(2024, 2, 2, 1, 0);
        let groups = DateGroup::Day.groups(from, to);
        let labels: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            labels,
            ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"]
        );
        assert_eq!(groups[0].1, from);
        assert_eq!(groups[3].2, to);
        let months = DateGroup::Month.groups(utc(2023, 12, 5, 0, 0), utc(2024, 1, 2, 0, 0));
        assert_eq!(months[1].0, "2024-01");
        assert_eq!(months[0].2, utc(2024, 1, 1, 0, 0));
        assert_eq!(DateGroup::Hour.label(from), "2024-01-30 22");
    }

    #[test]
    fn hourly_rows_sum_to_the_day_for_counters_but_not_for_active_users() {
        let from = utc(2024, 3, 5, 0, 0);
        let to = utc(2024, 3, 6, 0, 0);
        let day = dashboard_row("acme", from, to);
        let hours = DateGroup::Hour.groups(from, to);
        assert_eq!(hours.len(), 24);
        let rows: Vec<DashboardRow> = hours
            .iter()
            .map(|(_, s, e)| dashboard_row("acme", *s, *e))
            .collect();
        let sum = |f: fn(&DashboardRow) -> f64| rows.iter().map(f).sum::<f64>();
        assert_eq!(sum(|r| r.new_users), day.new_users);
        assert_eq!(sum(|r| r.messages_received), day.messages_received);
        assert_eq!(sum(|r| r.messages_sent), day.messages_sent);
        assert_eq!(sum(|r| r.resolved), day.resolved);
        assert_eq!(sum(|r| r.failed), day.failed);
        assert!(day.messages_sent > 0.0);
        assert!(
            sum(|r| r.active_users) > day.active_users,
            "distinct users of a day are fewer than the sum of its hours"
        );
        assert!(day.active_users > 0.0 && day.active_users <= ACTIVE_POOL);
    }

    #[test]
    fn running_totals_grow_with_whole_hours_since_2020() {
        let row = dashboard_row("acme", utc(2020, 1, 1, 0, 0), utc(2020, 1, 2, 0, 30));
        assert_eq!(row.total_users, 30000.0 + 3.0 * 24.0);
        assert_eq!(row.total_messages_received, 400_000.0 + 40.0 * 24.0);
        assert_eq!(row.total_messages_sent, 500_000.0 + 50.0 * 24.0);
    }

    #[test]
    fn scores_stay_in_their_ranges_and_are_zero_without_resolved_queries() {
        let row = dashboard_row("acme", utc(2024, 3, 4, 0, 0), utc(2024, 3, 11, 0, 0));
        assert!(row.resolved > 0.0);
        for v in [
            row.user_efficiency,
            row.attention,
            row.resolution,
            row.attention_and_resolution,
        ] {
            assert!((0.0..100.0).contains(&v), "{v}");
        }
        assert!((-100.0..100.0).contains(&row.nps));
        assert!((1.0..5.0).contains(&row.csat));
        let future = current_hour_plus(48);
        let empty = dashboard_row("acme", future, future + Duration::days(1));
        assert_eq!(
            (empty.resolved, empty.csat, empty.active_users),
            (0.0, 0.0, 0.0)
        );
    }

    fn current_hour_plus(hours: i64) -> DateTime<Utc> {
        crate::sandbox::data::current_hour() + Duration::hours(hours)
    }

    #[test]
    fn the_dashboard_starts_with_the_whole_window_row() {
        let from = utc(2024, 3, 5, 0, 0);
        let to = utc(2024, 3, 7, 12, 0);
        let rows = dashboard("acme", DateGroup::Day, from, to);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].0, "0");
        assert_eq!(rows[0].1, dashboard_row("acme", from, to));
        assert_eq!(rows[3].0, "2024-03-07");
        assert_eq!(rows[3].1, dashboard_row("acme", utc(2024, 3, 7, 0, 0), to));
    }

    #[test]
    fn operator_averages_follow_from_their_sums() {
        let from = utc(2024, 3, 4, 0, 0);
        let to = utc(2024, 3, 11, 0, 0);
        let s = operator_stats("acme", "5f286ede4dbdcf209af", from, to);
        assert!(s.queries_resolved > 0 && s.online_time > 0);
        let expected = (s.sum_duration as f64 / s.queries_resolved as f64 * 100.0).round() / 100.0;
        assert_eq!(s.avg_duration_resolved, expected);
        assert!((-100.0..100.0).contains(&s.nps));
        let last = s
            .last_connection
            .expect("an active week has a last connection");
        assert!(last >= from && last < to);
    }

    #[test]
    fn an_operator_has_nothing_in_a_future_window() {
        let from = current_hour_plus(1);
        let s = operator_stats(
            "acme",
            "5f286ede4dbdcf209af",
            from,
            from + Duration::days(2),
        );
        assert_eq!(
            (s.online_time, s.avg_duration_resolved, s.nps),
            (0, 0.0, 0.0)
        );
        assert_eq!(s.last_connection, None);
    }

    #[test]
    fn the_operator_body_has_the_seed_shape_and_omits_unknown_status() {
        let tenant = accounts::ACME
            .chat_tonic
            .as_ref()
            .expect("acme uses Chat-Tonic");
        let body = operator_body(
            &accounts::ACME,
            tenant,
            utc(2024, 3, 4, 0, 0),
            utc(2024, 3, 5, 0, 0),
        );
        assert_eq!(body["status"], true);
        let ops = body["operators"].as_array().expect("operators array");
        assert_eq!(ops.len(), 4);
        assert!(ops[0].get("status").is_none());
        assert_eq!(ops[0]["origins"], json!(["5ed94dd1fdda89cee4cb61"]));
        assert_eq!(ops[1]["status"], "online");
        assert_eq!(ops[1]["displayName"], "Lucia Ortiz");
        assert_eq!(ops[1]["name"]["familyName"], "Ortiz");
        assert!(body["queryPending"].is_u64());
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

    /// GET `{base}/chat-tonic/api/v1/{codename}/stats/{endpoint}` with `query` (encoded by
    /// reqwest) and an optional Bearer token: (status, body).
    async fn get(
        sandbox: &Sandbox,
        codename: &str,
        endpoint: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!(
            "{}/chat-tonic/api/v1/{codename}/stats/{endpoint}",
            sandbox.base_url()
        );
        let mut request = reqwest::Client::new().get(url).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request succeeds");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    const TOKEN: Option<&str> = Some("ct-acme-token");
    const WINDOW: [(&str, &str); 2] = [
        ("startDate", "2024-03-04T00:00:00.000Z"),
        ("endDate", "2024-03-06T12:00:00Z"),
    ];

    #[tokio::test]
    async fn unknown_codenames_get_404_and_bad_tokens_401() {
        let sandbox = spawn().await;
        let (status, body) = get(&sandbox, "globex", "operator", &WINDOW, TOKEN).await;
        assert_eq!((status, &body["status"]), (404, &json!(false)));
        for token in [None, Some("ct-other"), Some("m2g-acme-token")] {
            let (status, body) = get(&sandbox, "acme", "operator", &WINDOW, token).await;
            assert_eq!(status, 401, "{token:?}");
            assert_eq!(body["status"], false);
            assert!(body["message"].is_string());
        }
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn every_invalid_parameter_gets_400_naming_it() {
        let sandbox = spawn().await;
        let dashboard = |group: &'static str| {
            vec![
                ("queryName", "dashboard"),
                ("dateFormatGroup", group),
                WINDOW[0],
                WINDOW[1],
            ]
        };
        // (endpoint, query, the name the message must contain)
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("operator", vec![WINDOW[1]], "startDate"),
            (
                "operator",
                vec![WINDOW[0], ("endDate", "tomorrow")],
                "endDate",
            ),
            (
                "operator",
                vec![("startDate", WINDOW[1].1), ("endDate", WINDOW[0].1)],
                "endDate",
            ),
            (
                "operator",
                vec![
                    ("startDate", "2000-01-01T00:00:00Z"),
                    ("endDate", "2024-01-01T00:00:00Z"),
                ],
                "at most",
            ),
            (
                "bigquery",
                vec![
                    ("queryName", "agents"),
                    ("dateFormatGroup", "%Y-%m"),
                    WINDOW[0],
                    WINDOW[1],
                ],
                "queryName",
            ),
            ("bigquery", dashboard("%Y"), "dateFormatGroup"),
            ("bigquery", dashboard("%Y-%m-%d %H:%M"), "dateFormatGroup"),
            (
                "nps/export",
                vec![("typeUser", "everyone"), WINDOW[0], WINDOW[1]],
                "typeUser",
            ),
            (
                "nps/export",
                vec![("typeUser", "all"), WINDOW[0]],
                "endDate",
            ),
        ];
        for (endpoint, query, named) in cases {
            let (status, body) = get(&sandbox, "acme", endpoint, &query, TOKEN).await;
            assert_eq!(status, 400, "{endpoint} {query:?}");
            assert_eq!(body["status"], false);
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains(named), "{endpoint} {query:?}: {message}");
        }
        let ok = [("typeUser", "detractor"), WINDOW[0], WINDOW[1]];
        let (status, body) = get(&sandbox, "acme", "nps/export", &ok, TOKEN).await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({ "status": true, "message": "report sent" }));
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn the_dashboard_has_a_total_row_then_groups_that_sum_except_active_users() {
        let sandbox = spawn().await;
        let query = [
            ("queryName", "dashboard"),
            ("dateFormatGroup", "%Y-%m-%d"),
            WINDOW[0],
            WINDOW[1],
        ];
        let (status, body) = get(&sandbox, "acme", "bigquery", &query, TOKEN).await;
        assert_eq!(status, 200);
        let rows = body.as_array().expect("an array of rows");
        let dates: Vec<&str> = rows.iter().filter_map(|r| r["date"].as_str()).collect();
        assert_eq!(dates, ["0", "2024-03-04", "2024-03-05", "2024-03-06"]);
        let from = utc(2024, 3, 4, 0, 0);
        let to = utc(2024, 3, 6, 12, 0);
        assert_eq!(rows[0], dashboard_row("acme", from, to).to_json("0"));
        for field in [
            "newUsers",
            "messagesReceived",
            "messagesSent",
            "pending",
            "progress",
            "resolved",
            "failed",
        ] {
            let groups: u64 = rows[1..].iter().filter_map(|r| r[field].as_u64()).sum();
            assert_eq!(Some(groups), rows[0][field].as_u64(), "{field}");
        }
        let active: u64 = rows[1..]
            .iter()
            .filter_map(|r| r["activeUsers"].as_u64())
            .sum();
        let total_active = rows[0]["activeUsers"].as_u64().expect("activeUsers");
        assert!(active > total_active, "{active} vs {total_active}");
        assert_eq!(
            rows[3]["totalUsers"], rows[0]["totalUsers"],
            "both end at endDate"
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn operator_stats_over_http_are_the_truth_for_an_unaligned_window() {
        let sandbox = spawn().await;
        // The seed's window shape: 03:00 to 02:55 the next month.
        let query = [
            ("startDate", "2024-02-01T03:00:00.000Z"),
            ("endDate", "2024-03-01T02:55:00.000Z"),
        ];
        let (status, body) = get(&sandbox, "acme", "operator", &query, TOKEN).await;
        assert_eq!(status, 200);
        let from = utc(2024, 2, 1, 3, 0);
        let to = utc(2024, 3, 1, 2, 55);
        let noa = &body["operators"][3];
        let truth = operator_stats("acme", "61f0e1d2c3b4a59687", from, to);
        assert_eq!(noa["_id"], "61f0e1d2c3b4a59687");
        assert_eq!(noa["status"], "offline");
        assert_eq!(noa["onlineTime"], truth.online_time);
        assert_eq!(noa["queriesResolved"], truth.queries_resolved);
        assert_eq!(noa["avgDurationResolved"], truth.avg_duration_resolved);
        assert_eq!(noa["nps"], truth.nps);
        let last = truth
            .last_connection
            .expect("a busy month has a last connection");
        assert_eq!(noa["lastConnection"], instant(last));
        assert_eq!(body["queryPending"], query_pending("acme", from, to));
        let calls = sandbox.state().calls();
        assert_eq!(calls[0].provider, "chat_tonic");
        assert_eq!(calls[0].path, "/api/v1/acme/stats/operator");
        sandbox.shutdown().await;
    }
}
