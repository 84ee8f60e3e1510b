//! Error codes and the one conversion from our errors to GraphQL errors (SPEC §5).
//!
//! Every error a client sees carries `extensions.code`; errors that involve an upstream also
//! carry `extensions.provider`. Messages say what happened and what to do, and never contain a
//! credential: upstream errors are built from status codes and our own words, never from an
//! upstream body or a URL (URLs can hold account identifiers).

use async_graphql::ErrorExtensions;

use crate::providers::Provider;

/// The stable `extensions.code` values.
pub mod code {
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const UPSTREAM_UNAVAILABLE: &str = "UPSTREAM_UNAVAILABLE";
    pub const UPSTREAM_THROTTLED: &str = "UPSTREAM_THROTTLED";
    pub const UPSTREAM_REJECTED: &str = "UPSTREAM_REJECTED";
    pub const UPSTREAM_INVALID: &str = "UPSTREAM_INVALID";
    pub const OUT_OF_RETENTION: &str = "OUT_OF_RETENTION";
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The document is not valid GraphQL (syntax).
    pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    /// The document does not validate against the schema.
    pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// A bug on our side; details are in the server log only.
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
}

/// What went wrong with one upstream call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamErrorKind {
    /// Timeout, connection failure, a 5xx answer, or an open circuit.
    #[error("is unavailable: {0}; try again later")]
    Unavailable(String),
    /// The provider account's circuit is open: its recent calls failed, so chatstats fails
    /// fast instead of calling, until one probe call succeeds after the cooldown.
    #[error("is unavailable: circuit open after {failures} consecutive failed calls (the last: {last}); chatstats tries it again in {retry_after_secs} s")]
    CircuitOpen {
        failures: u32,
        last: String,
        retry_after_secs: u64,
    },
    /// The upstream rate-limited us (429) or our own quota for it is spent.
    #[error("is throttling requests; retry after {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// chatstats holds the account's next call back itself: the provider allows one call per
    /// interval (Xenioo) and the latest call, which failed after it may have reached the
    /// provider, spent it. The provider refused nothing; `UPSTREAM_THROTTLED` all the same.
    #[error("is not called yet: chatstats waits for this account's next allowed call ({reason}); retry after {retry_after_secs} s")]
    WaitingForNextCall {
        reason: String,
        retry_after_secs: u64,
    },
    /// The upstream refused the request (4xx): credentials, plan, unknown account.
    #[error("rejected the request (HTTP {status}: {reason}); check the workspace's credentials and plan")]
    Rejected { status: u16, reason: String },
    /// The upstream answered with a body we cannot read.
    #[error("sent a response chatstats cannot read ({0})")]
    Invalid(String),
    /// The window reaches further back than the provider keeps data.
    #[error("keeps no data before {0}; shorten the window")]
    OutOfRetention(String),
    /// A provider's part was asked of a workspace that has no account there (an internal
    /// fault: parts are built only for configured providers).
    #[error("is not configured for this workspace")]
    NotConfigured,
}

/// An upstream failure, attributed to its provider.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error without
/// `extensions`, so a stray `?` would drop our code. Only our own `From` impl below exists.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    pub provider: Provider,
    pub kind: UpstreamErrorKind,
}

impl UpstreamError {
    pub fn new(provider: Provider, kind: UpstreamErrorKind) -> Self {
        Self { provider, kind }
    }

    /// The client-facing message, e.g. `Help Scout is unavailable: HTTP 503; try again later`.
    pub fn message(&self) -> String {
        format!("{} {}", self.provider, self.kind)
    }

    /// The `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self.kind {
            UpstreamErrorKind::Unavailable(_) | UpstreamErrorKind::CircuitOpen { .. } => {
                code::UPSTREAM_UNAVAILABLE
            }
            UpstreamErrorKind::Throttled { .. } | UpstreamErrorKind::WaitingForNextCall { .. } => {
                code::UPSTREAM_THROTTLED
            }
            UpstreamErrorKind::Rejected { .. } => code::UPSTREAM_REJECTED,
            UpstreamErrorKind::Invalid(_) => code::UPSTREAM_INVALID,
            UpstreamErrorKind::OutOfRetention(_) => code::OUT_OF_RETENTION,
            UpstreamErrorKind::NotConfigured => code::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Errors the API reports to clients. Not `Display`, for the reason given on [`UpstreamError`].
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// An argument is malformed or out of range; the message names it.
    BadUserInput(String),
    /// No such object, or one the caller may not see (the two look the same on purpose).
    NotFound(String),
    /// A provider cannot serve what was asked (e.g. HOUR from a provider that only has days).
    Unsupported {
        provider: Provider,
        message: String,
    },
    Upstream(UpstreamError),
}

impl From<UpstreamError> for ApiError {
    fn from(error: UpstreamError) -> Self {
        ApiError::Upstream(error)
    }
}

impl ApiError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        ApiError::BadUserInput(message.into())
    }

    /// `NOT_FOUND` for workspace `id`, given as `argument`: one message whether the workspace
    /// does not exist or belongs to another tenant, so ids cannot be probed (SPEC §8).
    pub fn no_workspace(argument: &str, id: &str) -> Self {
        ApiError::NotFound(format!(
            "argument `{argument}`: no workspace {id:?} that this caller may see"
        ))
    }

    /// `NOT_FOUND` for operator `id`: one message whether nobody has that id or the operator
    /// belongs to another tenant's workspace.
    pub fn no_operator(id: &str) -> Self {
        ApiError::NotFound(format!(
            "argument `id`: no operator {id:?} active in the last 30 days in a workspace this caller may see"
        ))
    }

    /// The client-facing message.
    pub fn message(&self) -> String {
        match self {
            ApiError::BadUserInput(message) | ApiError::NotFound(message) => message.clone(),
            ApiError::Unsupported { message, .. } => message.clone(),
            ApiError::Upstream(upstream) => upstream.message(),
        }
    }
}

impl From<UpstreamError> for async_graphql::Error {
    fn from(error: UpstreamError) -> Self {
        ApiError::Upstream(error).into()
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        let message = error.message();
        async_graphql::Error::new(message).extend_with(|_, ext| match &error {
            ApiError::BadUserInput(_) => ext.set("code", code::BAD_USER_INPUT),
            ApiError::NotFound(_) => ext.set("code", code::NOT_FOUND),
            ApiError::Unsupported { provider, .. } => {
                ext.set("code", code::BAD_USER_INPUT);
                ext.set("provider", provider.graphql_name());
            }
            ApiError::Upstream(upstream) => {
                ext.set("code", upstream.code());
                ext.set("provider", upstream.provider.graphql_name());
                if let UpstreamErrorKind::Throttled { retry_after_secs }
                | UpstreamErrorKind::CircuitOpen {
                    retry_after_secs, ..
                }
                | UpstreamErrorKind::WaitingForNextCall {
                    retry_after_secs, ..
                } = upstream.kind
                {
                    ext.set("retryAfter", retry_after_secs);
                }
            }
        })
    }
}
