//! `TimeSeries`, `Point` and `ResolvedWindow`, and the helpers every series field uses to turn
//! a [`SeriesSpec`] into a GraphQL value with its errors attached at the right path.

use std::borrow::Cow;
use std::sync::Arc;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::enum_value;
use async_graphql::{
    Context, ContextSelectionSet, Name, Object, OutputType, Positioned, ScalarType, ServerResult,
    SimpleObject, Value,
};
use tokio::sync::OnceCell;

use crate::catalogue::{compute, Computed, SeriesSpec, Unit};
use crate::error::ApiError;
use crate::fetch::Fetcher;
use crate::graphql::raw_json::{self, RawJson};
use crate::graphql::scalars::{Instant, TimeZone};
use crate::graphql::window::{Aggregation, Fill, Granularity, WindowInput};
use crate::providers::Provider;
use crate::series::{self, change};
use crate::workspace::Workspace;

/// A series of values on calendar buckets, with its summary and provenance: what every series
/// field returns. Its plain fields are answered as one value (`TimeSeries::plain_value`);
/// any other selection is resolved by async-graphql through [`SeriesFields`].
pub struct TimeSeries(SeriesFields);

/// The GraphQL object `TimeSeries`, field by field.
pub struct SeriesFields {
    recipe: Arc<Recipe>,
    computed: Arc<Computed>,
    /// The previous window, computed at most once (`previous` and `change` share it).
    previous: OnceCell<Result<Arc<Computed>, ApiError>>,
}

/// What a series is made of and where to fetch it: enough to compute it for another window.
struct Recipe {
    workspace: Arc<Workspace>,
    fetcher: Fetcher,
    spec: SeriesSpec,
    /// The window and its previous one together, when both are needed: the extent the
    /// span-planned providers fetch for either (see `catalogue::compute`).
    span: Option<series::Window>,
}

/// One bucket of a series.
#[derive(SimpleObject)]
pub struct Point {
    /// Start of the bucket.
    at: Instant,
    /// The bucket's value; null for an empty bucket under `fill: NULL`.
    value: Option<f64>,
}

/// The GraphQL list `[Point!]!` of a series, resolved without a future per point and field.
///
/// async-graphql resolves a list of objects as one future per element and one per selected
/// field; `points` is most of a dashboard's output fields (a 14-day series is 15 points, two
/// fields each). When the selection is plain fields of `Point` (`at`, `value`, `__typename`,
/// aliased or not, without arguments, directives or fragments), the list is built directly as
/// the executor would; any other selection goes through async-graphql's own resolution.
/// The type it declares is `Vec<Point>`'s, so the schema is unchanged.
pub struct Points {
    window: series::Window,
    /// Bucket indexes of `window` with their values.
    points: Vec<(usize, Option<f64>)>,
}

/// One plain field of `Point`, by its response key.
#[derive(Clone)]
pub(crate) enum PointField {
    At,
    Value,
    Typename,
}

impl PointField {
    /// The selection as plain `Point` fields, or None when it needs the executor.
    fn plain_selection(selection_set: &SelectionSet) -> Option<Vec<(Name, PointField)>> {
        plain_fields(selection_set, |field| {
            let field = &field.node;
            if !field.selection_set.node.items.is_empty() || !field.arguments.is_empty() {
                return None;
            }
            match field.name.node.as_str() {
                "at" => Some(PointField::At),
                "value" => Some(PointField::Value),
                "__typename" => Some(PointField::Typename),
                _ => None,
            }
        })
    }
}

