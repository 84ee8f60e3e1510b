//! Chat-Tonic (SPEC §1.2, seed 001): the dashboard (users, messages, dialogs, service level,
//! NPS/CSAT), per-operator summaries, and the NPS export.
//!
//! Every call goes to `{base_url}/api/v1/{codename}/stats/...` with `Authorization: Bearer` and
//! a `[startDate, endDate)` range of UTC instants (`2021-11-01T03:00:00.000Z`).
//!
//! - The dashboard (`bigquery?queryName=dashboard`) answers one row per UTC hour, day or month
//!   group (`dateFormatGroup`) plus a whole-window row whose `date` does not parse (`"0"`).
//!   One call serves every dashboard field, so [`plan_dashboard`] makes ONE key per window.
//!   `activeUsers` is a distinct count that cannot be added up from finer groups, so the plan
//!   asks for the window's own granularity where Chat-Tonic has it (UTC zones), and the
//!   whole-window row gives the exact total ([`total`]).
//! - `operator` is one summary per operator over the range (no series).
//! - `nps/export` makes Chat-Tonic email a report: a side effect, so it is never cached and
//!   never retried here.
//!
//! Wire tolerance: numbers may be JSON integers, floats or numeric strings (the endpoint is
//! named after BigQuery, whose JSON API sends INT64 as strings); a `null` or absent dashboard
//! field is `None` (unknown), a `null` or absent operator counter is 0; `lastConnection` is
//! `null` or RFC 3339; unknown fields are ignored. A body that is not the documented shape
//! (`status: false`, a dashboard that is not an array, a value of the wrong type) is
//! `UPSTREAM_INVALID`. All checks run inside the JSON decoding, so [`Upstream`]'s health
//! record sees them as failures too.

use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::catalogue::{key_text, Contributes, Contribution, Part};
use crate::config::Secret;
use crate::error::UpstreamError;
use crate::fetch::SeriesKey;
use crate::fetch::{erase_blocks, BlockSource};
use crate::fetch::{Fetched, Fetcher};
use crate::providers::is_live;
use crate::providers::upstream::Upstream;
use crate::providers::{Feed, Provider, Source};
use crate::series::{Aggregation, Granularity, Sample, Window, Zone};
use crate::workspace::{configured, Workspace};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

/// The finest granularity Chat-Tonic offers (hour groups of the dashboard).
/// The series fields this provider feeds (its rows of SPEC §2.1).
pub const FEEDS: &[Feed] = &[
    Feed {
        field: "UserStats.new",
        from: "newUsers",
    },
    Feed {
        field: "UserStats.active",
        from: "activeUsers",
    },
    Feed {
        field: "UserStats.total",
        from: "totalUsers",
    },
    Feed {
        field: "DialogStats.pending / inProgress / resolved / failed",
        from: "pending / progress / resolved / failed",
    },
    Feed {
        field: "ServiceLevel.*",
        from: "userEfficiency / attention / resolution / attentionAndResolution",
    },
    Feed {
        field: "MessageStats.sent",
        from: "messagesSent",
    },
    Feed {
        field: "MessageStats.received",
        from: "messagesReceived",
    },
    Feed {
        field: "SatisfactionStats.nps / csat",
        from: "nps / csat",
    },
];

pub const FINEST: Granularity = Granularity::Hour;

/// The longest range for which a non-UTC window is built from UTC hour rows. Beyond it the
/// plan asks for UTC days (approximate local buckets) to keep the answer small: 93 days of
/// hours is about 2,200 rows.
const MAX_HOURLY_DAYS: i64 = 93;

/// A `dateFormatGroup` of the dashboard: the UTC groups its rows are cut into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DateGroup {
    /// UTC hours, `date` like `2021-11-01 03`.
    Hour,
    /// UTC days, `date` like `2021-11-01`.
    Day,
    /// UTC calendar months, `date` like `2021-11`.
    Month,
}

impl DateGroup {
    /// The strftime pattern sent as `dateFormatGroup` (also the format of the rows' `date`).
    pub fn pattern(self) -> &'static str {
        match self {
            DateGroup::Hour => "%Y-%m-%d %H",
            DateGroup::Day => "%Y-%m-%d",
            DateGroup::Month => "%Y-%m",
        }
    }

    fn granularity(self) -> Granularity {
        match self {
            DateGroup::Hour => Granularity::Hour,
            DateGroup::Day => Granularity::Day,
            DateGroup::Month => Granularity::Month,
        }
    }

    /// The start of the UTC group a row's `date` names, or None when it does not parse with
    /// this group's pattern (which is how the whole-window row is told apart).
    ///
    /// Parsed by hand rather than with chrono's `NaiveDateTime::parse_from_str`, which wants a
    /// minute and so cannot read `%Y-%m-%d %H` or `%Y-%m` on their own.
    fn parse_date(self, date: &str) -> Option<DateTime<Utc>> {
        let date = date.trim();
        let midnight = |day: NaiveDate| day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        match self {
            DateGroup::Hour => {
                let (day, hour) = date.split_once(' ')?;
                let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
                if hour.is_empty() || hour.len() > 2 || !hour.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                day.and_hms_opt(hour.parse().ok()?, 0, 0)
                    .map(|t| t.and_utc())
            }
            DateGroup::Day => midnight(NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?),
            DateGroup::Month => {
                // `%Y-%m-%d` of the 1st; a full date such as `2021-11-05` then fails on the
                // trailing `-01`, so only a bare month is accepted.
                midnight(NaiveDate::parse_from_str(&format!("{date}-01"), "%Y-%m-%d").ok()?)
            }
        }
    }
}

/// The `[start, end)` range of a call, sent as `startDate`/`endDate` in the seed's format
/// (`2021-11-01T03:00:00.000Z`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RangeKey {
    /// First instant of the range.
    pub start: DateTime<Utc>,
    /// End of the range (exclusive).
    pub end: DateTime<Utc>,
}

impl RangeKey {
    /// The aligned range of `window`: `[window.from(), window.to())`.
    pub fn of(window: &Window) -> RangeKey {
        RangeKey {
            start: window.from(),
            end: window.to(),
        }
    }

    fn params(&self) -> [(&'static str, String); 2] {
        [
            ("startDate", instant(self.start)),
            ("endDate", instant(self.end)),
        ]
    }
}

/// One dashboard call: a range cut into UTC groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DashboardKey {
    /// The `dateFormatGroup` of the rows.
    pub group: DateGroup,
    /// The `[startDate, endDate)` of the call.
    pub range: RangeKey,
}

/// The ONE dashboard key of `window`, the same for every dashboard field (one call serves
/// them all).
///
/// The range is `[window.from(), window.to())`. The group:
/// - HOUR windows: hour groups, in any zone;
/// - UTC zones ([`Zone::is_utc`]): DAY and WEEK → day groups (UTC weeks are whole UTC days),
///   MONTH and YEAR → month groups, so every window bucket is a whole number of rows and
///   `activeUsers` of a row is exact at the window's own granularity where it can be;
/// - other zones: hour groups when the range is at most 93 days, since local buckets are
///   built exactly from UTC hours (for whole-hour offsets: a zone such as Asia/Kolkata has
///   local days that split UTC hours, which the engine reports as inexact); day groups for
///   longer ranges, an approximation of local buckets.
pub fn plan_dashboard(window: &Window) -> DashboardKey {
    let range = RangeKey::of(window);
    let group = match window.granularity() {
        Granularity::Hour => DateGroup::Hour,
        granularity if window.zone().is_utc() => match granularity {
            Granularity::Hour | Granularity::Day | Granularity::Week => DateGroup::Day,
            Granularity::Month | Granularity::Year => DateGroup::Month,
        },
        _ if range.end - range.start <= chrono::Duration::days(MAX_HOURLY_DAYS) => DateGroup::Hour,
        _ => DateGroup::Day,
    };
    DashboardKey { group, range }
}

