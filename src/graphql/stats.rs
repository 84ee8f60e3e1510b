//! The workspace-wide statistic groups: `DialogStats` and `MessageStats`.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object};

use crate::graphql::time_series::{series, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::metrics::{Part, SeriesSpec, Unit};
use crate::providers::connectycube::{CcMetric, DialogKind};
use crate::providers::help_scout::{HsChannel, VolumeFilter};
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

/// Keep `part` when no provider filter is given or it matches.
fn wanted(filter: Option<Provider>, provider: Provider) -> bool {
    filter.is_none_or(|p| p == provider)
}

/// Dialogs (conversations) across providers.
pub struct DialogStats(pub Arc<Workspace>);

/// Dialogs (conversations) across providers.
#[Object]
impl DialogStats {
    /// Dialogs created (COUNT, SUM): ConnectyCube dialogs created (filtered by `types`) plus
    /// Help Scout conversations of all channels. With `types`, only ConnectyCube contributes
    /// (Help Scout conversations have no dialog type). Finest granularity: DAY.
    async fn created(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
        #[graphql(desc = "ConnectyCube dialog types to count (default: all).")] types: Option<
            Vec<DialogType>,
        >,
    ) -> async_graphql::Result<TimeSeries> {
        let workspace = &self.0;
        let mut parts = Vec::new();
        if workspace.connectycube.is_some() && wanted(provider, Provider::ConnectyCube) {
            let mut kinds: Vec<DialogKind> = types.iter().flatten().map(|t| (*t).into()).collect();
            kinds.sort();
            kinds.dedup();
            parts.push(Part::ConnectyCube(CcMetric::DialogsCreated(kinds)));
        }
        if workspace.help_scout.is_some()
            && wanted(provider, Provider::HelpScout)
            && types.is_none()
        {
            parts.push(Part::HelpScout {
                channels: HsChannel::ALL.to_vec(),
                filter: VolumeFilter::new(
                    workspace.help_scout_mailboxes.clone(),
                    Vec::new(),
                    Vec::new(),
                ),
            });
        }
        let spec = SeriesSpec {
            metric: "dialogs.created",
            unit: Unit::Count,
            aggregation: Aggregation::Sum,
            parts,
        };
        series(ctx, workspace, spec, &window).await
    }
}

/// Messages across providers.
pub struct MessageStats(pub Arc<Workspace>);

/// Messages across providers.
#[Object]
impl MessageStats {
    /// Messages sent (COUNT, SUM): ConnectyCube messages sent. Finest granularity: DAY.
    async fn sent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
        #[graphql(desc = "Keep only this provider's contribution.")] provider: Option<Provider>,
    ) -> async_graphql::Result<TimeSeries> {
        let workspace = &self.0;
        let mut parts = Vec::new();
        if workspace.connectycube.is_some() && wanted(provider, Provider::ConnectyCube) {
            parts.push(Part::ConnectyCube(CcMetric::MessagesSent));
        }
        let spec = SeriesSpec {
            metric: "messages.sent",
            unit: Unit::Count,
            aggregation: Aggregation::Sum,
            parts,
        };
        series(ctx, workspace, spec, &window).await
    }
}
