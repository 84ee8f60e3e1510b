//! What every series is made of (SPEC §2.1), and the one routine that computes a series.
//!
//! A GraphQL field builds a [`SeriesSpec`]: the metric's name, unit and aggregation, and one
//! [`Part`] per provider that contributes. [`compute`] fetches all parts concurrently, puts
//! each on the window's buckets, and adds them (combined series are SUMs). A part that cannot
//! serve the granularity, or whose upstream fails, is left out and reported as an error next to
//! the series, so one provider never costs the others.

use std::sync::Arc;
use std::time::Instant;

use futures::future::{join_all, BoxFuture};

use crate::answers;
use crate::cache::CacheKey;
use crate::error::{ApiError, UpstreamError};

use crate::fetch::{Fetched, Fetcher};
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

/// What one provider contributes to a series, implemented next to the provider (each module
/// defines its part types, e.g. `help_scout::Conversations`, and a constructor returning a
/// [`Part`]): the catalogue computes a series without naming any provider.
pub trait Contributes: Send + Sync + std::fmt::Debug {
    /// The provider whose account the part reads.
    fn provider(&self) -> Provider;

    /// The finest granularity the provider can answer for this part.
    fn finest(&self) -> Granularity;

    /// Text unique to this part (its kind and parameters), the stable part of its derived-value
    /// cache keys. [`key_text`] builds it.
    fn key_text(&self) -> String;

    /// This part's samples for `window`, each upstream request through `fetcher`.
    ///
    /// `span` covers `window` and is what providers that plan calls over a range (Help Scout,
    /// ConnectyCube) plan for: when a series and its previous window are needed together,
    /// both are computed with the span of the two, so one report or page serves both (the
    /// samples outside `window` are ignored by the resampling). Providers that fetch fixed
    /// chunks (message2give months, the Xenioo snapshot) or per-window totals (Chat-Tonic) use
    /// `window`. `total_only`: only the window total is needed (a cheaper call may serve).
    fn contribute<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
        window: &'a Window,
        span: &'a Window,
        total_only: bool,
    ) -> BoxFuture<'a, Result<Contribution, UpstreamError>>;
}

/// One provider's contribution to a series (see [`Contributes`]). Clones share one key text,
/// written when first needed: a spec kept across requests (a compiled plan's, see
/// [`crate::graphql::plan`]) writes its parts' texts once.
#[derive(Clone, Debug)]
pub struct Part(Arc<PartInner>);

#[derive(Debug)]
struct PartInner {
    contributes: Box<dyn Contributes>,
    key_text: std::sync::OnceLock<String>,
}

impl Part {
    pub fn new(part: impl Contributes + 'static) -> Self {
        Self(Arc::new(PartInner {
            contributes: Box::new(part),
            key_text: std::sync::OnceLock::new(),
        }))
    }

    pub fn provider(&self) -> Provider {
        self.0.contributes.provider()
    }

    /// The finest granularity the provider can answer for this part.
    fn finest(&self) -> Granularity {
        self.0.contributes.finest()
    }

    /// [`Contributes::key_text`], written once per part.
    fn key_text(&self) -> &str {
        self.0
            .key_text
            .get_or_init(|| self.0.contributes.key_text())
    }
}

/// `part`'s kind and JSON, the stable part of its derived-cache keys (see
/// [`Contributes::key_text`]).
pub fn key_text(kind: &str, part: &impl serde::Serialize) -> String {
    // Plain data (enums, ids, names) into a String: cannot fail.
    let json = serde_json::to_string(part).expect("a part serializes to JSON");
    format!("{kind}:{json}")
}