/// The most UTC months one dashboard call fetches for the block cache: three months of hour
/// groups are about 2,200 rows (as [`MAX_HOURLY_DAYS`] allows per range); day and month groups
/// are small, so up to two years.
const MAX_HOUR_BLOCKS_PER_CALL: usize = 3;
const MAX_BLOCKS_PER_CALL: usize = 24;

/// The UTC-month blocks that cover `window` (the dashboard's block grid: month `index` counts
/// from January 1970).
pub fn blocks_for(window: &Window) -> Vec<i64> {
    let first = block_index(window.from());
    let last = block_index(window.to() - chrono::Duration::seconds(1)).max(first);
    (first..=last).collect()
}

fn block_index(at: DateTime<Utc>) -> i64 {
    use chrono::Datelike;
    i64::from(at.year() - 1970) * 12 + i64::from(at.month0())
}

/// `[start, end)` of block `index`: one UTC calendar month.
pub fn block_range(index: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let month_start = |index: i64| {
        let year = 1970 + index.div_euclid(12);
        let month = index.rem_euclid(12) + 1;
        i32::try_from(year)
            .ok()
            .and_then(|year| NaiveDate::from_ymd_opt(year, month as u32, 1))
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    (month_start(index), month_start(index + 1))
}

/// The end of block `index`.
pub fn block_end(index: i64) -> DateTime<Utc> {
    block_range(index).1
}

/// The calls for the missing months `indices` of one `group`: contiguous runs, each one call
/// of at most three months of hour rows or two years of day or month rows.
pub fn plan_blocks(indices: &[i64], group: DateGroup) -> Vec<Vec<i64>> {
    let max = match group {
        DateGroup::Hour => MAX_HOUR_BLOCKS_PER_CALL,
        DateGroup::Day | DateGroup::Month => MAX_BLOCKS_PER_CALL,
    };
    crate::fetch::contiguous_runs(indices, max)
}

/// True when `field` of any window can be served from month blocks: the rows of a SUM field
/// add up and a level's last row is the window's, whatever range the rows were fetched with.
/// `activeUsers` (distinct users), NPS, CSAT and the service level are not: only the
/// whole-window row of a call over exactly that range gives them exactly, so they stay
/// per-range calls.
pub fn from_blocks(field: DashboardField) -> bool {
    matches!(field.aggregation(), Aggregation::Sum | Aggregation::Last)
}

/// The fields of a dashboard row, in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum DashboardField {
    /// `totalUsers`: users ever seen, as of the row's end (a level).
    TotalUsers,
    /// `newUsers`: users first seen in the row.
    NewUsers,
    /// `activeUsers`: distinct users active in the row (not additive).
    ActiveUsers,
    /// `totalMessagesReceived`: messages received ever, as of the row's end (a level).
    TotalMessagesReceived,
    /// `messagesReceived`: messages received in the row.
    MessagesReceived,
    /// `totalMessagesSent`: messages sent ever, as of the row's end (a level).
    TotalMessagesSent,
    /// `messagesSent`: messages sent in the row.
    MessagesSent,
    /// `pending`: dialogs pending.
    Pending,
    /// `progress`: dialogs in progress.
    Progress,
    /// `resolved`: dialogs resolved.
    Resolved,
    /// `failed`: dialogs failed.
    Failed,
    /// `userEfficiency`: service level, percent.
    UserEfficiency,
    /// `attention`: service level, percent.
    Attention,
    /// `resolution`: service level, percent.
    Resolution,
    /// `attentionAndResolution`: service level, percent.
    AttentionAndResolution,
    /// `nps`: net promoter score, -100..100.
    Nps,
    /// `csat`: customer satisfaction, 1..5.
    Csat,
}

impl DashboardField {
    /// Every field, in wire order.
    pub const ALL: [DashboardField; 17] = [
        DashboardField::TotalUsers,
        DashboardField::NewUsers,
        DashboardField::ActiveUsers,
        DashboardField::TotalMessagesReceived,
        DashboardField::MessagesReceived,
        DashboardField::TotalMessagesSent,
        DashboardField::MessagesSent,
        DashboardField::Pending,
        DashboardField::Progress,
        DashboardField::Resolved,
        DashboardField::Failed,
        DashboardField::UserEfficiency,
        DashboardField::Attention,
        DashboardField::Resolution,
        DashboardField::AttentionAndResolution,
        DashboardField::Nps,
        DashboardField::Csat,
    ];

    /// The field's name in a dashboard row.
    pub fn wire_name(self) -> &'static str {
        match self {
            DashboardField::TotalUsers => "totalUsers",
            DashboardField::NewUsers => "newUsers",
            DashboardField::ActiveUsers => "activeUsers",
            DashboardField::TotalMessagesReceived => "totalMessagesReceived",
            DashboardField::MessagesReceived => "messagesReceived",
            DashboardField::TotalMessagesSent => "totalMessagesSent",
            DashboardField::MessagesSent => "messagesSent",
            DashboardField::Pending => "pending",
            DashboardField::Progress => "progress",
            DashboardField::Resolved => "resolved",
            DashboardField::Failed => "failed",
            DashboardField::UserEfficiency => "userEfficiency",
            DashboardField::Attention => "attention",
            DashboardField::Resolution => "resolution",
            DashboardField::AttentionAndResolution => "attentionAndResolution",
            DashboardField::Nps => "nps",
            DashboardField::Csat => "csat",
        }
    }

    /// How the field's values merge over time (SPEC §2.1): running totals are levels (LAST),
    /// `activeUsers` is DISTINCT, the scores are AVERAGEs, everything else is a SUM.
    pub fn aggregation(self) -> Aggregation {
        match self {
            DashboardField::TotalUsers
            | DashboardField::TotalMessagesReceived
            | DashboardField::TotalMessagesSent => Aggregation::Last,
            DashboardField::ActiveUsers => Aggregation::Distinct,
            DashboardField::UserEfficiency
            | DashboardField::Attention
            | DashboardField::Resolution
            | DashboardField::AttentionAndResolution
            | DashboardField::Nps
            | DashboardField::Csat => Aggregation::Average,
            DashboardField::NewUsers
            | DashboardField::MessagesReceived
            | DashboardField::MessagesSent
            | DashboardField::Pending
            | DashboardField::Progress
            | DashboardField::Resolved
            | DashboardField::Failed => Aggregation::Sum,
        }
    }
}

impl fmt::Display for DashboardField {
    /// The wire name, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// One dashboard row: a value per [`DashboardField`]. A field the upstream sent as `null` or
/// left out is `None` (unknown), so "not reported" never turns into a measured 0.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DashboardRow {
    /// Indexed by `DashboardField as usize` (the enum is in wire order).
    values: [Option<f64>; DashboardField::ALL.len()],
}

impl DashboardRow {
    /// The row's value of `field`, None when the upstream did not report it.
    pub fn get(&self, field: DashboardField) -> Option<f64> {
        self.values[field as usize]
    }

    /// Sets the value of `field` (builds rows for tests and fixtures).
    pub fn set(&mut self, field: DashboardField, value: Option<f64>) {
        self.values[field as usize] = value;
    }
}

/// A dashboard answer.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dashboard {
    /// The whole-window row (`date` = `"0"`), when the upstream sent one.
    pub total: Option<DashboardRow>,
    /// `(start, end, row)` per group, ordered by start; the span is the UTC group clipped to
    /// the requested range (the first and last groups of an unaligned range are partial).
    pub rows: Vec<(DateTime<Utc>, DateTime<Utc>, DashboardRow)>,
}

impl Dashboard {
    /// A rough size in bytes, for a byte-bounded cache.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Dashboard>()
            + self
                .total
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<DashboardRow>())
            + self.rows.capacity()
                * std::mem::size_of::<(DateTime<Utc>, DateTime<Utc>, DashboardRow)>()
    }
}

