//! `Operator` (a federation entity), `OperatorSummary` and `OperatorGroup`: the people who
//! answer customers, from Chat-Tonic's operator report and message2give's per-user statistics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{Duration, Utc};

use crate::catalogue::{Part, SeriesSpec, Unit};
use crate::error::{ApiError, UpstreamError};
use crate::fetch::Fetcher;
use crate::graphql::channel::ChannelKind;
use crate::graphql::scalars::Instant;
use crate::graphql::time_series::{optional_series, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::providers::chat_tonic::{OperatorRow, RangeKey};
use crate::providers::message2give::{self, ChatKey, ChatType, M2gStat, M2gWho};
use crate::providers::Provider;
use crate::series::{Aggregation, Granularity, Window, Zone};
use crate::workspace::Workspace;

/// An operator's presence.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorStatus {
    /// Connected and available.
    Online,
    /// Connected, away.
    Away,
    /// Not connected.
    Offline,
    /// The provider does not say.
    Unknown,
}

/// Who an operator is, per provider.
#[derive(Clone)]
enum Who {
    ChatTonic(Arc<OperatorRow>),
    Message2Give { user: String, groups: Vec<String> },
}

/// A person who answers customers.
#[derive(Clone)]
pub struct Operator {
    workspace: Arc<Workspace>,
    who: Who,
}

/// Chat-Tonic's operator report for one window (units as Chat-Tonic reports them; times in
/// seconds: see the README's provider notes).
#[derive(SimpleObject)]
pub struct OperatorSummary {
    /// Time online, seconds.
    online_time: f64,
    /// Time away, seconds.
    away_time: f64,
    /// Time online without a conversation, seconds.
    free_time: f64,
    /// Queries (conversations) resolved.
    queries_resolved: i64,
    /// Queries assigned.
    queries_assigned: i64,
    /// Queries in progress at the end of the window.
    queries_in_progress: i64,
    /// Mean duration of a resolved query, seconds.
    avg_duration_resolved: f64,
    /// Total duration of queries, seconds.
    sum_duration: f64,
    /// Net promoter score of the operator's conversations, -100..100.
    nps: f64,
    /// NPS answers received.
    nps_responses: i64,
    /// Origins (entry points) the operator serves.
    origins: Vec<String>,
}

impl From<&OperatorRow> for OperatorSummary {
    fn from(row: &OperatorRow) -> Self {
        // Counts arrive as JSON numbers; they are whole and small.
        let count = |v: f64| v.round() as i64;
        Self {
            online_time: row.online_time,
            away_time: row.away_time,
            free_time: row.free_time,
            queries_resolved: count(row.queries_resolved),
            queries_assigned: count(row.queries_assigned),
            queries_in_progress: count(row.queries_in_progress),
            avg_duration_resolved: row.avg_duration_resolved,
            sum_duration: row.sum_duration,
            nps: row.nps,
            nps_responses: count(row.nps_responses),
            origins: row.origins.clone(),
        }
    }
}

/// The parts of a message2give per-user (or per-group) series for `channel`.
fn message2give_parts(who: M2gWho, stat: M2gStat, channel: Option<ChannelKind>) -> Vec<Part> {
    let chats = match channel {
        None => vec![ChatType::Web, ChatType::Sms],
        Some(ChannelKind::Web) => vec![ChatType::Web],
        Some(ChannelKind::Sms) => vec![ChatType::Sms],
        Some(_) => return Vec::new(),
    };
    vec![message2give::chat_stats(chats, who, stat)]
}

fn stat_spec(stat: M2gStat, parts: Vec<Part>) -> SeriesSpec {
    let (metric, unit, aggregation) = match stat {
        M2gStat::Sessions => ("operator.sessions", Unit::Count, Aggregation::Sum),
        M2gStat::ResponseTime => ("operator.responseTime", Unit::Seconds, Aggregation::Average),
        M2gStat::WaitTime => ("operator.waitTime", Unit::Seconds, Aggregation::Average),
        M2gStat::SessionDuration => (
            "operator.sessionDuration",
            Unit::Seconds,
            Aggregation::Average,
        ),
    };
    SeriesSpec {
        metric,
        unit,
        aggregation,
        parts,
        total_only: false,
    }
}

impl Operator {
    fn operator_id(&self) -> String {
        match &self.who {
            Who::ChatTonic(row) => format!("chat_tonic:{}", row.id),
            Who::Message2Give { user, .. } => format!("message2give:{user}"),
        }
    }

