//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when `[telemetry] otlp_endpoint`
//! is set; with no endpoint nothing here runs (no layer on the router, no span, no exporter).
//!
//! - One span per GraphQL request over HTTP ([`trace_graphql`], the outermost `/graphql`
//!   middleware): the operation name, the client name, the estimated cost, the error codes
//!   and the HTTP status. A W3C `traceparent` on the incoming request is continued.
//! - A child span per upstream read: a client span `<provider> <endpoint>` for every HTTP
//!   call made ([`RequestTrace::upstream_call`], in [`crate::providers::upstream`]) with the
//!   provider, the endpoint, the outcome (`upstream` or `error`), the last HTTP status and the
//!   retries, whose context goes upstream as `traceparent`; and an internal span
//!   `<provider> <endpoint> (<outcome>)` for a read this request served without a call of its
//!   own ([`RequestTrace::read`]: `hit`, `coalesced`, `batched`, `stale`, `throttled`), the
//!   outcomes of `extensions.upstream`.
//!
//! The spans are `tracing` spans turned into OpenTelemetry spans by `tracing-opentelemetry`,
//! in a subscriber of their own per [`crate::app::App`] (never the global one that writes the
//! logs, so the log lines do not change and tests can run several apps in one process). The
//! request's [`RequestTrace`] travels as a value of the OpenTelemetry [`Context`]: the
//! request's future runs with it attached, [`crate::fetch::RequestScope`] keeps it for the
//! fetches the chunk cache runs in tasks of their own.
//!
//! No attribute holds a credential or a URL (upstream URLs can carry keys in their query):
//! only names, slugs, codes and numbers.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

use crate::config::TelemetryConfig;
use crate::telemetry::RequestSummary;

/// The `tracing` target of every span made here.
const TARGET: &str = "chatstats::otel";

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// An app's trace pipeline: the SDK provider (sampler, batch processor, exporter) and the
/// `tracing` subscriber that turns our spans into its spans.
pub struct Tracing {
    provider: SdkTracerProvider,
    dispatch: tracing::Dispatch,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

/// Why the trace pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TracingError(String);

impl Tracing {
    /// The pipeline `config` describes; `None` when no `otlp_endpoint` is set (traces off).
    pub fn from_config(config: &TelemetryConfig) -> Result<Option<Arc<Tracing>>, TracingError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(OtlpHttpClient::default())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TracingError(e.to_string()))?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // A caller's sampling decision (the `traceparent` flag) is kept; a new trace is
            // sampled at `sample_ratio`.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("chatstats"))
            // Names, slugs, codes and numbers only: no source paths, threads or timings of
            // polls in the spans.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Only our spans: this subscriber answers "never" for every other callsite, so a
            // `debug!` on a hot path (ours, hyper's) stays as cheap as with traces off.
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::TRACE),
            );
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        Ok(Some(Arc::new(Tracing { provider, dispatch })))
    }

    /// Export every finished span now. Blocks until the collector answered (or the export
    /// timed out): call it off the async workers (`spawn_blocking`).
    pub fn force_flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Export what is left and stop the exporter. Blocks like [`Tracing::force_flush`].
    pub fn shutdown(&self) -> Result<(), String> {
        self.provider.shutdown().map_err(|e| e.to_string())
    }

    /// A span made by `make` in this pipeline's subscriber (never the global one).
    fn span(&self, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
        tracing::dispatcher::with_default(&self.dispatch, make)
    }
}

/// The OTLP/HTTP traces URL for `endpoint`: a collector's base URL gets `/v1/traces` (the
/// path of the OTLP/HTTP specification); a URL that already ends so is used as it is.
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// The trace of the GraphQL request being served: what its upstream reads hang their spans on.
/// It holds the request span's OpenTelemetry context, not the `tracing` span itself: the span
/// ends (and is exported) when the response is ready, even while something the request
/// started (a fetch task, the request's scope) still holds this.
#[derive(Clone)]
pub struct RequestTrace {
    pipeline: Arc<Tracing>,
    parent: Context,
}

