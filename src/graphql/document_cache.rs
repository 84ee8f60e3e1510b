//! Parsed documents, kept so that a dashboard sending the same operation again (the common
//! case) skips the parser: parsing was the largest single cost of a warm request (about a
//! sixth of the CPU of the load benchmark's overview). Every parse of the server goes through
//! it: the request guard ([`crate::graphql::guard`]), which hands the document to the
//! executor, and the request log's operation name. Text nested deeper than
//! [`MAX_NESTING`](crate::limits::MAX_NESTING) is never handed to the (recursive) parser.
//!
//! Keyed by the exact query text; only documents that parsed are kept. Bounded by the bytes
//! of query text it holds ([`MAX_TEXT_BYTES`]), and documents over [`MAX_DOCUMENT_BYTES`] are
//! never kept, so a client sending endless distinct queries cannot grow it.
//!
//! It also remembers which requests ([`RequestKey`]: text, operation name, variables) passed
//! async-graphql's full validation, so the HTTP handler can run them again on their
//! operation's compiled plan ([`crate::graphql::plan`]) or, without one, on a schema that
//! validates in its fast mode (validation was a tenth of a warm query's CPU). Validation is
//! a function of the document and the variable values only, so the same request passes it
//! again. Likewise the requests the guard measured within the [`crate::limits`] for a caller
//! who sees a given number of workspaces (the measure is a function of the request and that
//! number). Both bounded like the documents, as are the plans, kept by text and operation
//! name.

use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;

use crate::graphql::plan::Plan;
use crate::limits::{nesting_depth, MAX_NESTING};

/// The caches here are keyed by client-chosen text of up to [`MAX_DOCUMENT_BYTES`], hashed
/// several times per request: foldhash's seeded quality hasher is several times faster than
/// the default SipHash on such keys.
type Cache<K, V> = moka::sync::Cache<K, V, foldhash::quality::RandomState>;

/// Query text held in all, in bytes (a parsed document takes a few times its text).
pub const MAX_TEXT_BYTES: u64 = 4 * 1024 * 1024;
/// Larger documents are parsed every time.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A GraphQL request as executed: everything about it that decides its validation and (with
/// the caller) its answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestKey {
    query: String,
    operation: Option<String>,
    /// The variables as JSON text.
    variables: String,
}

impl RequestKey {
    /// The key of `request`; None when its variables do not encode.
    pub fn of(request: &async_graphql::Request) -> Option<Self> {
        Some(Self {
            query: request.query.clone(),
            operation: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).ok()?,
        })
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.query.len() + self.variables.len() + self.operation.as_ref().map_or(0, String::len)
    }
}

/// One per schema; clones share the cache.
#[derive(Clone)]
pub struct DocumentCache {
    documents: Cache<Arc<str>, Arc<ExecutableDocument>>,
    validated: Cache<RequestKey, ()>,
    /// Requests within the limits, with the number of workspaces their caller sees.
    within_limits: Cache<(RequestKey, usize), ()>,
    /// The compiled plans of each text's operations, by operation name (None: it has none).
    plans: Cache<Arc<str>, Arc<Plans>>,
}

type Plans = Vec<(Option<String>, Option<Arc<Plan>>)>;

impl DocumentCache {
    pub fn new() -> Self {
        Self {
            documents: moka::sync::Cache::builder()
                .max_capacity(MAX_TEXT_BYTES)
                .weigher(|query: &Arc<str>, _| u32::try_from(query.len()).unwrap_or(u32::MAX))
                .build_with_hasher(Default::default()),
            validated: moka::sync::Cache::builder()
                .max_capacity(MAX_TEXT_BYTES)
                .weigher(|key: &RequestKey, _| u32::try_from(key.bytes()).unwrap_or(u32::MAX))
                .build_with_hasher(Default::default()),
            within_limits: moka::sync::Cache::builder()
                .max_capacity(MAX_TEXT_BYTES)
                .weigher(|(key, _): &(RequestKey, usize), _| {
                    u32::try_from(key.bytes()).unwrap_or(u32::MAX)
                })
                .build_with_hasher(Default::default()),
            plans: moka::sync::Cache::builder()
                .max_capacity(MAX_TEXT_BYTES)
                .weigher(|query: &Arc<str>, _| u32::try_from(query.len()).unwrap_or(u32::MAX))
                .build_with_hasher(Default::default()),
        }
    }

