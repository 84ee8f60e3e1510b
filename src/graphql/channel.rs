//! `Channel`: one way customers reach the team (Help Scout chat/email/phone, message2give
//! web/sms, a Xenioo channel), with the series measured on it.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object, ID};

use crate::catalogue::{M2gStat, M2gWho, Part, SeriesSpec, Unit};
use crate::error::UpstreamError;
use crate::fetch::Fetcher;
use crate::graphql::time_series::{optional_series, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::providers::help_scout::{HsChannel, VolumeFilter};
use crate::providers::message2give::ChatType;
use crate::providers::xenioo::{self, BotMetric};
use crate::providers::Provider;
use crate::series::Aggregation;
use crate::workspace::Workspace;

/// The kind of a channel.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// Live chat.
    Chat,
    /// Email.
    Email,
    /// Phone calls.
    Phone,
    /// Web chat (message2give `web`, Xenioo `WebChat`).
    Web,
    /// SMS (message2give `sms`).
    Sms,
    /// A messaging app (Facebook, Telegram, WhatsApp, ...).
    Messaging,
    /// Anything else.
    Other,
}

/// Where a channel's data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ChannelSource {
    HelpScout(HsChannel),
    Message2Give(ChatType),
    /// A Xenioo `ChannelName`.
    Xenioo(String),
}

/// One way customers reach the team, with the series measured on it.
pub struct Channel {
    workspace: Arc<Workspace>,
    source: ChannelSource,
}

impl Channel {
    /// Every channel of a workspace, in provider order. Xenioo's channels are those of its
    /// snapshot; when it cannot be had, the others are listed and the error is returned.
    pub async fn all(
        workspace: &Arc<Workspace>,
        fetcher: &Fetcher,
    ) -> (Vec<Channel>, Option<UpstreamError>) {
        Self::listed(workspace, fetcher, true).await
    }

    /// The channel with this id, if any. Only a `xenioo:` id reads the Xenioo snapshot (its
    /// channel names come from there); the other channels are known from the configuration.
    pub async fn find(
        workspace: &Arc<Workspace>,
        fetcher: &Fetcher,
        id: &str,
    ) -> (Option<Channel>, Option<UpstreamError>) {
        let (channels, error) = Self::listed(workspace, fetcher, id.starts_with("xenioo:")).await;
        let channel = channels.into_iter().find(|c| c.channel_id() == id);
        (channel, error)
    }

    /// The channels of a workspace in provider order, Xenioo's only when `with_xenioo`.
    async fn listed(
        workspace: &Arc<Workspace>,
        fetcher: &Fetcher,
        with_xenioo: bool,
    ) -> (Vec<Channel>, Option<UpstreamError>) {
        let mut sources = Vec::new();
        if workspace.message2give.is_some() {
            sources.extend([ChatType::Web, ChatType::Sms].map(ChannelSource::Message2Give));
        }
        let mut error = None;
        if with_xenioo && workspace.xenioo.is_some() {
            match crate::providers::xenioo::snapshot_read(workspace, fetcher).await {
                Ok(read) => sources.extend(
                    xenioo::channels(&read.snapshot)
                        .iter()
                        .cloned()
                        .map(ChannelSource::Xenioo),
                ),
                Err(e) => error = Some(e),
            }
        }
        if workspace.help_scout.is_some() {
            sources.extend(HsChannel::ALL.map(ChannelSource::HelpScout));
        }
        let channels = sources
            .into_iter()
            .map(|source| Channel {
                workspace: workspace.clone(),
                source,
            })
            .collect();
        (channels, error)
    }

    pub fn channel_id(&self) -> String {
        match &self.source {
            ChannelSource::HelpScout(c) => format!("help_scout:{}", c.slug()),
            ChannelSource::Message2Give(c) => format!("message2give:{}", c.slug()),
            ChannelSource::Xenioo(name) => format!("xenioo:{name}"),
        }
    }

    /// The message2give part of this channel's chat type, or none for other channels.
    fn message2give(&self, stat: M2gStat) -> Vec<Part> {
        match self.source {
            ChannelSource::Message2Give(chat) => vec![Part::Message2GiveChat {
                chats: vec![chat],
                who: M2gWho::AllUsers,
                stat,
            }],
            _ => Vec::new(),
        }
    }