/// The plain fields of `selection_set` by response key, each classified by `classify`; None
/// when any selection needs the executor: a fragment, a field with directives, a field
/// `classify` does not know (or whose arguments it does not take), or a response key selected
/// twice (the executor merges the selections of a repeated key).
pub(crate) fn plain_fields<T>(
    selection_set: &SelectionSet,
    mut classify: impl FnMut(&Positioned<Field>) -> Option<T>,
) -> Option<Vec<(Name, T)>> {
    let mut fields: Vec<(Name, T)> = Vec::with_capacity(selection_set.items.len());
    for selection in &selection_set.items {
        let Selection::Field(field) = &selection.node else {
            return None;
        };
        if !field.node.directives.is_empty() {
            return None;
        }
        let key = &field.node.response_key().node;
        if fields.iter().any(|(seen, _)| seen == key) {
            return None;
        }
        fields.push((key.clone(), classify(field)?));
    }
    Some(fields)
}

/// The `fill` argument of `points` (None inside: none given); None when it has other
/// arguments or is not a literal (a variable).
fn literal_fill(points: &Field) -> Option<Option<series::Fill>> {
    let mut fill = None;
    for (name, value) in &points.arguments {
        if name.node != "fill" {
            return None;
        }
        let value = value.node.clone().into_const()?;
        fill = <Option<Fill> as async_graphql::InputType>::parse(Some(value)).ok()?;
    }
    Some(fill.map(Into::into))
}

/// The list value of `points` for a plain `selection`: `points` are bucket indexes of `window`
/// with their values, each `at` the window's text for the bucket start; with `raw`, the same
/// list as JSON text (see [`raw_json`]).
fn points_value(
    window: &series::Window,
    points: impl Iterator<Item = (usize, Option<f64>)>,
    selection: &[(Name, PointField)],
    raw: bool,
) -> Value {
    let typename = <Point as OutputType>::type_name();
    let at = window.start_texts();
    if raw {
        return Value::Binary(points_json(at, points, selection, &typename).into());
    }
    let list = points
        .map(|(i, value)| {
            let mut object = IndexMap::with_capacity(selection.len());
            for (key, kind) in selection {
                let value = match kind {
                    PointField::At => Value::String(at[i].to_string()),
                    PointField::Value => value.as_ref().map_or(Value::Null, f64::to_value),
                    PointField::Typename => Value::String(typename.to_string()),
                };
                object.insert(key.clone(), value);
            }
            Value::Object(object)
        })
        .collect();
    Value::List(list)
}

/// [`points_value`]'s list as JSON text.
fn points_json(
    at: &[Box<str>],
    points: impl Iterator<Item = (usize, Option<f64>)>,
    selection: &[(Name, PointField)],
    typename: &str,
) -> Vec<u8> {
    // At most one point per bucket: an instant (20 bytes), a number and the keys each.
    let per_point = selection
        .iter()
        .map(|(key, _)| key.len() + 24)
        .sum::<usize>();
    let mut out = Vec::with_capacity(at.len() * per_point + 2);
    out.push(b'[');
    for (n, (i, value)) in points.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (k, (key, kind)) in selection.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            raw_json::write_str(&mut out, key);
            out.push(b':');
            match kind {
                PointField::At => raw_json::write_str(&mut out, &at[i]),
                PointField::Value => raw_json::write_number(&mut out, value),
                PointField::Typename => raw_json::write_str(&mut out, typename),
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    out
}

impl OutputType for Points {
    fn type_name() -> Cow<'static, str> {
        <Vec<Point> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Point> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<Point> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let Some(selection) = PointField::plain_selection(&field.node.selection_set.node) else {
            let starts = self.window.bucket_starts();
            let points: Vec<Point> = self
                .points
                .iter()
                .map(|&(i, value)| Point {
                    at: Instant(starts[i]),
                    value,
                })
                .collect();
            return OutputType::resolve(&points, ctx, field).await;
        };
        Ok(points_value(
            &self.window,
            self.points.iter().copied(),
            &selection,
            ctx.data_opt::<RawJson>().is_some(),
        ))
    }
}

/// One plain field of `TimeSeries`: one that cannot fail and needs no argument but a literal
/// `fill` of `points` (`change` only once its previous window is computed: see
/// [`TimeSeries::plain_selection`]).
#[derive(Clone)]
pub(crate) enum SeriesField {
    Metric,
    Unit,
    Aggregation,
    /// `points`, with its `fill` argument when it has one.
    Points(Vec<(Name, PointField)>, Option<series::Fill>),
    Total,
    Min,
    Max,
    Sources,
    Exact,
    Stale,
    Change,
    Typename,
}

