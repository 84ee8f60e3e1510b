//! What stands between a request and its execution: persisted queries and
//! the safelist ([`crate::persisted`]), the document-size, depth, alias, root-field and cost
//! limits ([`crate::limits`]), the `read` scope for queries, and input async-graphql's
//! validation lets through but execution cannot use (`BAD_USER_INPUT`): a required variable
//! left out ([`crate::limits::missing_variable`]), a `window` of the wrong shape (`window: 5`,
//! `from: 5`: [`crate::limits::window_shape_error`]). The HTTP handler calls
//! [`Guard::admit`] before executing; on the WebSocket schema it is installed as an extension
//! and runs in `prepare_request`. Every transport gets the same rules, and the parsed document
//! is handed on, so a query is parsed once.
//!
//! Errors here happen before execution: the HTTP layer answers them without `data`.

use std::any::TypeId;
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, ServerError, ServerResult};

use crate::auth::{forbidden, Caller};
use crate::config::Scope;
use crate::error::code;
use crate::graphql::document_cache::{DocumentCache, RequestKey};
use crate::limits::{
    missing_variable, select_operation, window_argument_error, LimitExceeded, QueryLimits,
};
use crate::persisted::PersistedQueries;

/// Request data that marks a GraphQL-over-HTTP GET, which must not run a mutation (checked
/// here too, because a persisted query's text is known only after [`PersistedQueries`]).
#[derive(Clone, Copy, Debug)]
pub struct ReadOnlyRequest;

/// Install with `SchemaBuilder::extension(Guard { .. })`.
#[derive(Clone)]
pub struct Guard {
    pub limits: Arc<QueryLimits>,
    pub persisted: Arc<PersistedQueries>,
    /// How many workspaces exist (what `["*"]` sees), for the cost of `workspaces`.
    pub workspace_count: usize,
    /// Parsed documents: a repeated operation is not parsed again.
    pub documents: DocumentCache,
}

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

fn data<T: 'static>(request: &Request) -> Option<&T> {
    request
        .data
        .get(&TypeId::of::<T>())
        .and_then(|value| value.downcast_ref::<T>())
}

/// `QUERY_TOO_COMPLEX` with the limit and the measured value in `extensions`.
pub fn too_complex(exceeded: &LimitExceeded) -> ServerError {
    let mut error = ServerError::new(exceeded.message(), None);
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", code::QUERY_TOO_COMPLEX);
    extensions.set("limit", exceeded.limit);
    extensions.set("measured", exceeded.measured);
    if let Some(key) = exceeded.setting() {
        extensions.set("setting", format!("limits.{key}"));
    }
    error
}

/// A request [`Guard::admit`] let through: its parsed document (shared with the document
/// cache), and its [`RequestKey`] when its variables encode (what the transport needs to
/// recognise the request again).
pub struct Admitted {
    pub document: Arc<ExecutableDocument>,
    pub key: Option<RequestKey>,
}

impl Admitted {
    /// Give `request` its parsed document, so async-graphql does not parse it again. It takes
    /// the document by value: the one copy a request executed by async-graphql makes.
    pub fn hand_to(&self, request: &mut Request) {
        request.set_parsed_query(ExecutableDocument::clone(&self.document));
    }
}

impl Guard {
    /// Everything the guard checks, for a transport that runs it itself before executing
    /// `request` on a schema without extensions (see [`crate::graphql::build_schema`]). Also
    /// codes a document that does not parse (`GRAPHQL_PARSE_FAILED`), as `ErrorCodes` would.
    pub async fn admit(&self, request: &mut Request) -> Result<Admitted, ServerError> {
        if let Some(admitted) = self.check(request).await? {
            return Ok(admitted);
        }
        // Nesting was checked by `check`: the text is safe to give to the parser, which
        // says what is wrong with it.
        let error = match async_graphql::parser::parse_query(&request.query) {
            Err(error) => ServerError::from(error),
            Ok(_) => ServerError::new("the document could not be parsed", None),
        };
        Err(crate::graphql::error_codes::with_code(
            error,
            code::GRAPHQL_PARSE_FAILED,
        ))
    }

    /// Every check; None when the document does not parse.
    async fn check(&self, request: &mut Request) -> Result<Option<Admitted>, ServerError> {
        let caller = data::<Caller>(request)
            .cloned()
            .unwrap_or_else(Caller::nobody);
        let max_bytes = self.limits.config.max_document_bytes;
        // Size first: nothing is hashed or stored for an oversized document.
        self.limits
            .check_size(&request.query)
            .map_err(|e| too_complex(&e))?;
        self.persisted.resolve(request, &caller, max_bytes).await?;
        self.limits
            .check_size(&request.query)
            .map_err(|e| too_complex(&e))?;
        let held = self.documents.held(&request.query);
        if held.is_none() {
            self.limits
                .check_nesting(&request.query)
                .map_err(|e| too_complex(&e))?;
        }
        // A document that does not parse is left to the parser; its error is coded
        // `GRAPHQL_PARSE_FAILED` by `admit` (HTTP) or `ErrorCodes` (WebSocket).
        let Some(document) = held.or_else(|| self.documents.parse(&request.query)) else {
            return Ok(None);
        };
        if let Some(operation) = select_operation(&document, request.operation_name.as_deref()) {
            match operation.ty {
                OperationType::Mutation if data::<ReadOnlyRequest>(request).is_some() => {
                    let mut error =
                        ServerError::new("mutations are not allowed over GET; use POST", None);
                    error
                        .extensions
                        .get_or_insert_with(Default::default)
                        .set("code", code::BAD_USER_INPUT);
                    return Err(error);
                }
                OperationType::Query | OperationType::Subscription if !caller.has(Scope::Read) => {
                    let error = forbidden(Scope::Read, "a query");
                    let mut server_error = ServerError::new(error.message, None);
                    server_error.extensions = error.extensions;
                    return Err(server_error);
                }
                _ => {}
            }
        }
        let workspaces = caller.workspace_count(self.workspace_count);
        // A request measured within the limits before is not walked again.
        let known =
            RequestKey::of(request).map(|key| self.documents.is_within_limits(key, workspaces));
        if !matches!(known, Some((true, _))) {
            // Input async-graphql's validation lets through but execution cannot use: refused
            // here, coded, rather than failing field by field without a code.
            let message = select_operation(&document, request.operation_name.as_deref()).and_then(
                |operation| {
                    missing_variable(operation, &request.variables)
                        .or_else(|| window_argument_error(&document, operation, &request.variables))
                },
            );
            if let Some(message) = message {
                let mut error = ServerError::new(message, None);
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("code", code::BAD_USER_INPUT);
                return Err(error);
            }
            self.limits
                .check(
                    &document,
                    request.operation_name.as_deref(),
                    &request.variables,
                    workspaces,
                )
                .map_err(|e| too_complex(&e))?;
            if let Some((_, key)) = &known {
                self.documents.measured_within_limits(key, workspaces);
            }
        }
        Ok(Some(Admitted {
            document,
            key: known.map(|(_, key)| key),
        }))
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Guard {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(admitted) = self.check(&mut request).await? {
            admitted.hand_to(&mut request);
        }
        next.run(ctx, request).await
    }
}
