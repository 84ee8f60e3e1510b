//! Wiring: [`App::build`] turns a [`Config`] into provider clients, the schema and the router,
//! and binds the listener. Tests start exactly what production starts, through this function.
//! [`Reloader`] applies a new configuration to the running server (SIGHUP): the same wiring
//! (`configure`), keeping what the change leaves alone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::ValidationMode;
use tokio::net::TcpListener;

use crate::answers::AnswerCache;
use crate::auth::{Access, Clients};
use crate::cache::{AccountKey, ChunkCache};
use crate::config::{Config, ConfigError, HelpScoutAuth, LimitsConfig, WorkspaceConfig};
use crate::graphiql::Page;
use crate::graphql::build_schema;
use crate::graphql::document_cache::DocumentCache;
use crate::graphql::guard::Guard;
use crate::http::{router, HttpState, Served};
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
    #[error("cannot start the trace export: {0}")]
    Tracing(#[from] crate::telemetry::traces::TracingError),
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
    reloader: Reloader,
    /// The trace export, flushed at shutdown; none when traces are off.
    traces: Option<Arc<crate::telemetry::traces::Tracing>>,
}

/// What every configuration shares: built once at start, kept across reloads.
struct Fixed {
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    cache: Arc<ChunkCache>,
    documents: DocumentCache,
    live: Arc<Live>,
    /// The trace export (a restart setting); none when traces are off.
    traces: Option<Arc<crate::telemetry::traces::Tracing>>,
    /// The Redis tier replicas share (a restart setting); [`SharedTier::none`] without one.
    shared: SharedTier,
}

/// The configuration in force and what was built from it that a reload may keep.
struct Running {
    config: Config,
    registry: Arc<Registry>,
    caps: Arc<ConcurrencyCaps>,
    persisted: Arc<PersistedQueries>,
    rate: Arc<RateLimiter>,
}

impl App {
    /// Build everything `config` describes and bind `config.server.listen`.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let graphiql = Page::served(&config);
        App::build_with(config, graphiql).await
    }

    /// [`App::build`], with the GraphiQL page to serve (if `[server] graphiql` is on).
    async fn build_with(config: Config, graphiql: Page) -> Result<App, StartError> {
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
        let traces = crate::telemetry::traces::Tracing::from_config(&config.telemetry)?;
        if let Some(endpoint) = &config.telemetry.otlp_endpoint {
            // Checked by the config: an http(s) URL without credentials or query.
            tracing::info!(
                endpoint = %crate::telemetry::traces::traces_url(endpoint),
                sample_ratio = config.telemetry.sample_ratio,
                "exporting traces over OTLP/HTTP"
            );
        }
        let fixed = Fixed {
            traces,
            shared: shared.clone(),
            http,
            clock: Arc::new(SystemClock),
            cache: Arc::new(ChunkCache::with_shared_tier(
                &config.cache,
                metrics.clone(),
                shared.clone(),
            )),
            documents: DocumentCache::new(),
            live: Arc::new(Live::new(
                config.limits.max_subscriptions_per_client,
                metrics.clone(),
            )),
            metrics,
        };
        let addr = config.server.listen;
        let graphiql = config.server.graphiql.then_some(graphiql);
        let (state, running) = configure(&fixed, config, None)?;
        if state.access.clients.is_open() {
            tracing::warn!(
                %addr,
                "no [[clients]] configured: /graphql is open to anyone who can reach the server"
            );
        }
        let served = Served::new(state);
        let router = router(served.clone(), graphiql);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let live = fixed.live.clone();
        let traces = fixed.traces.clone();
        Ok(App {
            listener,
            router,
            live,
            sandbox: None,
            traces,
            reloader: Reloader {
                inner: Arc::new(ReloaderInner {
                    served,
                    fixed,
                    running: tokio::sync::Mutex::new(running),
                }),
            },
        })
    }

    /// The handle that applies a new configuration to this server while it runs.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
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
        let graphiql = Page::sandbox(&config);
        let mut app = App::build_with(config, graphiql).await?;
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
            reloader: _,
            traces,
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
        if let Some(traces) = traces {
            // The last spans go out before the process exits; blocking, so off the workers.
            let flushed = tokio::task::spawn_blocking(move || traces.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!(%error, "the last traces could not be exported");
            }
        }
        result
    }
}

/// The settings of `[limits]` that make up each account's [`Resilience`] and the caps; when
/// a reload changes none of them (and not its own section), a workspace is kept as it runs.
fn resilience_limits(limits: &LimitsConfig) -> LimitsConfig {
    LimitsConfig {
        // Read by the guard, the rate limiter and the WebSocket slots, not by the accounts.
        max_depth: 0,
        max_aliases: 0,
        max_root_fields: 0,
        max_document_bytes: 0,
        max_cost: 0,
        requests_per_minute: 0,
        safelist: None,
        max_subscriptions_per_client: 0,
        ..limits.clone()
    }
}

