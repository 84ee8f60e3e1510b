//! A schema extension that gives every error an `extensions.code`: syntax errors are
//! `GRAPHQL_PARSE_FAILED`, schema validation errors `GRAPHQL_VALIDATION_FAILED`, and argument
//! values that do not coerce (a bad `DateTime`, `TimeZone` or enum value, in the document or in
//! variables) `BAD_USER_INPUT`. Resolver errors already carry their code (see `crate::error`).
//!
//! Installed only on the WebSocket schema (see [`crate::graphql::build_schema`]); the HTTP
//! handler codes its responses itself with [`with_code`] and [`is_input_error`].

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Value, Variables};

use crate::error::code;

/// Install with `SchemaBuilder::extension(ErrorCodes)`.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
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

/// Coercion failures of argument and variable values are the client's input, not its query shape.
pub fn is_input_error(error: &ServerError) -> bool {
    error.message.starts_with("Invalid value for argument")
        || error.message.starts_with("Failed to parse")
        || error.message.starts_with("Invalid value for variable")
        || error.message.contains("Variable \"")
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, code::GRAPHQL_PARSE_FAILED))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let value = if is_input_error(&e) {
                        code::BAD_USER_INPUT
                    } else {
                        code::GRAPHQL_VALIDATION_FAILED
                    };
                    with_code(e, value)
                })
                .collect()
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        response.errors = std::mem::take(&mut response.errors)
            .into_iter()
            .map(|e| {
                let value = if is_input_error(&e) {
                    code::BAD_USER_INPUT
                } else {
                    code::INTERNAL_SERVER_ERROR
                };
                with_code(e, value)
            })
            .collect();
        response
    }
}