    /// The compiled plan of `operation` in `document`, the parsed `query` (None: it has none,
    /// see [`crate::graphql::plan`]). Compiled once per text and operation.
    pub fn plan(
        &self,
        query: &str,
        operation: Option<&str>,
        document: &ExecutableDocument,
    ) -> Option<Arc<Plan>> {
        let known = self.plans.get(query);
        let compiled = known
            .as_ref()
            .and_then(|plans| plans.iter().find(|(name, _)| name.as_deref() == operation));
        if let Some((_, plan)) = compiled {
            return plan.clone();
        }
        let plan = Plan::compile(document, operation).map(Arc::new);
        if query.len() <= MAX_DOCUMENT_BYTES {
            let mut plans = known.map(|plans| Plans::clone(&plans)).unwrap_or_default();
            plans.push((operation.map(str::to_owned), plan.clone()));
            self.plans.insert(Arc::from(query), Arc::new(plans));
        }
        plan
    }

    /// True when `request`, by a caller who sees `workspaces` workspaces, was measured within
    /// the limits before. Hands the key back for [`DocumentCache::measured_within_limits`].
    pub fn is_within_limits(&self, request: RequestKey, workspaces: usize) -> (bool, RequestKey) {
        let probe = (request, workspaces);
        let known = self.within_limits.contains_key(&probe);
        (known, probe.0)
    }

    /// Record that `request` by a caller who sees `workspaces` workspaces is within the limits.
    pub fn measured_within_limits(&self, request: &RequestKey, workspaces: usize) {
        if request.query.len() <= MAX_DOCUMENT_BYTES {
            self.within_limits.insert((request.clone(), workspaces), ());
        }
    }

    /// True when `request` passed full validation before.
    pub fn is_validated(&self, request: &RequestKey) -> bool {
        self.validated.contains_key(request)
    }

    /// Record that `request` passed full validation.
    pub fn validated(&self, request: RequestKey) {
        if request.query.len() <= MAX_DOCUMENT_BYTES {
            self.validated.insert(request, ());
        }
    }

    /// The parsed `query` if the cache holds it (it passed [`MAX_NESTING`] then).
    pub fn held(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.documents.get(query)
    }

    /// The parsed `query`: from the cache, or parsed now (and kept when it parses). None when
    /// it does not parse, or nests too deep to be given to the parser at all. Shared: readers
    /// that only look at it (the operation name, the guard's limits) copy nothing.
    pub fn parse(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        if let Some(document) = self.held(query) {
            return Some(document);
        }
        if nesting_depth(query) > MAX_NESTING {
            return None;
        }
        let document = Arc::new(async_graphql::parser::parse_query(query).ok()?);
        if query.len() <= MAX_DOCUMENT_BYTES {
            self.documents.insert(Arc::from(query), document.clone());
        }
        Some(document)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_text_is_served_the_same_document_from_one_entry() {
        let cache = DocumentCache::new();
        let first = cache.parse("{ answer }").expect("parses");
        let second = cache.parse("{ answer }").expect("cached");
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_request_is_validated_with_its_own_variables_only() {
        let cache = DocumentCache::new();
        let mut request = async_graphql::Request::new("query Q($n: Int) { a(n: $n) }");
        request.variables = async_graphql::Variables::from_json(serde_json::json!({"n": 1}));
        let key = RequestKey::of(&request).expect("a key");
        assert!(!cache.is_validated(&key));
        cache.validated(key.clone());
        assert!(cache.is_validated(&key));
        request.variables = async_graphql::Variables::from_json(serde_json::json!({"n": "x"}));
        let other = RequestKey::of(&request).expect("a key");
        assert!(
            !cache.is_validated(&other),
            "other variable values validate anew"
        );
    }

    #[test]
    fn documents_that_fail_to_parse_or_are_too_large_are_not_kept() {
        let cache = DocumentCache::new();
        assert!(cache.parse("{ answer ").is_none());
        let padding = " ".repeat(MAX_DOCUMENT_BYTES);
        assert!(cache.parse(&format!("{{ answer }}{padding}")).is_some());
        assert!(cache.is_empty());
    }

    #[test]
    fn text_nested_too_deep_never_reaches_the_parser() {
        // Deep enough to overflow the recursive parser's stack on this thread.
        let deep = format!(
            r#"{{ a(id: {}"x"{}) }}"#,
            "[".repeat(5_000),
            "]".repeat(5_000)
        );
        let cache = DocumentCache::new();
        assert!(cache.parse(&deep).is_none());
        assert!(cache.is_empty());
    }
}
