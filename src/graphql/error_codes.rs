//! Every error a client sees carries an `extensions.code` (SPEC §5). Our own errors carry
//! theirs: [`crate::error`] for resolvers, and the scalars' parse errors (`DateTime`,
//! `TimeZone`: [`crate::graphql::scalars`]). What async-graphql raises itself is coded here
//! from *where* it arose — the phase, and the place in the document it points at — never from
//! its English message, so a library upgrade that rewords a message cannot change a code:
//!
//! | phase | the error points at | code |
//! |---|---|---|
//! | parse | anything | `GRAPHQL_PARSE_FAILED` |
//! | validation | exactly one argument's name | `BAD_USER_INPUT` |
//! | validation | anything else | `GRAPHQL_VALIDATION_FAILED` |
//! | execution | an argument's value | `BAD_USER_INPUT` |
//! | execution | anything else | `INTERNAL_SERVER_ERROR` |
//!
//! Why these places: async-graphql's validation reports a value that does not coerce to its
//! argument's type (a literal, or a variable's value: an unknown enum value, a string for an
//! `Int`, a missing input field) at that argument's *name*; it reports an unknown or repeated
//! argument there too (the client's argument either way), and a variable an anonymous
//! operation uses without defining it (a named operation's points at two places), while
//! document defects — an
//! unknown field, an unused variable, a variable of the wrong type, a missing required
//! argument — point at a field, a variable definition or two places. During execution,
//! coercing an argument (a variable without a value, a custom scalar's `parse`) fails at
//! the argument's *value*; anything else uncoded at execution is a bug of ours. These
//! placements are async-graphql's, not ours: the unit tests below pin every one of them, so an
//! upgrade that moves one fails a test instead of changing what clients see.
//!
//! The HTTP handler codes its responses with [`code_errors`] (its schema has no extensions,
//! for speed); the WebSocket schema installs [`ErrorCodes`] (see
//! [`crate::graphql::build_schema`]). Both apply the same rules.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
    NextValidation,
};
use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    Pos, Positioned, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::code;

/// Where an error arose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the document's text.
    Parse,
    /// Checking the document (and the variables' values) against the schema, and choosing
    /// the operation: everything before a resolver runs.
    Validation,
    /// Resolving fields.
    Execution,
}

impl Phase {
    /// The phase of a response's errors: one without data whose errors have no path never
    /// reached a resolver (execution errors always carry their field's path).
    pub fn of_response(response: &Response) -> Phase {
        if response.data == Value::Null && response.errors.iter().all(|e| e.path.is_empty()) {
            Phase::Validation
        } else {
            Phase::Execution
        }
    }
}

/// The positions of a document's arguments (of fields and directives, in every operation
/// and fragment): their names and their values.
#[derive(Debug, Default)]
pub struct ArgumentPositions {
    names: HashSet<Pos>,
    values: HashSet<Pos>,
}

impl ArgumentPositions {
    pub fn of(document: &ExecutableDocument) -> Self {
        let mut positions = Self::default();
        // An explicit stack: selection sets nest as deep as the document does.
        let mut sets: Vec<&SelectionSet> = Vec::new();
        for (_, operation) in document.operations.iter() {
            positions.add_directives(&operation.node.directives);
            sets.push(&operation.node.selection_set.node);
        }
        for fragment in document.fragments.values() {
            positions.add_directives(&fragment.node.directives);
            sets.push(&fragment.node.selection_set.node);
        }
        while let Some(set) = sets.pop() {
            for selection in &set.items {
                match &selection.node {
                    Selection::Field(field) => {
                        positions.add_arguments(&field.node.arguments);
                        positions.add_directives(&field.node.directives);
                        sets.push(&field.node.selection_set.node);
                    }
                    Selection::FragmentSpread(spread) => {
                        positions.add_directives(&spread.node.directives);
                    }
                    Selection::InlineFragment(fragment) => {
                        positions.add_directives(&fragment.node.directives);
                        sets.push(&fragment.node.selection_set.node);
                    }
                }
            }
        }
        positions
    }

    fn add_arguments<V>(&mut self, arguments: &[(Positioned<async_graphql::Name>, Positioned<V>)]) {
        for (name, value) in arguments {
            self.names.insert(name.pos);
            self.values.insert(value.pos);
        }
    }

    fn add_directives(&mut self, directives: &[Positioned<Directive>]) {
        for directive in directives {
            self.add_arguments(&directive.node.arguments);
        }
    }

    /// The code of an error async-graphql raised in `phase` (see the module's table).
    pub fn code(&self, error: &ServerError, phase: Phase) -> &'static str {
        match (phase, error.locations.as_slice()) {
            (Phase::Parse, _) => code::GRAPHQL_PARSE_FAILED,
            (Phase::Validation, [at]) if self.names.contains(at) => code::BAD_USER_INPUT,
            (Phase::Validation, _) => code::GRAPHQL_VALIDATION_FAILED,
            (Phase::Execution, [at, ..]) if self.values.contains(at) => code::BAD_USER_INPUT,
            (Phase::Execution, _) => code::INTERNAL_SERVER_ERROR,
        }
    }
}