impl RequestTrace {
    /// The trace of the request whose future is running, if it is traced.
    pub fn current() -> Option<RequestTrace> {
        Context::map_current(|cx| cx.get::<RequestTrace>().cloned())
    }

    /// `future`, run with this trace as the current one (for work another task runs on the
    /// request's behalf, e.g. the chunk cache's fetch tasks).
    pub fn attach<F: Future>(&self, future: F) -> WithContext<F> {
        future.with_context(self.context())
    }

    /// The OpenTelemetry context of the request span, carrying this trace.
    fn context(&self) -> Context {
        self.parent.with_value(self.clone())
    }

    /// A child of the request span, made by `make` in the trace's subscriber.
    fn child(&self, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
        let span = self.pipeline.span(make);
        // Fails only for a span already started, and this one has not been.
        let _ = span.set_parent(self.parent.clone());
        span
    }

    /// A span for one HTTP call to `endpoint` of `provider`, a child of the request span.
    pub fn upstream_call(&self, provider: &'static str, endpoint: &'static str) -> UpstreamCall {
        let span = self.child(|| {
            tracing::info_span!(
                target: TARGET,
                parent: None,
                "upstream call",
                otel.name = format!("{provider} {endpoint}"),
                otel.kind = "client",
                otel.status_code = Empty,
                chatstats.provider = provider,
                chatstats.endpoint = endpoint,
                chatstats.outcome = Empty,
                http.response.status_code = Empty,
                chatstats.retries = Empty,
            )
        });
        UpstreamCall { span }
    }

    /// A span for a read of `endpoint` of `provider` that this request served without an HTTP
    /// call of its own, with its `outcome` (`hit`, `coalesced`, `batched`, `stale`,
    /// `throttled`), a child of the request span.
    pub fn read(&self, provider: &'static str, endpoint: &'static str, outcome: &'static str) {
        let failed = matches!(outcome, "stale" | "throttled");
        // Made and closed at once: the span marks the read, the call (if any) has its own.
        let _span = self.child(|| {
            tracing::info_span!(
                target: TARGET,
                parent: None,
                "upstream read",
                otel.name = format!("{provider} {endpoint} ({outcome})"),
                otel.status_code = if failed { "error" } else { "unset" },
                chatstats.provider = provider,
                chatstats.endpoint = endpoint,
                chatstats.outcome = outcome,
            )
        });
    }
}

/// The span of one upstream HTTP call (all its attempts).
pub struct UpstreamCall {
    span: tracing::Span,
}

impl UpstreamCall {
    /// The headers that carry this call's trace context upstream (`traceparent`, and
    /// `tracestate` when the caller sent one).
    pub fn headers(&self) -> reqwest::header::HeaderMap {
        let mut headers = HeaderMap::new();
        TraceContextPropagator::new()
            .inject_context(&self.span.context(), &mut HeaderInjector(&mut headers));
        headers
    }

    /// The status of the latest attempt's answer.
    pub fn status(&self, status: u16) {
        // As i64: tracing-opentelemetry exports a u64 as text.
        self.span
            .record("http.response.status_code", i64::from(status));
    }

    /// How the call ended: after `retries` retries, with or without a value.
    pub fn finish(&self, retries: u32, ok: bool) {
        self.span.record("chatstats.retries", i64::from(retries));
        self.span
            .record("chatstats.outcome", if ok { "upstream" } else { "error" });
        if !ok {
            self.span.record("otel.status_code", "error");
        }
    }
}

