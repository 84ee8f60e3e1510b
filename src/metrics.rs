//! What every series is made of (SPEC §2.1), and the one routine that computes a series.
//!
//! A GraphQL field builds a [`SeriesSpec`]: the metric's name, unit and aggregation, and one
//! [`Part`] per provider that contributes. [`compute`] fetches all parts concurrently, puts
//! each on the window's buckets, and adds them (combined series are SUMs). A part that cannot
//! serve the granularity, or whose upstream fails, is left out and reported as an error next to
//! the series, so one provider never costs the others.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::{join_all, try_join_all};

use crate::error::{ApiError, UpstreamError};
use crate::planner::{Fetched, Fetcher};
use crate::providers::connectycube::{self, CcMetric};
use crate::providers::help_scout::{self, HsChannel, VolumeFilter};
use crate::providers::Provider;
use crate::series::{combine, resample, Aggregation, Bucketed, Granularity, Sample, Window};
use crate::workspace::Workspace;

/// The unit of a series' values.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A number of things (conversations, messages, users).
    Count,
    /// A duration in seconds.
    Seconds,
    /// A percentage, 0 to 100.
    Percent,
    /// A satisfaction score on the provider's scale (NPS -100..100, CSAT 1..5).
    Score,
}

/// One provider's contribution to a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// Help Scout conversations of these channels (summed), filtered.
    HelpScout {
        channels: Vec<HsChannel>,
        filter: VolumeFilter,
    },
    ConnectyCube(CcMetric),
}

impl Part {
    pub fn provider(&self) -> Provider {
        match self {
            Part::HelpScout { .. } => Provider::HelpScout,
            Part::ConnectyCube(_) => Provider::ConnectyCube,
        }
    }

    /// The finest granularity the provider can answer for this part.
    fn finest(&self) -> Granularity {
        match self {
            Part::HelpScout { .. } => help_scout::FINEST,
            Part::ConnectyCube(_) => connectycube::FINEST,
        }
    }

    /// This part's samples for `window`, each upstream request through `fetcher`.
    async fn contribute(
        &self,
        workspace: &Arc<Workspace>,
        fetcher: &Fetcher,
        window: &Window,
    ) -> Result<Contribution, UpstreamError> {
        let account = workspace.account(self.provider());
        match self {
            Part::HelpScout { channels, filter } => {
                let calls = help_scout::plan(window, filter);
                let pages = try_join_all(calls.into_iter().map(|request| {
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
                                    let client = workspace.help_scout.as_ref().expect("configured");
                                    client.volume(&request).await
                                },
                            )
                            .await
                    }
                }))
                .await?;
                Ok(Contribution::from_pages(&pages, |rows| {
                    help_scout::samples(rows, channels)
                }))
            }
            Part::ConnectyCube(metric) => {
                let endpoint = match metric {
                    CcMetric::MessagesSent => "messages/sent-per-day",
                    CcMetric::DialogsCreated(_) => "dialogs/created-per-day",
                };
                let pages =
                    try_join_all(connectycube::plan(window, metric).into_iter().map(|page| {
                        let workspace = workspace.clone();
                        let live = is_live(page.end);
                        async move {
                            fetcher
                                .get(account, endpoint, &page.clone(), live, move || async move {
                                    let client =
                                        workspace.connectycube.as_ref().expect("configured");
                                    client.page(&page).await
                                })
                                .await
                        }
                    }))
                    .await?;
                Ok(Contribution::from_pages(&pages, |samples: &Vec<Sample>| {
                    samples.clone()
                }))
            }
        }
    }
}

/// True when a chunk ending at `end` touches the present (and so gets the live TTL).
fn is_live(end: DateTime<Utc>) -> bool {
    end > Utc::now()
}

/// One part's samples and how fresh they are.
struct Contribution {
    samples: Vec<Sample>,
    stale: bool,
    warnings: Vec<UpstreamError>,
}

impl Contribution {
    fn from_pages<T: ?Sized>(pages: &[Fetched<T>], samples: impl Fn(&T) -> Vec<Sample>) -> Self {
        Self {
            samples: pages.iter().flat_map(|page| samples(&page.value)).collect(),
            stale: pages.iter().any(|page| page.stale),
            warnings: pages
                .iter()
                .filter_map(|page| page.warning.clone())
                .collect(),
        }
    }
}

/// A series field: what it measures and who contributes.
#[derive(Clone, Debug)]
pub struct SeriesSpec {
    /// Dotted name, e.g. `dialogs.created`.
    pub metric: &'static str,
    pub unit: Unit,
    pub aggregation: Aggregation,
    pub parts: Vec<Part>,
}

/// A computed series.
#[derive(Clone, Debug)]
pub struct Computed {
    pub window: Window,
    pub data: Bucketed,
    /// Providers that contributed, in `Provider` order.
    pub sources: Vec<Provider>,
    pub stale: bool,
    /// Contributions left out, one error each.
    pub errors: Vec<ApiError>,
    /// Refresh failures behind stale data (reported in `extensions.warnings`).
    pub warnings: Vec<UpstreamError>,
    /// When the series was computed (for `Source` bookkeeping and traces).
    pub computed_at: DateTime<Utc>,
}

impl Computed {
    /// True when parts were asked for and none contributed.
    pub fn failed(&self) -> bool {
        self.sources.is_empty() && !self.errors.is_empty()
    }
}

/// Fetch every part of `spec` for `window` concurrently and combine them.
///
/// Fails only when no part can serve the window's granularity at all (a bad request); upstream
/// failures are returned inside [`Computed::errors`].
pub async fn compute(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    spec: &SeriesSpec,
    window: Window,
) -> Result<Computed, ApiError> {
    let granularity = window.granularity();
    let (servable, refused): (Vec<&Part>, Vec<&Part>) =
        spec.parts.iter().partition(|p| p.finest() <= granularity);
    let mut errors: Vec<ApiError> = refused
        .iter()
        .map(|part| ApiError::Unsupported {
            provider: part.provider(),
            message: format!(
                "{} from {}: its finest granularity is {}, and window.granularity is {}; use {} or coarser",
                spec.metric,
                part.provider(),
                part.finest().name(),
                granularity.name(),
                part.finest().name()
            ),
        })
        .collect();
    if servable.is_empty() && !refused.is_empty() {
        let messages: Vec<String> = errors.iter().map(ApiError::message).collect();
        return Err(match (errors.len(), errors.pop()) {
            (1, Some(only)) => only,
            _ => ApiError::bad_input(messages.join("; ")),
        });
    }

    let fetched = join_all(
        servable
            .iter()
            .map(|part| part.contribute(workspace, fetcher, &window)),
    )
    .await;
    let mut parts = Vec::new();
    let mut sources = Vec::new();
    let mut stale = false;
    let mut warnings = Vec::new();
    for (part, result) in servable.iter().zip(fetched) {
        match result {
            Ok(contribution) => {
                parts.push(resample(&window, spec.aggregation, &contribution.samples));
                sources.push(part.provider());
                stale |= contribution.stale;
                warnings.extend(contribution.warnings);
            }
            Err(error) => errors.push(error.into()),
        }
    }
    sources.sort();
    sources.dedup();
    let data = if parts.is_empty() {
        Bucketed::empty(&window)
    } else {
        combine(&parts)
    };
    Ok(Computed {
        window,
        data,
        sources,
        stale,
        warnings,
        errors,
        computed_at: Utc::now(),
    })
}