    /// A nullable series of this channel: null without error when `parts` is empty (the
    /// channel's provider does not offer the metric); the window is validated either way so a
    /// bad argument is reported the same everywhere.
    async fn optional(
        &self,
        ctx: &Context<'_>,
        metric: &'static str,
        unit: Unit,
        aggregation: Aggregation,
        parts: Vec<Part>,
        window: &WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        window.resolve(self.workspace.zone)?;
        let spec = SeriesSpec {
            metric,
            unit,
            aggregation,
            parts,
            total_only: false,
        };
        optional_series(ctx, &self.workspace, spec, window).await
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
        match &self.source {
            ChannelSource::HelpScout(HsChannel::Chat) => ChannelKind::Chat,
            ChannelSource::HelpScout(HsChannel::Email) => ChannelKind::Email,
            ChannelSource::HelpScout(HsChannel::Phone) => ChannelKind::Phone,
            ChannelSource::Message2Give(ChatType::Web) => ChannelKind::Web,
            ChannelSource::Message2Give(ChatType::Sms) => ChannelKind::Sms,
            ChannelSource::Xenioo(name) if name.eq_ignore_ascii_case("webchat") => ChannelKind::Web,
            ChannelSource::Xenioo(name) if name.eq_ignore_ascii_case("sms") => ChannelKind::Sms,
            ChannelSource::Xenioo(_) => ChannelKind::Messaging,
        }
    }

    /// A human-readable name, e.g. `Help Scout chat`, `message2give web`, `Xenioo Facebook`.
    async fn name(&self) -> String {
        match &self.source {
            ChannelSource::HelpScout(c) => format!("Help Scout {}", c.slug()),
            ChannelSource::Message2Give(c) => format!("message2give {}", c.slug()),
            ChannelSource::Xenioo(name) => format!("Xenioo {name}"),
        }
    }

    /// The provider this channel belongs to.
    async fn provider(&self) -> Provider {
        match self.source {
            ChannelSource::HelpScout(_) => Provider::HelpScout,
            ChannelSource::Message2Give(_) => Provider::Message2Give,
            ChannelSource::Xenioo(_) => Provider::Xenioo,
        }
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
        let parts = match &self.source {
            ChannelSource::HelpScout(channel) => {
                let mailboxes =
                    mailboxes.unwrap_or_else(|| self.workspace.help_scout_mailboxes.clone());
                let filter = VolumeFilter::new(
                    mailboxes,
                    tags.unwrap_or_default(),
                    folders.unwrap_or_default(),
                );
                vec![Part::HelpScout {
                    channels: vec![*channel],
                    filter,
                }]
            }
            ChannelSource::Message2Give(_) => self.message2give(M2gStat::Sessions),
            ChannelSource::Xenioo(_) => Vec::new(),
        };
        self.optional(
            ctx,
            "channel.conversations",
            Unit::Count,
            Aggregation::Sum,
            parts,
            &window,
        )
        .await
    }

    /// Messages on this channel (COUNT, SUM): Xenioo "Messages" for that `ChannelName`, hourly,
    /// last 30 days. Null for channels without message data (Help Scout, message2give).
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        let parts = match &self.source {
            ChannelSource::Xenioo(name) => vec![Part::Xenioo {
                kind: BotMetric::Messages,
                bot: None,
                channel: Some(name.clone()),
            }],
            _ => Vec::new(),
        };
        self.optional(
            ctx,
            "channel.messages",
            Unit::Count,
            Aggregation::Sum,
            parts,
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
        let parts = self.message2give(M2gStat::ResponseTime);
        self.optional(
            ctx,
            "channel.responseTime",
            Unit::Seconds,
            Aggregation::Average,
            parts,
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
        let parts = self.message2give(M2gStat::WaitTime);
        self.optional(
            ctx,
            "channel.waitTime",
            Unit::Seconds,
            Aggregation::Average,
            parts,
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
        let parts = self.message2give(M2gStat::SessionDuration);
        self.optional(
            ctx,
            "channel.sessionDuration",
            Unit::Seconds,
            Aggregation::Average,
            parts,
            &window,
        )
        .await
    }
}
