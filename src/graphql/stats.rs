//! The workspace-wide statistic groups: `UserStats`, `DialogStats` (+ `ServiceLevel`),
//! `MessageStats` and `SatisfactionStats`. Each field names its sources (SPEC §2.1) through
//! [`Sources`], which keeps only configured providers and the one the `provider` argument asks for.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object};

use crate::catalogue::{Part, SeriesSpec, Unit};
use crate::graphql::time_series::{series, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::providers::chat_tonic::{self, DashboardField};
use crate::providers::connectycube::{self, CcMetric, DialogKind};
use crate::providers::help_scout::{self, HsChannel, VolumeFilter};
use crate::providers::message2give::{self, ChatType, M2gStat, M2gWho};
use crate::providers::xenioo::{self, BotMetric};
use crate::providers::Provider;
use crate::series::Aggregation;
use crate::workspace::Workspace;

/// ConnectyCube dialog types.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogType {
    /// Type 1: broadcast.
    Broadcast,
    /// Type 2: group chat.
    Group,
    /// Type 3: one-to-one.
    Private,
    /// Type 4: public group.
    Public,
}

impl From<DialogType> for DialogKind {
    fn from(t: DialogType) -> Self {
        match t {
            DialogType::Broadcast => DialogKind::Broadcast,
            DialogType::Group => DialogKind::Group,
            DialogType::Private => DialogKind::Private,
            DialogType::Public => DialogKind::Public,
        }
    }
}

/// The contributions of a series: only configured providers, and only the one asked for.
pub struct Sources<'a> {
    workspace: &'a Workspace,
    only: Option<Provider>,
    parts: Vec<Part>,
}

impl<'a> Sources<'a> {
    pub fn new(workspace: &'a Workspace, only: Option<Provider>) -> Self {
        Self {
            workspace,
            only,
            parts: Vec::new(),
        }
    }

    /// Add `part` when its provider is configured and wanted.
    pub fn with(mut self, part: Part) -> Self {
        let provider = part.provider();
        if self.workspace.has(provider) && self.only.is_none_or(|p| p == provider) {
            self.parts.push(part);
        }
        self
    }

    /// Add `part` only when `condition` holds.
    pub fn with_if(self, condition: bool, part: Part) -> Self {
        if condition {
            self.with(part)
        } else {
            self
        }
    }

    pub fn spec(self, metric: &'static str, unit: Unit, aggregation: Aggregation) -> SeriesSpec {
        SeriesSpec {
            metric,
            unit,
            aggregation,
            parts: self.parts,
            total_only: false,
        }
    }
}

fn xenioo(kind: BotMetric) -> Part {
    xenioo::events(kind, None, None)
}

/// The series fields of the workspace-wide groups: what their resolvers and the compiled
/// plans ([`crate::graphql::plan`]) both build a [`SeriesSpec`] from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatSeries {
    UsersNew,
    UsersReturning,
    UsersActive,
    UsersTotal,
    DialogsCreated,
    /// The Chat-Tonic dashboard's dialog states and satisfaction scores: `dialogs.pending`,
    /// `inProgress`, `resolved`, `failed`, `satisfaction.nps`, `csat`.
    Dashboard(DashboardField),
    /// One field of `ServiceLevel`.
    ServiceLevel(DashboardField),
    MessagesSent,
    MessagesReceived,
}

impl StatSeries {
    /// The series field `name` of group `group` (`users`, `dialogs`, `messages`,
    /// `satisfaction`, `serviceLevel`), if it is one.
    pub fn of(group: &str, name: &str) -> Option<StatSeries> {
        use DashboardField as D;
        Some(match (group, name) {
            ("users", "new") => Self::UsersNew,
            ("users", "returning") => Self::UsersReturning,
            ("users", "active") => Self::UsersActive,
            ("users", "total") => Self::UsersTotal,
            ("dialogs", "created") => Self::DialogsCreated,
            ("dialogs", "pending") => Self::Dashboard(D::Pending),
            ("dialogs", "inProgress") => Self::Dashboard(D::Progress),
            ("dialogs", "resolved") => Self::Dashboard(D::Resolved),
            ("dialogs", "failed") => Self::Dashboard(D::Failed),
            ("satisfaction", "nps") => Self::Dashboard(D::Nps),
            ("satisfaction", "csat") => Self::Dashboard(D::Csat),
            ("serviceLevel", "userEfficiency") => Self::ServiceLevel(D::UserEfficiency),
            ("serviceLevel", "attention") => Self::ServiceLevel(D::Attention),
            ("serviceLevel", "resolution") => Self::ServiceLevel(D::Resolution),
            ("serviceLevel", "attentionAndResolution") => {
                Self::ServiceLevel(D::AttentionAndResolution)
            }
            ("messages", "sent") => Self::MessagesSent,
            ("messages", "received") => Self::MessagesReceived,
            _ => return None,
        })
    }

