//! Logging set-up, the one log line per GraphQL request ([`observe_graphql`]), and the
//! shutdown signal; OpenTelemetry traces in [`traces`].

pub mod traces;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::middleware::Next;
use axum::response::Response;

use crate::fetch::RequestScope;
use crate::process_metrics::Metrics;

/// Install the global `tracing` subscriber and the panic hook: human-readable by default,
/// JSON lines when `CHATSTATS_LOG_FORMAT=json`; level from `RUST_LOG` (default `info`).
/// Colours only when stderr, where the logs go, is a terminal (and `NO_COLOR` is not set): a
/// file or a pipe gets plain text.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let json = std::env::var("CHATSTATS_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // `try_init` so that a second call (tests) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    std::panic::set_hook(Box::new(log_panic));
}

/// The panic hook: ONE log line (target `chatstats::panic`, level `error`) with where it
/// happened, in the configured format, instead of the default multi-line text on stderr.
/// The message is kept only when it is a literal of our source (`panic!("...")`); one built at
/// run time (`expect` on a value, `unwrap` on an error) may carry request data or a credential,
/// so it is left out: the location finds the line that panicked.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let message = info
        .payload()
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("(left out: built at run time)");
    let thread = std::thread::current();
    tracing::error!(
        target: "chatstats::panic",
        location = %location,
        thread = thread.name().unwrap_or("unnamed"),
        panic_message = message,
        "panic"
    );
}

/// What one GraphQL request did, attached by the handler to its response (as an extension,
/// never sent) and read by [`observe_graphql`] for the log line and the metrics.
#[derive(Clone, Debug, Default)]
pub struct RequestSummary {
    /// The operation name: `operationName`, else the document's only operation's name.
    pub operation: Option<String>,
    /// The authenticated client's name (`[[clients]] name`), never its key.
    pub client: Option<String>,
    /// Upstream calls made for this request (cache misses, failed and stale refreshes).
    pub upstream_calls: usize,
    /// Chunks served fresh from the cache.
    pub cache_hits: usize,
    /// `extensions.code` of the response's errors, with counts, sorted by code.
    pub error_codes: Vec<(String, usize)>,
    /// The operation's estimated cost ([`crate::limits`]), measured only for a traced
    /// request (see [`traces::traced_cost`]).
    pub cost: Option<u64>,
}

impl RequestSummary {
    pub fn new(
        operation: Option<String>,
        client: Option<&str>,
        scope: &RequestScope,
        errors: &[async_graphql::ServerError],
    ) -> Self {
        let (upstream_calls, cache_hits) = scope.upstream_counts();
        Self {
            operation,
            client: client.map(str::to_string),
            upstream_calls,
            cache_hits,
            error_codes: error_codes(errors),
            cost: None,
        }
    }

    /// A request refused before GraphQL execution, with one error of `code`.
    pub fn rejected(code: &str) -> Self {
        Self {
            error_codes: vec![(code.to_string(), 1)],
            ..Self::default()
        }
    }
}

/// The codes of `errors` with how often each occurs, sorted by code.
pub fn error_codes(errors: &[async_graphql::ServerError]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for error in errors {
        let code = error
            .extensions
            .as_ref()
            .and_then(|ext| ext.get("code"))
            .and_then(|code| match code {
                async_graphql::Value::String(code) => Some(code.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "NONE".into());
        *counts.entry(code).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// The name of the operation a refused `request` asked for, when it has one: `operationName`,
/// else the name of the only operation of its document if the document cache holds it. Never
/// parsed here: the guard may have refused the text for its size or nesting, before parsing.
pub fn refused_operation_name(
    request: &async_graphql::Request,
    documents: &crate::graphql::document_cache::DocumentCache,
) -> Option<String> {
    if let Some(name) = &request.operation_name {
        return Some(name.clone());
    }
    operation_name_in(&*documents.held(&request.query)?, None)
}

/// The name of the operation a request runs, when it has one: `requested` (its
/// `operationName`), else the name of `document`'s only operation.
pub fn operation_name_in(
    document: &async_graphql::parser::types::ExecutableDocument,
    requested: Option<&str>,
) -> Option<String> {
    use async_graphql::parser::types::DocumentOperations;
    if let Some(name) = requested {
        return Some(name.to_string());
    }
    match &document.operations {
        DocumentOperations::Single(_) => None,
        DocumentOperations::Multiple(ops) if ops.len() == 1 => {
            ops.keys().next().map(|name| name.to_string())
        }
        DocumentOperations::Multiple(_) => None,
    }
}

/// Middleware of `/graphql`: ONE log line per request (target `chatstats::request`) and the
/// request metrics. Fields: `operation`, `client`, `duration_ms`, `upstream_calls`,
/// `cache_hits`, `errors` (`CODE=n` pairs), `status`.
pub async fn observe_graphql(
    State(metrics): State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let duration = started.elapsed();
    let summary = response
        .extensions()
        .get::<RequestSummary>()
        .cloned()
        .unwrap_or_default();
    let status = response.status().as_u16();
    let label = metrics.operation_label(summary.operation.as_deref());
    metrics.graphql_request(&label, status, duration, &summary.error_codes);
    let errors: Vec<String> = summary
        .error_codes
        .iter()
        .map(|(code, n)| format!("{code}={n}"))
        .collect();
    let operation = summary
        .operation
        .as_deref()
        .map(crate::process_metrics::sanitize)
        .unwrap_or_default();
    tracing::info!(
        target: "chatstats::request",
        operation = %operation,
        client = summary.client.as_deref().unwrap_or(""),
        duration_ms = (duration.as_secs_f64() * 1e4).round() / 10.0,
        upstream_calls = summary.upstream_calls,
        cache_hits = summary.cache_hits,
        errors = %errors.join(","),
        status,
        "graphql request"
    );
    response
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