impl TimeSeries {
    /// The selection as plain `TimeSeries` fields, or None when it needs the executor
    /// (`window`, `previous`, `points(fill: $variable)`, fragments, directives, and `change`
    /// unless the previous window was computed with this one, as [`evaluate`] does when
    /// `change` is selected, and without error).
    fn plain_selection(&self, selection_set: &SelectionSet) -> Option<Vec<(Name, SeriesField)>> {
        let previous_computed = matches!(self.0.previous.get(), Some(Ok(_)));
        Self::plain_fields(selection_set, previous_computed)
    }

    /// The selection as plain `TimeSeries` fields, `change` among them when `change` is true.
    pub(crate) fn plain_fields(
        selection_set: &SelectionSet,
        change: bool,
    ) -> Option<Vec<(Name, SeriesField)>> {
        plain_fields(selection_set, |field| {
            let field = &field.node;
            let leaf = field.selection_set.node.items.is_empty();
            let name = field.name.node.as_str();
            if name == "points" {
                return Some(SeriesField::Points(
                    PointField::plain_selection(&field.selection_set.node)?,
                    literal_fill(field)?,
                ));
            }
            if !leaf || !field.arguments.is_empty() {
                return None;
            }
            Some(match name {
                "metric" => SeriesField::Metric,
                "unit" => SeriesField::Unit,
                "aggregation" => SeriesField::Aggregation,
                "total" => SeriesField::Total,
                "min" => SeriesField::Min,
                "max" => SeriesField::Max,
                "sources" => SeriesField::Sources,
                "exact" => SeriesField::Exact,
                "stale" => SeriesField::Stale,
                "change" if change => SeriesField::Change,
                "__typename" => SeriesField::Typename,
                _ => return None,
            })
        })
    }

    /// The object value of a plain `selection`, as the executor would build it from
    /// [`SeriesFields`], without a future per field.
    /// With `raw`, `points` is JSON text (see [`raw_json`]).
    pub(crate) fn plain_value(&self, selection: &[(Name, SeriesField)], raw: bool) -> Value {
        let series = &self.0;
        let spec = &series.recipe.spec;
        let computed = &series.computed;
        let summary = std::cell::OnceCell::new();
        let summary = || summary.get_or_init(|| series.summary());
        let number = |value: Option<f64>| value.as_ref().map_or(Value::Null, f64::to_value);
        let mut object = IndexMap::with_capacity(selection.len());
        for (key, kind) in selection {
            let value = match kind {
                SeriesField::Metric => Value::String(spec.metric.to_string()),
                SeriesField::Unit => enum_value(spec.unit),
                SeriesField::Aggregation => enum_value(Aggregation::from(spec.aggregation)),
                SeriesField::Points(points, fill) => {
                    let fill = fill.unwrap_or_else(|| series::Fill::default_for(spec.aggregation));
                    points_value(
                        &computed.window,
                        computed.data.filled(&computed.window, fill),
                        points,
                        raw,
                    )
                }
                SeriesField::Total => number(summary().total),
                SeriesField::Min => number(summary().min),
                SeriesField::Max => number(summary().max),
                SeriesField::Sources => {
                    Value::List(computed.sources.iter().copied().map(enum_value).collect())
                }
                SeriesField::Exact => Value::Boolean(computed.data.exact && summary().exact),
                SeriesField::Stale => Value::Boolean(computed.stale),
                SeriesField::Change => {
                    let previous = match series.previous.get() {
                        Some(Ok(previous)) => previous.data.summary(spec.aggregation).total,
                        // `plain_selection` took `change` only with a previous window.
                        _ => None,
                    };
                    number(change(summary().total, previous))
                }
                SeriesField::Typename => Value::String(Self::type_name().into_owned()),
            };
            object.insert(key.clone(), value);
        }
        Value::Object(object)
    }
}

