//! One module per upstream provider: a client type with its base URL and credentials injected,
//! private wire types, and a mapping into engine types ([`crate::series::Sample`]) at the edge,
//! so no provider's JSON shape leaks inward. [`upstream`] holds what all clients share: the HTTP
//! call, status mapping, body limits and health tracking.
//!
//! Every client is a [`Source`]: what the rest of the gateway may ask of any provider without
//! naming it (its upstream, which series it feeds, its finest granularity, when it may next be
//! called, its channels as [`ChannelFeed`]s). Each module also holds its block grid and batch
//! plan (`blocks_for`, `block_range`, `plan_blocks`, its `fetch::BlockSource`s), how its
//! cached values weigh ([`crate::fetch::Weigh`]), and its series parts: types implementing
//! [`crate::catalogue::Contributes`] with constructors returning a [`crate::catalogue::Part`]
//! (e.g. `help_scout::conversations`), so the catalogue and the GraphQL `Channel` name no
//! provider.

pub mod chat_tonic;
pub mod connectycube;
pub mod help_scout;
pub mod message2give;
pub mod upstream;
pub mod xenioo;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::catalogue::Part;
use crate::error::UpstreamError;
use crate::fetch::Fetcher;
use crate::series::Granularity;
use crate::workspace::Workspace;

/// The upstream platforms chatstats reads statistics from.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// message2give: web chat and SMS (operator response/wait times, sessions, SMS usage).
    #[graphql(name = "MESSAGE2GIVE")]
    Message2Give,
    /// Chat-Tonic: operator statistics, the dashboard (users, messages, dialogs, service level, NPS/CSAT).
    ChatTonic,
    /// Xenioo: chatbot analytics (18 event types per bot and channel), hourly.
    Xenioo,
    /// ConnectyCube: in-app messaging (messages sent, dialogs created per day).
    #[graphql(name = "CONNECTYCUBE")]
    ConnectyCube,
    /// Help Scout: conversation volumes by channel (chat, email, phone).
    HelpScout,
}

impl Provider {
    /// The name used in the GraphQL enum and in `extensions.provider`.
    pub fn graphql_name(self) -> &'static str {
        match self {
            Provider::Message2Give => "MESSAGE2GIVE",
            Provider::ChatTonic => "CHAT_TONIC",
            Provider::Xenioo => "XENIOO",
            Provider::ConnectyCube => "CONNECTYCUBE",
            Provider::HelpScout => "HELP_SCOUT",
        }
    }

    /// The lower-case name used in ids (`help_scout:chat`), logs and metrics.
    pub fn slug(self) -> &'static str {
        match self {
            Provider::Message2Give => "message2give",
            Provider::ChatTonic => "chat_tonic",
            Provider::Xenioo => "xenioo",
            Provider::ConnectyCube => "connectycube",
            Provider::HelpScout => "help_scout",
        }
    }
}

impl fmt::Display for Provider {
    /// The product name, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Message2Give => "message2give",
            Provider::ChatTonic => "Chat-Tonic",
            Provider::Xenioo => "Xenioo",
            Provider::ConnectyCube => "ConnectyCube",
            Provider::HelpScout => "Help Scout",
        })
    }
}

/// True when a chunk ending at `end` touches the present (and so gets the live TTL).
pub fn is_live(end: chrono::DateTime<chrono::Utc>) -> bool {
    end > chrono::Utc::now()
}

/// One row of the series catalogue (SPEC §2.1) that a provider feeds: the GraphQL field and
/// what of the provider's data goes into it. Each provider module lists its own (`FEEDS`), so
/// the mapping sits next to the code that fetches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feed {
    /// The series field, e.g. `MessageStats.sent`.
    pub field: &'static str,
    /// What the provider contributes to it, in its own terms.
    pub from: &'static str,
}

/// What the gateway may ask of any configured provider without naming it.
pub trait Source: Send + Sync {
    /// The HTTP side: its provider, health and call policy.
    fn upstream(&self) -> &upstream::Upstream;

    fn provider(&self) -> Provider {
        self.upstream().provider()
    }

    /// The series fields it feeds (its rows of SPEC §2.1).
    fn feeds(&self) -> &'static [Feed];

    /// The finest granularity it can answer.
    fn finest(&self) -> Granularity;

    /// When the provider lets this account's next call through, for providers that allow one
    /// call per interval (Xenioo); None for the others, which may be called at any time.
    fn next_call(&self) -> Option<xenioo::NextCall> {
        None
    }

    /// The channels of `workspace`'s account on this provider (`Workspace.channels`); none by
    /// default. A provider that learns its channels from its data (Xenioo's snapshot) reads
    /// them through `fetcher`.
    fn channels<'a>(
        &'a self,
        workspace: &'a Arc<Workspace>,
        fetcher: &'a Fetcher,
    ) -> BoxFuture<'a, Result<Vec<Arc<dyn ChannelFeed>>, UpstreamError>> {
        let _ = (workspace, fetcher);
        async { Ok(Vec::new()) }.boxed()
    }
}

/// The kind of a channel.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq)]
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

/// The series of a `Channel`, one per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMetric {
    Conversations,
    Messages,
    ResponseTime,
    WaitTime,
    SessionDuration,
}

/// The filters `Channel.conversations` takes (Help Scout's; other providers ignore them).
#[derive(Clone, Debug, Default)]
pub struct ConversationFilter {
    /// None: the workspace's configured default.
    pub mailboxes: Option<Vec<i64>>,
    pub tags: Vec<i64>,
    pub folders: Vec<i64>,
}

/// One channel of a provider (e.g. Help Scout chat, message2give web, a Xenioo channel): what
/// `Channel` shows of it and the part each of its series reads. Implemented in the provider's
/// module, so `Channel` names no provider.
pub trait ChannelFeed: Send + Sync + fmt::Debug {
    fn provider(&self) -> Provider;
    /// The channel's name within its provider: the id is `<provider slug>:<key>`.
    fn key(&self) -> String;
    fn kind(&self) -> ChannelKind;
    /// A human-readable name, e.g. `Help Scout chat`.
    fn name(&self) -> String;
    /// The part `metric` of this channel reads; None when the provider does not measure it
    /// on this channel (the field is then null).
    fn part(
        &self,
        workspace: &Workspace,
        metric: ChannelMetric,
        filter: &ConversationFilter,
    ) -> Option<Part>;
}
