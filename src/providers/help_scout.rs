//! Help Scout (SPEC §1.5, seed 004): conversation volumes by channel.
//!
//! One report call returns chat, email and phone together, by `viewBy` = day, week or month,
//! each with a legal range: `day` only for ranges ≤ 60 days, `week` ≤ 1 year, `month` ≥ 61 days.
//! [`plan`] picks the coarsest view whose buckets nest in the requested granularity and splits
//! the range into legal calls. Assumption (README): report buckets are UTC calendar buckets
//! (weeks start Monday), so local-zone buckets other than UTC are approximations.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use crate::catalogue::{key_text, Contributes, Contribution, Part};
use crate::config::Secret;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::fetch::SeriesKey;
use crate::fetch::{erase_blocks, BlockSource, FnBlockSource};
use crate::fetch::{Fetched, Fetcher};
use crate::providers::is_live;
use crate::providers::upstream::Upstream;
use crate::providers::{
    ChannelFeed, ChannelKind, ChannelMetric, ConversationFilter, Feed, Provider, Source,
};
use crate::series::{Granularity, Sample, Window, Zone};
use crate::workspace::{configured, Workspace};
use futures::future::try_join_all;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

/// The longest range `viewBy=day` accepts.
const MAX_DAY_RANGE_DAYS: i64 = 60;
/// The longest range we send with `viewBy=week`: 52 whole weeks, inside "≤ 1 year" however a
/// year is counted.
const MAX_WEEK_RANGE_DAYS: i64 = 364;
/// The shortest range `viewBy=month` accepts.
const MIN_MONTH_RANGE_DAYS: i64 = 61;
/// Refresh an OAuth token this long before it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// How the client authenticates.
pub enum HelpScoutCredentials {
    /// A static OAuth access token.
    AccessToken(Secret),
    /// OAuth2 client credentials; tokens are fetched from `POST /v2/oauth2/token`.
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
}

/// The report resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ViewBy {
    Day,
    Week,
    Month,
}

impl ViewBy {
    fn as_str(self) -> &'static str {
        match self {
            ViewBy::Day => "day",
            ViewBy::Week => "week",
            ViewBy::Month => "month",
        }
    }

    fn granularity(self) -> Granularity {
        match self {
            ViewBy::Day => Granularity::Day,
            ViewBy::Week => Granularity::Week,
            ViewBy::Month => Granularity::Month,
        }
    }
}

/// The three channels of a volume report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HsChannel {
    Chat,
    Email,
    Phone,
}

impl HsChannel {
    pub const ALL: [HsChannel; 3] = [HsChannel::Chat, HsChannel::Email, HsChannel::Phone];

    pub fn slug(self) -> &'static str {
        match self {
            HsChannel::Chat => "chat",
            HsChannel::Email => "email",
            HsChannel::Phone => "phone",
        }
    }
}

/// Report filters; ids are kept sorted and unique so equal filters make equal requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct VolumeFilter {
    pub mailboxes: Vec<i64>,
    pub tags: Vec<i64>,
    pub folders: Vec<i64>,
}

impl VolumeFilter {
    pub fn new(mut mailboxes: Vec<i64>, mut tags: Vec<i64>, mut folders: Vec<i64>) -> Self {
        for ids in [&mut mailboxes, &mut tags, &mut folders] {
            ids.sort_unstable();
            ids.dedup();
        }
        Self {
            mailboxes,
            tags,
            folders,
        }
    }
}

/// One legal report call: `[start, end)` at `view_by`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct VolumeRequest {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub view_by: ViewBy,
    pub filter: VolumeFilter,
}

/// One bucket of a report.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VolumeRow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub chat: f64,
    pub email: f64,
    pub phone: f64,
}

impl VolumeRow {
    fn value(&self, channel: HsChannel) -> f64 {
        match channel {
            HsChannel::Chat => self.chat,
            HsChannel::Email => self.email,
            HsChannel::Phone => self.phone,
        }
    }
}

