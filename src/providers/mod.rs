//! One module per upstream provider: a client type with its base URL and credentials injected,
//! private wire types, and a mapping into engine types ([`crate::series::Sample`]) at the edge,
//! so no provider's JSON shape leaks inward. [`upstream`] holds what all clients share: the HTTP
//! call, status mapping, body limits and health tracking.
//!
//! Every client is a [`Source`]: what the rest of the gateway may ask of any provider without
//! naming it (its upstream, which series it feeds, its finest granularity, when it may next be
//! called). Each module also holds its block grid and batch plan (`blocks_for`, `block_range`,
//! `plan_blocks`) and how its cached values weigh ([`crate::fetch::Weigh`]).

pub mod chat_tonic;
pub mod connectycube;
pub mod help_scout;
pub mod message2give;
pub mod upstream;
pub mod xenioo;

use std::fmt;

use crate::series::Granularity;

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
}
