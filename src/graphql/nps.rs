//! The `requestNpsExport` mutation: asks Chat-Tonic to email its NPS report (a side effect:
//! never cached, never retried automatically).

use std::sync::Arc;

use async_graphql::{Context, Enum, SimpleObject, ID};
use chrono::Utc;

use crate::error::ApiError;
use crate::graphql::scalars::Instant;
use crate::graphql::time_series::ResolvedWindow;
use crate::graphql::window::WindowInput;
use crate::providers::chat_tonic::{NpsType, RangeKey};
use crate::providers::Provider;
use crate::workspace::Workspace;

/// Which NPS respondents the report covers.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpsRespondents {
    /// Everyone who answered.
    All,
    /// Scores 9–10.
    Promoter,
    /// Scores 7–8.
    Passive,
    /// Scores 0–6.
    Detractor,
}

impl From<NpsRespondents> for NpsType {
    fn from(r: NpsRespondents) -> Self {
        match r {
            NpsRespondents::All => NpsType::All,
            NpsRespondents::Promoter => NpsType::Promoter,
            NpsRespondents::Passive => NpsType::Passive,
            NpsRespondents::Detractor => NpsType::Detractor,
        }
    }
}

/// A requested NPS export: Chat-Tonic emails the report to the account's user.
#[derive(SimpleObject)]
pub struct NpsExport {
    /// When chatstats asked Chat-Tonic for the export.
    requested_at: Instant,
    /// The respondents the report covers.
    respondents: NpsRespondents,
    /// The window the report covers (aligned outward to its granularity).
    window: ResolvedWindow,
}

/// Ask Chat-Tonic to email the NPS report of `window` for a workspace.
pub async fn request(
    ctx: &Context<'_>,
    workspace: Option<Arc<Workspace>>,
    workspace_id: &ID,
    window: &WindowInput,
    respondents: NpsRespondents,
) -> async_graphql::Result<NpsExport> {
    let _ = ctx;
    let workspace =
        workspace.ok_or_else(|| ApiError::no_workspace("workspaceId", workspace_id.as_str()))?;
    if !workspace.has(Provider::ChatTonic) {
        return Err(ApiError::bad_input(format!(
            "argument `workspaceId`: workspace {:?} has no Chat-Tonic account; the NPS export is a Chat-Tonic feature",
            workspace_id.as_str()
        ))
        .into());
    }
    let window = window.resolve(workspace.zone)?;
    let range = RangeKey {
        start: window.from(),
        end: window.to(),
    };
    crate::providers::chat_tonic::request_nps_export(&workspace, respondents.into(), &range)
        .await
        .map_err(ApiError::from)?;
    Ok(NpsExport {
        requested_at: Instant(Utc::now()),
        respondents,
        window: (&window).into(),
    })
}
