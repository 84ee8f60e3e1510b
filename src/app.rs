//! Wiring: [`App::build`] turns a [`Config`] into provider clients, the schema and the router,
//! and binds the listener. Tests start exactly what production starts, through this function.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::ValidationMode;
use tokio::net::TcpListener;

use crate::answers::AnswerCache;
use crate::auth::{Access, Clients};
use crate::cache::{AccountKey, ChunkCache};
use crate::config::{Config, ConfigError, HelpScoutAuth, WorkspaceConfig};
use crate::graphql::build_schema;
use crate::graphql::document_cache::DocumentCache;
use crate::graphql::guard::Guard;
use crate::http::{router, HttpState};
use crate::limits::{QueryLimits, SchemaShape};
use crate::persisted::{PersistedQueries, Safelist};
use crate::process_metrics::Metrics;
use crate::providers::chat_tonic::ChatTonic;
use crate::providers::connectycube::ConnectyCube;
use crate::providers::help_scout::{HelpScout, HelpScoutCredentials};
use crate::providers::message2give::Message2Give;
use crate::providers::upstream::{ConcurrencyCaps, Resilience};
use crate::providers::xenioo::Xenioo;
use crate::providers::Provider;
use crate::rate_limit::RateLimiter;
use crate::resilience::{Clock, SystemClock};
use crate::sandbox::{self, Sandbox, SandboxOptions};
use crate::shared::SharedTier;
use crate::workspace::{Registry, Workspace};
use crate::ws::Live;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the sandbox: {0}")]
    Sandbox(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("{0}")]
    Shared(#[from] crate::shared::SharedStartError),
}

/// A built server, bound and ready to run.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    /// WebSocket connections, closed at shutdown (they are not HTTP requests that
    /// axum's graceful shutdown would wait for).
    live: Arc<Live>,
    /// The in-process sandbox in sandbox mode; dropping it stops it.
    sandbox: Option<Sandbox>,
}

impl App {
    /// Build everything `config` describes and bind `config.server.listen`.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.limits.upstream_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("chatstats/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let metrics = Arc::new(Metrics::new());
        // First: the Xenioo clients and the cache take it, and `required_to_start` stops here.
        let shared = match &config.shared {
            Some(shared) => SharedTier::connect(shared, metrics.clone()).await?,
            None => SharedTier::none(),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let caps = ConcurrencyCaps::from_limits(&config.limits);
        let workspaces = config
            .workspaces
            .iter()
            .map(|w| {
                let workspace = workspace(w, &http);
                // Each account gets its own breaker and retry budget, labelled by workspace id;
                // all accounts of a provider share its cap on calls in flight.
                for upstream in workspace.upstreams() {
                    upstream.install(Resilience::from_limits(
                        &config.limits,
                        upstream.provider(),
                        &workspace.id,
                        metrics.clone(),
                        clock.clone(),
                        &caps,
                    ));
                }
                workspace
            })
            .collect();
        let registry = Arc::new(Registry::new(workspaces));
        let safelist = match &config.limits.safelist {
            Some(path) => Some(Safelist::load(path)?),
            None => None,
        };
        let documents = DocumentCache::new();
        let guard = Guard {
            limits: Arc::new(QueryLimits {
                config: config.limits.clone(),
                shape: SchemaShape::from_sdl(&crate::graphql::sdl(false)),
            }),
            persisted: Arc::new(PersistedQueries::new(safelist).with_shared(shared.clone())),
            workspace_count: registry.all().len(),
            documents: documents.clone(),
        };
        // HTTP applies the guard in its handler; WebSocket operations go straight to their
        // schema, which applies it itself (see `build_schema`).
        let introspection = config.server.introspection;
        let schema = build_schema(
            registry.clone(),
            introspection,
            None,
            ValidationMode::Strict,
        );
        let validated_schema =
            build_schema(registry.clone(), introspection, None, ValidationMode::Fast);
        let ws_schema = build_schema(
            registry,
            introspection,
            Some(guard.clone()),
            ValidationMode::Strict,
        );
        let cache = Arc::new(ChunkCache::with_shared_tier(
            &config.cache,
            metrics.clone(),
            shared,
        ));
        let access = Arc::new(Access {
            clients: Clients::new(&config.clients),
            rate: RateLimiter::per_minute(config.limits.requests_per_minute)
                .with_shared(cache.shared().clone()),
            cors_origins: config.server.cors_origins.clone(),
        });
        let addr = config.server.listen;
        if access.clients.is_open() {
            tracing::warn!(
                %addr,
                "no [[clients]] configured: /graphql is open to anyone who can reach the server"
            );
        }
        let live = Arc::new(Live::new(
            config.limits.max_subscriptions_per_client,
            metrics.clone(),
        ));
        let router = router(
            HttpState {
                schema,
                validated_schema,
                answers: AnswerCache::new(config.cache.answer_max_bytes, metrics.clone()),
                cache,
                metrics,
                access,
                documents,
                guard,
                ws_schema,
                live: live.clone(),
            },
            config.server.graphiql,
        );
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(App {
            listener,
            router,
            live,
            sandbox: None,
        })
    }