/// The finest granularity Help Scout offers.
/// The series fields this provider feeds (its rows of SPEC §2.1).
pub const FEEDS: &[Feed] = &[
    Feed {
        field: "Channel.conversations",
        from: "conversations of the chat, email or phone channel",
    },
    Feed {
        field: "DialogStats.created",
        from: "conversations of all channels",
    },
];

pub const FINEST: Granularity = Granularity::Day;

/// The legal calls that cover `window`. `window.granularity()` must be DAY or coarser.
pub fn plan(window: &Window, filter: &VolumeFilter) -> Vec<VolumeRequest> {
    let view_by = match window.granularity() {
        Granularity::Hour | Granularity::Day => ViewBy::Day,
        Granularity::Week => ViewBy::Week,
        Granularity::Month | Granularity::Year => ViewBy::Month,
    };
    let (start, end) = utc_cover(window, view_by.granularity());
    let (view_by, start, end) =
        if view_by == ViewBy::Month && (end - start).num_days() < MIN_MONTH_RANGE_DAYS {
            // Too short for `month`: days re-aggregate exactly into months.
            let (start, end) = utc_cover(window, Granularity::Day);
            (ViewBy::Day, start, end)
        } else {
            (view_by, start, end)
        };
    let max_days = match view_by {
        ViewBy::Day => Some(MAX_DAY_RANGE_DAYS),
        ViewBy::Week => Some(MAX_WEEK_RANGE_DAYS),
        ViewBy::Month => None,
    };
    let mut requests = Vec::new();
    let mut chunk_start = start;
    while chunk_start < end {
        let chunk_end = match max_days {
            Some(days) => (chunk_start + chrono::Duration::days(days)).min(end),
            None => end,
        };
        requests.push(VolumeRequest {
            start: chunk_start,
            end: chunk_end,
            view_by,
            filter: filter.clone(),
        });
        chunk_start = chunk_end;
    }
    requests
}

/// Days per block of Help Scout's cache grid (UTC days from the Unix epoch). Two blocks are
/// exactly the 60 days the day view allows, so two contiguous missing blocks are one call.
/// (UTC months would pair into 61 or 62 days, one more call for most pairs.)
pub const BLOCK_DAYS: i64 = 30;

/// The blocks that cover `window` when it is served from the day view (HOUR or DAY windows,
/// and MONTH or YEAR windows shorter than the month view's 61 days); None when [`plan`] picks
/// the week or month view, whose ranges stay per-range calls.
pub fn blocks_for(window: &Window) -> Option<Vec<i64>> {
    let day_view = plan(window, &VolumeFilter::default())
        .iter()
        .all(|request| request.view_by == ViewBy::Day);
    if !day_view {
        return None;
    }
    let (start, end) = utc_cover(window, Granularity::Day);
    let first = block_index(start);
    let last = block_index(end - chrono::Duration::seconds(1));
    Some((first..=last).collect())
}

fn block_index(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(86_400 * BLOCK_DAYS)
}

/// `[start, end)` of block `index`.
pub fn block_range(index: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(index * BLOCK_DAYS);
    (start, start + chrono::Duration::days(BLOCK_DAYS))
}

/// The end of block `index`.
pub fn block_end(index: i64) -> DateTime<Utc> {
    block_range(index).1
}

/// The calls for the missing blocks `indices` (ascending): contiguous runs of at most two
/// blocks, each one day-view call of at most 60 days.
pub fn plan_blocks(indices: &[i64]) -> Vec<Vec<i64>> {
    crate::fetch::contiguous_runs(indices, (MAX_DAY_RANGE_DAYS / BLOCK_DAYS) as usize)
}

/// The UTC buckets of `granularity` that cover `window`.
fn utc_cover(window: &Window, granularity: Granularity) -> (DateTime<Utc>, DateTime<Utc>) {
    let utc = Zone::utc();
    let start = granularity.floor(window.from(), utc);
    let floor_end = granularity.floor(window.to(), utc);
    let end = if floor_end == window.to() {
        floor_end
    } else {
        granularity.next(floor_end, utc)
    };
    (start, end)
}

