//! `Channel`: one way customers reach the team (Help Scout chat/email/phone, message2give
//! web/sms, a Xenioo channel), with the series measured on it.

use std::sync::Arc;

use async_graphql::{Context, Object, ID};

use crate::catalogue::{Part, SeriesSpec, Unit};
use crate::error::UpstreamError;
use crate::fetch::Fetcher;
use crate::graphql::time_series::{self, Answered, Needs, TimeSeries};
use crate::graphql::window::WindowInput;
pub use crate::providers::ChannelKind;
use crate::providers::{ChannelFeed, ChannelMetric, ConversationFilter, Provider};
use crate::series::Aggregation;
use crate::workspace::Workspace;

/// One way customers reach the team, with the series measured on it.
pub struct Channel {
    workspace: Arc<Workspace>,
    /// The provider's channel (its module says what the channel shows and measures).
    feed: Arc<dyn ChannelFeed>,
}

impl Channel {
    /// Every channel of a workspace, in provider order. Xenioo's channels are those of its
    /// snapshot; when it cannot be had, the others are listed and the error is returned.
    pub async fn all(
        workspace: &Arc<Workspace>,
        fetcher: &Fetcher,
    ) -> (Vec<Channel>, Option<UpstreamError>) {
        Self::listed(workspace, fetcher, |_| true).await
    }

    /// The channel with this id, if any. Only a `xenioo:` id reads the Xenioo snapshot (its
    /// channel names come from there); the other channels are known from the configuration.
    pub async fn find(
        workspace: &Arc<Workspace>,
        fetcher: &Fetcher,
        id: &str,
    ) -> (Option<Channel>, Option<UpstreamError>) {
        // Only the provider the id names is asked for its channels.
        let prefix = id.split_once(':').map(|(prefix, _)| prefix);
        let (channels, error) = Self::listed(workspace, fetcher, |provider| {
            Some(provider.slug()) == prefix
        })
        .await;
        let channel = channels.into_iter().find(|c| c.channel_id() == id);
        (channel, error)
    }

    /// The channels of the workspace's providers that `wanted` keeps, in provider order. A
    /// provider whose channels cannot be had (Xenioo without a snapshot) is left out and its
    /// error returned.
    async fn listed(
        workspace: &Arc<Workspace>,
        fetcher: &Fetcher,
        wanted: impl Fn(Provider) -> bool,
    ) -> (Vec<Channel>, Option<UpstreamError>) {
        let mut channels = Vec::new();
        let mut error = None;
        for source in workspace.sources() {
            if !wanted(source.provider()) {
                continue;
            }
            match source.channels(workspace, fetcher).await {
                Ok(feeds) => channels.extend(feeds.into_iter().map(|feed| Channel {
                    workspace: workspace.clone(),
                    feed,
                })),
                Err(e) => error = Some(e),
            }
        }
        (channels, error)
    }

    /// The workspace of the channel.
    pub(crate) fn workspace(&self) -> &Arc<Workspace> {
        &self.workspace
    }

    /// The provider's channel.
    pub(crate) fn feed(&self) -> &dyn ChannelFeed {
        self.feed.as_ref()
    }

    pub fn channel_id(&self) -> String {
        format!("{}:{}", self.feed.provider().slug(), self.feed.key())
    }

    /// The part `measured` of this channel reads: none when its provider does not measure it.
    fn parts(&self, measured: ChannelMetric, filter: &ConversationFilter) -> Vec<Part> {
        self.feed
            .part(&self.workspace, measured, filter)
            .into_iter()
            .collect()
    }

    /// The spec of the series `which` of this channel with `filter`: without parts when the
    /// channel's provider does not measure it.
    pub(crate) fn spec(&self, which: ChannelSeries, filter: &ConversationFilter) -> SeriesSpec {
        let (metric, unit, aggregation, measured) = which.describe();
        SeriesSpec {
            metric,
            unit,
            aggregation,
            parts: self.parts(measured, filter),
            total_only: false,
        }
    }

    /// A series `spec` of this channel, answered (see [`time_series::answer`]): null without
    /// error when it has no parts; the window is validated either way so a bad argument is
    /// reported the same everywhere.
    pub(crate) async fn answer(
        &self,
        fetcher: &Fetcher,
        spec: SeriesSpec,
        window: &WindowInput,
        needs: Needs,
    ) -> Answered {
        if let Err(error) = window.resolve(self.workspace.zone) {
            return Answered {
                series: Err(error),
                errors: Vec::new(),
            };
        }
        time_series::answer(fetcher, &self.workspace, spec, window, needs, true).await
    }

