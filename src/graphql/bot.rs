//! `Bot`: a Xenioo chatbot and its 18 event types.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object, ID};

use crate::catalogue::{SeriesSpec, Unit};
use crate::error::ApiError;
use crate::fetch::Fetcher;
use crate::graphql::channel::Channel;
use crate::graphql::time_series::{series, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::providers::xenioo;
use crate::providers::Provider;
use crate::series::Aggregation;
use crate::workspace::Workspace;

/// The Xenioo analytics event types (codes 0–17).
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::providers::xenioo::BotMetric")]
pub enum BotMetric {
    /// 0: users seen for the first time (COUNT, SUM).
    NewUser,
    /// 1: users seen again (COUNT, SUM).
    ReturningUser,
    /// 2: distinct active users (COUNT, DISTINCT).
    ActiveUser,
    /// 3: messages (COUNT, SUM).
    Messages,
    /// 4: action messages (COUNT, SUM).
    ActionMessages,
    /// 5: fallback replies (COUNT, SUM).
    FallbackReply,
    /// 6: NLP intents detected (COUNT, SUM).
    NlpDetected,
    /// 7: NLP intents missed (COUNT, SUM).
    NlpMissed,
    /// 8: conversation length (SECONDS, AVERAGE).
    ConversationLength,
    /// 9: time for an operator to pick up (SECONDS, AVERAGE).
    TimeToPickUp,
    /// 10: share of conversations taken over by an operator (PERCENT, AVERAGE).
    TakeoverRate,
    /// 11: support conversation length (SECONDS, AVERAGE).
    SupportConversationLength,
    /// 12: goals reached (COUNT, SUM).
    GoalReached,
    /// 13: incoming messages (COUNT, SUM).
    IncomingMessage,
    /// 14: API requests (COUNT, SUM).
    ApiRequest,
    /// 15: API request errors (COUNT, SUM).
    ApiRequestError,
    /// 16: time to the first message (SECONDS, AVERAGE).
    TimeToFirstMessage,
    /// 17: operator messages (COUNT, SUM).
    OperatorMessage,
}

/// Unit and aggregation of a Xenioo event type (SPEC §2.1).
pub fn unit_and_aggregation(kind: xenioo::BotMetric) -> (Unit, Aggregation) {
    let unit = match kind {
        xenioo::BotMetric::TakeoverRate => Unit::Percent,
        k if k.is_average() => Unit::Seconds,
        _ => Unit::Count,
    };
    (unit, kind.aggregation())
}

/// A Xenioo chatbot.
pub struct Bot {
    workspace: Arc<Workspace>,
    name: String,
    channels: Vec<String>,
}

/// A Xenioo chatbot (from the account's hourly analytics snapshot).
#[Object]
impl Bot {
    /// `xenioo:<BotName>`.
    async fn id(&self) -> ID {
        ID(format!("xenioo:{}", self.name))
    }

    /// The bot's name in Xenioo.
    async fn name(&self) -> &str {
        &self.name
    }

    /// The channels the bot answers on.
    async fn channels(&self, ctx: &Context<'_>) -> Vec<Channel> {
        self.channel_list(ctx.data_unchecked::<Fetcher>()).await
    }

    /// One event type of this bot, hourly for the last 30 days (older parts of the window are
    /// `OUT_OF_RETENTION`). Counts are SUM; 8, 9, 11, 16 are AVERAGE seconds; 10 AVERAGE percent;
    /// 2 DISTINCT (hourly distinct users; coarser buckets are lower bounds, `exact` false).
    async fn metric(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event type.")] kind: BotMetric,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Only this Xenioo channel (`ChannelName`, e.g. `Facebook`).")]
        channel: Option<String>,
    ) -> async_graphql::Result<TimeSeries> {
        series(
            ctx,
            &self.workspace,
            self.metric_spec(kind, channel),
            &window,
        )
        .await
    }
}

impl Bot {
    /// The bot's name in Xenioo.
    pub(crate) fn bot_name(&self) -> &str {
        &self.name
    }

    /// The channels the bot answers on.
    pub(crate) async fn channel_list(&self, fetcher: &Fetcher) -> Vec<Channel> {
        let (all, _) = Channel::all(&self.workspace, fetcher).await;
        all.into_iter()
            .filter(|c| {
                c.channel_id()
                    .strip_prefix("xenioo:")
                    .is_some_and(|name| self.channels.iter().any(|n| n == name))
            })
            .collect()
    }

    /// The workspace of the bot's Xenioo account.
    pub(crate) fn workspace(&self) -> &Arc<Workspace> {
        &self.workspace
    }

    /// The spec of `metric(kind:, channel:)`: what its resolver and the compiled plans
    /// ([`crate::graphql::plan`]) both compute.
    pub(crate) fn metric_spec(&self, kind: BotMetric, channel: Option<String>) -> SeriesSpec {
        let kind: xenioo::BotMetric = kind.into();
        let (unit, aggregation) = unit_and_aggregation(kind);
        SeriesSpec {
            metric: "bot.metric",
            unit,
            aggregation,
            parts: vec![xenioo::events(kind, Some(self.name.clone()), channel)],
            total_only: false,
        }
    }
}

/// The bots of a workspace's Xenioo account.
pub async fn bots(
    workspace: &Arc<Workspace>,
    fetcher: &Fetcher,
) -> async_graphql::Result<Vec<Bot>> {
    if !workspace.has(Provider::Xenioo) {
        return Ok(Vec::new());
    }
    let read = crate::providers::xenioo::snapshot_read(workspace, fetcher)
        .await
        .map_err(ApiError::from)?;
    Ok(xenioo::bots(&read.snapshot)
        .iter()
        .map(|(name, channels)| Bot {
            workspace: workspace.clone(),
            name: name.clone(),
            channels: channels.iter().cloned().collect(),
        })
        .collect())
}
