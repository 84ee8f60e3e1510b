//! One module per upstream provider: a client type with its base URL and credentials injected,
//! private wire types, and a mapping into engine types ([`crate::series::Sample`]) at the edge,
//! so no provider's JSON shape leaks inward. [`upstream`] holds what all clients share: the HTTP
//! call, status mapping, body limits and health tracking.

pub mod chat_tonic;
pub mod connectycube;
pub mod help_scout;
pub mod message2give;
pub mod upstream;
pub mod xenioo;

use std::fmt;

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
