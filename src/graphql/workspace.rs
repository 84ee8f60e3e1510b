//! `Workspace` (a federation entity) and `Source`.

use std::sync::Arc;

use async_graphql::{Object, SimpleObject, ID};

use crate::graphql::channel::Channel;
use crate::graphql::scalars::{Instant, TimeZone};
use crate::graphql::stats::{DialogStats, MessageStats};
use crate::providers::Provider;
use crate::workspace::Workspace;

/// A configured provider account of a workspace and its last known health.
#[derive(SimpleObject)]
pub struct Source {
    /// The provider.
    provider: Provider,
    /// False when the most recent upstream call failed.
    healthy: bool,
    /// When an upstream call last succeeded (null: not yet called since start).
    last_success_at: Option<Instant>,
    /// What went wrong on the most recent failed call (never contains credentials).
    last_error: Option<String>,
    /// For throttled providers (Xenioo): the earliest time chatstats will call again.
    next_call_allowed_at: Option<Instant>,
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

    /// Configured providers, their health and throttle state.
    async fn sources(&self) -> Vec<Source> {
        self.0
            .upstreams()
            .into_iter()
            .map(|upstream| {
                let health = upstream.health();
                Source {
                    provider: upstream.provider(),
                    healthy: health.healthy(),
                    last_success_at: health.last_success_at.map(Instant),
                    last_error: health.last_error.clone(),
                    next_call_allowed_at: None,
                }
            })
            .collect()
    }

    /// Every channel of the workspace (Help Scout chat/email/phone, ...).
    async fn channels(&self) -> Vec<Channel> {
        Channel::all(&self.0)
    }

    /// One channel by id (e.g. `help_scout:chat`); null when there is none.
    async fn channel(
        &self,
        #[graphql(desc = "`<provider>:<channel>`, e.g. `help_scout:email`.")] id: ID,
    ) -> Option<Channel> {
        Channel::all(&self.0)
            .into_iter()
            .find(|c| c.channel_id() == id.as_str())
    }

    /// Dialogs (conversations) across providers.
    async fn dialogs(&self) -> DialogStats {
        DialogStats(self.0.clone())
    }

    /// Messages across providers.
    async fn messages(&self) -> MessageStats {
        MessageStats(self.0.clone())
    }
}
