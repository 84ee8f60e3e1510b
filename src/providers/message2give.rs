//! message2give (SPEC §1.1, seed 000): operator chat statistics (web and SMS) and SMS usage, per
//! local day.
//!
//! Every call covers one whole local calendar month at one fixed UTC offset: `timezone_offset`
//! (minutes, JavaScript sign: `-600` is UTC+10) and `month`, the instant of local midnight on
//! the 1st. [`plan`] turns a window into those months ([`MonthKey`]), each with the offset the
//! window's zone has at that month's local start. Because the offset is fixed for the month,
//! every upstream day is exactly 24 hours: in a month where the zone changes offset (DST), the
//! days after the change are shifted from the zone's local days by the difference. That is why
//! samples carry the upstream day's real span, so that the engine can tell when its buckets
//! are not a faithful cut (SPEC §1.1: "a month that changes offset is still one call").
//!
//! The answers are kept as typed per-user and per-survey day lists ([`ChatStats`],
//! [`SmsUsage`]), not as samples of one metric, so one cached month serves every scope and
//! metric; the pure builders [`session_samples`], [`average_samples`] and [`sms_samples`]
//! turn them into [`Sample`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::size_of;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;

use crate::catalogue::{key_text, Contributes, Contribution, Part};
use crate::config::Secret;
use crate::error::UpstreamError;
use crate::fetch::{Fetched, Fetcher};
use crate::providers::is_live;
use crate::providers::upstream::Upstream;
use crate::providers::{
    ChannelFeed, ChannelKind, ChannelMetric, ConversationFilter, Feed, Provider, Source,
};
use crate::series::{Granularity, Sample, Window};
use crate::workspace::{configured, Workspace};
use futures::future::try_join_all;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

/// The finest granularity message2give offers: a local day.
/// The series fields this provider feeds (its rows of SPEC §2.1).
pub const FEEDS: &[Feed] = &[
    Feed {
        field: "Channel.conversations",
        from: "sessions.count (web/sms, all users)",
    },
    Feed {
        field: "Channel.responseTime / waitTime",
        from: "response / wait averages across users, weighted by the user-day's sessions.count",
    },
    Feed {
        field: "Channel.sessionDuration",
        from: "sessions.average weighted by count",
    },
    Feed {
        field: "DialogStats.created",
        from: "sessions.count (web+sms)",
    },
    Feed {
        field: "MessageStats.sent",
        from: "SMS usage messages (all surveys)",
    },
    Feed {
        field: "Operator.* series",
        from: "per-user response / wait / sessions.count / sessions.average",
    },
    Feed {
        field: "Survey.messages / units",
        from: "SMS usage",
    },
];

pub const FINEST: Granularity = Granularity::Day;

/// An upstream day: always 24 hours, because the offset is fixed for the whole month.
const DAY: TimeDelta = TimeDelta::hours(24);

/// The session token header ("these endpoints only work with token authentication").
const TOKEN_HEADER: &str = "x-token";
/// The MFA token header, for organisations that enforce MFA.
const MFA_HEADER: &str = "x-mfa";

/// A rough per-entry cost of a `BTreeMap` node, for [`ChatStats::approx_bytes`] and
/// [`SmsUsage::approx_bytes`]: a cache weigher needs the order of magnitude, not the byte.
const MAP_ENTRY_OVERHEAD: usize = 32;

/// The two chat types of the chat statistics endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ChatType {
    /// Web chat.
    Web,
    /// SMS conversations.
    Sms,
}

impl ChatType {
    /// Both chat types (e.g. for "sessions on every channel").
    pub const ALL: [ChatType; 2] = [ChatType::Web, ChatType::Sms];

    /// The `{chat_type}` path segment: "web" or "sms".
    pub fn slug(self) -> &'static str {
        match self {
            ChatType::Web => "web",
            ChatType::Sms => "sms",
        }
    }
}

/// One local month at one offset: what one upstream call covers.
///
/// `offset_minutes` uses the JavaScript sign (`-600` = UTC+10), as the upstream does. [`plan`]
/// only builds valid keys; a hand-made key with a month outside 1..=12 (or a year chrono cannot
/// represent) is not refused here but sent as a `month` the upstream rejects (HTTP 400), so an
/// invalid key is an `UPSTREAM_REJECTED` error, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct MonthKey {
    /// Local calendar year.
    pub year: i32,
    /// Local calendar month, 1..=12.
    pub month: u32,
    /// `timezone_offset`: minutes from GMT, JavaScript sign (`-600` = UTC+10, `300` = UTC-5).
    pub offset_minutes: i32,
}

impl MonthKey {
    /// Local midnight on the 1st of the month as a UTC instant (the `month` parameter).
    ///
    /// For an invalid key (see the type's docs) this is chrono's minimum instant.
    pub fn start(&self) -> DateTime<Utc> {
        self.local_midnight_on_first(self.year, self.month)
    }

    /// Local midnight on the 1st of the following month at the same offset: the end
    /// (exclusive) of the last upstream day of this key, e.g. to tell a month wholly in the
    /// past (history) from one that is still changing (live).
    ///
    /// For an invalid key this is chrono's minimum instant.
    pub fn end(&self) -> DateTime<Utc> {
        if !(1..=12).contains(&self.month) {
            return DateTime::<Utc>::MIN_UTC;
        }
        let (year, month) = if self.month == 12 {
            (self.year.saturating_add(1), 1)
        } else {
            (self.year, self.month + 1)
        };
        self.local_midnight_on_first(year, month)
    }

