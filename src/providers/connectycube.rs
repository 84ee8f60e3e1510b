//! ConnectyCube (SPEC §1.4, seed 003): messages sent and dialogs created, per UTC day or as a
//! total over a range.
//!
//! Per-day answers are paged: `limit` days per response (we always send 100), `offset` days to
//! skip. Assumption (README): pages count the calendar days of the range, including days with
//! no data (which are absent from the body), so the number of pages is known up front and all
//! pages are fetched concurrently.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::catalogue::{key_text, Contributes, Contribution, Part};
use crate::config::Secret;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::fetch::{erase_blocks, BlockSource, FnBlockSource};
use crate::fetch::{Fetcher, SeriesKey};
use crate::providers::is_live;
use crate::providers::upstream::Upstream;
use crate::providers::{Feed, Provider, Source};
use crate::series::{Granularity, Sample, Window, Zone};
use crate::workspace::{configured, Workspace};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

/// Days per page.
pub const PAGE_DAYS: i64 = 100;

/// The finest granularity ConnectyCube offers.
/// The series fields this provider feeds (its rows of SPEC §2.1).
pub const FEEDS: &[Feed] = &[
    Feed {
        field: "DialogStats.created",
        from: "dialogs created (of the types filter)",
    },
    Feed {
        field: "MessageStats.sent",
        from: "messages sent",
    },
];

pub const FINEST: Granularity = Granularity::Day;

/// Dialog types as ConnectyCube numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum DialogKind {
    Broadcast = 1,
    Group = 2,
    Private = 3,
    Public = 4,
}

/// What to count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CcMetric {
    MessagesSent,
    /// Dialogs created, of these types (sorted, unique; empty = all types).
    DialogsCreated(Vec<DialogKind>),
}

impl CcMetric {
    /// Totals of this metric add up, so a total call can replace the per-day pages.
    pub fn is_summable(&self) -> bool {
        true
    }

    /// The endpoint name of the total call, for traces.
    pub fn total_endpoint(&self) -> &'static str {
        match self {
            CcMetric::MessagesSent => "messages/sent-total",
            CcMetric::DialogsCreated(_) => "dialogs/created-total",
        }
    }

    /// The endpoint name of the per-day call, for traces and metrics.
    pub fn per_day_endpoint(&self) -> &'static str {
        match self {
            CcMetric::MessagesSent => "messages/sent-per-day",
            CcMetric::DialogsCreated(_) => "dialogs/created-per-day",
        }
    }

    fn path(&self, per_day: bool) -> &'static str {
        match (self, per_day) {
            (CcMetric::MessagesSent, true) => "/admin/stats/messages/sent-per-day",
            (CcMetric::MessagesSent, false) => "/admin/stats/messages/sent-total",
            (CcMetric::DialogsCreated(_), true) => "/admin/stats/dialogs/created-per-day",
            (CcMetric::DialogsCreated(_), false) => "/admin/stats/dialogs/created-total",
        }
    }

    fn params(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("start_date", start.timestamp().to_string()),
            ("end_date", end.timestamp().to_string()),
        ];
        if let CcMetric::DialogsCreated(types) = self {
            params.extend(types.iter().map(|t| ("types[]", (*t as u8).to_string())));
        }
        params
    }
}

/// One page of a per-day request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CcPage {
    pub metric: CcMetric,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Days to skip (a multiple of [`PAGE_DAYS`]).
    pub offset: i64,
}

/// Every page of the per-day request covering `window` (UTC days).
pub fn plan(window: &Window, metric: &CcMetric) -> Vec<CcPage> {
    let (start, end) = day_range(window);
    let days = (end - start).num_days().max(1);
    (0..(days + PAGE_DAYS - 1) / PAGE_DAYS)
        .map(|page| CcPage {
            metric: metric.clone(),
            start,
            end,
            offset: page * PAGE_DAYS,
        })
        .collect()
}

/// The 100-day blocks (UTC days from the Unix epoch, one page each) that cover `window`.
pub fn blocks_for(window: &Window) -> Vec<i64> {
    let (start, end) = day_range(window);
    let first = block_index(start);
    let last = block_index(end - chrono::Duration::seconds(1)).max(first);
    (first..=last).collect()
}