/// Build what `config` decides: the workspaces and their clients, the schemas, the guard and
/// the API keys. On a reload, `previous` is what runs now: a workspace whose section and whose
/// resilience limits are unchanged is kept as it is (its breakers, retry budgets and Xenioo
/// call clock go on), and so are the caps, the persisted queries without a safelist, and the
/// rate limiter while their settings are unchanged.
fn configure(
    fixed: &Fixed,
    config: Config,
    previous: Option<&Running>,
) -> Result<(HttpState, Running), StartError> {
    let limits = &config.limits;
    // First, as the one step that can fail: a refused reload must leave nothing behind.
    let persisted = match (&limits.safelist, previous) {
        // No safelist before or now: keep the APQ registrations.
        (None, Some(p)) if p.config.limits.safelist.is_none() => p.persisted.clone(),
        (None, _) => Arc::new(PersistedQueries::new(None).with_shared(fixed.shared.clone())),
        // A safelist is read again on every reload: the file may have changed.
        (Some(path), _) => Arc::new(
            PersistedQueries::new(Some(Safelist::load(path)?)).with_shared(fixed.shared.clone()),
        ),
    };
    let same_resilience =
        previous.is_some_and(|p| resilience_limits(&p.config.limits) == resilience_limits(limits));
    let caps = match previous {
        Some(p)
            if p.config.limits.upstream_concurrency == limits.upstream_concurrency
                && p.config.limits.upstream_concurrency_per_provider
                    == limits.upstream_concurrency_per_provider =>
        {
            p.caps.clone()
        }
        _ => Arc::new(ConcurrencyCaps::from_limits(limits)),
    };
    let workspaces = config
        .workspaces
        .iter()
        .map(|w| {
            let unchanged = previous.filter(|_| same_resilience).and_then(|p| {
                let before = p.config.workspaces.iter().find(|old| old.id == w.id)?;
                (before == w).then(|| p.registry.get(&w.id).cloned())?
            });
            if let Some(workspace) = unchanged {
                return workspace;
            }
            let workspace = workspace(w, &fixed.http);
            if let (Some(xenioo), Some(account)) =
                (&workspace.xenioo, workspace.accounts.get(&Provider::Xenioo))
            {
                let call_wait = limits.upstream_timeout_of(Provider::Xenioo)
                    + crate::providers::xenioo::SHARED_CALL_MARGIN;
                xenioo.share(&fixed.shared, account, call_wait);
            }
            // Each account gets its own breaker and retry budget, labelled by workspace id;
            // all accounts of a provider share its cap on calls in flight.
            for upstream in workspace.upstreams() {
                upstream.install(Resilience::from_limits(
                    limits,
                    upstream.provider(),
                    &workspace.id,
                    fixed.metrics.clone(),
                    fixed.clock.clone(),
                    &caps,
                ));
            }
            Arc::new(workspace)
        })
        .collect();
    let registry = Arc::new(Registry::from_shared(workspaces));
    let rate = match previous {
        Some(p) if p.config.limits.requests_per_minute == limits.requests_per_minute => {
            p.rate.clone()
        }
        _ => Arc::new(
            RateLimiter::per_minute(limits.requests_per_minute).with_shared(fixed.shared.clone()),
        ),
    };
    let guard = Guard {
        limits: Arc::new(QueryLimits {
            config: limits.clone(),
            shape: SchemaShape::from_sdl(&crate::graphql::sdl(false)),
        }),
        persisted: persisted.clone(),
        workspace_count: registry.all().len(),
        documents: fixed.documents.clone(),
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
        registry.clone(),
        introspection,
        Some(guard.clone()),
        ValidationMode::Strict,
    );
    let access = Arc::new(Access {
        clients: Clients::new(&config.clients),
        rate: rate.clone(),
        cors_origins: config.server.cors_origins.clone(),
    });
    fixed
        .live
        .set_max_per_client(limits.max_subscriptions_per_client);
    let state = HttpState {
        schema,
        validated_schema,
        // Kept answers are not carried over: one may show a workspace or a permission the
        // new configuration no longer has.
        answers: AnswerCache::new(config.cache.answer_max_bytes, fixed.metrics.clone()),
        cache: fixed.cache.clone(),
        metrics: fixed.metrics.clone(),
        access,
        documents: fixed.documents.clone(),
        registry: registry.clone(),
        guard,
        ws_schema,
        live: fixed.live.clone(),
        tracing: fixed.traces.clone(),
    };
    let running = Running {
        config,
        registry,
        caps,
        persisted,
        rate,
    };
    Ok((state, running))
}

