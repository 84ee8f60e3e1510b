//! `Survey`: a message2give SMS survey and its usage.

use std::sync::Arc;

use async_graphql::{Context, Object, ID};

use crate::catalogue::{SeriesSpec, Unit};
use crate::error::ApiError;
use crate::fetch::Fetcher;
use crate::graphql::time_series::{series, TimeSeries};
use crate::graphql::window::WindowInput;
use crate::providers::message2give;
use crate::providers::Provider;
use crate::series::{Aggregation, Window};
use crate::workspace::Workspace;

/// A message2give SMS survey.
pub struct Survey {
    workspace: Arc<Workspace>,
    id: String,
}

impl Survey {
    async fn usage(
        &self,
        ctx: &Context<'_>,
        window: WindowInput,
        units: bool,
    ) -> async_graphql::Result<TimeSeries> {
        let spec = SeriesSpec {
            metric: if units {
                "survey.units"
            } else {
                "survey.messages"
            },
            unit: Unit::Count,
            aggregation: Aggregation::Sum,
            parts: vec![message2give::sms_usage(Some(self.id.clone()), units)],
            total_only: false,
        };
        series(ctx, &self.workspace, spec, &window).await
    }
}

/// A message2give SMS survey and its usage.
#[Object]
impl Survey {
    /// `message2give:<surveyId>`.
    async fn id(&self) -> ID {
        ID(format!("message2give:{}", self.id))
    }

    /// The provider of the survey.
    async fn provider(&self) -> Provider {
        Provider::Message2Give
    }

    /// SMS messages of the survey (COUNT, SUM), message2give SMS usage, local days.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        self.usage(ctx, window, false).await
    }

    /// SMS units (message segments billed) of the survey (COUNT, SUM), local days.
    async fn units(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time slice and bucket size.")] window: WindowInput,
    ) -> async_graphql::Result<TimeSeries> {
        self.usage(ctx, window, true).await
    }
}

/// The surveys with SMS usage in `window`'s months.
pub async fn surveys(
    ctx: &Context<'_>,
    workspace: &Arc<Workspace>,
    window: &Window,
) -> async_graphql::Result<Vec<Survey>> {
    if !workspace.has(Provider::Message2Give) {
        return Ok(Vec::new());
    }
    let fetcher = ctx.data_unchecked::<Fetcher>();
    let pages = futures::future::try_join_all(
        message2give::plan(window)
            .into_iter()
            .map(|month| crate::providers::message2give::sms_month(workspace, fetcher, month)),
    )
    .await
    .map_err(ApiError::from)?;
    let usage: Vec<_> = pages.iter().map(|page| page.value.as_ref()).collect();
    Ok(message2give::surveys(&usage)
        .into_iter()
        .map(|id| Survey {
            workspace: workspace.clone(),
            id,
        })
        .collect())
}