/// One part's samples and how fresh they are: what each provider module's `contribute`
/// computes for its part.
pub struct Contribution {
    pub(crate) samples: Vec<Sample>,
    /// A whole-window total the provider computed (Chat-Tonic's total row).
    pub(crate) total: Option<f64>,
    pub(crate) stale: bool,
    /// Refresh failures behind stale data.
    pub(crate) warnings: Vec<UpstreamError>,
    /// Errors about part of the window (e.g. out of retention); the samples still count.
    pub(crate) partial: Vec<UpstreamError>,
    /// The upstream chunks do not tile the window exactly (e.g. message2give months fetched
    /// at different offsets leave a gap or an overlap at a DST change), even though each
    /// sample may fit in its bucket.
    pub(crate) inexact: bool,
    /// The cached chunks it was read from.
    pub(crate) chunks: Vec<CacheKey>,
    /// Until when all those chunks are fresh (the Xenioo snapshot: until its gate opens); None
    /// when any is stale.
    pub(crate) fresh_until: Option<Instant>,
}

impl Contribution {
    pub(crate) fn from_pages<T: ?Sized>(
        pages: &[Fetched<T>],
        samples: impl Fn(&T) -> Vec<Sample>,
    ) -> Self {
        Self {
            chunks: pages.iter().map(|page| page.key.clone()).collect(),
            fresh_until: pages
                .iter()
                .map(|page| page.fresh_until)
                .collect::<Option<Vec<Instant>>>()
                .and_then(|fresh| fresh.into_iter().min()),
            samples: pages.iter().flat_map(|page| samples(&page.value)).collect(),
            total: None,
            stale: pages.iter().any(|page| page.stale),
            warnings: pages
                .iter()
                .filter_map(|page| page.warning.clone())
                .collect(),
            partial: Vec::new(),
            inexact: false,
        }
    }

    pub(crate) fn with_samples(self, samples: Vec<Sample>) -> Self {
        Self { samples, ..self }
    }

    pub(crate) fn inexact_if(self, inexact: bool) -> Self {
        Self {
            inexact: self.inexact || inexact,
            ..self
        }
    }
}

/// One part put on the window's buckets, and how fresh it is.
struct Resampled {
    /// Shared with the derived store: a warm read copies no buckets.
    bucketed: Arc<Bucketed>,
    stale: bool,
    warnings: Vec<UpstreamError>,
    partial: Vec<UpstreamError>,
    /// The chunks it was read from, and until when they are all fresh: kept when the part
    /// is clean (fresh, no warning, nothing partial); None otherwise.
    kept: Option<(Arc<[CacheKey]>, Instant)>,
}

/// `part` on the buckets of `window`. A part read wholly from fresh cached chunks is kept,
/// resampled, as a derived cache entry until the first of those chunks goes stale, so a warm
/// query reuses it instead of extracting and resampling the samples again.
async fn resampled(
    part: &Part,
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
    span: &Window,
    spec: &SeriesSpec,
) -> Result<Resampled, UpstreamError> {
    let account = workspace.account(part.provider())?;
    let key = CacheKey::derived(
        account,
        derived_request(part.key_text(), window, span, spec),
    );
    if let Some(derived) = fetcher.derived::<Arc<Bucketed>>(&key) {
        return Ok(Resampled {
            bucketed: derived.value.clone(),
            stale: false,
            warnings: Vec::new(),
            partial: Vec::new(),
            kept: Some((derived.chunks.clone(), derived.fresh_until)),
        });
    }
    let contribution = part
        .0
        .contributes
        .contribute(workspace, fetcher, window, span, spec.total_only)
        .await?;
    let mut bucketed = resample(window, spec.aggregation, &contribution.samples);
    bucketed.exact &= !contribution.inexact;
    bucketed.total = contribution.total;
    let bucketed = Arc::new(bucketed);
    let clean =
        !contribution.stale && contribution.warnings.is_empty() && contribution.partial.is_empty();
    let kept = contribution
        .fresh_until
        .filter(|_| clean)
        .map(|fresh_until| {
            let bytes = bucketed.values.len() * 2 * std::mem::size_of::<Option<f64>>();
            let chunks: Arc<[CacheKey]> = contribution.chunks.into();
            fetcher.put_derived(key, bucketed.clone(), bytes, chunks.clone(), fresh_until);
            (chunks, fresh_until)
        });
    Ok(Resampled {
        bucketed,
        stale: contribution.stale,
        warnings: contribution.warnings,
        partial: contribution.partial,
        kept,
    })
}