fn has_code(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some())
}

/// Set `code` unless the error already has one.
pub fn with_code(mut error: ServerError, value: &str) -> ServerError {
    if !has_code(&error) {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", Value::from(value));
    }
    error
}

/// Give every error of `phase` that has no code yet its code. `document` is asked for only
/// when an error needs it (rarely: ours carry their codes).
pub fn code_errors(
    errors: Vec<ServerError>,
    phase: Phase,
    document: impl FnOnce() -> Option<Arc<ExecutableDocument>>,
) -> Vec<ServerError> {
    if errors.iter().all(has_code) {
        return errors;
    }
    let arguments = match phase {
        Phase::Parse => ArgumentPositions::default(),
        _ => document()
            .map(|d| ArgumentPositions::of(&d))
            .unwrap_or_default(),
    };
    code_with(errors, phase, &arguments)
}

fn code_with(
    errors: Vec<ServerError>,
    phase: Phase,
    arguments: &ArgumentPositions,
) -> Vec<ServerError> {
    errors
        .into_iter()
        .map(|e| {
            let value = arguments.code(&e, phase);
            with_code(e, value)
        })
        .collect()
}

/// Install with `SchemaBuilder::extension(ErrorCodes)`; one instance per request keeps the
/// request's argument positions from parsing to its last response.
#[derive(Default)]
pub struct ErrorCodes {
    /// Shared with the response stream of [`Extension::subscribe`], which outlives `&self`.
    arguments: Arc<Mutex<Arc<ArgumentPositions>>>,
}

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes::default())
    }
}

impl ErrorCodes {
    fn code(&self, errors: Vec<ServerError>, phase: Phase) -> Vec<ServerError> {
        code_shared(&self.arguments, errors, phase)
    }
}

fn code_shared(
    arguments: &Mutex<Arc<ArgumentPositions>>,
    errors: Vec<ServerError>,
    phase: Phase,
) -> Vec<ServerError> {
    if errors.iter().all(has_code) {
        return errors;
    }
    let arguments = arguments
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    code_with(errors, phase, &arguments)
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Every WebSocket operation is a stream; its responses may carry errors no other hook
        // saw (choosing the operation, a subscription's own fields).
        let arguments = Arc::clone(&self.arguments);
        next.run(ctx, stream)
            .map(move |mut response| {
                let phase = Phase::of_response(&response);
                response.errors =
                    code_shared(&arguments, std::mem::take(&mut response.errors), phase);
                response
            })
            .boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        match next.run(ctx, query, variables).await {
            Ok(document) => {
                *self
                    .arguments
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Arc::new(ArgumentPositions::of(&document));
                Ok(document)
            }
            Err(error) => Err(with_code(error, code::GRAPHQL_PARSE_FAILED)),
        }
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx)
            .await
            .map_err(|errors| self.code(errors, Phase::Validation))
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        // The whole request, so errors no other hook sees (choosing the operation) are coded.
        let mut response = next.run(ctx).await;
        let phase = Phase::of_response(&response);
        response.errors = self.code(std::mem::take(&mut response.errors), phase);
        response
    }
}

#[cfg(test)]
mod tests {
    //! Every placement the module's table relies on, over a small schema, through both the
    //! HTTP way ([`code_errors`] after a schema without extensions) and the WebSocket way (the
    //! [`ErrorCodes`] extension, for `execute` and `execute_stream`). A failure here after an
    //! async-graphql upgrade means it moved an error: decide its code again, on purpose.

    use async_graphql::{EmptyMutation, EmptySubscription, Enum, Object, Request, Schema};
    use serde_json::json;

    use super::*;
    use crate::error::ApiError;
    use crate::graphql::scalars::TimeZone;

    #[derive(Enum, Clone, Copy, PartialEq, Eq)]
    enum Unit {
        Day,
        Hour,
    }

    struct Root;

    #[Object]
    impl Root {
        async fn count(&self, n: i32, unit: Option<Unit>) -> i32 {
            n + i32::from(unit == Some(Unit::Hour))
        }

        async fn zone(&self, zone: TimeZone) -> String {
            zone.0.to_string()
        }

        async fn coded(&self) -> async_graphql::Result<i32> {
            Err(ApiError::bad_input("argument `x`: too large").into())
        }

        async fn broken(&self) -> async_graphql::Result<i32> {
            Err(async_graphql::Error::new("a bug of ours"))
        }
    }

    type TestSchema = Schema<Root, EmptyMutation, EmptySubscription>;

    fn request(query: &str, variables: serde_json::Value) -> Request {
        Request::new(query).variables(Variables::from_json(variables))
    }