/// Middleware of `/graphql`, outside [`crate::telemetry::observe_graphql`]: the request's
/// span, continued from the caller's `traceparent` when it sends one, with what the
/// [`RequestSummary`] says once the response is ready. Installed only when traces are on.
pub async fn trace_graphql(
    State(pipeline): State<Arc<Tracing>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    // A WebSocket upgrade is no request of its own (subscriptions are not traced).
    if request.headers().contains_key(axum::http::header::UPGRADE) {
        return next.run(request).await;
    }
    let caller = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    let span = pipeline.span(|| {
        tracing::info_span!(
            target: TARGET,
            parent: None,
            "graphql request",
            otel.name = "graphql request",
            otel.kind = "server",
            otel.status_code = Empty,
            graphql.operation.name = Empty,
            chatstats.client = Empty,
            chatstats.cost = Empty,
            chatstats.error_codes = Empty,
            http.response.status_code = Empty,
        )
    });
    // Fails only for a span already started, and this one has not been.
    let _ = span.set_parent(caller);
    let trace = RequestTrace {
        pipeline,
        parent: span.context(),
    };
    let response = trace.attach(next.run(request)).await;
    let status = response.status().as_u16();
    // As i64: tracing-opentelemetry exports a u64 as text.
    span.record("http.response.status_code", i64::from(status));
    if let Some(summary) = response.extensions().get::<RequestSummary>() {
        if let Some(operation) = &summary.operation {
            span.record(
                "graphql.operation.name",
                crate::process_metrics::sanitize(operation).as_str(),
            );
        }
        if let Some(client) = &summary.client {
            span.record("chatstats.client", client.as_str());
        }
        if let Some(cost) = summary.cost {
            span.record("chatstats.cost", i64::try_from(cost).unwrap_or(i64::MAX));
        }
        if !summary.error_codes.is_empty() {
            let codes: Vec<String> = summary
                .error_codes
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect();
            span.record("chatstats.error_codes", codes.join(",").as_str());
            span.record("otel.status_code", "error");
        }
    }
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    response
}

/// The estimated cost (see [`crate::limits`]) of the operation `request` runs for `caller`,
/// for the request span: measured only when the request is traced.
pub fn traced_cost(
    guard: &crate::graphql::guard::Guard,
    request: &async_graphql::Request,
    caller: &crate::auth::Caller,
) -> Option<u64> {
    RequestTrace::current()?;
    let document = guard.documents.parse(&request.query)?;
    let operation = crate::limits::select_operation(&document, request.operation_name.as_deref())?;
    let measure = crate::limits::measure_operation(
        &guard.limits.shape,
        &document,
        operation,
        &request.variables,
        caller.workspace_count(guard.workspace_count),
    );
    Some(measure.cost)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The exporter's HTTP client: our reqwest 0.12 (rustls with ring) rather than the
/// exporter's own reqwest 0.13, on a one-thread runtime of its own. The SDK's batch
/// processor exports from a plain thread, outside the server's runtime, and the runtime is
/// made there on the first export (a runtime may be neither made nor dropped on an async
/// worker without blocking it).
#[derive(Debug, Default)]
struct OtlpHttpClient {
    runtime: Mutex<Option<(tokio::runtime::Runtime, reqwest::Client)>>,
}

impl OtlpHttpClient {
    fn send(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, opentelemetry_http::HttpError> {
        // One export at a time: the batch processor never sends two at once.
        let mut slot = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .build()?;
            *slot = Some((runtime, client));
        }
        let Some((runtime, client)) = slot.as_ref() else {
            return Err("the export client is missing".into());
        };
        let request = reqwest::Request::try_from(request)?;
        runtime.block_on(async {
            let response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = axum::http::Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

#[async_graphql::async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, opentelemetry_http::HttpError> {
        self.send(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_endpoint_there_is_no_pipeline() {
        let off = Tracing::from_config(&TelemetryConfig::default()).expect("builds");
        assert!(off.is_none(), "traces are off by default");
        assert!(RequestTrace::current().is_none());
    }

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_traces_url_is_kept() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example.com/v1/traces"),
            "https://otel.example.com/v1/traces"
        );
    }
}