/// The request text of `part_text`'s derived value for `window`: the window's and the span's
/// key texts ([`Window::key_text`], written once per window: formatting dates and numbers per
/// request was a visible share of a warm query's CPU), then the part's text, which alone has
/// no fixed form and so comes last.
fn derived_request(part_text: &str, window: &Window, span: &Window, spec: &SeriesSpec) -> String {
    let aggregation = match spec.aggregation {
        Aggregation::Sum => "sum",
        Aggregation::Average => "average",
        Aggregation::Distinct => "distinct",
        Aggregation::Last => "last",
    };
    let total_only = if spec.total_only { "total" } else { "buckets" };
    let (window, span) = (window.key_text(), span.key_text());
    let mut text = String::with_capacity(window.len() + span.len() + 20 + part_text.len());
    for piece in [window, span, aggregation, total_only, part_text] {
        text.push_str(piece);
        text.push(' ');
    }
    text
}

/// A series field: what it measures and who contributes.
#[derive(Clone, Debug)]
pub struct SeriesSpec {
    /// Dotted name, e.g. `dialogs.created`.
    pub metric: &'static str,
    pub unit: Unit,
    pub aggregation: Aggregation,
    pub parts: Vec<Part>,
    /// Only the window total is needed (no points, min, max or previous: see the GraphQL
    /// look-ahead): a part may then use a cheaper total call (ConnectyCube `*-total`).
    pub total_only: bool,
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
}

impl Computed {
    /// True when parts were asked for and none contributed.
    pub fn failed(&self) -> bool {
        self.sources.is_empty() && !self.errors.is_empty()
    }
}

/// Fetch every part of `spec` for `window` concurrently and combine them. `span`, when given,
/// covers `window` and widens what the span-planned providers fetch (see [`Contributes::contribute`]).
///
/// Fails only when no part can serve the window's granularity at all (a bad request); upstream
/// failures are returned inside [`Computed::errors`].
///
/// A series whose parts were all read clean (fresh, without warnings) or failed for a reason
/// the window alone decides (e.g. out of Xenioo's retention) is kept whole as a derived value
/// ([`series_key`]) until its first chunk stops being fresh: a warm dashboard reads one entry
/// per series instead of one per part, and combines nothing. Its errors are kept with it, as a
/// kept answer keeps them ([`crate::answers::is_deterministic`]).
pub async fn compute(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    spec: &SeriesSpec,
    window: Window,
    span: Option<&Window>,
) -> Result<Arc<Computed>, ApiError> {
    let span = span.unwrap_or(&window);
    let key = series_key(workspace, spec, &window, span);
    if let Some(kept) = key
        .as_ref()
        .and_then(|key| fetcher.derived::<Arc<Computed>>(key))
    {
        return Ok(kept.value.clone());
    }
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
            .map(|part| resampled(part, workspace, fetcher, &window, span, spec)),
    )
    .await;
    let mut parts = Vec::new();
    let mut sources = Vec::new();
    let mut stale = false;
    let mut warnings = Vec::new();
    // What the kept series is read from, and until when (None: it is not kept).
    let mut kept: Option<(Vec<CacheKey>, Option<Instant>)> = Some((Vec::new(), None));
    for (part, result) in servable.iter().zip(fetched) {
        match result {
            Ok(resampled) => {
                kept = match (kept, &resampled.kept) {
                    (Some((mut chunks, until)), Some((read, fresh_until))) => {
                        chunks.extend(read.iter().cloned());
                        Some((
                            chunks,
                            Some(until.map_or(*fresh_until, |u| u.min(*fresh_until))),
                        ))
                    }
                    _ => None,
                };
                parts.push(resampled.bucketed);
                errors.extend(resampled.partial.into_iter().map(ApiError::from));
                sources.push(part.provider());
                stale |= resampled.stale;
                warnings.extend(resampled.warnings);
            }
            Err(error) => {
                if !answers::is_deterministic(error.code()) {
                    kept = None;
                }
                errors.push(error.into());
            }
        }
    }
    sources.sort();
    sources.dedup();
    // Two parts of one provider (e.g. Xenioo messages + operator messages) fail alike: say it once.
    let mut unique: Vec<ApiError> = Vec::with_capacity(errors.len());
    for error in errors {
        if !unique.contains(&error) {
            unique.push(error);
        }
    }
    let errors = unique;
    let mut data = if parts.is_empty() {
        Bucketed::empty(&window)
    } else {
        combine(&parts)
    };
    if spec.total_only
        && spec.aggregation == Aggregation::Sum
        && parts.iter().any(|p| p.total.is_some())
    {
        // Some parts gave only a total (a cheaper call): the window total adds each part's own
        // total, or the sum of its buckets.
        let total = parts
            .iter()
            .map(|p| {
                p.total
                    .unwrap_or_else(|| p.values.iter().flatten().fold(0.0, |a, b| a + b))
            })
            .fold(0.0, |a, b| a + b);
        data.total = Some(total);
    }
    let computed = Arc::new(Computed {
        window,
        data,
        sources,
        stale,
        warnings,
        errors,
    });
    // Kept only while something bounds its freshness: a series of failures alone is not.
    if let (Some(key), Some((read, Some(fresh_until)))) = (key, kept) {
        // Parts of one provider often read the same chunks: each once.
        let mut chunks: Vec<CacheKey> = Vec::with_capacity(read.len());
        for chunk in read {
            if !chunks.contains(&chunk) {
                chunks.push(chunk);
            }
        }
        let bytes = computed.data.values.len() * 2 * std::mem::size_of::<Option<f64>>()
            + computed
                .errors
                .iter()
                .map(|e| e.message().len() + 64)
                .sum::<usize>();
        fetcher.put_derived(key, computed.clone(), bytes, chunks.into(), fresh_until);
    }
    Ok(computed)
}