impl OutputType for TimeSeries {
    fn type_name() -> Cow<'static, str> {
        <SeriesFields as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <SeriesFields as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match self.plain_selection(&field.node.selection_set.node) {
            Some(selection) => {
                Ok(self.plain_value(&selection, ctx.data_opt::<RawJson>().is_some()))
            }
            None => OutputType::resolve(&self.0, ctx, field).await,
        }
    }
}

/// The window actually applied: the requested one aligned outward to bucket boundaries.
#[derive(SimpleObject)]
pub struct ResolvedWindow {
    /// Start of the first bucket.
    from: Instant,
    /// End of the last bucket (exclusive).
    to: Instant,
    /// Bucket size.
    granularity: Granularity,
    /// Zone the buckets were cut in.
    time_zone: TimeZone,
}

impl From<&series::Window> for ResolvedWindow {
    fn from(window: &series::Window) -> Self {
        Self {
            from: Instant(window.from()),
            to: Instant(window.to()),
            granularity: window.granularity().into(),
            time_zone: TimeZone(window.zone()),
        }
    }
}

/// The error of a window whose previous window cannot exist.
fn previous_window_error(error: impl std::fmt::Display) -> ApiError {
    ApiError::bad_input(format!("the previous window: {error}"))
}

impl SeriesFields {
    fn summary(&self) -> series::Summary {
        self.computed.data.summary(self.recipe.spec.aggregation)
    }

    async fn previous_computed(&self) -> Result<Arc<Computed>, ApiError> {
        self.previous
            .get_or_init(|| async {
                let window = self
                    .computed
                    .window
                    .previous()
                    .map_err(previous_window_error)?;
                let recipe = &self.recipe;
                let span = recipe.span.as_ref();
                compute(
                    &recipe.workspace,
                    &recipe.fetcher,
                    &recipe.spec,
                    window,
                    span,
                )
                .await
            })
            .await
            .clone()
    }
}

/// A series of values on calendar buckets, with its summary and provenance.
#[Object(name = "TimeSeries")]
impl SeriesFields {
    /// Dotted metric name, e.g. `dialogs.created`.
    async fn metric(&self) -> &str {
        self.recipe.spec.metric
    }

    /// Unit of every value.
    async fn unit(&self) -> Unit {
        self.recipe.spec.unit
    }

    /// How buckets and the total are aggregated.
    async fn aggregation(&self) -> Aggregation {
        self.recipe.spec.aggregation.into()
    }

    /// The window actually applied (aligned outward to bucket boundaries).
    async fn window(&self) -> ResolvedWindow {
        (&self.computed.window).into()
    }

    /// One point per bucket, oldest first.
    async fn points(
        &self,
        #[graphql(
            desc = "How empty buckets appear. Default: ZERO for SUM series, NULL otherwise."
        )]
        fill: Option<Fill>,
    ) -> Points {
        let fill = fill
            .map(Into::into)
            .unwrap_or_else(|| series::Fill::default_for(self.recipe.spec.aggregation));
        let window = &self.computed.window;
        Points {
            window: window.clone(),
            points: self.computed.data.filled(window, fill).collect(),
        }
    }

    /// SUM: the sum; AVERAGE: the (weighted) mean; LAST: the last value; DISTINCT: the
    /// provider's own total where it gives one, else the largest bucket (a lower bound, and
    /// `exact` is false). Null when there is no data.
    async fn total(&self) -> Option<f64> {
        self.summary().total
    }

    /// The smallest bucket value.
    async fn min(&self) -> Option<f64> {
        self.summary().min
    }

    /// The largest bucket value.
    async fn max(&self) -> Option<f64> {
        self.summary().max
    }

    /// The same series over the equally long window (same number of buckets) right before this one.
    async fn previous(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<TimeSeries>> {
        let computed = self.previous_computed().await?;
        warn(&self.recipe.fetcher, &computed);
        report(ctx, &computed.errors);
        Ok(Some(TimeSeries::new(self.recipe.clone(), computed)))
    }

    /// (total - previous.total) / previous.total, as a fraction (0.25 = +25%). Null when
    /// either total is null or the previous total is 0.
    async fn change(&self) -> async_graphql::Result<Option<f64>> {
        let previous = self.previous_computed().await?;
        Ok(change(
            self.summary().total,
            previous.data.summary(self.recipe.spec.aggregation).total,
        ))
    }

    /// Providers that contributed to this series.
    async fn sources(&self) -> &[Provider] {
        &self.computed.sources
    }

    /// False where a bucket or the total had to be approximated (e.g. UTC days put on local
    /// days, an average without weights, a distinct count over several buckets).
    async fn exact(&self) -> bool {
        self.computed.data.exact && self.summary().exact
    }

    /// True where cached data was served past its freshness because a refresh failed.
    async fn stale(&self) -> bool {
        self.computed.stale
    }
}

