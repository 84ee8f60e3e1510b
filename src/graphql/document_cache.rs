//! A schema extension that keeps parsed documents, so a dashboard that sends the same
//! operation again (the common case) skips the parser: parsing was the largest single cost of
//! a warm request (about a sixth of the CPU of the load benchmark's overview).
//!
//! Keyed by the exact query text; only documents that parsed are kept. Bounded by the bytes
//! of query text it holds ([`MAX_TEXT_BYTES`]), and documents over [`MAX_DOCUMENT_BYTES`] are
//! never kept, so a client sending endless distinct queries cannot grow it.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};
use moka::sync::Cache;

/// Query text held in all, in bytes (a parsed document takes a few times its text).
pub const MAX_TEXT_BYTES: u64 = 4 * 1024 * 1024;
/// Larger documents are parsed every time.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Install with `SchemaBuilder::extension(DocumentCache::new())`; one cache per schema.
#[derive(Clone)]
pub struct DocumentCache {
    documents: Cache<Arc<str>, ExecutableDocument>,
}

impl DocumentCache {
    pub fn new() -> Self {
        Self {
            documents: Cache::builder()
                .max_capacity(MAX_TEXT_BYTES)
                .weigher(|query: &Arc<str>, _| u32::try_from(query.len()).unwrap_or(u32::MAX))
                .build(),
        }
    }

    /// Documents held (for tests).
    pub fn len(&self) -> u64 {
        self.documents.run_pending_tasks();
        self.documents.entry_count()
    }

    /// True when no document is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentCache {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_DOCUMENT_BYTES {
            return next.run(ctx, query, variables).await;
        }
        if let Some(document) = self.documents.get(query) {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await?;
        self.documents.insert(Arc::from(query), document.clone());
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn answer(&self) -> i32 {
            42
        }
    }

    fn schema(cache: &DocumentCache) -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(cache.clone())
            .finish()
    }

    #[tokio::test]
    async fn a_repeated_document_is_parsed_once_and_answers_the_same() {
        let cache = DocumentCache::new();
        let schema = schema(&cache);
        let first = schema.execute("{ answer }").await;
        let second = schema.execute("{ answer }").await;
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(first.data, second.data);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn documents_that_fail_to_parse_or_are_too_large_are_not_kept() {
        let cache = DocumentCache::new();
        let schema = schema(&cache);
        let broken = schema.execute("{ answer ").await;
        assert_eq!(broken.errors.len(), 1);
        let padding = " ".repeat(MAX_DOCUMENT_BYTES);
        let large = schema.execute(format!("{{ answer }}{padding}")).await;
        assert!(large.errors.is_empty(), "{:?}", large.errors);
        assert!(cache.is_empty());
    }
}