    /// The `month` query parameter in the upstream's own format: `2021-05-31T14:00:00.000Z`.
    pub fn month_param(&self) -> String {
        self.start().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    /// The UTC instant of local midnight on the 1st of `year`-`month` at this key's offset
    /// (UTC = local + offset with the JavaScript sign).
    fn local_midnight_on_first(&self, year: i32, month: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(year, month, 1)
            .and_then(|first| first.and_hms_opt(0, 0, 0))
            .and_then(|midnight| {
                midnight
                    .and_utc()
                    .checked_add_signed(TimeDelta::minutes(i64::from(self.offset_minutes)))
            })
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// One chat statistics call: a chat type and a month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ChatKey {
    /// Web or SMS chat.
    pub chat: ChatType,
    /// The local month and offset.
    pub month: MonthKey,
}

/// The local months (in `window.zone()`) that the window touches, oldest first, each with the
/// zone's offset in force at that month's local start.
///
/// DST-correct in the only way the upstream allows: a month that changes offset is still ONE
/// call, at the offset of its start. Offsets are whole minutes; the seconds of historical
/// local mean time offsets (before ~1940) are dropped.
pub fn plan(window: &Window) -> Vec<MonthKey> {
    let zone = window.zone();
    let mut keys = Vec::new();
    let mut start = Granularity::Month.floor(window.from(), zone);
    while start < window.to() {
        // `start` is the first instant at or after local midnight on the 1st, so its local
        // date is the 1st even when a DST gap swallowed that midnight.
        let local = zone.local(start).date();
        keys.push(MonthKey {
            year: local.year(),
            month: local.month(),
            offset_minutes: js_offset_minutes(zone.offset_at(start)),
        });
        let next = Granularity::Month.next(start, zone);
        if next <= start {
            // `next` saturates at the end of chrono's range; never loop on it.
            break;
        }
        start = next;
    }
    keys
}

/// A UTC offset in whole minutes with the JavaScript sign (east of UTC is negative).
fn js_offset_minutes(offset: FixedOffset) -> i32 {
    -(offset.local_minus_utc() / 60)
}

/// One user's statistics on one upstream day `[start, end)` (24 hours).
///
/// `None` is the upstream's `null` or an absent entry: the day appeared in one of the user's
/// maps but not in this one.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserDay {
    /// Local midnight at the month's offset, as a UTC instant.
    pub start: DateTime<Utc>,
    /// `start` + 24 h.
    pub end: DateTime<Utc>,
    /// Average first-response time, seconds (`response.{day}.average`).
    pub response: Option<f64>,
    /// Average wait time, seconds (`wait.{day}.average`).
    pub wait: Option<f64>,
    /// Average session duration, seconds (`sessions.{day}.average`).
    pub session_average: Option<f64>,
    /// Number of sessions (`sessions.{day}.count`).
    pub sessions: Option<f64>,
}

impl UserDay {
    fn empty(start: DateTime<Utc>) -> UserDay {
        UserDay {
            start,
            end: start + DAY,
            response: None,
            wait: None,
            session_average: None,
            sessions: None,
        }
    }
}

/// The answer of one chat statistics call. Day lists are oldest first (the upstream sends
/// newest first); days the upstream left out are absent.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatStats {
    /// User id → days (`stats.users`).
    pub users: BTreeMap<String, Vec<UserDay>>,
    /// Cct (operator group) id → user id → days (`stats.ccts.{id}.users`; the upstream keeps
    /// separate numbers per group, so these are not a regrouping of `users`).
    pub ccts: BTreeMap<String, BTreeMap<String, Vec<UserDay>>>,
}

impl ChatStats {
    /// A rough size in bytes, for a byte-bounded cache weigher.
    pub fn approx_bytes(&self) -> usize {
        let users = |users: &BTreeMap<String, Vec<UserDay>>| -> usize {
            users
                .iter()
                .map(|(id, days)| {
                    MAP_ENTRY_OVERHEAD
                        + size_of::<String>()
                        + id.len()
                        + size_of::<Vec<UserDay>>()
                        + days.len() * size_of::<UserDay>()
                })
                .sum()
        };
        let ccts: usize = self
            .ccts
            .iter()
            .map(|(id, members)| {
                MAP_ENTRY_OVERHEAD + size_of::<String>() + id.len() + users(members)
            })
            .sum();
        size_of::<ChatStats>() + users(&self.users) + ccts
    }
}

/// One survey's SMS usage on one upstream day `[start, end)` (24 hours).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SurveyDay {
    /// Local midnight at the month's offset, as a UTC instant.
    pub start: DateTime<Utc>,
    /// `start` + 24 h.
    pub end: DateTime<Utc>,
    /// SMS messages sent (`messages.{day}`).
    pub messages: f64,
    /// Billing units (`units.{day}`; a long message costs several).
    pub units: f64,
}

/// The answer of one SMS usage call. Day lists are oldest first.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SmsUsage {
    /// Survey id → days (`usage.surveys`).
    pub surveys: BTreeMap<String, Vec<SurveyDay>>,
}

impl SmsUsage {
    /// A rough size in bytes, for a byte-bounded cache weigher.
    pub fn approx_bytes(&self) -> usize {
        size_of::<SmsUsage>()
            + self
                .surveys
                .iter()
                .map(|(id, days)| {
                    MAP_ENTRY_OVERHEAD
                        + size_of::<String>()
                        + id.len()
                        + size_of::<Vec<SurveyDay>>()
                        + days.len() * size_of::<SurveyDay>()
                })
                .sum::<usize>()
    }
}

/// A message2give organisation, reached with a session token (and an MFA token when the
/// organisation enforces MFA).
#[derive(Debug)]
pub struct Message2Give {
    upstream: Upstream,
    base_url: String,
    organisation: String,
    token: Secret,
    mfa: Option<Secret>,
}

impl Message2Give {
    /// `base_url` without a trailing slash, e.g. `https://api.app.message2give.com/2019-01-23`;
    /// `organisation` is the `{workspace_id}` path segment ("self" = the token's own), which
    /// the config guarantees to be URL-path-safe.
    pub fn new(
        http: reqwest::Client,
        base_url: String,
        organisation: String,
        token: Secret,
        mfa: Option<Secret>,
    ) -> Self {
        Self {
            upstream: Upstream::new(Provider::Message2Give, http),
            base_url,
            organisation,
            token,
            mfa,
        }
    }

    /// `GET /organisations/{org}/stats/chat/{web|sms}` for one month.
    pub async fn chat_stats(&self, key: &ChatKey) -> Result<ChatStats, UpstreamError> {
        let path = format!("stats/chat/{}", key.chat.slug());
        let body: ChatBody = self
            .upstream
            .json("stats/chat", self.get(&path, &key.month))
            .await?;
        Ok(body.0)
    }

    /// `GET /organisations/{org}/usage/sms/console` for one month.
    pub async fn sms_usage(&self, month: &MonthKey) -> Result<SmsUsage, UpstreamError> {
        let body: SmsBody = self
            .upstream
            .json("usage/sms/console", self.get("usage/sms/console", month))
            .await?;
        Ok(body.0)
    }

