//! The GraphQL schema: one file per type, the scalars, and [`build_schema`].

pub mod channel;
pub mod error_codes;
pub mod scalars;
pub mod stats;
pub mod time_series;
pub mod window;
pub mod workspace;

use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Object, SDLExportOptions, Schema, ID,
};

use crate::workspace::Registry;
use workspace::WorkspaceObject;

/// The schema type served at `/graphql`.
pub type ChatstatsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The root of every query.
pub struct Query;

/// The root of every query.
#[Object]
impl Query {
    /// The workspaces the caller may see, in configuration order.
    async fn workspaces(&self, ctx: &Context<'_>) -> Vec<WorkspaceObject> {
        registry(ctx)
            .all()
            .iter()
            .cloned()
            .map(WorkspaceObject)
            .collect()
    }

    /// One workspace by id; null when it does not exist or the caller may not see it.
    async fn workspace(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace id, e.g. `acme`.")] id: ID,
    ) -> Option<WorkspaceObject> {
        registry(ctx).get(&id).cloned().map(WorkspaceObject)
    }

    /// Federation: resolve a `Workspace` reference by its key.
    #[graphql(entity)]
    async fn find_workspace_by_id(&self, ctx: &Context<'_>, id: ID) -> Option<WorkspaceObject> {
        registry(ctx).get(&id).cloned().map(WorkspaceObject)
    }
}

fn registry<'a>(ctx: &Context<'a>) -> &'a Arc<Registry> {
    ctx.data_unchecked::<Arc<Registry>>()
}

/// Build the schema over `registry`.
pub fn build_schema(registry: Arc<Registry>) -> ChatstatsSchema {
    schema_builder().data(registry).finish()
}

fn schema_builder() -> async_graphql::SchemaBuilder<Query, EmptyMutation, EmptySubscription> {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .extension(error_codes::ErrorCodes)
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
