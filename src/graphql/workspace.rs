//! `Workspace` (a federation entity) and `Source`.

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject, ID};

use crate::error::{ApiError, UpstreamError};
use crate::fetch::Fetcher;
use crate::graphql::bot::{self, Bot};
use crate::graphql::channel::Channel;
use crate::graphql::operator::{self, Operator, OperatorGroup};
use crate::graphql::scalars::{Instant, TimeZone};
use crate::graphql::stats::{DialogStats, MessageStats, SatisfactionStats, UserStats};
use crate::graphql::survey::{self, Survey};
use crate::graphql::window::WindowInput;
use crate::providers::xenioo::CallWait;
use crate::providers::Provider;
use crate::workspace::Workspace;

/// A configured provider account of a workspace and its last known health.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct Source {
    /// The provider.
    provider: Provider,
    /// False when the most recent upstream call failed.
    healthy: bool,
    /// When an upstream call last succeeded (null: not yet called since start).
    last_success_at: Option<Instant>,
    /// What went wrong on the most recent failed call (never contains credentials).
    last_error: Option<String>,
    /// For throttled providers (Xenioo): the earliest time chatstats will call again (past:
    /// it may call now). Null before the first call that may have reached the provider.
    next_call_allowed_at: Option<Instant>,
    /// For throttled providers (Xenioo): why the next call waits until `nextCallAllowedAt`,
    /// the provider's own throttle or chatstats' interval after a call that may have counted;
    /// null when it need not wait.
    next_call_wait: Option<CallWait>,
}

/// The sources of `workspace` as they are now.
fn sources_of(workspace: &Workspace) -> Vec<Source> {
    let now = chrono::Utc::now();
    workspace
        .sources()
        .into_iter()
        .map(|source| {
            let upstream = source.upstream();
            let health = upstream.health();
            let next_call = source.next_call();
            Source {
                provider: upstream.provider(),
                healthy: health.healthy(),
                last_success_at: health.last_success_at.map(Instant),
                last_error: health.last_error.clone(),
                next_call_allowed_at: next_call.map(|next| Instant(next.at)),
                next_call_wait: next_call.filter(|next| next.at > now).map(|next| next.wait),
            }
        })
        .collect()
}

/// The sources of `workspace` once the upstream calls of `fetcher`'s request have ended.
pub(crate) async fn sources_shown(
    workspace: &Arc<Workspace>,
    fetcher: Option<&Fetcher>,
) -> Vec<Source> {
    if let Some(fetcher) = fetcher {
        fetcher.scope.settled().await;
    }
    let shown = sources_of(workspace);
    // Health changes with upstream calls, not with the chunks an answer read: an answer
    // showing it is reused only while it reads the same.
    if let Some(fetcher) = fetcher {
        let (workspace, then) = (workspace.clone(), shown.clone());
        fetcher
            .scope
            .still_true_while(move || sources_of(&workspace) == then);
    }
    shown
}

impl Source {
    /// The value of field `name` (None: not a field of `Source`), as async-graphql answers it.
    pub(crate) fn field_value(&self, name: &str) -> Option<async_graphql::Value> {
        use async_graphql::resolver_utils::enum_value;
        use async_graphql::{ScalarType, Value};
        let instant = |at: Option<Instant>| at.map_or(Value::Null, |at| at.to_value());
        Some(match name {
            "provider" => enum_value(self.provider),
            "healthy" => Value::Boolean(self.healthy),
            "lastSuccessAt" => instant(self.last_success_at),
            "lastError" => self.last_error.clone().map_or(Value::Null, Value::String),
            "nextCallAllowedAt" => instant(self.next_call_allowed_at),
            "nextCallWait" => self.next_call_wait.map_or(Value::Null, enum_value),
            _ => return None,
        })
    }
}

/// A support team's account: its providers, channels and statistics.
pub struct WorkspaceObject(pub Arc<Workspace>);

/// A support team's account: its providers, channels and statistics. Federation entity keyed
/// by `id`.
#[Object(name = "Workspace")]
impl WorkspaceObject {
    /// The workspace id from the configuration (e.g. `acme`).
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The default zone of every window in this workspace.
    async fn time_zone(&self) -> TimeZone {
        TimeZone(self.0.zone)
    }

    /// Configured providers, their health and throttle state, read once this request's
    /// upstream calls have ended (so a provider whose call failed in this request is shown
    /// unhealthy next to that call's error).
    async fn sources(&self, ctx: &Context<'_>) -> Vec<Source> {
        sources_shown(&self.0, ctx.data_opt::<Fetcher>()).await
    }

    /// Every channel of the workspace: message2give web and SMS, Xenioo channels (from its
    /// snapshot), Help Scout chat, email and phone. If Xenioo cannot be read its channels are
    /// missing and an error says why.
    async fn channels(&self, ctx: &Context<'_>) -> Vec<Channel> {
        let (channels, error) = Channel::all(&self.0, ctx.data_unchecked::<Fetcher>()).await;
        if let Some(error) = error {
            report(ctx, error);
        }
        channels
    }

    /// One channel by id (e.g. `help_scout:chat`, `message2give:web`, `xenioo:Facebook`); null
    /// when there is none.
    async fn channel(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`<provider>:<channel>`, e.g. `help_scout:email`.")] id: ID,
    ) -> Option<Channel> {
        let (channel, error) = Channel::find(&self.0, ctx.data_unchecked::<Fetcher>(), &id).await;
        if let Some(error) = error {
            report(ctx, error);
        }
        channel
    }

    /// Users across providers.
    async fn users(&self) -> UserStats {
        UserStats(self.0.clone())
    }

    /// Dialogs (conversations) across providers.
    async fn dialogs(&self) -> DialogStats {
        DialogStats(self.0.clone())
    }

    /// Messages across providers.
    async fn messages(&self) -> MessageStats {
        MessageStats(self.0.clone())
    }

    /// Customer satisfaction (Chat-Tonic NPS and CSAT).
    async fn satisfaction(&self) -> SatisfactionStats {
        SatisfactionStats(self.0.clone())
    }

    /// Operators seen in the window: Chat-Tonic's operator report for the window, and
    /// message2give users with statistics in the window's months.
    async fn operators(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice (granularity ignored).")] window: WindowInput,
    ) -> async_graphql::Result<Vec<Operator>> {
        let window = window.resolve(self.0.zone)?;
        Ok(operator::operators(ctx, &self.0, &window).await)
    }

    /// Operator groups (message2give ccts) seen in the window's months, with their members.
    async fn operator_groups(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice (granularity ignored).")] window: WindowInput,
    ) -> async_graphql::Result<Vec<OperatorGroup>> {
        let window = window.resolve(self.0.zone)?;
        Ok(operator::operator_groups(ctx, &self.0, &window).await)
    }

    /// SMS surveys (message2give) with usage in the window's months.
    async fn surveys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice (granularity ignored).")] window: WindowInput,
    ) -> async_graphql::Result<Vec<Survey>> {
        let window = window.resolve(self.0.zone)?;
        survey::surveys(ctx, &self.0, &window).await
    }

    /// Chatbots (Xenioo), from the account's hourly snapshot.
    async fn bots(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Bot>> {
        bot::bots(&self.0, ctx.data_unchecked::<Fetcher>()).await
    }
}

/// Report an error next to a list that still answers with the other providers.
fn report(ctx: &Context<'_>, error: UpstreamError) {
    let error: async_graphql::Error = ApiError::from(error).into();
    ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
}