    fn get(&self, path: &str, month: &MonthKey) -> reqwest::RequestBuilder {
        let request = self
            .upstream
            .http()
            .get(format!(
                "{}/organisations/{}/{path}",
                self.base_url, self.organisation
            ))
            .header(TOKEN_HEADER, self.token.expose())
            .query(&[
                ("timezone_offset", month.offset_minutes.to_string()),
                ("month", month.month_param()),
            ]);
        match &self.mfa {
            Some(mfa) => request.header(MFA_HEADER, mfa.expose()),
            None => request,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types. The bodies are parsed strictly (the doc examples' trailing commas are not JSON),
// and the checks serde cannot express (`status`, day keys) run inside deserialisation via
// `try_from`, so that they fail inside `Upstream::json` as UPSTREAM_INVALID and are recorded in
// the account's health like any other malformed body.
// ---------------------------------------------------------------------------------------------

/// A parsed and checked chat statistics body.
#[derive(Deserialize)]
#[serde(try_from = "WireChatBody")]
struct ChatBody(ChatStats);

#[derive(Deserialize)]
struct WireChatBody {
    status: String,
    /// Optional so that a non-"OK" status is reported as such, not as a missing field.
    stats: Option<WireStats>,
}

#[derive(Deserialize)]
struct WireStats {
    #[serde(default)]
    users: BTreeMap<String, WireUser>,
    #[serde(default)]
    ccts: BTreeMap<String, WireCct>,
}

#[derive(Deserialize)]
struct WireCct {
    #[serde(default)]
    users: BTreeMap<String, WireUser>,
}

#[derive(Deserialize)]
struct WireUser {
    #[serde(default)]
    response: BTreeMap<String, WireAverage>,
    #[serde(default)]
    wait: BTreeMap<String, WireAverage>,
    #[serde(default)]
    sessions: BTreeMap<String, WireSessions>,
}

#[derive(Deserialize)]
struct WireAverage {
    average: Option<f64>,
}

#[derive(Deserialize)]
struct WireSessions {
    average: Option<f64>,
    count: Option<f64>,
}

impl TryFrom<WireChatBody> for ChatBody {
    type Error = String;

    fn try_from(wire: WireChatBody) -> Result<Self, Self::Error> {
        check_status(&wire.status)?;
        let stats = wire
            .stats
            .ok_or("the body has status \"OK\" but no `stats` object")?;
        let users = user_map(stats.users)?;
        let ccts = stats
            .ccts
            .into_iter()
            .map(|(id, cct)| Ok((id, user_map(cct.users)?)))
            .collect::<Result<_, String>>()?;
        Ok(ChatBody(ChatStats { users, ccts }))
    }
}

fn user_map(users: BTreeMap<String, WireUser>) -> Result<BTreeMap<String, Vec<UserDay>>, String> {
    users
        .into_iter()
        .map(|(id, user)| Ok((id, user_days(user)?)))
        .collect()
}

/// Merges a user's three day maps into one list, oldest first.
fn user_days(user: WireUser) -> Result<Vec<UserDay>, String> {
    let mut days: BTreeMap<DateTime<Utc>, UserDay> = BTreeMap::new();
    for (key, entry) in &user.response {
        day_entry(&mut days, key, UserDay::empty)?.response = entry.average;
    }
    for (key, entry) in &user.wait {
        day_entry(&mut days, key, UserDay::empty)?.wait = entry.average;
    }
    for (key, entry) in &user.sessions {
        let day = day_entry(&mut days, key, UserDay::empty)?;
        day.session_average = entry.average;
        day.sessions = entry.count;
    }
    Ok(days.into_values().collect())
}

/// The day of `key` in `days`, created by `empty(start)` on first sight. Keys are merged by
/// instant, not by spelling, so two spellings of one day cannot make two days.
fn day_entry<'a, D>(
    days: &'a mut BTreeMap<DateTime<Utc>, D>,
    key: &str,
    empty: impl FnOnce(DateTime<Utc>) -> D,
) -> Result<&'a mut D, String> {
    let start = parse_day(key)?;
    Ok(days.entry(start).or_insert_with(|| empty(start)))
}

/// A parsed and checked SMS usage body.
#[derive(Deserialize)]
#[serde(try_from = "WireSmsBody")]
struct SmsBody(SmsUsage);

#[derive(Deserialize)]
struct WireSmsBody {
    status: String,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    surveys: BTreeMap<String, WireSurvey>,
}

#[derive(Deserialize)]
struct WireSurvey {
    #[serde(default)]
    messages: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    units: BTreeMap<String, Option<f64>>,
}

impl TryFrom<WireSmsBody> for SmsBody {
    type Error = String;

    fn try_from(wire: WireSmsBody) -> Result<Self, Self::Error> {
        check_status(&wire.status)?;
        let usage = wire
            .usage
            .ok_or("the body has status \"OK\" but no `usage` object")?;
        let surveys = usage
            .surveys
            .into_iter()
            .map(|(id, survey)| Ok((id, survey_days(survey)?)))
            .collect::<Result<_, String>>()?;
        Ok(SmsBody(SmsUsage { surveys }))
    }
}

/// Merges a survey's two day maps into one list, oldest first. The upstream lists every day
/// of the month with explicit zeros, so a value missing from one map (or `null`) counts 0.
fn survey_days(survey: WireSurvey) -> Result<Vec<SurveyDay>, String> {
    let mut days: BTreeMap<DateTime<Utc>, SurveyDay> = BTreeMap::new();
    let empty = |start: DateTime<Utc>| SurveyDay {
        start,
        end: start + DAY,
        messages: 0.0,
        units: 0.0,
    };
    for (key, messages) in &survey.messages {
        day_entry(&mut days, key, empty)?.messages = messages.unwrap_or(0.0);
    }
    for (key, units) in &survey.units {
        day_entry(&mut days, key, empty)?.units = units.unwrap_or(0.0);
    }
    Ok(days.into_values().collect())
}

/// A 200 answer whose `status` is not "OK" carries no statistics we can trust. The value is
/// not echoed: error messages never repeat upstream content.
fn check_status(status: &str) -> Result<(), String> {
    if status == "OK" {
        Ok(())
    } else {
        Err("the body's `status` is not \"OK\"".to_owned())
    }
}

/// A day key: the local day start as an RFC 3339 instant (`2021-06-04T14:00:00.000Z`).
fn parse_day(key: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(key)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            "a day key is not an RFC 3339 instant (expected e.g. 2021-06-04T14:00:00.000Z)"
                .to_owned()
        })
}

// ---------------------------------------------------------------------------------------------
// Sample builders: pure functions from fetched months to engine samples.
// ---------------------------------------------------------------------------------------------

/// Whose statistics a series covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    /// Every user of the organisation (`stats.users`).
    AllUsers,
    /// One user (`stats.users.{id}`).
    User(&'a str),
    /// Every user of one cct (operator group), from that group's own tree (`stats.ccts.{id}`).
    Cct(&'a str),
}

/// The per-user averages a day carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AverageMetric {
    /// Average first-response time (`response.average`), seconds.
    Response,
    /// Average wait time (`wait.average`), seconds.
    Wait,
    /// Average session duration (`sessions.average`), seconds.
    SessionDuration,
}

impl AverageMetric {
    fn of(self, day: &UserDay) -> Option<f64> {
        match self {
            AverageMetric::Response => day.response,
            AverageMetric::Wait => day.wait,
            AverageMetric::SessionDuration => day.session_average,
        }
    }
}

/// Every day of every user in `scope`, over all the given answers.
fn scoped_days<'s>(
    stats: &'s [&'s ChatStats],
    scope: Scope<'s>,
) -> impl Iterator<Item = &'s UserDay> + 's {
    stats.iter().flat_map(move |stats| {
        let lists: Vec<&'s Vec<UserDay>> = match scope {
            Scope::AllUsers => stats.users.values().collect(),
            Scope::User(id) => stats.users.get(id).into_iter().collect(),
            Scope::Cct(id) => stats
                .ccts
                .get(id)
                .into_iter()
                .flat_map(|members| members.values())
                .collect(),
        };
        lists.into_iter().flatten()
    })
}

/// Session counts per day, summed over the scope's users (SUM). `stats` may mix months and
/// chat types (web + sms): days with the same span add up. A day where no user in scope has
/// a count has no sample.
pub fn session_samples(stats: &[&ChatStats], scope: Scope) -> Vec<Sample> {
    let mut per_day: BTreeMap<(DateTime<Utc>, DateTime<Utc>), f64> = BTreeMap::new();
    for day in scoped_days(stats, scope) {
        if let Some(count) = day.sessions {
            *per_day.entry((day.start, day.end)).or_default() += count;
        }
    }
    per_day
        .into_iter()
        .map(|((start, end), value)| Sample {
            start,
            end,
            value,
            weight: None,
        })
        .collect()
}

