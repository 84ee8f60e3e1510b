//! `Subscription`: live dashboards over graphql-transport-ws (the transport is [`crate::ws`]).
//!
//! One field, `workspace(id)`, yields the workspace again and again; the client's selection
//! (any series, any windows) is resolved anew for every emission. The resolvers read the
//! operation's [`Fetcher`] as they do for a query; what makes it live is that the operation's
//! [`RequestScope`](crate::fetch::RequestScope) is renewed before each emission, so each
//! emission is a fresh request to the shared [`ChunkCache`](crate::cache::ChunkCache).
//!
//! When: the first emission at once, the next when the first chunk the previous emission
//! used stops being fresh (a live chunk at `[cache] live_ttl_secs`; a window wholly in the
//! past waits for the history TTL; what came from the Xenioo snapshot, until its next call is
//! allowed). Every subscriber of the same chunk therefore wakes at the
//! same instant and the cache's single flight makes one upstream call for all of them. An
//! emission happens at each refresh, whether or not the values changed: it doubles as a
//! heartbeat that tells a dashboard its data is current. When a refresh failed and stale data
//! was served, the next attempt comes one live TTL later.

use async_graphql::{Context, Subscription as SubscriptionObject, ID};
use futures::Stream;

use crate::error::ApiError;
use crate::fetch::Fetcher;
use crate::graphql::visible_workspace;
use crate::graphql::workspace::WorkspaceObject;

/// Live data over WebSocket (graphql-transport-ws on `/graphql`).
pub struct Subscription;

/// Live data over WebSocket (graphql-transport-ws on `/graphql`).
#[SubscriptionObject]
impl Subscription {
    /// One workspace, now and again whenever data it showed refreshes: the selection is
    /// resolved at once, then each time the first upstream chunk the previous emission used
    /// stops being fresh (`[cache] live_ttl_secs` for windows that touch the present), through
    /// the shared cache, so any number of subscribers cost one upstream call per refresh. An
    /// emission happens at each refresh even when no value changed. `NOT_FOUND` when the
    /// workspace does not exist or the caller may not see it. Each subscription takes one of
    /// the client's `[limits] max_subscriptions_per_client` slots until it ends.
    async fn workspace(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workspace id, e.g. `acme`.")] id: ID,
    ) -> async_graphql::Result<impl Stream<Item = WorkspaceObject>> {
        let Some(workspace) = visible_workspace(ctx, &id) else {
            return Err(ApiError::no_workspace("id", &id).into());
        };
        let fetcher = ctx
            .data::<Fetcher>()
            .map_err(|_| async_graphql::Error::new("subscriptions need a WebSocket"))?
            .clone();
        let retry = fetcher.cache.live_ttl();
        Ok(futures::stream::unfold(true, move |first| {
            let workspace = workspace.clone();
            let scope = fetcher.scope.clone();
            async move {
                if !first {
                    // The previous emission has been resolved (async-graphql resolves one item
                    // before it asks for the next), so its freshness is known.
                    let now = std::time::Instant::now();
                    let next = scope
                        .fresh_until()
                        .filter(|at| *at > now)
                        .unwrap_or(now + retry);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                    scope.renew();
                }
                Some((WorkspaceObject(workspace), false))
            }
        }))
    }
}