fn block_index(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(86_400 * PAGE_DAYS)
}

/// `[start, end)` of block `index`.
pub fn block_range(index: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(index * PAGE_DAYS);
    (start, start + chrono::Duration::days(PAGE_DAYS))
}

/// The end of block `index`.
pub fn block_end(index: i64) -> DateTime<Utc> {
    block_range(index).1
}

/// The calls for the missing blocks `indices`: one each. A block is one full page, and a
/// longer range is paged by `offset` anyway (one call a page), so merging saves nothing.
pub fn plan_blocks(indices: &[i64]) -> Vec<Vec<i64>> {
    indices.iter().map(|index| vec![*index]).collect()
}

/// True when a total-only query of `window` is served by the per-day blocks rather than the
/// `*-total` call: the window is whole UTC days (the blocks' days add up to it exactly) and at
/// most two blocks cover it (so it costs at most one call more than the total call, once, and
/// every later window inside those 200 days is free). Otherwise the total call: exact for any
/// instants, and one call for a long range.
pub fn total_from_blocks(window: &Window) -> bool {
    let (start, end) = day_range(window);
    start == window.from() && end == window.to() && blocks_for(window).len() <= 2
}

/// The UTC days that cover `window`.
pub fn day_range(window: &Window) -> (DateTime<Utc>, DateTime<Utc>) {
    let utc = Zone::utc();
    let start = Granularity::Day.floor(window.from(), utc);
    let floor_end = Granularity::Day.floor(window.to(), utc);
    let end = if floor_end == window.to() {
        floor_end
    } else {
        Granularity::Day.next(floor_end, utc)
    };
    (start, end)
}

#[derive(Deserialize)]
struct WireTotal {
    total: f64,
}

/// A ConnectyCube application (admin API key).
pub struct ConnectyCube {
    upstream: Upstream,
    base_url: String,
    key: Secret,
}

impl ConnectyCube {
    /// `base_url` without a trailing slash, e.g. `https://api.connectycube.com`.
    pub fn new(http: reqwest::Client, base_url: String, key: Secret) -> Self {
        Self {
            upstream: Upstream::new(Provider::ConnectyCube, http),
            base_url,
            key,
        }
    }

    /// One page of day samples.
    pub async fn page(&self, key: &CcPage) -> Result<Vec<Sample>, UpstreamError> {
        let mut params = key.metric.params(key.start, key.end);
        params.push(("limit", PAGE_DAYS.to_string()));
        params.push(("offset", key.offset.to_string()));
        let request = self.request(key.metric.path(true)).query(&params);
        let body: std::collections::BTreeMap<String, f64> = self
            .upstream
            .json(key.metric.per_day_endpoint(), request)
            .await?;
        body.into_iter()
            .map(|(day, value)| {
                let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| {
                    UpstreamError::new(
                        Provider::ConnectyCube,
                        UpstreamErrorKind::Invalid(format!("day key {day:?} is not YYYY-MM-DD")),
                    )
                })?;
                let start = date
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_utc();
                Ok(Sample {
                    start,
                    end: start + chrono::Duration::days(1),
                    value,
                    weight: None,
                })
            })
            .collect()
    }

    /// The day samples of block `index` (one page: `limit` 100 days from its start).
    pub async fn block(&self, metric: &CcMetric, index: i64) -> Result<Vec<Sample>, UpstreamError> {
        let (start, end) = block_range(index);
        self.page(&CcPage {
            metric: metric.clone(),
            start,
            end,
            offset: 0,
        })
        .await
    }

    /// The total over `[start, end)` from the cheap `*-total` endpoint.
    pub async fn total(
        &self,
        metric: &CcMetric,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<f64, UpstreamError> {
        let request = self
            .request(metric.path(false))
            .query(&metric.params(start, end));
        let body: WireTotal = self.upstream.json(metric.total_endpoint(), request).await?;
        Ok(body.total)
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        self.upstream
            .http()
            .get(format!("{}{}", self.base_url, path))
            .header("CB-Administration-API-Key", self.key.expose())
    }
}