    /// Sandbox mode: start the simulated upstreams on a free loopback port and serve a
    /// config that points at them, on `listen`.
    pub async fn sandboxed(listen: SocketAddr) -> Result<App, StartError> {
        let sandbox = sandbox::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SandboxOptions::default(),
        )
        .await
        .map_err(StartError::Sandbox)?;
        let mut config = Config::from_toml_str(&sandbox.config_toml(), &|_| None)?;
        config.server.listen = listen;
        let mut app = App::build(config).await?;
        app.sandbox = Some(sandbox);
        Ok(app)
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The sandbox's base URL in sandbox mode.
    pub fn sandbox_url(&self) -> Option<String> {
        self.sandbox.as_ref().map(Sandbox::base_url)
    }

    /// Serve until `shutdown` completes, then finish in-flight requests. WebSocket
    /// connections are told to close (1001, going away) at once, and given a few seconds to
    /// send their close frames: a subscription never ends by itself, so nothing would
    /// otherwise stop them.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let App {
            listener,
            router,
            live,
            sandbox,
        } = self;
        // The peer address keys the rate limit under open access.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let closing = live.clone();
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                closing.close();
            })
            .await;
        live.closed(Duration::from_secs(5)).await;
        drop(sandbox);
        result
    }
}

fn base(url: &crate::config::BaseUrl) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

fn workspace(config: &WorkspaceConfig, http: &reqwest::Client) -> Workspace {
    let help_scout = config.help_scout.as_ref().map(|hs| {
        let credentials = match &hs.auth {
            HelpScoutAuth::AccessToken(token) => HelpScoutCredentials::AccessToken(token.clone()),
            HelpScoutAuth::ClientCredentials {
                client_id,
                client_secret,
            } => HelpScoutCredentials::ClientCredentials {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            },
        };
        HelpScout::new(http.clone(), base(&hs.base_url), credentials)
    });
    let connectycube = config
        .connectycube
        .as_ref()
        .map(|cc| ConnectyCube::new(http.clone(), base(&cc.base_url), cc.admin_api_key.clone()));
    let message2give = config.message2give.as_ref().map(|m2g| {
        Message2Give::new(
            http.clone(),
            base(&m2g.base_url),
            m2g.organisation.clone(),
            m2g.token.clone(),
            m2g.mfa.clone(),
        )
    });
    let chat_tonic = config.chat_tonic.as_ref().map(|ct| {
        ChatTonic::new(
            http.clone(),
            base(&ct.base_url),
            ct.codename.clone(),
            ct.access_token.clone(),
        )
    });
    let xenioo = config.xenioo.as_ref().map(|xen| {
        Xenioo::new(
            http.clone(),
            base(&xen.base_url),
            xen.account_token.clone(),
            xen.min_call_interval(),
        )
    });
    Workspace {
        accounts: accounts(config),
        message2give,
        chat_tonic,
        xenioo,
        id: config.id.clone(),
        name: config.name.clone(),
        zone: config.time_zone,
        help_scout,
        help_scout_mailboxes: config
            .help_scout
            .as_ref()
            .map(|hs| hs.mailboxes.clone())
            .unwrap_or_default(),
        connectycube,
    }
}

/// The cache identity of every configured provider account: the base URL and every credential
/// string, hashed (see [`AccountKey`]), so a changed credential never reuses cached entries.
fn accounts(config: &WorkspaceConfig) -> HashMap<Provider, AccountKey> {
    let mut identities: Vec<(Provider, Vec<&str>)> = Vec::new();
    if let Some(hs) = &config.help_scout {
        let mut parts = vec![hs.base_url.as_str()];
        match &hs.auth {
            HelpScoutAuth::AccessToken(token) => parts.push(token.expose()),
            HelpScoutAuth::ClientCredentials {
                client_id,
                client_secret,
            } => parts.extend([client_id.as_str(), client_secret.expose()]),
        }
        identities.push((Provider::HelpScout, parts));
    }
    if let Some(cc) = &config.connectycube {
        identities.push((
            Provider::ConnectyCube,
            vec![cc.base_url.as_str(), cc.admin_api_key.expose()],
        ));
    }
    if let Some(m2g) = &config.message2give {
        let mfa = m2g.mfa.as_ref().map(|s| s.expose()).unwrap_or("");
        identities.push((
            Provider::Message2Give,
            vec![
                m2g.base_url.as_str(),
                m2g.organisation.as_str(),
                m2g.token.expose(),
                mfa,
            ],
        ));
    }
    if let Some(ct) = &config.chat_tonic {
        identities.push((
            Provider::ChatTonic,
            vec![
                ct.base_url.as_str(),
                ct.codename.as_str(),
                ct.access_token.expose(),
            ],
        ));
    }
    if let Some(xen) = &config.xenioo {
        identities.push((
            Provider::Xenioo,
            vec![xen.base_url.as_str(), xen.account_token.expose()],
        ));
    }
    identities
        .into_iter()
        .map(|(provider, parts)| (provider, AccountKey::new(provider, &parts)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_provider_has_a_client_and_an_account() {
        let config = Config::from_toml_str(&sandbox::config_toml("http://127.0.0.1:1"), &|_| None)
            .expect("valid");
        let http = reqwest::Client::new();
        for workspace_config in &config.workspaces {
            let workspace = workspace(workspace_config, &http);
            let clients: Vec<Provider> =
                workspace.upstreams().iter().map(|u| u.provider()).collect();
            let mut accounts: Vec<Provider> = workspace.accounts.keys().copied().collect();
            accounts.sort();
            assert_eq!(clients, accounts, "workspace {}", workspace.id);
        }
    }
}