/// The key `spec`'s series on `window` (computed over `span`) is kept under: the window, the
/// span, the aggregation, the metric, the workspace's generation (which stands for the
/// accounts of every part) and each part's text. None for a spec without parts.
fn series_key(
    workspace: &Workspace,
    spec: &SeriesSpec,
    window: &Window,
    span: &Window,
) -> Option<CacheKey> {
    let first = spec.parts.first()?;
    let account = workspace.account(first.provider()).ok()?;
    let mut text = derived_request(spec.metric, window, span, spec);
    let mut number = itoa::Buffer::new();
    text.push_str(number.format(workspace.generation));
    for part in &spec.parts {
        // Length-prefixed: part texts are free text.
        let part = part.key_text();
        text.push(' ');
        text.push_str(number.format(part.len()));
        text.push(':');
        text.push_str(part);
    }
    Some(CacheKey::derived_series(account, text))
}

#[cfg(test)]
mod tests {
    use crate::providers::connectycube::{self, CcMetric};
    use crate::providers::message2give;
    use crate::providers::xenioo::{self, BotMetric};

    #[test]
    fn each_part_keeps_its_own_key_text() {
        let sms = |survey: Option<&str>| message2give::sms_usage(survey.map(str::to_string), false);
        let parts = [
            sms(None),
            sms(Some("a")),
            sms(Some("b")),
            message2give::sms_usage(None, true),
            connectycube::part(CcMetric::MessagesSent),
            xenioo::events(BotMetric::Messages, None, None),
            xenioo::events(BotMetric::Messages, Some("bot".into()), None),
            xenioo::events(BotMetric::Messages, None, Some("bot".into())),
            xenioo::events(BotMetric::NewUser, None, None),
        ];
        let texts: Vec<String> = parts.iter().map(|p| p.key_text().to_string()).collect();
        for (part, text) in parts.iter().zip(&texts) {
            assert_eq!(part.0.contributes.key_text(), *text, "the same text again");
        }
        let distinct: std::collections::HashSet<&String> = texts.iter().collect();
        assert_eq!(distinct.len(), parts.len(), "{texts:?}");
    }
}