/// The batch loader's view of `metric`'s per-day endpoint: one page of [`PAGE_DAYS`] days per
/// block, the pages of a batch ([`plan_blocks`]) fetched one after another.
pub fn block_source(workspace: Arc<Workspace>, metric: CcMetric) -> Arc<dyn BlockSource> {
    Arc::new(FnBlockSource {
        block_end,
        plan: Box::new(plan_blocks),
        fetch: move |group: Vec<i64>| {
            let workspace = workspace.clone();
            let metric = metric.clone();
            async move {
                let client = configured(workspace.connectycube.as_ref(), Provider::ConnectyCube)?;
                let mut blocks = Vec::with_capacity(group.len());
                for index in group {
                    blocks.push(client.block(&metric, index).await?);
                }
                Ok(erase_blocks(blocks))
            }
            .boxed()
        },
    })
}

impl Source for ConnectyCube {
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

/// ConnectyCube's contribution to a series of `metric`. A summable total-only window the
/// blocks cannot serve is one total call; otherwise the per-day blocks of `span` (of `window`
/// alone when only its total is needed).
pub(crate) async fn contribute(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
    span: &Window,
    total_only: bool,
    metric: &CcMetric,
) -> Result<Contribution, UpstreamError> {
    if total_only && metric.is_summable() && !total_from_blocks(window) {
        let account = workspace.account(Provider::ConnectyCube)?;
        let key = (metric.clone(), window.from(), window.to());
        let live = is_live(window.to());
        let workspace = workspace.clone();
        let total = fetcher
            .get(
                account,
                metric.total_endpoint(),
                &key.clone(),
                live,
                move || async move {
                    let client =
                        configured(workspace.connectycube.as_ref(), Provider::ConnectyCube)?;
                    client.total(&key.0, key.1, key.2).await
                },
            )
            .await?;
        let mut contribution =
            Contribution::from_pages(std::slice::from_ref(&total), |_| Vec::new());
        contribution.total = Some(*total.value);
        return Ok(contribution);
    }
    // A total-only window served by blocks needs only its own blocks.
    let range = if total_only { window } else { span };
    let series = SeriesKey::new(
        workspace.account(Provider::ConnectyCube)?,
        metric.per_day_endpoint(),
        metric,
    );
    let source = || block_source(workspace.clone(), metric.clone());
    let pages = fetcher
        .blocks::<Vec<Sample>>(&series, &blocks_for(range), source)
        .await?;
    Ok(Contribution::from_pages(&pages, |samples: &Vec<Sample>| {
        samples.clone()
    }))
}

/// ConnectyCube's part of a series: one metric.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Counted(pub CcMetric);

/// The part of a series that counts `metric` on ConnectyCube.
pub fn part(metric: CcMetric) -> Part {
    Part::new(Counted(metric))
}

impl Contributes for Counted {
    fn provider(&self) -> Provider {
        Provider::ConnectyCube
    }

    fn finest(&self) -> Granularity {
        FINEST
    }

    fn key_text(&self) -> String {
        key_text("connectycube", self)
    }

    fn contribute<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
        window: &'a Window,
        span: &'a Window,
        total_only: bool,
    ) -> BoxFuture<'a, Result<Contribution, UpstreamError>> {
        contribute(workspace, fetcher, window, span, total_only, &self.0).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{self, accounts::ACME, SandboxOptions};
    use chrono::TimeZone;

    #[tokio::test]
    async fn a_page_block_from_the_sandbox_round_trips_through_its_stored_form() {
        let sandbox = sandbox::start(
            "127.0.0.1:0".parse().expect("valid address"),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts");
        let client = ConnectyCube::new(
            reqwest::Client::new(),
            format!(
                "{}{}",
                sandbox.base_url(),
                sandbox::Provider::ConnectyCube.prefix()
            ),
            Secret::new(ACME.connectycube.admin_api_key),
        );
        let index = block_index(Utc.with_ymd_and_hms(2024, 3, 10, 0, 0, 0).unwrap());
        for metric in [
            CcMetric::MessagesSent,
            CcMetric::DialogsCreated(vec![DialogKind::Group]),
        ] {
            let block = client
                .block(&metric, index)
                .await
                .expect("the sandbox answers");
            assert!(block.iter().any(|sample| sample.value > 0.0), "{metric:?}");
            crate::cache::assert_round_trips(&block);
        }
        sandbox.shutdown().await;
    }
}