/// Applies a new configuration to a running server (SIGHUP, see `main.rs`): clients,
/// workspaces and limits. Requests already running finish on the configuration they started
/// with; requests that start after [`Reloader::apply`] returns use the new one. Restart-only
/// settings ([`crate::config::RESTART_ONLY`]) keep their running values. Counted in
/// `chatstats_config_reloads_total{result}`.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<ReloaderInner>,
}

struct ReloaderInner {
    served: Arc<Served>,
    fixed: Fixed,
    /// Held for a whole reload, so two reloads never interleave.
    running: tokio::sync::Mutex<Running>,
}

/// What one reload changed, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Workspaces added, removed, and rebuilt (their section or the resilience limits changed).
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub rebuilt: Vec<String>,
    /// Configured clients after the reload.
    pub clients: usize,
    /// Chunk-cache entries dropped with the accounts no workspace uses any more.
    pub dropped_entries: u64,
    /// Restart-only settings the file changes (not applied).
    pub needs_restart: Vec<&'static str>,
}

impl Reloader {
    /// Re-read `path` and apply it (see [`Config::reload`]; `listen` is the command line's
    /// `--listen`). A file that cannot be read, parsed or validated changes nothing: the error
    /// is logged with its key path and counted as `invalid`.
    pub async fn reload_file(
        &self,
        path: &std::path::Path,
        listen: Option<SocketAddr>,
    ) -> Result<ReloadReport, StartError> {
        let mut running = self.inner.running.lock().await;
        let reloaded = Config::reload(path, &running.config, listen);
        self.apply_locked(&mut running, reloaded.map_err(StartError::from))
            .await
    }

    /// Apply `config` (restart-only settings are kept at their running values).
    pub async fn apply(&self, config: Config) -> Result<ReloadReport, StartError> {
        let mut running = self.inner.running.lock().await;
        let reloaded = config.keeping_restart_only(&running.config);
        self.apply_locked(&mut running, Ok(reloaded)).await
    }

    async fn apply_locked(
        &self,
        running: &mut Running,
        reloaded: Result<crate::config::Reloaded, StartError>,
    ) -> Result<ReloadReport, StartError> {
        let inner = &self.inner;
        let built = reloaded.and_then(|reloaded| {
            let needs_restart = reloaded.needs_restart;
            configure(&inner.fixed, reloaded.config, Some(running))
                .map(|(state, next)| (state, next, needs_restart))
        });
        let (state, next, needs_restart) = match built {
            Ok(built) => built,
            Err(error) => {
                inner.fixed.metrics.config_reload("invalid");
                let path = match &error {
                    StartError::Config(e) => e.path().unwrap_or(""),
                    _ => "",
                };
                tracing::error!(
                    %error,
                    key = path,
                    "configuration reload refused; the running configuration stays"
                );
                return Err(error);
            }
        };
        let ids = |r: &Running| -> Vec<String> {
            r.config.workspaces.iter().map(|w| w.id.clone()).collect()
        };
        let (before, after) = (ids(running), ids(&next));
        let mut report = ReloadReport {
            added: after
                .iter()
                .filter(|id| !before.contains(id))
                .cloned()
                .collect(),
            removed: before
                .iter()
                .filter(|id| !after.contains(id))
                .cloned()
                .collect(),
            rebuilt: next
                .registry
                .all()
                .iter()
                .filter(|w| {
                    running
                        .registry
                        .get(&w.id)
                        .is_some_and(|old| !Arc::ptr_eq(old, w))
                })
                .map(|w| w.id.clone())
                .collect(),
            clients: next.config.clients.len(),
            dropped_entries: 0,
            needs_restart,
        };
        let gone: std::collections::HashSet<_> = running
            .registry
            .accounts()
            .difference(&next.registry.accounts())
            .cloned()
            .collect();
        inner.served.replace(state);
        *running = next;
        for id in &report.removed {
            inner.fixed.metrics.forget_workspace(id);
        }
        report.dropped_entries = inner.fixed.cache.forget_accounts(&gone).await;
        inner.fixed.metrics.config_reload("applied");
        for setting in &report.needs_restart {
            tracing::warn!(
                setting,
                "configuration reload: this setting changed in the file but applies only at \
                 restart; it keeps its running value"
            );
        }
        if report.clients == 0 {
            tracing::warn!(
                "no [[clients]] after the reload: /graphql is open to anyone who can reach the \
                 server"
            );
        }
        tracing::info!(
            added = ?report.added,
            removed = ?report.removed,
            rebuilt = ?report.rebuilt,
            clients = report.clients,
            dropped_cache_entries = report.dropped_entries,
            "configuration reloaded"
        );
        Ok(report)
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
        generation: Workspace::next_generation(),
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