    async fn m2g_series(
        &self,
        ctx: &Context<'_>,
        stat: M2gStat,
        window: WindowInput,
        channel: Option<ChannelKind>,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        window.resolve(self.workspace.zone)?;
        let parts = match &self.who {
            Who::Message2Give { user, .. } => {
                message2give_parts(M2gWho::User(user.clone()), stat, channel)
            }
            Who::ChatTonic(_) => Vec::new(),
        };
        optional_series(ctx, &self.workspace, stat_spec(stat, parts), &window).await
    }
}

/// A person who answers customers. Federation entity keyed by `id`.
#[Object]
impl Operator {
    /// `chat_tonic:<_id>` or `message2give:<userId>`.
    async fn id(&self) -> ID {
        ID(self.operator_id())
    }

    /// The provider that knows this operator.
    async fn provider(&self) -> Provider {
        match self.who {
            Who::ChatTonic(_) => Provider::ChatTonic,
            Who::Message2Give { .. } => Provider::Message2Give,
        }
    }

    /// Display name (Chat-Tonic); null where the provider has no name (message2give).
    async fn name(&self) -> Option<String> {
        match &self.who {
            Who::ChatTonic(row) => row.display_name.clone().or_else(|| {
                let parts: Vec<&str> = [row.given_name.as_deref(), row.family_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }),
            Who::Message2Give { .. } => None,
        }
    }

    /// Presence as the provider last reported it (UNKNOWN where it does not say).
    async fn status(&self) -> OperatorStatus {
        match &self.who {
            Who::ChatTonic(row) => match row
                .status
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("online") => OperatorStatus::Online,
                Some("away") => OperatorStatus::Away,
                Some("offline") => OperatorStatus::Offline,
                _ => OperatorStatus::Unknown,
            },
            Who::Message2Give { .. } => OperatorStatus::Unknown,
        }
    }

    /// Last connection (Chat-Tonic); null when unknown.
    async fn last_connection(&self) -> Option<Instant> {
        match &self.who {
            Who::ChatTonic(row) => row.last_connection.map(Instant),
            Who::Message2Give { .. } => None,
        }
    }

    /// The operator groups (message2give ccts) the operator belongs to.
    async fn groups(&self) -> Vec<OperatorGroup> {
        match &self.who {
            Who::Message2Give { groups, .. } => groups
                .iter()
                .map(|id| OperatorGroup {
                    workspace: self.workspace.clone(),
                    id: id.clone(),
                    members: Vec::new(),
                })
                .collect(),
            Who::ChatTonic(_) => Vec::new(),
        }
    }

    /// Chat-Tonic's operator report for the window (its `from`/`to`; the granularity is not
    /// used). Null for message2give operators and when Chat-Tonic does not list the operator.
    async fn summary(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice (granularity ignored).")] window: WindowInput,
    ) -> async_graphql::Result<Option<OperatorSummary>> {
        let Who::ChatTonic(row) = &self.who else {
            return Ok(None);
        };
        let window = window.resolve(self.workspace.zone)?;
        let fetcher = ctx.data_unchecked::<Fetcher>();
        let range = RangeKey {
            start: window.from(),
            end: window.to(),
        };
        let report =
            crate::providers::chat_tonic::operators_for(&self.workspace, fetcher, range).await?;
        Ok(report
            .value
            .operators
            .iter()
            .find(|o| o.id == row.id)
            .map(OperatorSummary::from))
    }

    /// Response time (SECONDS, AVERAGE weighted by sessions): message2give, this user; `channel`
    /// WEB or SMS narrows to one chat type. Null for Chat-Tonic operators.
    async fn response_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.m2g_series(ctx, M2gStat::ResponseTime, window, channel)
            .await
    }

    /// Wait time (SECONDS, AVERAGE weighted by sessions): message2give, this user. Null for
    /// Chat-Tonic operators.
    async fn wait_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.m2g_series(ctx, M2gStat::WaitTime, window, channel)
            .await
    }

    /// Sessions (COUNT, SUM): message2give, this user. Null for Chat-Tonic operators.
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.m2g_series(ctx, M2gStat::Sessions, window, channel)
            .await
    }

    /// Session duration (SECONDS, AVERAGE weighted by sessions): message2give, this user. Null
    /// for Chat-Tonic operators.
    async fn session_duration(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.m2g_series(ctx, M2gStat::SessionDuration, window, channel)
            .await
    }
}