    /// The spec of this series in `workspace`, with the field's `provider` and `types`
    /// arguments (None where it has none).
    pub fn spec(
        self,
        workspace: &Workspace,
        provider: Option<Provider>,
        types: Option<&[DialogType]>,
    ) -> SeriesSpec {
        use DashboardField as D;
        let sources = Sources::new(workspace, provider);
        let chat_tonic = |field, metric, unit, aggregation| {
            Sources::new(workspace, None)
                .with(chat_tonic::dashboard(field))
                .spec(metric, unit, aggregation)
        };
        match self {
            Self::UsersNew => sources
                .with(chat_tonic::dashboard(D::NewUsers))
                .with(xenioo(BotMetric::NewUser))
                .spec("users.new", Unit::Count, Aggregation::Sum),
            Self::UsersReturning => sources.with(xenioo(BotMetric::ReturningUser)).spec(
                "users.returning",
                Unit::Count,
                Aggregation::Sum,
            ),
            Self::UsersActive => sources
                .with(chat_tonic::dashboard(D::ActiveUsers))
                .with(xenioo(BotMetric::ActiveUser))
                .spec("users.active", Unit::Count, Aggregation::Distinct),
            Self::UsersTotal => sources.with(chat_tonic::dashboard(D::TotalUsers)).spec(
                "users.total",
                Unit::Count,
                Aggregation::Last,
            ),
            Self::DialogsCreated => {
                let mut kinds: Vec<DialogKind> = types
                    .iter()
                    .copied()
                    .flatten()
                    .map(|t| (*t).into())
                    .collect();
                kinds.sort();
                kinds.dedup();
                sources
                    .with(connectycube::part(CcMetric::DialogsCreated(kinds)))
                    .with_if(
                        types.is_none(),
                        help_scout::conversations(
                            HsChannel::ALL.to_vec(),
                            VolumeFilter::new(
                                workspace.help_scout_mailboxes.clone(),
                                Vec::new(),
                                Vec::new(),
                            ),
                        ),
                    )
                    .with_if(
                        types.is_none(),
                        message2give::chat_stats(
                            vec![ChatType::Web, ChatType::Sms],
                            M2gWho::AllUsers,
                            M2gStat::Sessions,
                        ),
                    )
                    .spec("dialogs.created", Unit::Count, Aggregation::Sum)
            }
            Self::Dashboard(field) => {
                let (metric, unit, aggregation) = match field {
                    D::Pending => ("dialogs.pending", Unit::Count, Aggregation::Sum),
                    D::Progress => ("dialogs.inProgress", Unit::Count, Aggregation::Sum),
                    D::Resolved => ("dialogs.resolved", Unit::Count, Aggregation::Sum),
                    D::Failed => ("dialogs.failed", Unit::Count, Aggregation::Sum),
                    D::Nps => ("satisfaction.nps", Unit::Score, Aggregation::Average),
                    D::Csat => ("satisfaction.csat", Unit::Score, Aggregation::Average),
                    other => unreachable!("not a dialog state or a score: {other:?}"),
                };
                chat_tonic(field, metric, unit, aggregation)
            }
            Self::ServiceLevel(field) => {
                let metric = match field {
                    D::UserEfficiency => "serviceLevel.userEfficiency",
                    D::Attention => "serviceLevel.attention",
                    D::Resolution => "serviceLevel.resolution",
                    D::AttentionAndResolution => "serviceLevel.attentionAndResolution",
                    other => unreachable!("not a service level: {other:?}"),
                };
                chat_tonic(field, metric, Unit::Percent, Aggregation::Average)
            }
            Self::MessagesSent => sources
                .with(connectycube::part(CcMetric::MessagesSent))
                .with(chat_tonic::dashboard(D::MessagesSent))
                .with(xenioo(BotMetric::Messages))
                .with(xenioo(BotMetric::OperatorMessage))
                .with(message2give::sms_usage(None, false))
                .spec("messages.sent", Unit::Count, Aggregation::Sum),
            Self::MessagesReceived => sources
                .with(chat_tonic::dashboard(D::MessagesReceived))
                .with(xenioo(BotMetric::IncomingMessage))
                .spec("messages.received", Unit::Count, Aggregation::Sum),
        }
    }
}

/// Users across providers.
pub struct UserStats(pub Arc<Workspace>);