impl TimeSeries {
    fn new(recipe: Arc<Recipe>, computed: Arc<Computed>) -> Self {
        Self(SeriesFields {
            recipe,
            computed,
            previous: OnceCell::new(),
        })
    }
}

/// What the selection of a series needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Needs {
    /// No buckets (no `points`, `min`, `max`, `previous` or `change`): a part may use a
    /// cheaper total call.
    only_total: bool,
    /// `previous` or `change`: the previous window is computed together with this one.
    previous: bool,
}

impl Needs {
    /// From the look-ahead of the current field.
    pub(crate) fn of(ctx: &Context<'_>) -> Needs {
        let look = ctx.look_ahead();
        let selected = |fields: &[&str]| fields.iter().any(|field| look.field(field).exists());
        Self::from_selected(selected)
    }

    /// From a plain selection ([`TimeSeries::plain_fields`]).
    pub(crate) fn of_plain(selection: &[(Name, SeriesField)]) -> Needs {
        Self::from_selected(|fields| {
            selection.iter().any(|(_, kind)| {
                let name = match kind {
                    SeriesField::Points(..) => "points",
                    SeriesField::Min => "min",
                    SeriesField::Max => "max",
                    SeriesField::Change => "change",
                    _ => return false,
                };
                fields.contains(&name)
            })
        })
    }

    fn from_selected(selected: impl Fn(&[&str]) -> bool) -> Needs {
        let previous = selected(&["previous", "change"]);
        Needs {
            only_total: !previous && !selected(&["points", "min", "max"]),
            previous,
        }
    }
}

/// Record `computed`'s stale-data warnings for `extensions.warnings`.
fn warn(fetcher: &Fetcher, computed: &Computed) {
    for warning in &computed.warnings {
        fetcher
            .scope
            .warn(format!("served cached data: {}", warning.message()));
    }
}

/// Attach `errors` to the current field.
pub(crate) fn report(ctx: &Context<'_>, errors: &[ApiError]) {
    for error in errors {
        let error: async_graphql::Error = error.clone().into();
        ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
    }
}

/// Computes a series for its field. When the selection needs the previous window too, both
/// are computed at once (one round of upstream latency, not two) over their common span.
async fn evaluate(
    fetcher: &Fetcher,
    workspace: &Arc<Workspace>,
    spec: SeriesSpec,
    window: &WindowInput,
    needs: Needs,
) -> Result<TimeSeries, ApiError> {
    let window = window.resolve(workspace.zone)?;
    // A previous window that cannot exist is reported by `previous`/`change` themselves.
    let previous = needs.previous.then(|| window.previous().ok()).flatten();
    let span = previous.as_ref().and_then(|previous| {
        series::Window::new(
            previous.from(),
            window.to(),
            window.granularity(),
            window.zone(),
        )
        .ok()
    });
    let recipe = Arc::new(Recipe {
        workspace: workspace.clone(),
        fetcher: fetcher.clone(),
        spec: SeriesSpec {
            total_only: needs.only_total,
            ..spec
        },
        span,
    });
    let fetch = |window| {
        let recipe = &recipe;
        async move {
            let span = recipe.span.as_ref();
            compute(
                &recipe.workspace,
                &recipe.fetcher,
                &recipe.spec,
                window,
                span,
            )
            .await
        }
    };
    let (computed, previous) = match previous {
        Some(previous) => {
            let (computed, previous) = futures::join!(fetch(window), fetch(previous));
            (computed?, Some(previous))
        }
        None => (fetch(window).await?, None),
    };
    let series = TimeSeries::new(recipe, computed);
    if let Some(previous) = previous {
        // The cell is new: this cannot fail.
        let _ = series.0.previous.set(previous);
    }
    Ok(series)
}

