//! `Channel`: one way customers reach the team (Help Scout chat/email/phone, message2give
//! web/sms, a Xenioo channel), with the series measured on it.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object, ID};

use crate::graphql::time_series::{optional_series, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::metrics::{Part, SeriesSpec, Unit};
use crate::providers::help_scout::{HsChannel, VolumeFilter};
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
    /// Web chat (message2give `web`).
    Web,
    /// SMS (message2give `sms`).
    Sms,
    /// A messaging app (Facebook, Telegram, WhatsApp, ...).
    Messaging,
    /// Anything else.
    Other,
}

/// Where a channel's data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelSource {
    HelpScout(HsChannel),
}

/// One way customers reach the team, with the series measured on it.
pub struct Channel {
    workspace: Arc<Workspace>,
    source: ChannelSource,
}

impl Channel {
    /// Every channel of a workspace, in provider order.
    pub fn all(workspace: &Arc<Workspace>) -> Vec<Channel> {
        let mut channels = Vec::new();
        if workspace.help_scout.is_some() {
            channels.extend(HsChannel::ALL.into_iter().map(|c| Channel {
                workspace: workspace.clone(),
                source: ChannelSource::HelpScout(c),
            }));
        }
        channels
    }

    fn provider_of(&self) -> Provider {
        match self.source {
            ChannelSource::HelpScout(_) => Provider::HelpScout,
        }
    }

    pub fn channel_id(&self) -> String {
        match self.source {
            ChannelSource::HelpScout(c) => format!("help_scout:{}", c.slug()),
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
        match self.source {
            ChannelSource::HelpScout(HsChannel::Chat) => ChannelKind::Chat,
            ChannelSource::HelpScout(HsChannel::Email) => ChannelKind::Email,
            ChannelSource::HelpScout(HsChannel::Phone) => ChannelKind::Phone,
        }
    }

    /// A human-readable name, e.g. `Help Scout chat`.
    async fn name(&self) -> String {
        match self.source {
            ChannelSource::HelpScout(c) => format!("Help Scout {}", c.slug()),
        }
    }

    /// The provider this channel belongs to.
    async fn provider(&self) -> Provider {
        self.provider_of()
    }

    /// Conversations started on this channel (COUNT, SUM). Help Scout: the channel's column of
    /// the volume-by-channel report; finest granularity DAY, in UTC days (`exact` is false in
    /// other zones). Null for channels without conversation data.
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
        let parts = match self.source {
            ChannelSource::HelpScout(channel) => {
                let mailboxes =
                    mailboxes.unwrap_or_else(|| self.workspace.help_scout_mailboxes.clone());
                let filter = VolumeFilter::new(
                    mailboxes,
                    tags.unwrap_or_default(),
                    folders.unwrap_or_default(),
                );
                vec![Part::HelpScout {
                    channels: vec![channel],
                    filter,
                }]
            }
        };
        let spec = SeriesSpec {
            metric: "channel.conversations",
            unit: Unit::Count,
            aggregation: Aggregation::Sum,
            parts,
        };
        optional_series(ctx, &self.workspace, spec, &window).await
    }

    /// Messages on this channel (COUNT, SUM): Xenioo "Messages" for that channel. Null for
    /// channels without message data (Help Scout, message2give).
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.not_applicable(
            ctx,
            "channel.messages",
            Unit::Count,
            Aggregation::Sum,
            &window,
        )
        .await
    }

    /// Operator response time (SECONDS, AVERAGE weighted by sessions): message2give. Null
    /// for channels without it.
    async fn response_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.not_applicable(
            ctx,
            "channel.responseTime",
            Unit::Seconds,
            Aggregation::Average,
            &window,
        )
        .await
    }

    /// Customer wait time (SECONDS, AVERAGE weighted by sessions): message2give. Null for
    /// channels without it.
    async fn wait_time(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.not_applicable(
            ctx,
            "channel.waitTime",
            Unit::Seconds,
            Aggregation::Average,
            &window,
        )
        .await
    }

    /// Session duration (SECONDS, AVERAGE weighted by sessions): message2give. Null for
    /// channels without it.
    async fn session_duration(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        self.not_applicable(
            ctx,
            "channel.sessionDuration",
            Unit::Seconds,
            Aggregation::Average,
            &window,
        )
        .await
    }
}

impl Channel {
    /// A metric this channel's provider does not offer: null, no error — but the window is
    /// still validated so a bad argument is reported the same way everywhere.
    async fn not_applicable(
        &self,
        ctx: &Context<'_>,
        metric: &'static str,
        unit: Unit,
        aggregation: Aggregation,
        window: &WindowInput,
    ) -> async_graphql::Result<Option<TimeSeries>> {
        window.resolve(self.workspace.zone)?;
        let spec = SeriesSpec {
            metric,
            unit,
            aggregation,
            parts: Vec::new(),
        };
        optional_series(ctx, &self.workspace, spec, window).await
    }
}