/// The rows (not the whole-window row) as samples of `field`, in row order; rows where the
/// field is unknown give no sample.
///
/// Scores (the AVERAGE fields) carry the row's `resolved` count as their weight, so that hour
/// rows re-bucket into local days by a weighted mean. Assumption (README): Chat-Tonic weighs
/// its scores by resolved dialogs, as the sandbox does; the seed does not say.
pub fn samples(dashboard: &Dashboard, field: DashboardField) -> Vec<Sample> {
    let weighted = field.aggregation() == Aggregation::Average;
    dashboard
        .rows
        .iter()
        .filter_map(|(start, end, row)| {
            Some(Sample {
                start: *start,
                end: *end,
                value: row.get(field)?,
                weight: if weighted {
                    row.get(DashboardField::Resolved)
                } else {
                    None
                },
            })
        })
        .collect()
}

/// The whole-window row's value of `field`, when the dashboard has that row and the field.
/// This is the only exact whole-window `activeUsers` unless a single row spans the window.
pub fn total(dashboard: &Dashboard, field: DashboardField) -> Option<f64> {
    dashboard.total.as_ref()?.get(field)
}

/// The operator report: one summary per operator over the range.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperatorReport {
    /// The operators, in upstream order.
    pub operators: Vec<OperatorRow>,
    /// `queryPending`: queries waiting for an operator over the range.
    pub query_pending: f64,
}

impl OperatorReport {
    /// A rough size in bytes, for a byte-bounded cache.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<OperatorReport>()
            + self
                .operators
                .iter()
                .map(OperatorRow::approx_bytes)
                .sum::<usize>()
    }
}

/// One operator's summary over the range. Counters the upstream left out or sent as `null`
/// are 0; times are seconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperatorRow {
    /// `_id`.
    pub id: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `name.givenName`.
    pub given_name: Option<String>,
    /// `name.familyName`.
    pub family_name: Option<String>,
    /// `status` (e.g. `online`); None when absent, which the seed shows for some operators.
    pub status: Option<String>,
    /// `origins`: the origin (entry point) ids the operator serves; empty = all.
    pub origins: Vec<String>,
    /// `originsName`.
    pub origins_name: Option<String>,
    /// `onlineTime`, seconds.
    pub online_time: f64,
    /// `awayTime`, seconds.
    pub away_time: f64,
    /// `freeTime`, seconds.
    pub free_time: f64,
    /// `queriesResolved`.
    pub queries_resolved: f64,
    /// `avgDurationResolved`, seconds per resolved query.
    pub avg_duration_resolved: f64,
    /// `queriesAssigned`.
    pub queries_assigned: f64,
    /// `sumDuration`, seconds spent on resolved queries.
    pub sum_duration: f64,
    /// `nps`, -100..100.
    pub nps: f64,
    /// `numberOfResponsesNps`.
    pub nps_responses: f64,
    /// `queryInProgress`.
    pub queries_in_progress: f64,
    /// `lastConnection`; None when the upstream sent `null`.
    pub last_connection: Option<DateTime<Utc>>,
}

impl OperatorRow {
    fn approx_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        std::mem::size_of::<OperatorRow>()
            + self.id.capacity()
            + text(&self.display_name)
            + text(&self.given_name)
            + text(&self.family_name)
            + text(&self.status)
            + text(&self.origins_name)
            + self
                .origins
                .iter()
                .map(|o| std::mem::size_of::<String>() + o.capacity())
                .sum::<usize>()
    }
}

/// Who the NPS export covers (`typeUser`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NpsType {
    /// Every respondent.
    All,
    /// Promoters (scores 9–10).
    Promoter,
    /// Passives (7–8).
    Passive,
    /// Detractors (0–6).
    Detractor,
}

impl NpsType {
    /// The `typeUser` value.
    pub fn as_str(self) -> &'static str {
        match self {
            NpsType::All => "all",
            NpsType::Promoter => "promoter",
            NpsType::Passive => "passive",
            NpsType::Detractor => "detractor",
        }
    }
}

/// A Chat-Tonic tenant (codename and access token) on the customer's own host.
pub struct ChatTonic {
    upstream: Upstream,
    /// Without a trailing slash, so paths are appended by concatenation.
    base_url: String,
    /// A path segment; config validation restricts it to unreserved URL characters, so it is
    /// inserted without escaping.
    codename: String,
    token: Secret,
}

impl ChatTonic {
    /// `base_url` is the customer's Chat-Tonic host, without a trailing slash (one is removed
    /// if present); calls go to `{base_url}/api/v1/{codename}/stats/...`.
    pub fn new(http: reqwest::Client, base_url: String, codename: String, token: Secret) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Self {
            upstream: Upstream::new(Provider::ChatTonic, http),
            base_url,
            codename,
            token,
        }
    }

    /// One dashboard call: the whole-window row and one row per group, spans clipped to the
    /// key's range. Rows whose group lies wholly outside the range are dropped (with a
    /// warning), as is any whole-window row after the first.
    pub async fn dashboard(&self, key: &DashboardKey) -> Result<Dashboard, UpstreamError> {
        let [start, end] = key.range.params();
        let query = [
            ("queryName", "dashboard".to_owned()),
            ("dateFormatGroup", key.group.pattern().to_owned()),
            start,
            end,
        ];
        let wire: Vec<WireDashboardRow> = self
            .upstream
            .json("stats/bigquery", self.request("bigquery", &query))
            .await?;
        Ok(into_dashboard(wire, key))
    }

    /// The dashboard rows of the contiguous months `blocks` in `group` (one call), cut back into
    /// one dashboard per month; the whole-window row is dropped (it is the call's, not a
    /// month's).
    pub async fn dashboard_blocks(
        &self,
        group: DateGroup,
        blocks: &[i64],
    ) -> Result<Vec<Dashboard>, UpstreamError> {
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            return Ok(Vec::new());
        };
        let key = DashboardKey {
            group,
            range: RangeKey {
                start: block_range(*first).0,
                end: block_range(*last).1,
            },
        };
        let dashboard = self.dashboard(&key).await?;
        let mut months: Vec<Dashboard> = blocks.iter().map(|_| Dashboard::default()).collect();
        for row in dashboard.rows {
            let index = block_index(row.0);
            if let Some(position) = blocks.iter().position(|block| *block == index) {
                months[position].rows.push(row);
            }
        }
        Ok(months)
    }

    /// The per-operator summaries over `key`.
    pub async fn operators(&self, key: &RangeKey) -> Result<OperatorReport, UpstreamError> {
        let wire: WireOperatorReport = self
            .upstream
            .json("stats/operator", self.request("operator", &key.params()))
            .await?;
        Ok(OperatorReport {
            operators: wire
                .operators
                .into_iter()
                .map(WireOperator::into_row)
                .collect(),
            query_pending: wire.query_pending,
        })
    }

    /// The NPS export: makes Chat-Tonic email the report of `respondents` over `range` to the
    /// account's user. A side effect: never cached, and never retried (a retry after a lost
    /// answer would send a second email). The answer must be JSON without `status: false`;
    /// the seed does not document it, so anything else is `UPSTREAM_INVALID`.
    pub async fn nps_export(
        &self,
        respondents: NpsType,
        range: &RangeKey,
    ) -> Result<(), UpstreamError> {
        let [start, end] = range.params();
        let query = [("typeUser", respondents.as_str().to_owned()), start, end];
        let _: WireAck = self
            .upstream
            .json_once("stats/nps/export", self.request("nps/export", &query))
            .await?;
        Ok(())
    }

    /// GET `{base}/api/v1/{codename}/stats/{endpoint}?{query}` with the token.
    ///
    /// The query is encoded here rather than with `RequestBuilder::query`, which writes the
    /// space of `%Y-%m-%d %H` as `+`: only form decoders read that as a space, while `%20` is
    /// a space to every server.
    fn request(&self, endpoint: &str, query: &[(&str, String)]) -> reqwest::RequestBuilder {
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect();
        let url = format!(
            "{}/api/v1/{}/stats/{}?{}",
            self.base_url,
            self.codename,
            endpoint,
            query.join("&")
        );
        self.upstream
            .http()
            .get(url)
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
    }
}

