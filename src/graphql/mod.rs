//! The GraphQL schema: one file per type, the scalars, and [`build_schema`].

pub mod bot;
pub mod channel;
pub mod document_cache;
pub mod error_codes;
pub mod guard;
pub mod nps;
pub mod operator;
pub mod plan;
pub mod raw_json;
pub mod scalars;
pub mod stats;
pub mod subscription;
pub mod survey;
pub mod time_series;
pub mod window;
pub mod workspace;

use std::sync::Arc;

use async_graphql::{Context, Object, SDLExportOptions, Schema, ID};

use crate::auth::Caller;
use crate::config::Scope;
use crate::error::ApiError;
use crate::workspace::{Registry, Workspace};
use nps::{NpsExport, NpsRespondents};
use operator::Operator;
use subscription::Subscription;
use window::WindowInput;
use workspace::WorkspaceObject;

/// The schema type served at `/graphql`.
pub type ChatstatsSchema = Schema<Query, Mutation, Subscription>;

/// The root of every query.
pub struct Query;

/// The root of every query.
#[Object]
impl Query {
    /// The workspaces the caller may see, in configuration order.
    async fn workspaces(&self, ctx: &Context<'_>) -> Vec<WorkspaceObject> {
        visible_workspaces(ctx)
            .into_iter()
            .map(WorkspaceObject)
            .collect()
    }

    /// One workspace by id. A `NOT_FOUND` error (and null) when it does not exist or the
    /// caller may not see it: the two answers are the same, so ids cannot be probed.
    async fn workspace(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace id, e.g. `acme`.")] id: ID,
    ) -> Option<WorkspaceObject> {
        let workspace = visible_workspace(ctx, &id).map(WorkspaceObject);
        if workspace.is_none() {
            report(ctx, ApiError::no_workspace("id", &id));
        }
        workspace
    }

    /// One operator by id (`chat_tonic:<_id>` or `message2give:<userId>`): Chat-Tonic
    /// operators of the last 30 days, message2give users of the last 30 days, in the
    /// caller's workspaces. A `NOT_FOUND` error (and null) when none of them has it.
    async fn operator(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`chat_tonic:<_id>` or `message2give:<userId>`.")] id: ID,
    ) -> async_graphql::Result<Option<Operator>> {
        let operator = operator::find(ctx, &visible_workspaces(ctx), &id).await?;
        if operator.is_none() {
            report(ctx, ApiError::no_operator(&id));
        }
        Ok(operator)
    }

    /// Federation: resolve an `Operator` reference by its key (null, without an error, when
    /// unknown: federation's rule for `_entities`).
    #[graphql(entity)]
    async fn find_operator_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Operator>> {
        operator::find(ctx, &visible_workspaces(ctx), &id).await
    }

    /// Federation: resolve a `Workspace` reference by its key (null, without an error, when
    /// unknown or another tenant's: federation's rule for `_entities`).
    #[graphql(entity)]
    async fn find_workspace_by_id(&self, ctx: &Context<'_>, id: ID) -> Option<WorkspaceObject> {
        visible_workspace(ctx, &id).map(WorkspaceObject)
    }
}

/// Operations with side effects.
pub struct Mutation;

/// Operations with side effects.
#[Object]
impl Mutation {
    /// Ask Chat-Tonic to email the NPS report of a window to the account's user. A side effect:
    /// never cached and never retried automatically.
    async fn request_nps_export(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace whose Chat-Tonic account sends the report.")] workspace_id: ID,
        #[graphql(desc = "The time slice the report covers.")] window: WindowInput,
        #[graphql(
            desc = "Which respondents. Default: ALL.",
            default_with = "NpsRespondents::All"
        )]
        respondents: NpsRespondents,
    ) -> async_graphql::Result<NpsExport> {
        Caller::from_context(ctx).require(Scope::Export, "requestNpsExport")?;
        let workspace = visible_workspace(ctx, &workspace_id);
        nps::request(ctx, workspace, &workspace_id, &window, respondents).await
    }
}

/// Add `error` at the current field, which the resolver then answers with null: an `Err`
/// would null the parent too (async-graphql propagates resolver errors upward), and the rest
/// of the query must still answer.
fn report(ctx: &Context<'_>, error: ApiError) {
    let error = async_graphql::Error::from(error);
    ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
}

fn registry<'a>(ctx: &Context<'a>) -> &'a Arc<Registry> {
    ctx.data_unchecked::<Arc<Registry>>()
}

/// The workspaces the caller may see, in configuration order. Every resolver that starts
/// from the registry goes through this or [`visible_workspace`], so another tenant's workspace
/// is indistinguishable from one that does not exist.
fn visible_workspaces(ctx: &Context<'_>) -> Vec<Arc<Workspace>> {
    let caller = Caller::from_context(ctx);
    registry(ctx)
        .all()
        .iter()
        .filter(|w| caller.may_see(&w.id))
        .cloned()
        .collect()
}

/// Workspace `id` if it exists and the caller may see it.
pub(crate) fn visible_workspace(ctx: &Context<'_>, id: &str) -> Option<Arc<Workspace>> {
    registry(ctx)
        .get(id)
        .filter(|_| Caller::from_context(ctx).may_see(id))
        .cloned()
}

/// Build the schema over `registry`; `introspection: false` refuses `__schema`/`__type`.
///
/// With `guard`, the schema itself applies persisted queries, the safelist, the query limits
/// and the `read` scope ([`guard::Guard`]) and codes parse and validation errors
/// ([`error_codes::ErrorCodes`]), for transports that hand requests straight to it. Without,
/// the caller does both (the HTTP handler: [`guard::Guard::admit`] and its own error coding),
/// and the schema has no extension at all — with any installed, async-graphql resolves every
/// field through the extension chain, which cost the warm overview a large share of its time.
///
/// `validation`: [`ValidationMode::Strict`](async_graphql::ValidationMode) for requests not
/// seen before; the HTTP handler runs requests that already passed it on a schema built with
/// `Fast` (see [`document_cache`]).
pub fn build_schema(
    registry: Arc<Registry>,
    introspection: bool,
    guard: Option<guard::Guard>,
    validation: async_graphql::ValidationMode,
) -> ChatstatsSchema {
    let builder = schema_builder().data(registry).validation_mode(validation);
    let builder = match guard {
        Some(guard) => builder
            .extension(error_codes::ErrorCodes::default())
            .extension(guard),
        None => builder,
    };
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

fn schema_builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    // The root is named `Subscription` (the federation SDL has no `schema {}` block to say
    // which type it is) and is kept in the federation SDL, so a gateway can route
    // subscriptions to this subgraph.
    Schema::build(Query, Mutation, Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
}

/// The SDL of the schema, fields sorted so the committed file diffs cleanly. With
/// `federation`, the Apollo Federation v2 subgraph form (`@link`, `@key`).
pub fn sdl(federation: bool) -> String {
    let schema = schema_builder().finish();
    let options = SDLExportOptions::new()
        .sorted_fields()
        .sorted_arguments()
        .sorted_enum_items();
    let options = if federation {
        options.federation()
    } else {
        options
    };
    schema.sdl_with_options(options)
}