/// One day's mean of per-user averages.
struct DayMean {
    weighted_sum: f64,
    count_sum: f64,
    plain_sum: f64,
    n: usize,
    /// Whether every contributing user-day had a session count.
    all_counted: bool,
}

impl DayMean {
    fn new() -> Self {
        DayMean {
            weighted_sum: 0.0,
            count_sum: 0.0,
            plain_sum: 0.0,
            n: 0,
            all_counted: true,
        }
    }

    fn add(&mut self, average: f64, count: Option<f64>) {
        self.plain_sum += average;
        self.n += 1;
        match count.filter(|c| c.is_finite() && *c >= 0.0) {
            Some(count) => {
                self.weighted_sum += average * count;
                self.count_sum += count;
            }
            None => self.all_counted = false,
        }
    }

    /// (value, weight). Weighted by session counts when every user-day has one and they are
    /// not all zero; otherwise a plain mean without a weight, so the engine does not weigh it
    /// as if it stood for zero sessions (it would drop the value).
    fn finish(&self) -> (f64, Option<f64>) {
        if self.all_counted && self.count_sum > 0.0 {
            (self.weighted_sum / self.count_sum, Some(self.count_sum))
        } else {
            (self.plain_sum / self.n as f64, None)
        }
    }
}

/// Per day, the mean over the scope's users of `metric`, each user-day weighted by its
/// session count (a plain mean when some user-day has no count): value = that mean,
/// weight = `Some(total count)` when every count is known, else `None`. Null averages are
/// skipped; a day where every average in scope is null has no sample.
pub fn average_samples(stats: &[&ChatStats], scope: Scope, metric: AverageMetric) -> Vec<Sample> {
    let mut per_day: BTreeMap<(DateTime<Utc>, DateTime<Utc>), DayMean> = BTreeMap::new();
    for day in scoped_days(stats, scope) {
        if let Some(average) = metric.of(day).filter(|a| a.is_finite()) {
            per_day
                .entry((day.start, day.end))
                .or_insert_with(DayMean::new)
                .add(average, day.sessions);
        }
    }
    per_day
        .into_iter()
        .map(|((start, end), mean)| {
            let (value, weight) = mean.finish();
            Sample {
                start,
                end,
                value,
                weight,
            }
        })
        .collect()
}

/// SMS messages (or billing units when `units`) per day, summed over every survey
/// (`survey = None`) or of one survey. Days with the same span add up across answers.
pub fn sms_samples(usage: &[&SmsUsage], survey: Option<&str>, units: bool) -> Vec<Sample> {
    let mut per_day: BTreeMap<(DateTime<Utc>, DateTime<Utc>), f64> = BTreeMap::new();
    for usage in usage {
        let days = usage
            .surveys
            .iter()
            .filter(|(id, _)| survey.is_none_or(|wanted| wanted == id.as_str()))
            .flat_map(|(_, days)| days);
        for day in days {
            let value = if units { day.units } else { day.messages };
            *per_day.entry((day.start, day.end)).or_default() += value;
        }
    }
    per_day
        .into_iter()
        .map(|((start, end), value)| Sample {
            start,
            end,
            value,
            weight: None,
        })
        .collect()
}

/// Every user id seen, in `users` or in any cct.
pub fn users(stats: &[&ChatStats]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for stats in stats {
        ids.extend(stats.users.keys().cloned());
        for members in stats.ccts.values() {
            ids.extend(members.keys().cloned());
        }
    }
    ids
}

/// Cct (operator group) id → the ids of its member users, over all the given answers.
pub fn groups(stats: &[&ChatStats]) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for stats in stats {
        for (cct, members) in &stats.ccts {
            groups
                .entry(cct.clone())
                .or_default()
                .extend(members.keys().cloned());
        }
    }
    groups
}

/// Every survey id seen.
pub fn surveys(usage: &[&SmsUsage]) -> BTreeSet<String> {
    usage
        .iter()
        .flat_map(|usage| usage.surveys.keys().cloned())
        .collect()
}

/// Its weight in the chunk cache's byte budget.
impl crate::fetch::Weigh for ChatStats {
    fn approx_bytes(&self) -> usize {
        ChatStats::approx_bytes(self)
    }
}

/// Its weight in the chunk cache's byte budget.
impl crate::fetch::Weigh for SmsUsage {
    fn approx_bytes(&self) -> usize {
        SmsUsage::approx_bytes(self)
    }
}

impl Source for Message2Give {
    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn feeds(&self) -> &'static [Feed] {
        FEEDS
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn channels<'a>(
        &'a self,
        _workspace: &'a Arc<Workspace>,
        _fetcher: &'a Fetcher,
    ) -> BoxFuture<'a, Result<Vec<Arc<dyn ChannelFeed>>, UpstreamError>> {
        let channels: Vec<Arc<dyn ChannelFeed>> = ChatType::ALL
            .iter()
            .map(|chat| Arc::new(*chat) as Arc<dyn ChannelFeed>)
            .collect();
        async move { Ok(channels) }.boxed()
    }
}

impl ChannelFeed for ChatType {
    fn provider(&self) -> Provider {
        Provider::Message2Give
    }

    fn key(&self) -> String {
        self.slug().to_string()
    }

    fn kind(&self) -> ChannelKind {
        match self {
            ChatType::Web => ChannelKind::Web,
            ChatType::Sms => ChannelKind::Sms,
        }
    }

    fn name(&self) -> String {
        format!("message2give {}", self.slug())
    }

    /// Sessions and the session-weighted averages of all users on this chat type; no messages.
    fn part(
        &self,
        _workspace: &Workspace,
        metric: ChannelMetric,
        _filter: &ConversationFilter,
    ) -> Option<Part> {
        let stat = match metric {
            ChannelMetric::Conversations => M2gStat::Sessions,
            ChannelMetric::ResponseTime => M2gStat::ResponseTime,
            ChannelMetric::WaitTime => M2gStat::WaitTime,
            ChannelMetric::SessionDuration => M2gStat::SessionDuration,
            ChannelMetric::Messages => return None,
        };
        Some(chat_stats(vec![*self], M2gWho::AllUsers, stat))
    }
}

/// One message2give chat-statistics month, through the fetcher.
pub async fn chat_month(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    key: ChatKey,
) -> Result<Fetched<ChatStats>, UpstreamError> {
    let account = workspace.account(Provider::Message2Give)?;
    let live = is_live(key.month.end());
    let workspace = workspace.clone();
    fetcher
        .get(account, "stats/chat", &key, live, move || async move {
            let client = configured(workspace.message2give.as_ref(), Provider::Message2Give)?;
            client.chat_stats(&key).await
        })
        .await
}

/// One message2give SMS-usage month, through the fetcher.
pub async fn sms_month(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    month: MonthKey,
) -> Result<Fetched<SmsUsage>, UpstreamError> {
    let account = workspace.account(Provider::Message2Give)?;
    let live = is_live(month.end());
    let workspace = workspace.clone();
    fetcher
        .get(
            account,
            "usage/sms/console",
            &month,
            live,
            move || async move {
                let client = configured(workspace.message2give.as_ref(), Provider::Message2Give)?;
                client.sms_usage(&month).await
            },
        )
        .await
}