/// Percent-encodes a query component, spaces as `%20`.
fn encode(s: &str) -> String {
    // byte_serialize writes a space as `+` and a literal `+` as `%2B`, so every `+` left in
    // its output is a space.
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The seed's instant format: UTC with milliseconds, `2021-11-01T03:00:00.000Z`.
fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Turns wire rows into a [`Dashboard`] for `key`: the first row whose `date` does not parse
/// is the total; the others become clipped, ordered spans.
fn into_dashboard(wire: Vec<WireDashboardRow>, key: &DashboardKey) -> Dashboard {
    let granularity = key.group.granularity();
    let utc = Zone::utc();
    let mut dashboard = Dashboard::default();
    let (mut extra_totals, mut outside) = (0usize, 0usize);
    for WireDashboardRow { date, row } in wire {
        let start = date.as_str().and_then(|d| key.group.parse_date(d));
        let Some(group_start) = start else {
            if dashboard.total.is_none() {
                dashboard.total = Some(row);
            } else {
                extra_totals += 1;
            }
            continue;
        };
        let start = group_start.max(key.range.start);
        let end = granularity.next(group_start, utc).min(key.range.end);
        if start < end {
            dashboard.rows.push((start, end, row));
        } else {
            outside += 1;
        }
    }
    if extra_totals + outside > 0 {
        tracing::warn!(
            provider = Provider::ChatTonic.slug(),
            extra_totals,
            outside,
            "dropped dashboard rows: whole-window rows after the first, or groups outside the requested range"
        );
    }
    dashboard.rows.sort_by_key(|(start, _, _)| *start);
    dashboard
}

// ---- wire types (private: nothing of Chat-Tonic's JSON leaves this module) ----

/// One dashboard row: its `date` (any JSON value: only a string in the group's pattern is a
/// group) and its numbers.
struct WireDashboardRow {
    date: Value,
    row: DashboardRow,
}

impl<'de> Deserialize<'de> for WireDashboardRow {
    /// Reads the row as an object and its fields by [`DashboardField::wire_name`], so the
    /// one lenient number rule applies to all 17 fields and unknown fields are ignored.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut object = Map::<String, Value>::deserialize(deserializer)?;
        let date = object.remove("date").unwrap_or(Value::Null);
        let mut row = DashboardRow::default();
        for field in DashboardField::ALL {
            let value = match object.get(field.wire_name()) {
                Some(value) => number(value).map_err(|problem| {
                    D::Error::custom(format!("dashboard field `{field}` {problem}"))
                })?,
                None => None,
            };
            row.set(field, value);
        }
        Ok(WireDashboardRow { date, row })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOperatorReport {
    /// Checked while decoding; the value itself is not needed.
    #[serde(rename = "status", default, deserialize_with = "status_ok")]
    _status: (),
    operators: Vec<WireOperator>,
    #[serde(default, deserialize_with = "counter")]
    query_pending: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOperator {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    name: Option<WireName>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "list")]
    origins: Vec<String>,
    #[serde(default)]
    origins_name: Option<String>,
    #[serde(default, deserialize_with = "counter")]
    online_time: f64,
    #[serde(default, deserialize_with = "counter")]
    away_time: f64,
    #[serde(default, deserialize_with = "counter")]
    free_time: f64,
    #[serde(default, deserialize_with = "counter")]
    queries_resolved: f64,
    #[serde(default, deserialize_with = "counter")]
    avg_duration_resolved: f64,
    #[serde(default, deserialize_with = "counter")]
    queries_assigned: f64,
    #[serde(default, deserialize_with = "counter")]
    sum_duration: f64,
    #[serde(default, deserialize_with = "counter")]
    nps: f64,
    #[serde(default, deserialize_with = "counter")]
    number_of_responses_nps: f64,
    #[serde(default, deserialize_with = "counter")]
    query_in_progress: f64,
    #[serde(default, deserialize_with = "optional_instant")]
    last_connection: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireName {
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
}

/// The NPS export's acknowledgement (`{"status": true, "message": ...}` in the sandbox).
#[derive(Deserialize)]
struct WireAck {
    /// Checked while decoding; the value itself is not needed.
    #[serde(rename = "status", default, deserialize_with = "status_ok")]
    _status: (),
}

impl WireOperator {
    fn into_row(self) -> OperatorRow {
        let (given_name, family_name) = self
            .name
            .map_or((None, None), |n| (n.given_name, n.family_name));
        OperatorRow {
            id: self.id,
            display_name: self.display_name,
            given_name,
            family_name,
            status: self.status,
            origins: self.origins,
            origins_name: self.origins_name,
            online_time: self.online_time,
            away_time: self.away_time,
            free_time: self.free_time,
            queries_resolved: self.queries_resolved,
            avg_duration_resolved: self.avg_duration_resolved,
            queries_assigned: self.queries_assigned,
            sum_duration: self.sum_duration,
            nps: self.nps,
            nps_responses: self.number_of_responses_nps,
            queries_in_progress: self.query_in_progress,
            last_connection: self.last_connection,
        }
    }
}

/// A number as Chat-Tonic may send it: a JSON integer or float, a numeric string, or `null`
/// (None). The problem text never quotes the value: upstream bodies stay out of messages.
fn number(value: &Value) -> Result<Option<f64>, &'static str> {
    let parsed = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => return Err("must be a number or null"),
    };
    match parsed {
        Some(v) if v.is_finite() => Ok(Some(v)),
        _ => Err("must be a finite number (a JSON number or a numeric string)"),
    }
}

/// An operator counter: a lenient [`number`], with `null` read as 0.
fn counter<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    number(&value)
        .map(|v| v.unwrap_or(0.0))
        .map_err(D::Error::custom)
}

/// `status` of a body: `true` (or absent, handled by `default`) is fine; `false` means
/// Chat-Tonic reports a failure, whatever the HTTP status said.
fn status_ok<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Bool(true) => Ok(()),
        Value::Bool(false) => Err(D::Error::custom(
            "`status` is false: Chat-Tonic reported a failure",
        )),
        _ => Err(D::Error::custom("`status` must be true or false")),
    }
}

/// An optional string: anything but a string (absent, `null`, another type) is unknown.
fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// A list of strings; `null` is an empty list.
fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

/// `lastConnection`: `null` or an RFC 3339 instant (any offset, with or without millis).
fn optional_instant<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                D::Error::custom(
                    "`lastConnection` must be null or an RFC 3339 instant such as 2021-11-01T03:00:00.000Z",
                )
            }),
    }
}

/// Its weight in the chunk cache's byte budget.
impl crate::fetch::Weigh for Dashboard {
    fn approx_bytes(&self) -> usize {
        Dashboard::approx_bytes(self)
    }
}

/// Its weight in the chunk cache's byte budget.
impl crate::fetch::Weigh for OperatorReport {
    fn approx_bytes(&self) -> usize {
        OperatorReport::approx_bytes(self)
    }
}

/// How many months past the last asked one a dashboard call may read ahead: the months up to
/// the present, when the present is at most this far away (see [`read_ahead`]).
const READ_AHEAD_BLOCKS: i64 = 2;

/// The months worth reading ahead of the asked months `asked` at `now`: the ones after the last
/// asked month up to the current one, when that is at most [`READ_AHEAD_BLOCKS`] months away.
///
/// Why: a dashboard is explored near the present, window after window, and each window's first
/// call would otherwise fetch only its own months, so the next window's newer months cost
/// another call. The months ride in a call that is made anyway (the batch loader only stretches
/// planned calls, within [`plan_blocks`]' limits), so it costs bytes, never a call. Older
/// history reads nothing ahead: a call about last year would fetch months nobody asked for.
pub fn read_ahead(asked: &[i64], now: DateTime<Utc>) -> Vec<i64> {
    let current = block_index(now);
    match asked.iter().max() {
        Some(&last) if last < current && current - last <= READ_AHEAD_BLOCKS => {
            (last + 1..=current).collect()
        }
        _ => Vec::new(),
    }
}