/// Samples of the given channels (summed) from report rows.
pub fn samples(rows: &[VolumeRow], channels: &[HsChannel]) -> Vec<Sample> {
    rows.iter()
        .map(|row| Sample {
            start: row.start,
            end: row.end,
            value: channels.iter().map(|c| row.value(*c)).sum(),
            weight: None,
        })
        .collect()
}

/// A Help Scout account.
pub struct HelpScout {
    upstream: Upstream,
    base_url: String,
    credentials: HelpScoutCredentials,
    /// The OAuth token of the client-credentials flow and when to stop using it.
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct WireReport {
    current: Vec<WireRow>,
}

#[derive(Deserialize)]
struct WireRow {
    date: DateTime<Utc>,
    #[serde(default)]
    chat: f64,
    #[serde(default)]
    email: f64,
    #[serde(default)]
    phone: f64,
}

#[derive(Deserialize)]
struct WireToken {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    7200
}

impl HelpScout {
    /// `base_url` without a trailing slash, e.g. `https://api.helpscout.net`.
    pub fn new(http: reqwest::Client, base_url: String, credentials: HelpScoutCredentials) -> Self {
        Self {
            upstream: Upstream::new(Provider::HelpScout, http),
            base_url,
            credentials,
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// All rows for `window`: the planned calls run concurrently.
    pub async fn volume_for_window(
        &self,
        window: &Window,
        filter: &VolumeFilter,
    ) -> Result<Vec<VolumeRow>, UpstreamError> {
        let calls = plan(window, filter);
        let pages =
            futures::future::try_join_all(calls.iter().map(|call| self.volume(call))).await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// The day-view rows of the contiguous blocks `group` (one call), cut back into one row
    /// list per block.
    pub async fn volume_blocks(
        &self,
        filter: &VolumeFilter,
        group: &[i64],
    ) -> Result<Vec<Vec<VolumeRow>>, UpstreamError> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(Vec::new());
        };
        let request = VolumeRequest {
            start: block_range(*first).0,
            end: block_range(*last).1,
            view_by: ViewBy::Day,
            filter: filter.clone(),
        };
        let rows = self.volume(&request).await?;
        let mut blocks: Vec<Vec<VolumeRow>> = group.iter().map(|_| Vec::new()).collect();
        for row in rows {
            let index = block_index(row.start);
            if let Some(position) = group.iter().position(|block| *block == index) {
                blocks[position].push(row);
            }
        }
        Ok(blocks)
    }

    /// One report call. With client credentials, a 401 refreshes the token once and retries.
    pub async fn volume(&self, request: &VolumeRequest) -> Result<Vec<VolumeRow>, UpstreamError> {
        match self.volume_once(request).await {
            Err(UpstreamError {
                kind: UpstreamErrorKind::Rejected { status: 401, .. },
                ..
            }) if matches!(
                self.credentials,
                HelpScoutCredentials::ClientCredentials { .. }
            ) =>
            {
                *self.token.lock().await = None;
                self.volume_once(request).await
            }
            other => other,
        }
    }

    async fn volume_once(&self, request: &VolumeRequest) -> Result<Vec<VolumeRow>, UpstreamError> {
        let token = self.access_token().await?;
        let mut query: Vec<(&str, String)> = vec![
            ("start", rfc3339(request.start)),
            ("end", rfc3339(request.end)),
            ("viewBy", request.view_by.as_str().to_string()),
        ];
        for (name, ids) in [
            ("mailboxes", &request.filter.mailboxes),
            ("tags", &request.filter.tags),
            ("folders", &request.filter.folders),
        ] {
            if !ids.is_empty() {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                query.push((name, list.join(",")));
            }
        }
        let http = self
            .upstream
            .http()
            .get(format!(
                "{}/v2/reports/conversations/volume-by-channel",
                self.base_url
            ))
            .bearer_auth(token.expose())
            .query(&query);
        let report: WireReport = self.upstream.json("volume-by-channel", http).await?;
        let granularity = request.view_by.granularity();
        Ok(report
            .current
            .into_iter()
            .map(|row| WireRow::into_row(row, granularity))
            .collect())
    }

    async fn access_token(&self) -> Result<Secret, UpstreamError> {
        let (client_id, client_secret) = match &self.credentials {
            HelpScoutCredentials::AccessToken(token) => return Ok(token.clone()),
            HelpScoutCredentials::ClientCredentials {
                client_id,
                client_secret,
            } => (client_id, client_secret),
        };
        // Held across the token call on purpose: concurrent queries wait for one token fetch.
        let mut cached = self.token.lock().await;
        if let Some((token, valid_until)) = cached.as_ref() {
            if Instant::now() < *valid_until {
                return Ok(token.clone());
            }
        }
        let request = self
            .upstream
            .http()
            .post(format!("{}/v2/oauth2/token", self.base_url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", client_secret.expose()),
            ]);
        // A POST that issues a token: one attempt, never retried.
        let wire: WireToken = self.upstream.json_once("oauth2/token", request).await?;
        let lifetime = Duration::from_secs(wire.expires_in).saturating_sub(TOKEN_REFRESH_MARGIN);
        let token = Secret::new(wire.access_token);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}

impl WireRow {
    fn into_row(self, granularity: Granularity) -> VolumeRow {
        VolumeRow {
            start: self.date,
            end: granularity.next(self.date, Zone::utc()),
            chat: self.chat,
            email: self.email,
            phone: self.phone,
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The batch loader's view of the day-view endpoint for `filter`: blocks of [`BLOCK_DAYS`] UTC
/// days, missing ones merged into calls by [`plan_blocks`], each call cut back into blocks.
pub fn block_source(workspace: Arc<Workspace>, filter: VolumeFilter) -> Arc<dyn BlockSource> {
    Arc::new(FnBlockSource {
        block_end,
        plan: Box::new(plan_blocks),
        fetch: move |group: Vec<i64>| {
            let workspace = workspace.clone();
            let filter = filter.clone();
            async move {
                let client = configured(workspace.help_scout.as_ref(), Provider::HelpScout)?;
                client
                    .volume_blocks(&filter, &group)
                    .await
                    .map(erase_blocks)
            }
            .boxed()
        },
    })
}

impl Source for HelpScout {
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
        let channels: Vec<Arc<dyn ChannelFeed>> = HsChannel::ALL
            .iter()
            .map(|channel| Arc::new(*channel) as Arc<dyn ChannelFeed>)
            .collect();
        async move { Ok(channels) }.boxed()
    }
}

/// Help Scout week- or month-view reports (ranges the day view cannot serve): the legal calls
/// covering `span`, each a per-range entry, through the fetcher.
pub async fn per_range_reports(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    span: &Window,
    filter: &VolumeFilter,
) -> Result<Vec<Fetched<Vec<VolumeRow>>>, UpstreamError> {
    let account = workspace.account(Provider::HelpScout)?;
    try_join_all(plan(span, filter).into_iter().map(|request| {
        let workspace = workspace.clone();
        let live = is_live(request.end);
        async move {
            fetcher
                .get(
                    account,
                    "volume-by-channel",
                    &request.clone(),
                    live,
                    move || async move {
                        let client =
                            configured(workspace.help_scout.as_ref(), Provider::HelpScout)?;
                        client.volume(&request).await
                    },
                )
                .await
        }
    }))
    .await
}

/// Help Scout's contribution to a series: `channels` summed, filtered by `filter`, over
/// `span` — day-view blocks where the day view can serve it, else the week/month reports.
pub(crate) async fn contribute(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    span: &Window,
    channels: &[HsChannel],
    filter: &VolumeFilter,
) -> Result<Contribution, UpstreamError> {
    let Some(blocks) = blocks_for(span) else {
        let pages = per_range_reports(workspace, fetcher, span, filter).await?;
        return Ok(Contribution::from_pages(&pages, |rows| {
            samples(rows, channels)
        }));
    };
    let series = SeriesKey::new(
        workspace.account(Provider::HelpScout)?,
        "volume-by-channel",
        filter,
    );
    let source = || block_source(workspace.clone(), filter.clone());
    let pages = fetcher
        .blocks::<Vec<VolumeRow>>(&series, &blocks, source)
        .await?;
    Ok(Contribution::from_pages(&pages, |rows| {
        samples(rows, channels)
    }))
}

impl crate::providers::ChannelFeed for HsChannel {
    fn provider(&self) -> Provider {
        Provider::HelpScout
    }

    fn key(&self) -> String {
        self.slug().to_string()
    }

    fn kind(&self) -> ChannelKind {
        match self {
            HsChannel::Chat => ChannelKind::Chat,
            HsChannel::Email => ChannelKind::Email,
            HsChannel::Phone => ChannelKind::Phone,
        }
    }

    fn name(&self) -> String {
        format!("Help Scout {}", self.slug())
    }

    /// Conversations only: this channel's column of the volume report, filtered (the
    /// workspace's configured mailboxes when the query names none).
    fn part(
        &self,
        workspace: &Workspace,
        metric: ChannelMetric,
        filter: &ConversationFilter,
    ) -> Option<Part> {
        (metric == ChannelMetric::Conversations).then(|| {
            let mailboxes = filter
                .mailboxes
                .clone()
                .unwrap_or_else(|| workspace.help_scout_mailboxes.clone());
            conversations(
                vec![*self],
                VolumeFilter::new(mailboxes, filter.tags.clone(), filter.folders.clone()),
            )
        })
    }
}

/// Help Scout conversations of `channels` (summed), filtered: its part of a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Conversations {
    pub channels: Vec<HsChannel>,
    pub filter: VolumeFilter,
}

/// The part of a series that counts Help Scout conversations of `channels`, filtered.
pub fn conversations(channels: Vec<HsChannel>, filter: VolumeFilter) -> Part {
    Part::new(Conversations { channels, filter })
}

impl Contributes for Conversations {
    fn provider(&self) -> Provider {
        Provider::HelpScout
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn key_text(&self) -> String {
        key_text("help_scout.conversations", self)
    }

    fn contribute<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
        _window: &'a Window,
        span: &'a Window,
        _total_only: bool,
    ) -> BoxFuture<'a, Result<Contribution, UpstreamError>> {
        contribute(workspace, fetcher, span, &self.channels, &self.filter).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn a_day_view_block_from_the_sandbox_round_trips_through_its_stored_form() {
        use crate::sandbox::{self, accounts::ACME, SandboxOptions};
        let sandbox = sandbox::start(
            "127.0.0.1:0".parse().expect("valid address"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts");
        let client = HelpScout::new(
            reqwest::Client::new(),
            format!(
                "{}{}",
                sandbox.base_url(),
                sandbox::Provider::HelpScout.prefix()
            ),
            HelpScoutCredentials::AccessToken(Secret::new(
                ACME.help_scout
                    .access_token
                    .expect("acme has a static token"),
            )),
        );
        let index = block_index(Utc.with_ymd_and_hms(2024, 3, 10, 0, 0, 0).unwrap());
        let filter = VolumeFilter::new(ACME.help_scout.mailboxes.to_vec(), vec![], vec![]);
        let blocks = client
            .volume_blocks(&filter, &[index])
            .await
            .expect("the sandbox answers");
        let block = &blocks[0];
        assert_eq!(
            block.len() as i64,
            BLOCK_DAYS,
            "one row per day of the block"
        );
        assert!(block
            .iter()
            .any(|row| row.chat + row.email + row.phone > 0.0));
        crate::cache::assert_round_trips(block);
        sandbox.shutdown().await;
    }

    fn window(
        from: (i32, u32, u32),
        to: (i32, u32, u32),
        granularity: Granularity,
        zone: &str,
    ) -> Window {
        let zone = Zone::parse(zone).expect("valid zone");
        let at = |(y, m, d): (i32, u32, u32)| {
            Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
                .single()
                .expect("valid date")
        };
        Window::new(at(from), at(to), granularity, zone).expect("valid window")
    }

    fn days(request: &VolumeRequest) -> i64 {
        (request.end - request.start).num_days()
    }

    #[test]
    fn fourteen_days_by_day_is_one_day_view_call() {
        let calls = plan(
            &window((2025, 3, 1), (2025, 3, 15), Granularity::Day, "UTC"),
            &VolumeFilter::default(),
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].view_by, ViewBy::Day);
        assert_eq!(days(&calls[0]), 14);
    }

    #[test]
    fn a_hundred_days_by_day_is_split_into_legal_day_calls() {
        let calls = plan(
            &window((2025, 1, 1), (2025, 4, 11), Granularity::Day, "UTC"),
            &VolumeFilter::default(),
        );
        assert_eq!(calls.iter().map(days).collect::<Vec<_>>(), vec![60, 40]);
        assert!(calls.iter().all(|c| c.view_by == ViewBy::Day));
        assert_eq!(calls[0].end, calls[1].start);
    }

    #[test]
    fn a_short_month_window_falls_back_to_days() {
        let calls = plan(
            &window((2025, 2, 1), (2025, 3, 1), Granularity::Month, "UTC"),
            &VolumeFilter::default(),
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].view_by, ViewBy::Day);
    }

    #[test]
    fn a_long_month_window_is_one_month_call() {
        let calls = plan(
            &window((2024, 1, 1), (2025, 7, 1), Granularity::Month, "UTC"),
            &VolumeFilter::default(),
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].view_by, ViewBy::Month);
    }

    #[test]
    fn two_years_by_week_is_split_into_whole_weeks_of_at_most_a_year() {
        let calls = plan(
            &window((2024, 1, 1), (2026, 1, 5), Granularity::Week, "UTC"),
            &VolumeFilter::default(),
        );
        assert!(calls.len() >= 3);
        for call in &calls {
            assert_eq!(call.view_by, ViewBy::Week);
            assert!(days(call) <= MAX_WEEK_RANGE_DAYS);
            assert_eq!(days(call) % 7, 0);
        }
    }

    #[test]
    fn a_day_window_is_served_by_the_thirty_day_blocks_that_cover_its_utc_days() {
        let w = window((2025, 3, 1), (2025, 3, 15), Granularity::Day, "UTC");
        let blocks = blocks_for(&w).expect("the day view");
        assert!(block_range(blocks[0]).0 <= w.from());
        assert!(block_range(*blocks.last().expect("a block")).1 >= w.to());
        for pair in blocks.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "contiguous");
        }
        // Sliding by a day stays on the same grid.
        let slid = window((2025, 3, 2), (2025, 3, 16), Granularity::Day, "UTC");
        let slid_blocks = blocks_for(&slid).expect("the day view");
        assert!(slid_blocks
            .iter()
            .all(|b| blocks.contains(b) || *b == blocks[blocks.len() - 1] + 1));
        // A long month window keeps the month view (one call), so it is not in blocks.
        let long = window((2024, 1, 1), (2025, 7, 1), Granularity::Month, "UTC");
        assert_eq!(blocks_for(&long), None);
    }

    #[test]
    fn missing_blocks_are_merged_two_at_a_time_within_the_day_views_sixty_days() {
        assert_eq!(
            plan_blocks(&[1, 2, 3, 5, 7, 8]),
            vec![vec![1, 2], vec![3], vec![5], vec![7, 8]]
        );
        for group in plan_blocks(&[10, 11, 12, 13]) {
            let days = (block_range(*group.last().expect("a block")).1 - block_range(group[0]).0)
                .num_days();
            assert!(days <= MAX_DAY_RANGE_DAYS, "{days} days");
        }
    }

    #[test]
    fn a_sydney_window_is_covered_by_utc_days() {
        let w = window(
            (2025, 3, 1),
            (2025, 3, 8),
            Granularity::Day,
            "Australia/Sydney",
        );
        let calls = plan(&w, &VolumeFilter::default());
        assert_eq!(calls.len(), 1);
        assert!(calls[0].start <= w.from() && calls[0].end >= w.to());
        assert_eq!(
            calls[0].start,
            Granularity::Day.floor(w.from(), Zone::utc())
        );
    }
}