/// message2give's contribution to a chat-statistics series: `stat` of `who` over the chat
/// types `chats`, from the months covering `window`.
pub(crate) async fn contribute_chat(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
    chats: &[ChatType],
    who: &M2gWho,
    stat: M2gStat,
) -> Result<Contribution, UpstreamError> {
    let months = plan(window);
    let tiled = months_tile_window(&months, window);
    let keys: Vec<ChatKey> = months
        .into_iter()
        .flat_map(|month| chats.iter().map(move |chat| ChatKey { chat: *chat, month }))
        .collect();
    let pages = try_join_all(
        keys.into_iter()
            .map(|key| chat_month(workspace, fetcher, key)),
    )
    .await?;
    let stats: Vec<&ChatStats> = pages.iter().map(|page| page.value.as_ref()).collect();
    let scope = match who {
        M2gWho::AllUsers => Scope::AllUsers,
        M2gWho::User(user) => Scope::User(user),
        M2gWho::Group(group) => Scope::Cct(group),
    };
    let samples = match stat {
        M2gStat::Sessions => session_samples(&stats, scope),
        M2gStat::ResponseTime => average_samples(&stats, scope, AverageMetric::Response),
        M2gStat::WaitTime => average_samples(&stats, scope, AverageMetric::Wait),
        M2gStat::SessionDuration => average_samples(&stats, scope, AverageMetric::SessionDuration),
    };
    Ok(Contribution::from_pages(&pages, |_| Vec::new())
        .with_samples(samples)
        .inexact_if(!tiled))
}

/// message2give's contribution to an SMS series: messages (or `units`) of all surveys or of
/// `survey`, from the months covering `window`.
pub(crate) async fn contribute_sms(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
    survey: Option<&str>,
    units: bool,
) -> Result<Contribution, UpstreamError> {
    let months = plan(window);
    let tiled = months_tile_window(&months, window);
    let pages = try_join_all(
        months
            .into_iter()
            .map(|month| sms_month(workspace, fetcher, month)),
    )
    .await?;
    let usage: Vec<&SmsUsage> = pages.iter().map(|page| page.value.as_ref()).collect();
    let samples = sms_samples(&usage, survey, units);
    Ok(Contribution::from_pages(&pages, |_| Vec::new())
        .with_samples(samples)
        .inexact_if(!tiled))
}

/// Whose message2give chat statistics a series covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum M2gWho {
    AllUsers,
    User(String),
    /// The members of one operator group (cct).
    Group(String),
}

/// Which message2give chat statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum M2gStat {
    /// Session counts (SUM).
    Sessions,
    /// Response time averages, weighted by sessions.
    ResponseTime,
    /// Wait time averages, weighted by sessions.
    WaitTime,
    /// Session duration averages, weighted by sessions.
    SessionDuration,
}

/// message2give's part of a chat series: `stat` of `who` over the chat types `chats`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ChatPart {
    pub chats: Vec<ChatType>,
    pub who: M2gWho,
    pub stat: M2gStat,
}

/// The part of a series that reads `stat` of `who` from the chat statistics of `chats`.
pub fn chat_stats(chats: Vec<ChatType>, who: M2gWho, stat: M2gStat) -> Part {
    Part::new(ChatPart { chats, who, stat })
}

impl Contributes for ChatPart {
    fn provider(&self) -> Provider {
        Provider::Message2Give
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn key_text(&self) -> String {
        key_text("message2give.chat", self)
    }

    fn contribute<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
        window: &'a Window,
        _span: &'a Window,
        _total_only: bool,
    ) -> BoxFuture<'a, Result<Contribution, UpstreamError>> {
        contribute_chat(
            workspace,
            fetcher,
            window,
            &self.chats,
            &self.who,
            self.stat,
        )
        .boxed()
    }
}

/// message2give's part of an SMS series: messages (or units) of all surveys or one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SmsPart {
    pub survey: Option<String>,
    pub units: bool,
}

/// The part of a series that reads SMS usage: messages, or `units`, of `survey` (None: all).
pub fn sms_usage(survey: Option<String>, units: bool) -> Part {
    Part::new(SmsPart { survey, units })
}

impl Contributes for SmsPart {
    fn provider(&self) -> Provider {
        Provider::Message2Give
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn key_text(&self) -> String {
        key_text("message2give.sms", self)
    }

    fn contribute<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
        window: &'a Window,
        _span: &'a Window,
        _total_only: bool,
    ) -> BoxFuture<'a, Result<Contribution, UpstreamError>> {
        contribute_sms(
            workspace,
            fetcher,
            window,
            self.survey.as_deref(),
            self.units,
        )
        .boxed()
    }
}