/// The batch loader's view of the dashboard in `group`: UTC-month blocks, contiguous missing
/// months merged into one call within the group's limits ([`plan_blocks`]), reading ahead to
/// the current month ([`read_ahead`]), each answer cut back into months.
pub fn block_source(workspace: Arc<Workspace>, group: DateGroup) -> Arc<dyn BlockSource> {
    Arc::new(DashboardBlocks { workspace, group })
}

/// The dashboard's [`BlockSource`] in one `group`.
struct DashboardBlocks {
    workspace: Arc<Workspace>,
    group: DateGroup,
}

impl BlockSource for DashboardBlocks {
    fn live(&self, index: i64) -> bool {
        is_live(block_end(index))
    }

    fn plan(&self, indices: &[i64]) -> Vec<Vec<i64>> {
        plan_blocks(indices, self.group)
    }

    fn fetch(&self, blocks: Vec<i64>) -> crate::cache::FetchMany {
        let workspace = self.workspace.clone();
        let group = self.group;
        async move {
            let client = configured(workspace.chat_tonic.as_ref(), Provider::ChatTonic)?;
            client
                .dashboard_blocks(group, &blocks)
                .await
                .map(erase_blocks)
        }
        .boxed()
    }

    fn read_ahead(&self, asked: &[i64]) -> Vec<i64> {
        read_ahead(asked, Utc::now())
    }
}

impl Source for ChatTonic {
    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn feeds(&self) -> &'static [Feed] {
        FEEDS
    }

    fn finest(&self) -> Granularity {
        FINEST
    }
}

/// Ask Chat-Tonic to email the NPS report of `range` to the account's user: a side effect, so
/// straight to the client, never through the cache.
pub async fn request_nps_export(
    workspace: &Workspace,
    respondents: NpsType,
    range: &RangeKey,
) -> Result<(), UpstreamError> {
    configured(workspace.chat_tonic.as_ref(), Provider::ChatTonic)?
        .nps_export(respondents, range)
        .await
}

/// The Chat-Tonic dashboard for `window` (one call serves every dashboard field), through the fetcher.
pub async fn dashboard_for(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
) -> Result<Fetched<Dashboard>, UpstreamError> {
    let account = workspace.account(Provider::ChatTonic)?;
    let key = plan_dashboard(window);
    let live = is_live(key.range.end);
    let workspace = workspace.clone();
    fetcher
        .get(
            account,
            "stats/bigquery",
            &key.clone(),
            live,
            move || async move {
                let client = configured(workspace.chat_tonic.as_ref(), Provider::ChatTonic)?;
                client.dashboard(&key).await
            },
        )
        .await
}

/// The Chat-Tonic operator report for `range`, through the fetcher.
pub async fn operators_for(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    range: RangeKey,
) -> Result<Fetched<OperatorReport>, UpstreamError> {
    let account = workspace.account(Provider::ChatTonic)?;
    let live = is_live(range.end);
    let workspace = workspace.clone();
    fetcher
        .get(
            account,
            "stats/operator",
            &range.clone(),
            live,
            move || async move {
                let client = configured(workspace.chat_tonic.as_ref(), Provider::ChatTonic)?;
                client.operators(&range).await
            },
        )
        .await
}

/// Chat-Tonic's contribution to a series of dashboard `field`: the monthly blocks for the
/// fields they serve, else one dashboard call for `window` (which also gives its total).
pub(crate) async fn contribute(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
    field: DashboardField,
) -> Result<Contribution, UpstreamError> {
    if from_blocks(field) {
        let group = plan_dashboard(window).group;
        let series = SeriesKey::new(
            workspace.account(Provider::ChatTonic)?,
            "stats/bigquery",
            &group,
        );
        let source = || block_source(workspace.clone(), group);
        let months = fetcher
            .blocks::<Dashboard>(&series, &blocks_for(window), source)
            .await?;
        return Ok(Contribution::from_pages(&months, |month| {
            samples(month, field)
        }));
    }
    let dashboard = dashboard_for(workspace, fetcher, window).await?;
    let mut contribution =
        Contribution::from_pages(std::slice::from_ref(&dashboard), |d| samples(d, field));
    contribution.total = total(&dashboard.value, field);
    Ok(contribution)
}

/// Chat-Tonic's part of a series: one dashboard field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DashboardPart(pub DashboardField);

/// The part of a series that reads `field` of the Chat-Tonic dashboard.
pub fn dashboard(field: DashboardField) -> Part {
    Part::new(DashboardPart(field))
}