    fn codes_of(errors: &[ServerError]) -> Vec<String> {
        errors
            .iter()
            .map(|e| {
                e.extensions
                    .as_ref()
                    .and_then(|x| x.get("code"))
                    .map(|c| c.to_string().trim_matches('"').to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The codes the HTTP handler gives: a schema without extensions, then [`code_errors`].
    async fn over_http(query: &str, variables: serde_json::Value) -> Vec<String> {
        let schema = TestSchema::new(Root, EmptyMutation, EmptySubscription);
        let mut response = schema.execute(request(query, variables)).await;
        let phase = match async_graphql::parser::parse_query(query) {
            Err(_) => Phase::Parse,
            Ok(_) => Phase::of_response(&response),
        };
        let document = || async_graphql::parser::parse_query(query).ok().map(Arc::new);
        response.errors = code_errors(std::mem::take(&mut response.errors), phase, document);
        codes_of(&response.errors)
    }

    /// The codes the WebSocket schema gives, executed once and as a stream (which must agree).
    async fn over_websocket(query: &str, variables: serde_json::Value) -> Vec<String> {
        let schema = Schema::build(Root, EmptyMutation, EmptySubscription)
            .extension(ErrorCodes::default())
            .finish();
        let once = schema.execute(request(query, variables.clone())).await;
        let streamed: Vec<Response> = schema
            .execute_stream(request(query, variables))
            .collect()
            .await;
        let streamed: Vec<ServerError> = streamed.into_iter().flat_map(|r| r.errors).collect();
        assert_eq!(codes_of(&once.errors), codes_of(&streamed), "{query}");
        codes_of(&once.errors)
    }

    async fn assert_code(query: &str, variables: serde_json::Value, expected: &str) {
        for (transport, codes) in [
            ("HTTP", over_http(query, variables.clone()).await),
            ("WebSocket", over_websocket(query, variables.clone()).await),
        ] {
            assert!(!codes.is_empty(), "{transport}: {query} must fail");
            assert!(
                codes.iter().all(|c| c == expected),
                "{transport}: {query} with {variables}: {codes:?}, expected {expected}"
            );
        }
    }

    #[tokio::test]
    async fn text_that_does_not_parse_is_graphql_parse_failed() {
        assert_code("{ count(n: 1 ", json!({}), code::GRAPHQL_PARSE_FAILED).await;
    }

    #[tokio::test]
    async fn document_defects_are_graphql_validation_failed() {
        for query in [
            "{ nope }",
            "{ count }",
            "query($n: Int) { count(n: 1) }",
            "query A { count(n: 1) } query B { count(n: 2) }",
            "{ count(n: 1) { deeper } }",
        ] {
            assert_code(query, json!({}), code::GRAPHQL_VALIDATION_FAILED).await;
        }
        // A variable the named operation does not define: two places (the operation, the use).
        assert_code(
            "query Q { count(n: $m) }",
            json!({"m": 1}),
            code::GRAPHQL_VALIDATION_FAILED,
        )
        .await;
    }

    #[tokio::test]
    async fn argument_values_that_do_not_coerce_are_bad_user_input_in_the_document_or_variables() {
        for query in [
            r#"{ count(n: "x") }"#,
            "{ count(n: 1, unit: WEEK) }",
            "{ count(n: 1) @include(if: 3) }",
            r#"{ ...F } fragment F on Root { count(n: "x") }"#,
        ] {
            assert_code(query, json!({}), code::BAD_USER_INPUT).await;
        }
        assert_code(
            "query($n: Int!) { count(n: $n) }",
            json!({"n": "x"}),
            code::BAD_USER_INPUT,
        )
        .await;
        assert_code(
            "query($u: Unit) { count(n: 1, unit: $u) }",
            json!({"u": "WEEK"}),
            code::BAD_USER_INPUT,
        )
        .await;
    }

    #[tokio::test]
    async fn a_variable_without_a_value_is_bad_user_input() {
        assert_code(
            "query($n: Int!) { count(n: $n) }",
            json!({}),
            code::BAD_USER_INPUT,
        )
        .await;
    }

    #[tokio::test]
    async fn an_unknown_or_repeated_argument_is_bad_user_input() {
        // async-graphql reports these where it reports a value that does not coerce, and so
        // a variable an anonymous operation does not define (at the argument that uses it).
        for query in [
            "{ count(n: 1, bogus: 2) }",
            "{ count(n: 1, n: 2) }",
            "{ count(n: $m) }",
        ] {
            assert_code(query, json!({}), code::BAD_USER_INPUT).await;
        }
    }

    #[tokio::test]
    async fn our_scalars_code_their_own_parse_errors() {
        assert_code(
            r#"{ zone(zone: "Mars/Olympus") }"#,
            json!({}),
            code::BAD_USER_INPUT,
        )
        .await;
        assert_code(
            "query($z: TimeZone!) { zone(zone: $z) }",
            json!({"z": "+25:00"}),
            code::BAD_USER_INPUT,
        )
        .await;
        let error = <TimeZone as async_graphql::InputType>::parse(Some(Value::from("Mars/X")))
            .expect_err("not a zone")
            .into_server_error(Pos::default());
        assert_eq!(codes_of(&[error]), [code::BAD_USER_INPUT]);
    }

    #[tokio::test]
    async fn our_codes_are_kept_and_an_uncoded_resolver_error_is_internal() {
        assert_code("{ coded }", json!({}), code::BAD_USER_INPUT).await;
        assert_code("{ broken }", json!({}), code::INTERNAL_SERVER_ERROR).await;
    }
}