/// A series field's answer, without a GraphQL context: the series (None: not applicable) or
/// the field's own error, and the errors to attach at the field beside it. Its warnings are
/// already recorded.
pub(crate) struct Answered {
    pub series: Result<Option<TimeSeries>, ApiError>,
    pub errors: Vec<ApiError>,
}

/// The answer of a series field: `optional` for a nullable one, which is null without error
/// when no source offers the metric (not applicable) and null with the error(s) when every
/// source failed; a non-null one always answers, contributions that failed left out and
/// reported (all failing gives an empty series with `sources: []`).
pub(crate) async fn answer(
    fetcher: &Fetcher,
    workspace: &Arc<Workspace>,
    spec: SeriesSpec,
    window: &WindowInput,
    needs: Needs,
    optional: bool,
) -> Answered {
    if optional && spec.parts.is_empty() {
        return Answered {
            series: Ok(None),
            errors: Vec::new(),
        };
    }
    let series = match evaluate(fetcher, workspace, spec, window, needs).await {
        Ok(series) => series,
        Err(error) => {
            return Answered {
                series: Err(error),
                errors: Vec::new(),
            }
        }
    };
    let computed = &series.0.computed;
    warn(fetcher, computed);
    let mut errors = computed.errors.clone();
    if optional && computed.failed() {
        // The first error is the field's; the others are reported beside it.
        let first = errors.remove(0);
        return Answered {
            series: Err(first),
            errors,
        };
    }
    Answered {
        series: Ok(Some(series)),
        errors,
    }
}

impl TimeSeries {
    /// The error of the previous window, when it was computed and failed.
    pub(crate) fn previous_error(&self) -> Option<&ApiError> {
        self.0
            .previous
            .get()
            .and_then(|previous| previous.as_ref().err())
    }
}

/// [`answer`] for the current field: its errors attached there.
async fn answer_field(
    ctx: &Context<'_>,
    workspace: &Arc<Workspace>,
    spec: SeriesSpec,
    window: &WindowInput,
    optional: bool,
) -> async_graphql::Result<Option<TimeSeries>> {
    let fetcher = ctx.data_unchecked::<Fetcher>();
    let answered = answer(fetcher, workspace, spec, window, Needs::of(ctx), optional).await;
    report(ctx, &answered.errors);
    Ok(answered.series?)
}

/// A non-null series field: always answers; contributions that failed are left out and
/// reported as errors (all failing gives an empty series with `sources: []`).
pub async fn series(
    ctx: &Context<'_>,
    workspace: &Arc<Workspace>,
    spec: SeriesSpec,
    window: &WindowInput,
) -> async_graphql::Result<TimeSeries> {
    let series = answer_field(ctx, workspace, spec, window, false).await?;
    Ok(series.expect("a non-null series always answers"))
}

/// A nullable series field: null without error when no source offers the metric (not
/// applicable), null with the error(s) when every source failed.
pub async fn optional_series(
    ctx: &Context<'_>,
    workspace: &Arc<Workspace>,
    spec: SeriesSpec,
    window: &WindowInput,
) -> async_graphql::Result<Option<TimeSeries>> {
    answer_field(ctx, workspace, spec, window, true).await
}