impl Contributes for DashboardPart {
    fn provider(&self) -> Provider {
        Provider::ChatTonic
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn key_text(&self) -> String {
        key_text("chat_tonic.dashboard", self)
    }

    fn contribute<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
        window: &'a Window,
        _span: &'a Window,
        _total_only: bool,
    ) -> BoxFuture<'a, Result<Contribution, UpstreamError>> {
        contribute(workspace, fetcher, window, self.0).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UpstreamErrorKind;
    use crate::sandbox::accounts;
    use crate::sandbox::chat_tonic as truth;
    use crate::sandbox::faults::FaultSpec;
    use crate::sandbox::{start, Sandbox, SandboxOptions};
    use crate::series::resample;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid test date")
    }

    fn window(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
        zone: &str,
    ) -> Window {
        let zone = Zone::parse(zone).expect("valid zone");
        Window::new(from, to, granularity, zone).expect("valid window")
    }

    #[test]
    fn a_call_reads_ahead_to_the_current_month_only_when_it_is_near() {
        let now = utc(2026, 3, 16, 12);
        let month = |y: i32, m: u32| block_index(utc(y, m, 1, 0));
        // Mid-January asked in mid-March: February and March ride along.
        assert_eq!(
            read_ahead(&[month(2026, 1)], now),
            vec![month(2026, 2), month(2026, 3)]
        );
        assert_eq!(
            read_ahead(&[month(2026, 1), month(2026, 2)], now),
            vec![month(2026, 3)]
        );
        // The current month asked, or history three months back or more: nothing.
        assert!(read_ahead(&[month(2026, 3)], now).is_empty());
        assert!(read_ahead(&[month(2025, 12)], now).is_empty());
        assert!(read_ahead(&[], now).is_empty());
    }

    #[test]
    fn reading_ahead_stretches_planned_calls_and_never_adds_one() {
        use crate::fetch::plan_reading_ahead;
        let hours = |run: &[i64]| plan_blocks(run, DateGroup::Hour);
        // One missing month and two missing months after it: one call of three months.
        assert_eq!(
            plan_reading_ahead(&hours, &[10], &[11, 12]),
            vec![vec![10, 11, 12]]
        );
        // Hour calls hold three months: two asked months take only one more.
        assert_eq!(
            plan_reading_ahead(&hours, &[9, 10], &[11, 12]),
            vec![vec![9, 10, 11]]
        );
        // A month that is not missing (11 cached) stops the stretch: a call is one range.
        assert_eq!(plan_reading_ahead(&hours, &[10], &[12]), vec![vec![10]]);
        // Nothing asked is missing: no call at all, whatever could be read ahead.
        assert!(plan_reading_ahead(&hours, &[], &[11, 12]).is_empty());
        let days = |run: &[i64]| plan_blocks(run, DateGroup::Day);
        assert_eq!(
            plan_reading_ahead(&days, &[3, 7], &[4, 5, 8]),
            vec![vec![3, 4, 5], vec![7, 8]]
        );
    }

    /// A local midnight in `zone` as a UTC instant.
    fn local_midnight(zone: &str, y: i32, m: u32, d: u32) -> DateTime<Utc> {
        let zone = Zone::parse(zone).expect("valid zone");
        let day = NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
        zone.instant_of(day.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }

    async fn spawn() -> Sandbox {
        start(
            "127.0.0.1:0".parse().expect("valid address"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts")
    }

    fn acme() -> &'static accounts::ChatTonicAccount {
        accounts::ACME
            .chat_tonic
            .as_ref()
            .expect("acme uses Chat-Tonic")
    }

    /// A client of acme's tenant on the sandbox, with the given token.
    fn client(sandbox: &Sandbox, token: &str) -> ChatTonic {
        ChatTonic::new(
            reqwest::Client::new(),
            format!("{}/chat-tonic", sandbox.base_url()),
            acme().codename.to_owned(),
            Secret::new(token),
        )
    }

    fn invalid(result: Result<impl fmt::Debug, UpstreamError>) -> String {
        match result {
            Err(UpstreamError {
                kind: UpstreamErrorKind::Invalid(message),
                provider: Provider::ChatTonic,
            }) => message,
            other => panic!("expected UPSTREAM_INVALID from Chat-Tonic, got {other:?}"),
        }
    }

    /// A server that answers every request with 200 and `body`: for wire shapes the sandbox
    /// never sends.
    async fn fixed(body: &'static str) -> (ChatTonic, tokio::task::JoinHandle<()>) {
        let app = axum::Router::new().fallback(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = ChatTonic::new(
            reqwest::Client::new(),
            format!("http://{addr}/"),
            "acme".into(),
            Secret::new("t"),
        );
        (client, task)
    }

    fn day_range() -> RangeKey {
        RangeKey {
            start: utc(2024, 3, 4, 0),
            end: utc(2024, 3, 6, 0),
        }
    }

    // ---- planning ----

    #[test]
    fn a_utc_day_or_week_window_is_one_day_group_call_over_the_aligned_window() {
        for granularity in [Granularity::Day, Granularity::Week] {
            let w = window(utc(2024, 3, 4, 5), utc(2024, 3, 20, 0), granularity, "UTC");
            let key = plan_dashboard(&w);
            assert_eq!(key.group, DateGroup::Day, "{granularity}");
            assert_eq!(key.range, RangeKey::of(&w));
            assert_eq!(key.range.start, w.from());
        }
    }

    #[test]
    fn month_blocks_cover_a_window_and_hour_groups_are_fetched_three_months_a_call() {
        let w = window(
            utc(2024, 1, 30, 0),
            utc(2024, 3, 2, 0),
            Granularity::Day,
            "UTC",
        );
        let blocks = blocks_for(&w);
        assert_eq!(blocks.len(), 3, "January, February, March");
        assert_eq!(
            block_range(blocks[0]),
            (utc(2024, 1, 1, 0), utc(2024, 2, 1, 0))
        );
        assert_eq!(block_range(blocks[2]).1, utc(2024, 4, 1, 0));
        let many: Vec<i64> = (blocks[0]..blocks[0] + 7).collect();
        assert_eq!(
            plan_blocks(&many, DateGroup::Hour)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [3, 3, 1]
        );
        assert_eq!(plan_blocks(&many, DateGroup::Day).len(), 1);
        assert!(from_blocks(DashboardField::MessagesSent));
        assert!(from_blocks(DashboardField::TotalUsers));
        for field in [
            DashboardField::ActiveUsers,
            DashboardField::Nps,
            DashboardField::Csat,
            DashboardField::Attention,
        ] {
            assert!(!from_blocks(field), "{field} stays per range");
        }
    }

    #[test]
    fn utc_month_and_year_windows_use_month_groups() {
        for granularity in [Granularity::Month, Granularity::Year] {
            let w = window(utc(2023, 1, 1, 0), utc(2024, 1, 1, 0), granularity, "Z");
            assert_eq!(plan_dashboard(&w).group, DateGroup::Month, "{granularity}");
        }
    }

    #[test]
    fn hour_windows_use_hour_groups_in_any_zone() {
        for zone in ["UTC", "Australia/Sydney", "+05:30"] {
            let w = window(
                utc(2024, 3, 4, 0),
                utc(2024, 3, 5, 0),
                Granularity::Hour,
                zone,
            );
            assert_eq!(plan_dashboard(&w).group, DateGroup::Hour, "{zone}");
        }
    }

    #[test]
    fn a_local_zone_uses_hours_up_to_93_days_and_days_beyond() {
        let zone = "Australia/Sydney";
        let from = local_midnight(zone, 2024, 1, 1);
        let short = window(
            from,
            from + chrono::Duration::days(93),
            Granularity::Day,
            zone,
        );
        assert_eq!(short.to() - short.from(), chrono::Duration::days(93));
        assert_eq!(plan_dashboard(&short).group, DateGroup::Hour);
        let long = window(
            from,
            from + chrono::Duration::days(94),
            Granularity::Day,
            zone,
        );
        assert_eq!(plan_dashboard(&long).group, DateGroup::Day);
        let months = window(
            from,
            local_midnight(zone, 2024, 7, 1),
            Granularity::Month,
            zone,
        );
        assert_eq!(plan_dashboard(&months).group, DateGroup::Day);
    }

    #[test]
    fn ranges_are_sent_in_the_seed_format_with_milliseconds() {
        let key = RangeKey {
            start: utc(2021, 11, 1, 3),
            end: Utc
                .with_ymd_and_hms(2021, 12, 1, 2, 55, 0)
                .single()
                .expect("valid date"),
        };
        assert_eq!(
            key.params(),
            [
                ("startDate", "2021-11-01T03:00:00.000Z".to_owned()),
                ("endDate", "2021-12-01T02:55:00.000Z".to_owned()),
            ]
        );
        assert_eq!(encode("%Y-%m-%d %H"), "%25Y-%25m-%25d%20%25H");
    }

    // ---- row dates and samples ----

    #[test]
    fn row_dates_parse_with_their_group_pattern_and_anything_else_is_the_total() {
        assert_eq!(
            DateGroup::Hour.parse_date("2024-03-05 07"),
            Some(utc(2024, 3, 5, 7))
        );
        assert_eq!(
            DateGroup::Day.parse_date("2024-03-05"),
            Some(utc(2024, 3, 5, 0))
        );
        assert_eq!(
            DateGroup::Month.parse_date("2024-03"),
            Some(utc(2024, 3, 1, 0))
        );
        for (group, date) in [
            (DateGroup::Hour, "0"),
            (DateGroup::Hour, "2024-03-05"),
            (DateGroup::Hour, "2024-03-05 24"),
            (DateGroup::Day, "0"),
            (DateGroup::Day, "2024-03-05 07"),
            (DateGroup::Month, "2024-03-05"),
            (DateGroup::Month, ""),
        ] {
            assert_eq!(group.parse_date(date), None, "{group:?} {date:?}");
        }
    }

    fn row(values: &[(DashboardField, f64)]) -> DashboardRow {
        let mut row = DashboardRow::default();
        for (field, value) in values {
            row.set(*field, Some(*value));
        }
        row
    }

    fn wire_row(date: Value, row: DashboardRow) -> WireDashboardRow {
        WireDashboardRow { date, row }
    }

    #[test]
    fn rows_are_clipped_to_the_range_ordered_and_the_unparsed_row_is_the_total() {
        let key = DashboardKey {
            group: DateGroup::Day,
            range: RangeKey {
                start: utc(2024, 3, 4, 6),
                end: utc(2024, 3, 5, 12),
            },
        };
        let sent = |v| row(&[(DashboardField::MessagesSent, v)]);
        let wire = vec![
            wire_row(Value::from("2024-03-05"), sent(2.0)),
            wire_row(Value::from("0"), sent(3.0)),
            wire_row(Value::from("2024-03-04"), sent(1.0)),
            wire_row(Value::from("2024-03-09"), sent(9.0)),
            wire_row(Value::from(0), sent(7.0)),
        ];
        let dashboard = into_dashboard(wire, &key);
        assert_eq!(total(&dashboard, DashboardField::MessagesSent), Some(3.0));
        let got = samples(&dashboard, DashboardField::MessagesSent);
        let spans: Vec<_> = got.iter().map(|s| (s.start, s.end, s.value)).collect();
        assert_eq!(
            spans,
            [
                (utc(2024, 3, 4, 6), utc(2024, 3, 5, 0), 1.0),
                (utc(2024, 3, 5, 0), utc(2024, 3, 5, 12), 2.0),
            ]
        );
    }

    #[test]
    fn unknown_values_give_no_sample_and_scores_are_weighted_by_resolved_dialogs() {
        let key = DashboardKey {
            group: DateGroup::Month,
            range: RangeKey {
                start: utc(2024, 1, 1, 0),
                end: utc(2024, 3, 1, 0),
            },
        };
        let wire = vec![
            wire_row(
                Value::from("2024-01"),
                row(&[(DashboardField::Nps, 40.0), (DashboardField::Resolved, 5.0)]),
            ),
            wire_row(
                Value::from("2024-02"),
                row(&[(DashboardField::Resolved, 2.0)]),
            ),
        ];
        let dashboard = into_dashboard(wire, &key);
        let nps = samples(&dashboard, DashboardField::Nps);
        assert_eq!(nps.len(), 1, "February has no nps");
        assert_eq!(nps[0].weight, Some(5.0));
        assert_eq!(
            nps[0].end,
            utc(2024, 2, 1, 0),
            "a month group ends at the next month"
        );
        let resolved = samples(&dashboard, DashboardField::Resolved);
        assert_eq!(resolved.len(), 2);
        assert!(resolved.iter().all(|s| s.weight.is_none()));
        assert_eq!(total(&dashboard, DashboardField::Nps), None, "no total row");
    }

    #[test]
    fn fields_aggregate_as_the_metric_table_says() {
        assert_eq!(DashboardField::TotalUsers.aggregation(), Aggregation::Last);
        assert_eq!(
            DashboardField::ActiveUsers.aggregation(),
            Aggregation::Distinct
        );
        assert_eq!(DashboardField::Csat.aggregation(), Aggregation::Average);
        assert_eq!(DashboardField::Failed.aggregation(), Aggregation::Sum);
        for (i, field) in DashboardField::ALL.iter().enumerate() {
            assert_eq!(*field as usize, i, "ALL is in declaration order");
        }
    }

    #[test]
    fn approximate_sizes_grow_with_the_content() {
        let mut dashboard = Dashboard::default();
        let empty = dashboard.approx_bytes();
        dashboard.rows = vec![
            (
                utc(2024, 1, 1, 0),
                utc(2024, 1, 2, 0),
                DashboardRow::default()
            );
            24
        ];
        assert!(dashboard.approx_bytes() >= empty + 24 * std::mem::size_of::<DashboardRow>());
        let mut report = OperatorReport::default();
        let before = report.approx_bytes();
        report.operators.push(OperatorRow {
            id: "x".repeat(1000),
            ..OperatorRow::default()
        });
        assert!(report.approx_bytes() >= before + 1000);
    }

    // ---- against the sandbox ----

    #[tokio::test]
    async fn a_utc_day_window_gets_the_truth_for_each_day_and_for_the_whole_window() {
        let sandbox = spawn().await;
        let ct = client(&sandbox, acme().token);
        let w = window(
            utc(2024, 3, 4, 0),
            utc(2024, 3, 7, 0),
            Granularity::Day,
            "UTC",
        );
        let key = plan_dashboard(&w);
        let dashboard = ct.dashboard(&key).await.expect("dashboard answers");
        assert_eq!(dashboard.rows.len(), 3);
        for (i, (start, end, row)) in dashboard.rows.iter().enumerate() {
            assert_eq!((*start, *end), w.bucket(i));
            let expected = truth::dashboard_row("acme", *start, *end);
            assert_eq!(
                row.get(DashboardField::MessagesSent),
                Some(expected.messages_sent)
            );
            assert_eq!(row.get(DashboardField::NewUsers), Some(expected.new_users));
            assert_eq!(
                row.get(DashboardField::ActiveUsers),
                Some(expected.active_users)
            );
            assert_eq!(
                row.get(DashboardField::TotalUsers),
                Some(expected.total_users)
            );
            assert_eq!(row.get(DashboardField::Csat), Some(expected.csat));
        }
        let whole = truth::dashboard_row("acme", w.from(), w.to());
        let total_row = dashboard.total.as_ref().expect("a whole-window row");
        assert_eq!(
            total_row.get(DashboardField::Resolved),
            Some(whole.resolved)
        );
        assert_eq!(total_row.get(DashboardField::Nps), Some(whole.nps));
        let calls = sandbox.state().calls();
        assert_eq!(calls.len(), 1, "one call serves the whole dashboard");
        assert_eq!(calls[0].path, "/api/v1/acme/stats/bigquery");
        let param = |name: &str| {
            calls[0]
                .params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(param("dateFormatGroup").as_deref(), Some("%Y-%m-%d"));
        assert_eq!(
            param("startDate").as_deref(),
            Some("2024-03-04T00:00:00.000Z")
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn active_users_over_the_window_come_from_the_total_row_not_from_summed_days() {
        let sandbox = spawn().await;
        let ct = client(&sandbox, acme().token);
        let w = window(
            utc(2024, 3, 4, 0),
            utc(2024, 3, 11, 0),
            Granularity::Day,
            "UTC",
        );
        let dashboard = ct
            .dashboard(&plan_dashboard(&w))
            .await
            .expect("dashboard answers");
        let expected = truth::dashboard_row("acme", w.from(), w.to()).active_users;
        assert_eq!(
            total(&dashboard, DashboardField::ActiveUsers),
            Some(expected)
        );
        let summed: f64 = samples(&dashboard, DashboardField::ActiveUsers)
            .iter()
            .map(|s| s.value)
            .sum();
        assert!(
            summed > expected,
            "days overlap in users: {summed} vs {expected}"
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_sydney_day_window_across_dst_is_built_exactly_from_utc_hour_rows() {
        let sandbox = spawn().await;
        let ct = client(&sandbox, acme().token);
        let zone = "Australia/Sydney";
        // Sydney leaves DST on 2024-04-07: that local day has 25 hours.
        let w = window(
            local_midnight(zone, 2024, 4, 5),
            local_midnight(zone, 2024, 4, 9),
            Granularity::Day,
            zone,
        );
        let key = plan_dashboard(&w);
        assert_eq!(key.group, DateGroup::Hour);
        let dashboard = ct.dashboard(&key).await.expect("dashboard answers");
        assert_eq!(dashboard.rows.len(), 24 * 4 + 1);
        let received = samples(&dashboard, DashboardField::MessagesReceived);
        let bucketed = resample(&w, Aggregation::Sum, &received);
        assert!(bucketed.exact, "whole UTC hours nest in Sydney days");
        let nps = resample(
            &w,
            Aggregation::Average,
            &samples(&dashboard, DashboardField::Nps),
        );
        assert!(nps.exact, "every hour carries its weight");
        for i in 0..w.len() {
            let (start, end) = w.bucket(i);
            let expected = truth::dashboard_row("acme", start, end);
            assert_eq!(
                bucketed.values[i],
                Some(expected.messages_received),
                "day {i}"
            );
            let got = nps.values[i].expect("a day with resolved dialogs has an nps");
            // Hour rows are rounded to 2 decimals before they are averaged again.
            assert!(
                (got - expected.nps).abs() <= 0.01 + 1e-9,
                "day {i}: {got} vs {}",
                expected.nps
            );
        }
        assert_eq!(w.bucket(2).1 - w.bucket(2).0, chrono::Duration::hours(25));
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn month_blocks_and_the_operator_report_round_trip_through_their_stored_form() {
        let sandbox = spawn().await;
        let ct = client(&sandbox, acme().token);
        let first = block_index(utc(2024, 2, 1, 0));
        for group in [DateGroup::Hour, DateGroup::Day] {
            let months = ct
                .dashboard_blocks(group, &[first, first + 1])
                .await
                .expect("the sandbox answers");
            assert_eq!(months.len(), 2);
            for month in &months {
                assert!(!month.rows.is_empty(), "{group:?}");
                crate::cache::assert_round_trips(month);
            }
        }
        let report = ct.operators(&day_range()).await.expect("operators answer");
        assert!(!report.operators.is_empty());
        crate::cache::assert_round_trips(&report);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn operator_summaries_equal_the_truth_and_a_missing_status_is_unknown() {
        let sandbox = spawn().await;
        let ct = client(&sandbox, acme().token);
        // The seed's unaligned range shape.
        let range = RangeKey {
            start: utc(2024, 2, 1, 3),
            end: Utc
                .with_ymd_and_hms(2024, 3, 1, 2, 55, 0)
                .single()
                .expect("valid date"),
        };
        let report = ct.operators(&range).await.expect("operators answer");
        assert_eq!(report.operators.len(), acme().operators.len());
        for (row, operator) in report.operators.iter().zip(acme().operators) {
            let expected = truth::operator_stats("acme", operator.id, range.start, range.end);
            assert_eq!(row.id, operator.id);
            assert_eq!(row.status.as_deref(), operator.status);
            assert_eq!(row.given_name.as_deref(), Some(operator.given_name));
            assert_eq!(row.family_name.as_deref(), Some(operator.family_name));
            assert_eq!(row.online_time, expected.online_time as f64);
            assert_eq!(row.queries_resolved, expected.queries_resolved as f64);
            assert_eq!(row.sum_duration, expected.sum_duration as f64);
            assert_eq!(row.avg_duration_resolved, expected.avg_duration_resolved);
            assert_eq!(row.nps, expected.nps);
            assert_eq!(row.nps_responses, expected.number_of_responses_nps as f64);
            assert_eq!(row.queries_in_progress, expected.query_in_progress as f64);
            assert_eq!(row.last_connection, expected.last_connection);
        }
        assert_eq!(report.operators[0].status, None);
        assert_eq!(report.operators[0].origins, ["5ed94dd1fdda89cee4cb61"]);
        assert_eq!(
            report.query_pending,
            truth::query_pending("acme", range.start, range.end) as f64
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn the_nps_export_sends_type_user_and_the_range_once() {
        let sandbox = spawn().await;
        let ct = client(&sandbox, acme().token);
        ct.nps_export(NpsType::Detractor, &day_range())
            .await
            .expect("export acknowledged");
        let calls = sandbox.state().calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].path, "/api/v1/acme/stats/nps/export");
        assert_eq!(
            calls[0].params,
            [
                ("typeUser".to_owned(), "detractor".to_owned()),
                (
                    "startDate".to_owned(),
                    "2024-03-04T00:00:00.000Z".to_owned()
                ),
                ("endDate".to_owned(), "2024-03-06T00:00:00.000Z".to_owned()),
            ]
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_refused_token_is_rejected_with_401_and_marks_the_account_unhealthy() {
        let sandbox = spawn().await;
        let ct = client(&sandbox, "not-the-token");
        let result = ct.operators(&day_range()).await;
        assert!(
            matches!(
                result,
                Err(UpstreamError {
                    kind: UpstreamErrorKind::Rejected { status: 401, .. },
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(!ct.upstream().health().healthy());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_garbled_body_is_invalid() {
        let sandbox = spawn().await;
        sandbox.state().faults().set(FaultSpec {
            provider: "chat_tonic".into(),
            latency_ms: None,
            status: None,
            error_rate: None,
            malformed: true,
            retry_after_secs: None,
            times: Some(1),
        });
        let ct = client(&sandbox, acme().token);
        let key = DashboardKey {
            group: DateGroup::Day,
            range: day_range(),
        };
        invalid(ct.dashboard(&key).await);
        assert!(
            ct.dashboard(&key).await.is_ok(),
            "the fault was for one call"
        );
        sandbox.shutdown().await;
    }

    // ---- wire shapes the sandbox does not send ----

    #[tokio::test]
    async fn status_false_is_invalid_even_with_http_200() {
        let (ct, task) = fixed(r#"{"status":false,"message":"token expired"}"#).await;
        let message = invalid(ct.operators(&day_range()).await);
        assert!(message.contains("`status` is false"), "{message}");
        assert!(
            !message.contains("token expired"),
            "upstream text stays out"
        );
        invalid(ct.nps_export(NpsType::All, &day_range()).await);
        assert!(!ct.upstream().health().healthy());
        task.abort();
    }

    #[tokio::test]
    async fn a_dashboard_body_that_is_not_an_array_is_invalid() {
        let (ct, task) = fixed(r#"{"status":true,"rows":[]}"#).await;
        let key = DashboardKey {
            group: DateGroup::Hour,
            range: day_range(),
        };
        invalid(ct.dashboard(&key).await);
        task.abort();
    }

    #[tokio::test]
    async fn dashboard_numbers_may_be_integers_floats_strings_or_null() {
        let (ct, task) = fixed(
            r#"[{"date":"0","totalUsers":35756,"nps":"12.5","csat":null,"extra":{"x":1}},
                {"date":"2024-03-04","resolved":3.0}]"#,
        )
        .await;
        let key = DashboardKey {
            group: DateGroup::Day,
            range: day_range(),
        };
        let dashboard = ct.dashboard(&key).await.expect("a tolerable body");
        assert_eq!(total(&dashboard, DashboardField::TotalUsers), Some(35756.0));
        assert_eq!(total(&dashboard, DashboardField::Nps), Some(12.5));
        assert_eq!(total(&dashboard, DashboardField::Csat), None);
        assert_eq!(total(&dashboard, DashboardField::Failed), None, "absent");
        assert_eq!(samples(&dashboard, DashboardField::Resolved)[0].value, 3.0);
        task.abort();
    }

    #[tokio::test]
    async fn a_dashboard_value_that_is_not_a_number_is_invalid_and_named() {
        let (ct, task) = fixed(r#"[{"date":"0","pending":"lots"}]"#).await;
        let key = DashboardKey {
            group: DateGroup::Day,
            range: day_range(),
        };
        let message = invalid(ct.dashboard(&key).await);
        assert!(message.contains("`pending`"), "{message}");
        assert!(
            !message.contains("lots"),
            "upstream text stays out: {message}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn operator_fields_tolerate_missing_null_and_offset_values() {
        let (ct, task) = fixed(
            r#"{"operators":[
                {"_id":"a","onlineTime":480.5,"awayTime":null,"origins":null,
                 "lastConnection":"2021-11-01T05:00:00+02:00","status":false},
                {"_id":"b","name":{"givenName":"Chamo"},"lastConnection":null,"nps":"-12"}
              ],"queryPending":"4"}"#,
        )
        .await;
        let report = ct.operators(&day_range()).await.expect("a tolerable body");
        let [a, b] = &report.operators[..] else {
            panic!("two operators, got {:?}", report.operators);
        };
        assert_eq!((a.online_time, a.away_time, a.free_time), (480.5, 0.0, 0.0));
        assert!(a.origins.is_empty());
        assert_eq!(a.status, None);
        assert_eq!(a.last_connection, Some(utc(2021, 11, 1, 3)));
        assert_eq!(b.given_name.as_deref(), Some("Chamo"));
        assert_eq!(b.family_name, None);
        assert_eq!((b.nps, b.last_connection), (-12.0, None));
        assert_eq!(report.query_pending, 4.0);
        task.abort();
    }

    #[tokio::test]
    async fn an_unreadable_last_connection_is_invalid() {
        let (ct, task) =
            fixed(r#"{"status":true,"operators":[{"_id":"a","lastConnection":"yesterday"}]}"#)
                .await;
        let message = invalid(ct.operators(&day_range()).await);
        assert!(message.contains("lastConnection"), "{message}");
        task.abort();
    }
}