/// Users across providers.
#[Object]
impl UserStats {
    /// New users (COUNT, SUM): Chat-Tonic `newUsers` + Xenioo "New User".
    #[graphql(name = "new")]
    async fn new_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::UsersNew.spec(&self.0, provider, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Returning users (COUNT, SUM): Xenioo "Returning User".
    async fn returning(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::UsersReturning.spec(&self.0, provider, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Active users (COUNT, DISTINCT): Chat-Tonic `activeUsers` (asked at the granularity
    /// needed; the window total is Chat-Tonic's own) + Xenioo "Active User". A distinct count
    /// over several upstream buckets is a lower bound and `exact` is false.
    async fn active(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::UsersActive.spec(&self.0, provider, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Total users at the end of each bucket (COUNT, LAST): Chat-Tonic `totalUsers`.
    async fn total(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::UsersTotal.spec(&self.0, provider, None);
        series(ctx, &self.0, spec, &window).await
    }
}

/// Dialogs (conversations) across providers.
pub struct DialogStats(pub Arc<Workspace>);

/// Dialogs (conversations) across providers.
#[Object]
impl DialogStats {
    /// Dialogs created (COUNT, SUM): ConnectyCube dialogs created (filtered by `types`) +
    /// Help Scout conversations of all channels + message2give sessions (web and SMS). With
    /// `types`, only ConnectyCube contributes (the others have no dialog type). Finest: DAY.
    async fn created(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
        #[graphql(desc = "ConnectyCube dialog types to count (default: all).")] types: Option<
            Vec<DialogType>,
        >,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::DialogsCreated.spec(&self.0, provider, types.as_deref());
        series(ctx, &self.0, spec, &window).await
    }

    /// Dialogs waiting for an operator (COUNT, SUM): Chat-Tonic `pending`.
    async fn pending(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::Dashboard(DashboardField::Pending).spec(&self.0, None, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Dialogs in progress (COUNT, SUM): Chat-Tonic `progress`.
    async fn in_progress(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::Dashboard(DashboardField::Progress).spec(&self.0, None, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Dialogs resolved (COUNT, SUM): Chat-Tonic `resolved`.
    async fn resolved(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::Dashboard(DashboardField::Resolved).spec(&self.0, None, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Dialogs failed (COUNT, SUM): Chat-Tonic `failed`.
    async fn failed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::Dashboard(DashboardField::Failed).spec(&self.0, None, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Service-level percentages (Chat-Tonic).
    async fn service_level(
        &self,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> ServiceLevel {
        ServiceLevel {
            workspace: self.0.clone(),
            window,
        }
    }
}

/// Service-level percentages of the Chat-Tonic dashboard (PERCENT, AVERAGE). Chat-Tonic gives
/// no weights, so buckets coarser than those it was asked for are plain means (`exact` false);
/// the window total is Chat-Tonic's own.
pub struct ServiceLevel {
    workspace: Arc<Workspace>,
    window: WindowInput,
}

/// Service-level percentages of the Chat-Tonic dashboard (PERCENT, AVERAGE). Chat-Tonic gives
/// no weights, so buckets coarser than those it was asked for are plain means (`exact` false);
/// the window total is Chat-Tonic's own.
#[Object]
impl ServiceLevel {
    /// Chat-Tonic `userEfficiency`.
    async fn user_efficiency(&self, ctx: &Context<'_>) -> async_graphql::Result<TimeSeries> {
        self.get(ctx, DashboardField::UserEfficiency).await
    }

    /// Chat-Tonic `attention`.
    async fn attention(&self, ctx: &Context<'_>) -> async_graphql::Result<TimeSeries> {
        self.get(ctx, DashboardField::Attention).await
    }

    /// Chat-Tonic `resolution`.
    async fn resolution(&self, ctx: &Context<'_>) -> async_graphql::Result<TimeSeries> {
        self.get(ctx, DashboardField::Resolution).await
    }

    /// Chat-Tonic `attentionAndResolution`.
    async fn attention_and_resolution(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<TimeSeries> {
        self.get(ctx, DashboardField::AttentionAndResolution).await
    }
}

impl ServiceLevel {
    async fn get(
        &self,
        ctx: &Context<'_>,
        field: DashboardField,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::ServiceLevel(field).spec(&self.workspace, None, None);
        series(ctx, &self.workspace, spec, &self.window).await
    }
}

/// Messages across providers.
pub struct MessageStats(pub Arc<Workspace>);

/// Messages across providers.
#[Object]
impl MessageStats {
    /// Messages sent (COUNT, SUM): ConnectyCube messages sent + Chat-Tonic `messagesSent` +
    /// Xenioo "Messages" and "Operator Message" + message2give SMS messages (all surveys).
    async fn sent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::MessagesSent.spec(&self.0, provider, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Messages received (COUNT, SUM): Chat-Tonic `messagesReceived` + Xenioo "Incoming Message".
    async fn received(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::MessagesReceived.spec(&self.0, provider, None);
        series(ctx, &self.0, spec, &window).await
    }
}

/// Customer satisfaction (Chat-Tonic).
pub struct SatisfactionStats(pub Arc<Workspace>);

/// Customer satisfaction (Chat-Tonic).
#[Object]
impl SatisfactionStats {
    /// Net promoter score, -100..100 (SCORE, AVERAGE): Chat-Tonic `nps`.
    async fn nps(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::Dashboard(DashboardField::Nps).spec(&self.0, None, None);
        series(ctx, &self.0, spec, &window).await
    }

    /// Customer satisfaction score, 1..5 (SCORE, AVERAGE): Chat-Tonic `csat`.
    async fn csat(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = StatSeries::Dashboard(DashboardField::Csat).spec(&self.0, None, None);
        series(ctx, &self.0, spec, &window).await
    }
}
