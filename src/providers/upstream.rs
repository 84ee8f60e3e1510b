//! What every provider client shares: one GET/POST with a JSON answer, the mapping of transport
//! failures and HTTP statuses onto [`UpstreamErrorKind`], a cap on body size, and the health
//! record behind `Workspace.sources`.
//!
//! Error messages are built from status codes and our own words only: reqwest's own error text
//! contains the request URL, and upstream bodies may echo credentials, so neither is ever shown.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::providers::Provider;

/// Bodies larger than this are refused as `UPSTREAM_INVALID` rather than buffered: a
/// misbehaving upstream must not be able to exhaust our memory.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long to wait before retrying when a 429 carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER_SECS: u64 = 60;

/// The last known state of one provider account, shown in `Workspace.sources`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

impl Health {
    /// Healthy until the most recent call failed.
    pub fn healthy(&self) -> bool {
        match (self.last_success_at, self.last_error_at) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(ok), Some(err)) => ok >= err,
        }
    }
}

/// The HTTP side of one provider account.
#[derive(Debug)]
pub struct Upstream {
    provider: Provider,
    http: reqwest::Client,
    // A std mutex: held for a field copy, never across an await.
    health: Mutex<Health>,
}

impl Upstream {
    pub fn new(provider: Provider, http: reqwest::Client) -> Self {
        Self {
            provider,
            http,
            health: Mutex::new(Health::default()),
        }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The shared client, for building requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .expect("health lock is never poisoned")
            .clone()
    }

    /// Send `request` and decode its JSON body as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, UpstreamError> {
        let result = self.call(request).await.and_then(|body| {
            serde_json::from_slice::<T>(&body)
                .map_err(|e| self.error(UpstreamErrorKind::Invalid(format!("malformed JSON: {e}"))))
        });
        self.record(&result);
        result
    }

    /// Send `request` and return its body, mapping failures to [`UpstreamError`]s.
    async fn call(&self, request: RequestBuilder) -> Result<Vec<u8>, UpstreamError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.error(transport_kind(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.error(status_kind(self.provider, status, &response)));
        }
        read_limited(response)
            .await
            .map_err(|kind| self.error(kind))
    }

    fn error(&self, kind: UpstreamErrorKind) -> UpstreamError {
        UpstreamError::new(self.provider, kind)
    }

    fn record<T>(&self, result: &Result<T, UpstreamError>) {
        let mut health = self.health.lock().expect("health lock is never poisoned");
        let now = Utc::now();
        match result {
            Ok(_) => health.last_success_at = Some(now),
            Err(e) => {
                health.last_error = Some(e.message());
                health.last_error_at = Some(now);
            }
        }
    }
}

fn transport_kind(error: &reqwest::Error) -> UpstreamErrorKind {
    let what = if error.is_timeout() {
        "the request timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the response body was cut off"
    } else {
        "the request failed"
    };
    UpstreamErrorKind::Unavailable(what.to_string())
}

fn status_kind(provider: Provider, status: StatusCode, response: &Response) -> UpstreamErrorKind {
    let code = status.as_u16();
    match status {
        StatusCode::TOO_MANY_REQUESTS => UpstreamErrorKind::Throttled {
            retry_after_secs: retry_after(response).unwrap_or(DEFAULT_RETRY_AFTER_SECS),
        },
        s if s.is_server_error() => UpstreamErrorKind::Unavailable(format!("HTTP {code}")),
        _ => UpstreamErrorKind::Rejected {
            status: code,
            reason: match status {
                StatusCode::UNAUTHORIZED => "the credentials were refused",
                StatusCode::FORBIDDEN if provider == Provider::HelpScout => {
                    "Help Scout reports need a Plus or Pro plan"
                }
                StatusCode::FORBIDDEN => "access forbidden",
                StatusCode::NOT_FOUND => "account or resource not found",
                _ => "the request was refused",
            }
            .to_string(),
        },
    }
}

/// `Retry-After` in seconds (the delta-seconds form; an HTTP date is treated as absent).
pub fn retry_after(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn read_limited(mut response: Response) -> Result<Vec<u8>, UpstreamErrorKind> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_kind(&e)),
        }
    }
}

fn too_large() -> UpstreamErrorKind {
    UpstreamErrorKind::Invalid(format!(
        "body larger than {} MiB",
        MAX_BODY_BYTES / (1024 * 1024)
    ))
}

/// Default per-request timeout for upstream calls.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