/// A group of operators (message2give "cct").
pub struct OperatorGroup {
    workspace: Arc<Workspace>,
    id: String,
    /// Member user ids, when known (listed from a window's statistics).
    members: Vec<String>,
}

impl OperatorGroup {
    async fn series(
        &self,
        ctx: &Context<'_>,
        stat: M2gStat,
        window: WindowInput,
        channel: Option<ChannelKind>,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        window.resolve(self.workspace.zone)?;
        let parts = message2give_parts(M2gWho::Group(self.id.clone()), stat, channel);
        let spec = stat_spec(stat, parts);
        optional_series(
            ctx,
            &self.workspace,
            SeriesSpec {
                metric: group_metric(stat),
                ..spec
            },
            &window,
        )
        .await
    }
}

fn group_metric(stat: M2gStat) -> &'static str {
    match stat {
        M2gStat::Sessions => "operatorGroup.sessions",
        M2gStat::ResponseTime => "operatorGroup.responseTime",
        M2gStat::WaitTime => "operatorGroup.waitTime",
        M2gStat::SessionDuration => "operatorGroup.sessionDuration",
    }
}

/// A group of operators (message2give "cct": the docs do not expand the name). Series cover
/// the group's members as the provider reports them per group.
#[Object]
impl OperatorGroup {
    /// `message2give:<cctId>`.
    async fn id(&self) -> ID {
        ID(format!("message2give:{}", self.id))
    }

    /// The provider of the group.
    async fn provider(&self) -> Provider {
        Provider::Message2Give
    }

    /// The members seen in the window the group was listed for (empty when reached from an
    /// operator's `groups`).
    async fn members(&self) -> Vec<Operator> {
        self.members
            .iter()
            .map(|user| Operator {
                workspace: self.workspace.clone(),
                who: Who::Message2Give {
                    user: user.clone(),
                    groups: vec![self.id.clone()],
                },
            })
            .collect()
    }

    /// Response time of the group (SECONDS, AVERAGE weighted by sessions).
    async fn response_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.series(ctx, M2gStat::ResponseTime, window, channel)
            .await
    }

    /// Wait time of the group (SECONDS, AVERAGE weighted by sessions).
    async fn wait_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.series(ctx, M2gStat::WaitTime, window, channel).await
    }

    /// Sessions of the group (COUNT, SUM).
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.series(ctx, M2gStat::Sessions, window, channel).await
    }

    /// Session duration of the group (SECONDS, AVERAGE weighted by sessions).
    async fn session_duration(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "WEB or SMS (message2give chat types); default both.")] channel: Option<
            ChannelKind,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.series(ctx, M2gStat::SessionDuration, window, channel)
            .await
    }
}

/// message2give users and groups seen in `window`'s months (web and SMS).
async fn message2give_people(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    window: &Window,
) -> Result<(BTreeSet<String>, BTreeMap<String, BTreeSet<String>>), UpstreamError> {
    let keys: Vec<ChatKey> = message2give::plan(window)
        .into_iter()
        .flat_map(|month| [ChatType::Web, ChatType::Sms].map(|chat| ChatKey { chat, month }))
        .collect();
    let pages = futures::future::try_join_all(
        keys.into_iter()
            .map(|key| crate::providers::message2give::chat_month(workspace, fetcher, key)),
    )
    .await?;
    let stats: Vec<_> = pages.iter().map(|page| page.value.as_ref()).collect();
    Ok((message2give::users(&stats), message2give::groups(&stats)))
}

fn groups_of(user: &str, groups: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    groups
        .iter()
        .filter(|(_, members)| members.contains(user))
        .map(|(id, _)| id.clone())
        .collect()
}

/// Report an error next to a list that still answers with the other providers.
fn report(ctx: &Context<'_>, error: UpstreamError) {
    let error: async_graphql::Error = ApiError::from(error).into();
    ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
}

