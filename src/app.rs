//! Wiring: [`App::build`] turns a [`Config`] into provider clients, the schema and the router,
//! and binds the listener. Tests start exactly what production starts, through this function.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::cache::{AccountKey, ChunkCache};
use crate::config::{Config, ConfigError, HelpScoutAuth, WorkspaceConfig};
use crate::graphql::build_schema;
use crate::http::{router, HttpState};
use crate::providers::connectycube::ConnectyCube;
use crate::providers::help_scout::{HelpScout, HelpScoutCredentials};
use crate::providers::Provider;
use crate::sandbox::{self, Sandbox, SandboxOptions};
use crate::workspace::{Registry, Workspace};

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
}

/// A built server, bound and ready to run.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
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
        let workspaces = config
            .workspaces
            .iter()
            .map(|w| workspace(w, &http))
            .collect();
        let registry = Arc::new(Registry::new(workspaces));
        let schema = build_schema(registry);
        let cache = Arc::new(ChunkCache::new(&config.cache));
        let router = router(HttpState { schema, cache });
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(App {
            listener,
            router,
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

    /// Serve until `shutdown` completes, then finish in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let App {
            listener,
            router,
            sandbox,
        } = self;
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
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
    let mut accounts = HashMap::new();
    if let Some(hs) = &config.help_scout {
        let credentials = match &hs.auth {
            HelpScoutAuth::AccessToken(token) => vec![token.expose()],
            HelpScoutAuth::ClientCredentials {
                client_id,
                client_secret,
            } => vec![client_id.as_str(), client_secret.expose()],
        };
        let parts: Vec<&str> = std::iter::once(hs.base_url.as_str())
            .chain(credentials)
            .collect();
        accounts.insert(
            Provider::HelpScout,
            AccountKey::new(&config.id, Provider::HelpScout, &parts),
        );
    }
    if let Some(cc) = &config.connectycube {
        let parts = [cc.base_url.as_str(), cc.admin_api_key.expose()];
        accounts.insert(
            Provider::ConnectyCube,
            AccountKey::new(&config.id, Provider::ConnectyCube, &parts),
        );
    }
    Workspace {
        accounts,
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