/// True when the message2give months cover `window` end to end with no gap or overlap. Each
/// month is fetched at the offset in force at its local start, so where the zone's offset
/// changes between two months their days leave an hour uncovered or covered twice at the
/// boundary — each day may still fit its bucket, so the engine alone would not notice.
fn months_tile_window(months: &[MonthKey], window: &Window) -> bool {
    let (Some(first), Some(last)) = (months.first(), months.last()) else {
        return true;
    };
    first.start() <= window.from()
        && last.end() >= window.to()
        && months
            .windows(2)
            .all(|pair| pair[0].end() == pair[1].start())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UpstreamErrorKind;
    use crate::sandbox::accounts::{Account, ACME, GLOBEX};
    use crate::sandbox::faults::FaultSpec;
    use crate::sandbox::message2give::{survey_day, user_day, LocalMonth};
    use crate::sandbox::{self, Sandbox, SandboxOptions};
    use crate::series::Zone;
    use chrono::{NaiveDateTime, TimeZone};

    fn zone(name: &str) -> Zone {
        Zone::parse(name).expect("valid zone")
    }

    fn local(y: i32, m: u32, d: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .expect("valid date")
    }

    /// A DAY window from local midnight of `from` to local midnight of `to` in `zone`.
    fn window(zone: Zone, from: (i32, u32, u32), to: (i32, u32, u32)) -> Window {
        let at = |(y, m, d)| zone.instant_of(local(y, m, d));
        Window::new(at(from), at(to), Granularity::Day, zone).expect("valid window")
    }

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid date")
    }

    async fn sandbox() -> Sandbox {
        sandbox::start(
            "127.0.0.1:0".parse().expect("valid address"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts")
    }

    fn base_url(sandbox: &Sandbox) -> String {
        format!(
            "{}{}",
            sandbox.base_url(),
            sandbox::Provider::Message2give.prefix()
        )
    }

    /// A client with the account's own token and MFA token.
    fn client(sandbox: &Sandbox, account: &Account) -> Message2Give {
        Message2Give::new(
            reqwest::Client::new(),
            base_url(sandbox),
            "self".to_owned(),
            Secret::new(account.message2give.token),
            account.message2give.mfa.map(Secret::new),
        )
    }

    fn truth_month(key: &MonthKey) -> LocalMonth {
        LocalMonth::new(key.year, key.month, key.offset_minutes).expect("a planned month")
    }

    fn key(year: i32, month: u32, offset_minutes: i32) -> MonthKey {
        MonthKey {
            year,
            month,
            offset_minutes,
        }
    }

    fn user_day_at(start: DateTime<Utc>, avg: Option<f64>, count: Option<f64>) -> UserDay {
        UserDay {
            response: avg,
            sessions: count,
            ..UserDay::empty(start)
        }
    }

    fn assert_rejected(error: &UpstreamError, expected_status: u16) {
        assert_eq!(error.code(), "UPSTREAM_REJECTED", "{error:?}");
        assert!(
            matches!(error.kind, UpstreamErrorKind::Rejected { status, .. } if status == expected_status),
            "{error:?}"
        );
    }

    // --- planning ----------------------------------------------------------------------------

    #[test]
    fn sydney_months_across_the_end_of_dst_use_each_months_own_offset() {
        let sydney = zone("Australia/Sydney");
        let keys = plan(&window(sydney, (2024, 4, 3), (2024, 5, 10)));
        assert_eq!(keys, vec![key(2024, 4, -660), key(2024, 5, -600)]);
        for key in &keys {
            // The offset is the zone's own at the month's local start.
            let start = sydney.instant_of(local(key.year, key.month, 1));
            assert_eq!(key.start(), start);
            assert_eq!(
                -key.offset_minutes * 60,
                sydney.offset_at(start).local_minus_utc()
            );
        }
        // April changes offset on the 7th but is still one call, at the offset of the 1st.
        assert_eq!(keys[0].month_param(), "2024-03-31T13:00:00.000Z");
        assert_eq!(keys[1].month_param(), "2024-04-30T14:00:00.000Z");
    }

    #[test]
    fn a_window_over_three_months_plans_three_consecutive_months() {
        let keys = plan(&window(zone("Europe/Madrid"), (2024, 1, 15), (2024, 3, 10)));
        assert_eq!(
            keys,
            vec![key(2024, 1, -60), key(2024, 2, -60), key(2024, 3, -60)]
        );
    }

    #[test]
    fn a_window_ending_at_a_month_start_does_not_plan_the_next_month() {
        let keys = plan(&window(
            zone("America/New_York"),
            (2024, 11, 1),
            (2024, 12, 1),
        ));
        // New York is still on EDT (UTC-4) at local midnight on November 1st (DST ends on
        // the 3rd), and the window's exclusive end, December 1st, plans no December call.
        assert_eq!(keys, vec![key(2024, 11, 240)]);
    }

    #[test]
    fn a_year_window_across_new_year_plans_every_month_in_order() {
        let keys = plan(&window(Zone::utc(), (2023, 12, 1), (2025, 1, 1)));
        assert_eq!(keys.len(), 13);
        assert_eq!(keys[0], key(2023, 12, 0));
        assert_eq!(keys[12], key(2024, 12, 0));
        assert!(keys.windows(2).all(|w| w[0].end() == w[1].start()));
    }

    #[test]
    fn month_param_is_local_midnight_on_the_first_in_the_upstreams_format() {
        let june = key(2021, 6, -600);
        assert_eq!(june.month_param(), "2021-05-31T14:00:00.000Z");
        assert_eq!(june.start(), utc(2021, 5, 31, 14));
        assert_eq!(june.end(), utc(2021, 6, 30, 14));
        // West of UTC the offset is positive and the month starts later in UTC.
        assert_eq!(key(2024, 12, 300).month_param(), "2024-12-01T05:00:00.000Z");
        assert_eq!(key(2024, 12, 300).end(), utc(2025, 1, 1, 5));
        // Half-hour offsets keep their minutes.
        assert_eq!(key(2024, 2, -330).month_param(), "2024-01-31T18:30:00.000Z");
    }

    #[test]
    fn an_invalid_month_key_does_not_panic() {
        let bad = key(2024, 13, 0);
        assert_eq!(bad.start(), DateTime::<Utc>::MIN_UTC);
        assert_eq!(bad.end(), DateTime::<Utc>::MIN_UTC);
        assert!(!bad.month_param().is_empty());
    }

    // --- parsing -----------------------------------------------------------------------------

    #[test]
    fn day_maps_sent_newest_first_with_gaps_become_oldest_first_merged_days() {
        let body = r#"{"stats": {"users": {"u1": {
            "response": {"2021-06-04T14:00:00.000Z": {"average": 72},
                         "2021-06-03T14:00:00.000Z": {"average": null},
                         "2021-06-01T14:00:00.000Z": {"average": 30}},
            "wait": {"2021-06-04T14:00:00.000Z": {"average": 19}},
            "sessions": {"2021-06-04T14:00:00.000Z": {"average": 95, "count": 1},
                         "2021-06-03T14:00:00.000Z": {"average": null, "count": 0}}
        }}, "ccts": {"c1": {"users": {"u2": {"response": {}, "wait": {}, "sessions": {
            "2021-06-02T14:00:00.000Z": {"average": 10.5, "count": 2}}}}}}}, "status": "OK"}"#;
        let stats = serde_json::from_str::<ChatBody>(body)
            .expect("valid body")
            .0;
        let days = &stats.users["u1"];
        let starts: Vec<_> = days.iter().map(|d| d.start).collect();
        assert_eq!(
            starts,
            vec![
                utc(2021, 6, 1, 14),
                utc(2021, 6, 3, 14),
                utc(2021, 6, 4, 14)
            ]
        );
        assert!(days.iter().all(|d| d.end - d.start == DAY));
        assert_eq!(days[0].response, Some(30.0));
        assert_eq!(days[0].sessions, None);
        assert_eq!(days[1].sessions, Some(0.0));
        assert_eq!(days[1].response, None);
        assert_eq!(
            days[2],
            UserDay {
                start: utc(2021, 6, 4, 14),
                end: utc(2021, 6, 5, 14),
                response: Some(72.0),
                wait: Some(19.0),
                session_average: Some(95.0),
                sessions: Some(1.0),
            }
        );
        assert_eq!(stats.ccts["c1"]["u2"][0].session_average, Some(10.5));
        assert_eq!(stats.ccts["c1"]["u2"][0].sessions, Some(2.0));
    }

    #[test]
    fn the_doc_examples_trailing_commas_are_refused() {
        let body = r#"{"stats": {"users": {}, "ccts": {"c1": {"users": {},},}}, "status": "OK"}"#;
        assert!(serde_json::from_str::<ChatBody>(body).is_err());
        let body =
            r#"{"usage": {"surveys": {"s": {"messages": {}, "units": {}},}}, "status": "OK"}"#;
        assert!(serde_json::from_str::<SmsBody>(body).is_err());
    }

    #[test]
    fn a_status_other_than_ok_is_refused_even_with_statistics() {
        let body = r#"{"stats": {"users": {}, "ccts": {}}, "status": "ERROR"}"#;
        let error = serde_json::from_str::<ChatBody>(body)
            .err()
            .expect("status ERROR is refused");
        assert!(error.to_string().contains("status"), "{error}");
        let body = r#"{"usage": {"surveys": {}}, "status": "PENDING"}"#;
        assert!(serde_json::from_str::<SmsBody>(body).is_err());
        let body = r#"{"status": "OK"}"#;
        assert!(serde_json::from_str::<ChatBody>(body).is_err());
    }

    #[test]
    fn a_day_key_that_is_not_an_instant_is_refused() {
        let body = r#"{"stats": {"users": {"u1": {"response": {"June 4th": {"average": 1}},
            "wait": {}, "sessions": {}}}, "ccts": {}}, "status": "OK"}"#;
        let error = serde_json::from_str::<ChatBody>(body)
            .err()
            .expect("a bad day key is refused");
        assert!(error.to_string().contains("RFC 3339"), "{error}");
    }

    #[test]
    fn sms_days_missing_from_one_map_count_zero_there() {
        let body = r#"{"usage": {"surveys": {"s1": {
            "messages": {"2021-06-04T14:00:00.000Z": 3, "2021-06-03T14:00:00.000Z": 1.0},
            "units": {"2021-06-04T14:00:00.000Z": 5, "2021-06-02T14:00:00.000Z": null}
        }}}, "status": "OK"}"#;
        let usage = serde_json::from_str::<SmsBody>(body).expect("valid body").0;
        let days: Vec<_> = usage.surveys["s1"]
            .iter()
            .map(|d| (d.start, d.messages, d.units))
            .collect();
        assert_eq!(
            days,
            vec![
                (utc(2021, 6, 2, 14), 0.0, 0.0),
                (utc(2021, 6, 3, 14), 1.0, 0.0),
                (utc(2021, 6, 4, 14), 3.0, 5.0),
            ]
        );
    }

    // --- sample builders ---------------------------------------------------------------------

    #[test]
    fn averages_are_weighted_by_each_user_days_session_count() {
        let day = utc(2024, 6, 1, 14);
        let stats = ChatStats {
            users: BTreeMap::from([
                (
                    "a".to_owned(),
                    vec![user_day_at(day, Some(10.0), Some(1.0))],
                ),
                (
                    "b".to_owned(),
                    vec![user_day_at(day, Some(40.0), Some(3.0))],
                ),
                // A null average is skipped, even with sessions.
                ("c".to_owned(), vec![user_day_at(day, None, Some(6.0))]),
            ]),
            ccts: BTreeMap::new(),
        };
        let samples = average_samples(&[&stats], Scope::AllUsers, AverageMetric::Response);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].value, (10.0 + 3.0 * 40.0) / 4.0);
        assert_eq!(samples[0].weight, Some(4.0));
        assert_eq!((samples[0].start, samples[0].end), (day, day + DAY));
        let one = average_samples(&[&stats], Scope::User("b"), AverageMetric::Response);
        assert_eq!((one[0].value, one[0].weight), (40.0, Some(3.0)));
    }

    #[test]
    fn averages_without_session_counts_are_a_plain_mean_without_weight() {
        let day = utc(2024, 6, 1, 14);
        let stats = ChatStats {
            users: BTreeMap::from([
                ("a".to_owned(), vec![user_day_at(day, Some(10.0), None)]),
                (
                    "b".to_owned(),
                    vec![user_day_at(day, Some(40.0), Some(3.0))],
                ),
                (
                    "z".to_owned(),
                    vec![user_day_at(day + DAY, Some(8.0), Some(0.0))],
                ),
            ]),
            ccts: BTreeMap::new(),
        };
        let samples = average_samples(&[&stats], Scope::AllUsers, AverageMetric::Response);
        assert_eq!(samples.len(), 2);
        assert_eq!((samples[0].value, samples[0].weight), (25.0, None));
        // Zero sessions behind an average: kept, but not as a zero weight the engine would drop.
        assert_eq!((samples[1].value, samples[1].weight), (8.0, None));
        assert!(average_samples(&[&stats], Scope::AllUsers, AverageMetric::Wait).is_empty());
    }

    #[test]
    fn sessions_of_web_and_sms_add_up_per_day_and_scopes_pick_their_users() {
        let day = utc(2024, 6, 1, 14);
        let web = ChatStats {
            users: BTreeMap::from([
                ("a".to_owned(), vec![user_day_at(day, None, Some(2.0))]),
                ("b".to_owned(), vec![user_day_at(day, None, None)]),
            ]),
            ccts: BTreeMap::from([(
                "g".to_owned(),
                BTreeMap::from([("b".to_owned(), vec![user_day_at(day, None, Some(7.0))])]),
            )]),
        };
        let sms = ChatStats {
            users: BTreeMap::from([("a".to_owned(), vec![user_day_at(day, None, Some(5.0))])]),
            ccts: BTreeMap::new(),
        };
        let all = session_samples(&[&web, &sms], Scope::AllUsers);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].value, 7.0);
        assert_eq!(session_samples(&[&web], Scope::Cct("g"))[0].value, 7.0);
        assert!(session_samples(&[&web], Scope::User("b")).is_empty());
        assert!(session_samples(&[&web], Scope::Cct("nope")).is_empty());
        assert_eq!(
            users(&[&web, &sms]),
            BTreeSet::from(["a".into(), "b".into()])
        );
        assert_eq!(groups(&[&web])["g"], BTreeSet::from(["b".to_owned()]));
        assert!(web.approx_bytes() > sms.approx_bytes());
    }

    // --- against the sandbox -----------------------------------------------------------------

    #[tokio::test]
    async fn month_chunks_from_the_sandbox_round_trip_through_their_stored_form() {
        let sandbox = sandbox().await;
        let m2g = client(&sandbox, &ACME);
        let w = window(zone("Australia/Sydney"), (2024, 4, 3), (2024, 4, 10));
        let month = plan(&w)[0];
        for chat in ChatType::ALL {
            let stats = m2g
                .chat_stats(&ChatKey { chat, month })
                .await
                .expect("chat stats");
            assert!(
                !stats.users.is_empty() && !stats.ccts.is_empty(),
                "{chat:?}"
            );
            crate::cache::assert_round_trips(&stats);
        }
        let usage = m2g.sms_usage(&month).await.expect("sms usage");
        assert!(!usage.surveys.is_empty());
        crate::cache::assert_round_trips(&usage);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_windows_session_totals_equal_the_sandbox_truth() {
        let sandbox = sandbox().await;
        let m2g = client(&sandbox, &ACME);
        let w = window(zone("Australia/Sydney"), (2024, 4, 3), (2024, 5, 10));
        let keys = plan(&w);
        let mut months = Vec::new();
        for month in &keys {
            let key = ChatKey {
                chat: ChatType::Web,
                month: *month,
            };
            months.push(m2g.chat_stats(&key).await.expect("chat stats"));
        }
        let refs: Vec<&ChatStats> = months.iter().collect();

        for (scope, cct) in [
            (Scope::AllUsers, None),
            (Scope::Cct("cct-acme-back"), Some("cct-acme-back")),
        ] {
            let members: &[&str] = match cct {
                Some(id) => {
                    let found = ACME.message2give.ccts.iter().find(|c| c.id == id);
                    found.expect("a sandbox cct").users
                }
                None => ACME.message2give.users,
            };
            let mut truth: BTreeMap<DateTime<Utc>, f64> = BTreeMap::new();
            for month in &keys {
                for start in truth_month(month).day_starts_newest_first() {
                    for user in members {
                        if let Some(day) = user_day("acme", "web", cct, user, start) {
                            *truth.entry(start).or_default() += day.sessions_count as f64;
                        }
                    }
                }
            }
            let samples = session_samples(&refs, scope);
            let got: BTreeMap<DateTime<Utc>, f64> =
                samples.iter().map(|s| (s.start, s.value)).collect();
            assert_eq!(got, truth, "{scope:?}");
            assert!(samples.iter().all(|s| s.end - s.start == DAY));

            let in_window = |t: &DateTime<Utc>| w.from() <= *t && *t < w.to();
            let total: f64 = got
                .iter()
                .filter(|(t, _)| in_window(t))
                .map(|(_, v)| v)
                .sum();
            let expected: f64 = truth
                .iter()
                .filter(|(t, _)| in_window(t))
                .map(|(_, v)| v)
                .sum();
            assert_eq!(total, expected);
            assert!(total > 0.0, "a past window has sessions");
        }

        let calls = sandbox.state().calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].path, "/organisations/self/stats/chat/web");
        assert_eq!(
            calls[0].params,
            vec![
                ("timezone_offset".to_owned(), "-660".to_owned()),
                ("month".to_owned(), "2024-03-31T13:00:00.000Z".to_owned()),
            ]
        );
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn response_averages_equal_the_session_weighted_sandbox_truth() {
        let sandbox = sandbox().await;
        let m2g = client(&sandbox, &GLOBEX);
        let month = key(2024, 3, -60);
        let key = ChatKey {
            chat: ChatType::Sms,
            month,
        };
        let stats = m2g.chat_stats(&key).await.expect("chat stats");
        let samples = average_samples(&[&stats], Scope::AllUsers, AverageMetric::Response);
        let mut checked = 0;
        for start in truth_month(&month).day_starts_newest_first() {
            let days: Vec<_> = GLOBEX
                .message2give
                .users
                .iter()
                .filter_map(|user| user_day("globex", "sms", None, user, start))
                .filter_map(|day| Some((day.response?, day.sessions_count as f64)))
                .collect();
            let sample = samples.iter().find(|s| s.start == start);
            if days.is_empty() {
                assert!(sample.is_none(), "{start}");
                continue;
            }
            let count: f64 = days.iter().map(|(_, c)| c).sum();
            let mean = days.iter().map(|(a, c)| a * c).sum::<f64>() / count;
            let sample = sample.expect("a day with averages has a sample");
            assert!((sample.value - mean).abs() < 1e-9, "{start}");
            assert_eq!(sample.weight, Some(count));
            checked += 1;
        }
        assert!(checked > 20, "only {checked} days had averages");
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn sms_usage_equals_the_sandbox_truth_per_survey_and_summed() {
        let sandbox = sandbox().await;
        let m2g = client(&sandbox, &ACME);
        let month = key(2024, 6, -600);
        let usage = m2g.sms_usage(&month).await.expect("sms usage");
        assert_eq!(
            surveys(&[&usage]),
            ACME.message2give
                .surveys
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        let days = truth_month(&month).day_starts_newest_first().count();
        let one = sms_samples(&[&usage], Some("sv-acme-promo"), true);
        let all = sms_samples(&[&usage], None, false);
        assert_eq!((one.len(), all.len()), (days, days));
        for (one, all) in one.iter().zip(&all) {
            let (_, units) = survey_day("acme", "sv-acme-promo", one.start);
            assert_eq!(one.value, units as f64);
            let messages: u64 = ACME
                .message2give
                .surveys
                .iter()
                .map(|s| survey_day("acme", s, all.start).0)
                .sum();
            assert_eq!(all.value, messages as f64);
        }
        assert!(usage.approx_bytes() > days * size_of::<SurveyDay>());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn users_and_groups_are_those_of_the_organisation() {
        let sandbox = sandbox().await;
        let m2g = client(&sandbox, &ACME);
        let key = ChatKey {
            chat: ChatType::Web,
            month: key(2024, 6, -600),
        };
        let stats = m2g.chat_stats(&key).await.expect("chat stats");
        let expected: BTreeSet<String> = ACME
            .message2give
            .users
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(users(&[&stats]), expected);
        let groups = groups(&[&stats]);
        for cct in ACME.message2give.ccts {
            let members: BTreeSet<String> = cct.users.iter().map(|u| u.to_string()).collect();
            assert_eq!(groups.get(cct.id), Some(&members), "{}", cct.id);
        }
        assert!(stats.approx_bytes() > 3 * 30 * size_of::<UserDay>() / 2);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn the_mfa_token_is_sent_and_required_where_the_organisation_enforces_it() {
        let sandbox = sandbox().await;
        let month = key(2024, 6, -600);
        let with_mfa = client(&sandbox, &ACME);
        assert!(with_mfa.sms_usage(&month).await.is_ok());
        let without_mfa = Message2Give::new(
            reqwest::Client::new(),
            base_url(&sandbox),
            "self".to_owned(),
            Secret::new(ACME.message2give.token),
            None,
        );
        let error = without_mfa
            .sms_usage(&month)
            .await
            .expect_err("MFA is enforced");
        assert_rejected(&error, 401);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_refused_token_is_upstream_rejected_and_marks_the_account_unhealthy() {
        let sandbox = sandbox().await;
        let m2g = Message2Give::new(
            reqwest::Client::new(),
            base_url(&sandbox),
            "self".to_owned(),
            Secret::new("not-a-token"),
            None,
        );
        let key = ChatKey {
            chat: ChatType::Web,
            month: key(2024, 6, -600),
        };
        let error = m2g.chat_stats(&key).await.expect_err("401");
        assert_rejected(&error, 401);
        assert!(
            !error.message().contains("not-a-token"),
            "{}",
            error.message()
        );
        assert!(!m2g.upstream().health().healthy());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn another_organisations_id_is_upstream_rejected() {
        let sandbox = sandbox().await;
        let m2g = Message2Give::new(
            reqwest::Client::new(),
            base_url(&sandbox),
            "org-acme".to_owned(),
            Secret::new(GLOBEX.message2give.token),
            None,
        );
        let error = m2g.sms_usage(&key(2024, 6, -600)).await.expect_err("404");
        assert_rejected(&error, 404);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_malformed_body_is_upstream_invalid_and_recorded_in_health() {
        let sandbox = sandbox().await;
        sandbox.state().faults().set(FaultSpec {
            provider: "message2give".to_owned(),
            latency_ms: None,
            status: None,
            error_rate: None,
            malformed: true,
            retry_after_secs: None,
            times: Some(1),
        });
        let m2g = client(&sandbox, &GLOBEX);
        let key = ChatKey {
            chat: ChatType::Sms,
            month: key(2024, 6, -120),
        };
        let error = m2g.chat_stats(&key).await.expect_err("malformed body");
        assert_eq!(error.code(), "UPSTREAM_INVALID", "{error:?}");
        assert!(!m2g.upstream().health().healthy());
        // The fault was for one request only: the next call reads the real body.
        assert!(m2g.chat_stats(&key).await.is_ok());
        assert!(m2g.upstream().health().healthy());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn an_invalid_month_key_is_upstream_rejected_not_a_panic() {
        let sandbox = sandbox().await;
        let m2g = client(&sandbox, &GLOBEX);
        let error = m2g
            .sms_usage(&key(2024, 13, 0))
            .await
            .expect_err("month 13");
        assert_rejected(&error, 400);
        sandbox.shutdown().await;
    }
}