    /// [`Channel::answer`] for the current field.
    async fn optional(
        &self,
        ctx: &Context<'_>,
        which: ChannelSeries,
        filter: &ConversationFilter,
        window: &WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        let fetcher = ctx.data_unchecked::<Fetcher>();
        let spec = self.spec(which, filter);
        let answered = self.answer(fetcher, spec, window, Needs::of(ctx)).await;
        time_series::report(ctx, &answered.errors);
        Ok(answered.series?)
    }
}

/// The series fields of `Channel`: what their resolvers and the compiled plans
/// ([`crate::graphql::plan`]) both answer through [`Channel::answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelSeries {
    Conversations,
    Messages,
    ResponseTime,
    WaitTime,
    SessionDuration,
}

impl ChannelSeries {
    /// The series field `name` of `Channel`, if it is one.
    pub fn of(name: &str) -> Option<ChannelSeries> {
        Some(match name {
            "conversations" => Self::Conversations,
            "messages" => Self::Messages,
            "responseTime" => Self::ResponseTime,
            "waitTime" => Self::WaitTime,
            "sessionDuration" => Self::SessionDuration,
            _ => return None,
        })
    }

    /// Its metric name, unit, aggregation and what a channel feed measures for it.
    fn describe(self) -> (&'static str, Unit, Aggregation, ChannelMetric) {
        match self {
            Self::Conversations => (
                "channel.conversations",
                Unit::Count,
                Aggregation::Sum,
                ChannelMetric::Conversations,
            ),
            Self::Messages => (
                "channel.messages",
                Unit::Count,
                Aggregation::Sum,
                ChannelMetric::Messages,
            ),
            Self::ResponseTime => (
                "channel.responseTime",
                Unit::Seconds,
                Aggregation::Average,
                ChannelMetric::ResponseTime,
            ),
            Self::WaitTime => (
                "channel.waitTime",
                Unit::Seconds,
                Aggregation::Average,
                ChannelMetric::WaitTime,
            ),
            Self::SessionDuration => (
                "channel.sessionDuration",
                Unit::Seconds,
                Aggregation::Average,
                ChannelMetric::SessionDuration,
            ),
        }
    }
}

/// One way customers reach the team, with the series measured on it.
#[Object]
impl Channel {
    /// `<provider>:<channel>`, e.g. `help_scout:chat`, `message2give:web`, `xenioo:Facebook`.
    async fn id(&self) -> ID {
        ID(self.channel_id())
    }

    /// What kind of channel this is.
    async fn kind(&self) -> ChannelKind {
        self.feed.kind()
    }

    /// A human-readable name, e.g. `Help Scout chat`, `message2give web`, `Xenioo Facebook`.
    async fn name(&self) -> String {
        self.feed.name()
    }

    /// The provider this channel belongs to.
    async fn provider(&self) -> Provider {
        self.feed.provider()
    }

    /// Conversations started on this channel (COUNT, SUM). Help Scout: the channel's column of
    /// the volume-by-channel report, in UTC days (`exact` is false in other zones);
    /// message2give: sessions of all users, in local days. Finest granularity DAY. Null for
    /// channels without conversation data (Xenioo). The filters apply to Help Scout only.
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(
            desc = "Help Scout mailbox ids to keep (default: the workspace's configured mailboxes, else all)."
        )]
        mailboxes: Option<Vec<i64>>,
        #[graphql(desc = "Help Scout tag ids to keep (default: all).")] tags: Option<Vec<i64>>,
        #[graphql(desc = "Help Scout folder ids to keep (default: all).")] folders: Option<
            Vec<i64>,
        >,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        let filter = ConversationFilter {
            mailboxes,
            tags: tags.unwrap_or_default(),
            folders: folders.unwrap_or_default(),
        };
        self.optional(ctx, ChannelSeries::Conversations, &filter, &window)
            .await
    }

    /// Messages on this channel (COUNT, SUM): Xenioo "Messages" for that `ChannelName`, hourly,
    /// last 30 days. Null for channels without message data (Help Scout, message2give).
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.optional(
            ctx,
            ChannelSeries::Messages,
            &ConversationFilter::default(),
            &window,
        )
        .await
    }

    /// Operator response time (SECONDS, AVERAGE): message2give response averages across
    /// users, weighted by each user-day's session count. Null for other channels.
    async fn response_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.optional(
            ctx,
            ChannelSeries::ResponseTime,
            &ConversationFilter::default(),
            &window,
        )
        .await
    }

    /// Customer wait time (SECONDS, AVERAGE): message2give wait averages across users,
    /// weighted by each user-day's session count. Null for other channels.
    async fn wait_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.optional(
            ctx,
            ChannelSeries::WaitTime,
            &ConversationFilter::default(),
            &window,
        )
        .await
    }

    /// Session duration (SECONDS, AVERAGE): message2give session averages weighted by session
    /// count. Null for other channels.
    async fn session_duration(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.optional(
            ctx,
            ChannelSeries::SessionDuration,
            &ConversationFilter::default(),
            &window,
        )
        .await
    }
}