/// The operators of a workspace seen in `window`: Chat-Tonic's report for the window, then
/// message2give users of the window's months (both fetched at once). A failing provider is reported, the other listed.
pub async fn operators(
    ctx: &Context<'_>,
    workspace: &Arc<Workspace>,
    window: &Window,
) -> Vec<Operator> {
    let fetcher = ctx.data_unchecked::<Fetcher>();
    let range = RangeKey {
        start: window.from(),
        end: window.to(),
    };
    // Both providers are asked at once.
    let (chat_tonic, message2give) = futures::join!(
        async {
            if workspace.has(Provider::ChatTonic) {
                Some(crate::providers::chat_tonic::operators_for(workspace, fetcher, range).await)
            } else {
                None
            }
        },
        async {
            if workspace.has(Provider::Message2Give) {
                Some(message2give_people(workspace, fetcher, window).await)
            } else {
                None
            }
        }
    );
    let mut operators = Vec::new();
    match chat_tonic {
        Some(Ok(report)) => operators.extend(report.value.operators.iter().map(|row| Operator {
            workspace: workspace.clone(),
            who: Who::ChatTonic(Arc::new(row.clone())),
        })),
        Some(Err(error)) => report(ctx, error),
        None => {}
    }
    match message2give {
        Some(Ok((users, groups))) => operators.extend(users.into_iter().map(|user| Operator {
            workspace: workspace.clone(),
            who: Who::Message2Give {
                groups: groups_of(&user, &groups),
                user,
            },
        })),
        Some(Err(error)) => report(ctx, error),
        None => {}
    }
    operators
}

/// The operator groups (message2give ccts) seen in `window`, with their members.
pub async fn operator_groups(
    ctx: &Context<'_>,
    workspace: &Arc<Workspace>,
    window: &Window,
) -> Vec<OperatorGroup> {
    if !workspace.has(Provider::Message2Give) {
        return Vec::new();
    }
    let fetcher = ctx.data_unchecked::<Fetcher>();
    match message2give_people(workspace, fetcher, window).await {
        Ok((_, groups)) => groups
            .into_iter()
            .map(|(id, members)| OperatorGroup {
                workspace: workspace.clone(),
                id,
                members: members.into_iter().collect(),
            })
            .collect(),
        Err(error) => {
            report(ctx, error);
            Vec::new()
        }
    }
}

/// Find an operator by id among `workspaces`: Chat-Tonic operators of the last 30 days,
/// message2give users of the current month. Malformed ids are `BAD_USER_INPUT`.
pub async fn find(
    ctx: &Context<'_>,
    workspaces: &[Arc<Workspace>],
    id: &str,
) -> async_graphql::Result<Option<Operator>> {
    let fetcher = ctx.data_unchecked::<Fetcher>();
    let (provider, raw) = match id.split_once(':') {
        Some(("chat_tonic", raw)) if !raw.is_empty() => (Provider::ChatTonic, raw),
        Some(("message2give", raw)) if !raw.is_empty() => (Provider::Message2Give, raw),
        _ => {
            return Err(ApiError::bad_input(format!(
                "argument `id`: {id:?} is not an operator id; expected `chat_tonic:<id>` or `message2give:<userId>`"
            ))
            .into())
        }
    };
    let today = Granularity::Day.floor(Utc::now(), Zone::utc());
    let recent = Window::new(
        today - Duration::days(30),
        today + Duration::days(1),
        Granularity::Day,
        Zone::utc(),
    )
    .map_err(|e| ApiError::bad_input(e.to_string()))?;
    // Every workspace is asked at once, and always all of them (not until the first match): a
    // lookup costs the same upstream requests whichever workspace holds the id, so the
    // request's memo makes 50 representations cost what one does.
    let found = futures::future::try_join_all(
        workspaces
            .iter()
            .filter(|w| w.has(provider))
            .map(|workspace| find_in(workspace, fetcher, provider, raw, &recent)),
    )
    .await?;
    Ok(found.into_iter().flatten().next())
}

/// Operator `raw` of `provider` in `workspace`, if `recent` saw it.
async fn find_in(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
    provider: Provider,
    raw: &str,
    recent: &Window,
) -> async_graphql::Result<Option<Operator>> {
    if provider == Provider::ChatTonic {
        let range = RangeKey {
            start: recent.from(),
            end: recent.to(),
        };
        let report = crate::providers::chat_tonic::operators_for(workspace, fetcher, range).await?;
        return Ok(report
            .value
            .operators
            .iter()
            .find(|o| o.id == raw)
            .map(|row| Operator {
                workspace: workspace.clone(),
                who: Who::ChatTonic(Arc::new(row.clone())),
            }));
    }
    let (users, groups) = message2give_people(workspace, fetcher, recent).await?;
    Ok(users.contains(raw).then(|| Operator {
        workspace: workspace.clone(),
        who: Who::Message2Give {
            user: raw.to_string(),
            groups: groups_of(raw, &groups),
        },
    }))
}
