//! Typed settings for chatstats, loaded from TOML (SPEC §6, limits from §8).
//!
//! Loading is a short pipeline, one step per file, each of which names the key path
//! of anything it rejects:
//!
//! 1. parse the text into a `toml::Table` (syntax errors keep line and column);
//! 2. `interpolate`: replace `${NAME}` in every string value from the environment;
//! 3. `de`: type the tree into [`Config`] through `serde_path_to_error`, with every
//!    section `deny_unknown_fields` and a default wherever one is safe;
//! 4. `validate`: the rules types cannot express (unique ids, known workspaces,
//!    positive numbers, non-empty secrets).
//!
//! Credentials are [`Secret`]s, which print as `[redacted]`; no error message built
//! here ever contains a configured value that could be a credential.
//! Entry points: [`Config::load`] (a file and the process environment) and
//! [`Config::from_toml_str`] (text and an injected environment, for tests and the
//! sandbox).

mod base_url;
mod de;
mod interpolate;
mod secret;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::series::Zone;

pub use base_url::{BaseUrl, BaseUrlError};
pub use secret::Secret;

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: where and how the HTTP endpoint listens. Default: every key's default.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[cache]`: the shared response cache. Default: every key's default.
    #[serde(default)]
    pub cache: CacheConfig,
    /// `[limits]`: query limits, rate limits and upstream timeouts. Default: every key's default.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[[clients]]`: API keys and what each may see. Default: none, which means open
    /// access (the server logs a warning at start).
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// `[[workspaces]]`: the tenants and their provider accounts. At least one is required.
    #[serde(default)]
    pub workspaces: Vec<WorkspaceConfig>,
    /// `[telemetry]`: OpenTelemetry traces. Default: off.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `[shared]`: the Redis tier shared by several replicas. Default: absent, one process
    /// on its own (see [`SharedConfig`]).
    #[serde(default)]
    pub shared: Option<SharedConfig>,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Socket address to listen on, an IP and a port (host names are not resolved).
    /// Default: `"127.0.0.1:8080"`, loopback only, so a fresh install is not exposed.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Serve the GraphiQL explorer at `GET /`. Default: `true`.
    pub graphiql: bool,
    /// Answer schema introspection queries. Default: `true`; switch off per deployment.
    pub introspection: bool,
    /// Origins allowed by CORS, each `scheme://host[:port]` exactly as browsers send it
    /// (no path, no trailing slash), or the single entry `"*"` for any origin.
    /// Default: `[]`, which sends no CORS headers (same-origin use only).
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            graphiql: true,
            introspection: true,
            cors_origins: Vec::new(),
        }
    }
}

/// `[cache]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Upper bound on the memory held by cached upstream responses and the values derived
    /// from them (a quarter: [`crate::cache::DERIVED_SHARE`]), in bytes; must be greater than
    /// 0. Default: `268435456` (256 MiB).
    pub max_bytes: u64,
    /// How long a response that covers "now" (still changing upstream) stays cached,
    /// in seconds. Default: `60`.
    pub live_ttl_secs: u64,
    /// How long a response about the closed past stays cached, in seconds.
    /// Default: `86400` (one day).
    pub history_ttl_secs: u64,
    /// Upper bound on the memory held by whole answers kept for repeated read-only requests
    /// (see [`crate::answers`]), in bytes, on top of `max_bytes`; `0` keeps none.
    /// Default: `16777216` (16 MiB).
    pub answer_max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            max_bytes: 268_435_456,
            live_ttl_secs: 60,
            history_ttl_secs: 86_400,
            answer_max_bytes: 16_777_216,
        }
    }
}

impl CacheConfig {
    /// [`live_ttl_secs`](Self::live_ttl_secs) as a `Duration`.
    pub fn live_ttl(&self) -> Duration {
        Duration::from_secs(self.live_ttl_secs)
    }

    /// [`history_ttl_secs`](Self::history_ttl_secs) as a `Duration`.
    pub fn history_ttl(&self) -> Duration {
        Duration::from_secs(self.history_ttl_secs)
    }
}

/// `[limits]`: every key is optional; every number must be at least 1, because 0
/// would refuse every query rather than mean "unlimited".
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Deepest selection-set nesting a query may have (a root field alone is depth 1).
    /// Default: `15`, which admits GraphiQL's introspection query (depth 15 with graphql-js
    /// 16: nine nested `ofType`).
    pub max_depth: usize,
    /// Most aliases a query may use (counted where fragments are spread). Default: `30`.
    pub max_aliases: usize,
    /// Most root fields in the operation that runs (counted through fragments). Default: `20`.
    pub max_root_fields: usize,
    /// Largest query document accepted, in bytes (also what APQ may register).
    /// Default: `32768`.
    pub max_document_bytes: usize,
    /// Highest estimated cost a query may have, measured before it is executed: 1 per
    /// field, plus per windowed field its buckets and 10 per estimated upstream chunk (30 days),
    /// multiplied under lists (see `crate::limits`). Default: `20000`, which admits one
    /// series of the engine's maximum 10,000 buckets, or a year of days in 30 series.
    pub max_cost: u64,
    /// Requests each client may make per minute, counted per client name, or per peer IP
    /// under open access; a client may burst the whole minute's worth at once. Failed
    /// authentications count against the peer IP. Default: `600`.
    pub requests_per_minute: u32,
    /// File of persisted queries that partners may run, if any; a relative path is
    /// resolved against the working directory. JSON: an Apollo persisted-query manifest,
    /// an object of id → query, or an array of queries; read and checked at start.
    /// When set, callers without the `admin` scope may run only listed operations.
    /// Default: none (no safelist).
    pub safelist: Option<PathBuf>,
    /// How long one upstream HTTP call may take, in milliseconds. Default: `10000`.
    pub upstream_timeout_ms: u64,
    /// Concurrent subscriptions one client may hold. Default: `20`.
    pub max_subscriptions_per_client: usize,
    /// Per-provider overrides of `upstream_timeout_ms`, in milliseconds, e.g.
    /// `upstream_timeouts_ms = { help_scout = 5000 }`. Default: none.
    pub upstream_timeouts_ms: ProviderTimeouts,
    /// Most retries of one idempotent upstream GET (after a connection error, a 5xx or a
    /// 429), 0 to 10; 0 turns retries off. Mutations and Xenioo calls are never retried.
    /// Default: `2`.
    pub upstream_max_retries: u32,
    /// Base of the exponential backoff between retries, in milliseconds: the n-th retry
    /// waits about `base * 2^n`, with jitter. Default: `100`.
    pub upstream_retry_backoff_ms: u64,
    /// Longest one upstream call may wait between its attempts in total, in milliseconds,
    /// `Retry-After` included. A `Retry-After` beyond it is not waited for: the call fails
    /// at once with `UPSTREAM_THROTTLED` and `retryAfter`. Default: `5000`.
    pub upstream_retry_max_wait_ms: u64,
    /// Retries allowed per provider account as a share of its calls over the last 10 s,
    /// in percent (0 to 100), on top of a floor of 3 retries per 10 s; so a dead upstream
    /// is not hammered. Default: `20`.
    pub upstream_retry_budget_percent: u32,
    /// Consecutive failed calls (timeout, connection error, 5xx; after retries) that open
    /// a provider account's circuit; while open, its calls fail fast with
    /// `UPSTREAM_UNAVAILABLE`. Default: `5`.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit stays open before one probe call may test the upstream,
    /// in milliseconds. Default: `30000`.
    pub circuit_cooldown_ms: u64,
    /// Most HTTP calls in flight towards one provider at once, over every workspace and
    /// account together (1 to 10000): a query that fans out over many accounts queues its
    /// calls beyond this rather than opening that many connections to one upstream. A call
    /// holds its place while it is sent and its body read, not while it waits to retry.
    /// Default: `16`.
    pub upstream_concurrency: usize,
    /// Per-provider overrides of `upstream_concurrency`, e.g.
    /// `upstream_concurrency_per_provider = { connectycube = 4 }`. Default: none.
    pub upstream_concurrency_per_provider: ProviderConcurrency,
}

/// `[limits.upstream_concurrency_per_provider]`: the most calls in flight towards each
/// provider; a provider left out uses `upstream_concurrency`.
pub type ProviderConcurrency = ProviderOverrides<usize>;

/// `[limits.upstream_timeouts_ms]`: a timeout per provider, in milliseconds; a provider
/// left out uses `upstream_timeout_ms`.
pub type ProviderTimeouts = ProviderOverrides<u64>;

/// One optional override of a `[limits]` setting per provider, keyed in the file by the
/// provider's slug; a provider left out uses the general setting.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderOverrides<T> {
    /// message2give calls.
    pub message2give: Option<T>,
    /// Chat-Tonic calls.
    pub chat_tonic: Option<T>,
    /// Xenioo calls.
    pub xenioo: Option<T>,
    /// ConnectyCube calls.
    pub connectycube: Option<T>,
    /// Help Scout calls.
    pub help_scout: Option<T>,
}

// Derived `Default` would require `T: Default`; no override needs none.
impl<T> Default for ProviderOverrides<T> {
    fn default() -> Self {
        ProviderOverrides {
            message2give: None,
            chat_tonic: None,
            xenioo: None,
            connectycube: None,
            help_scout: None,
        }
    }
}

impl<T: Copy> ProviderOverrides<T> {
    /// Every provider's override, keyed by its slug (the key in the config file): the one
    /// table lookups and validation read, so neither matches on the provider.
    pub fn by_slug(&self) -> [(&'static str, Option<T>); 5] {
        [
            ("message2give", self.message2give),
            ("chat_tonic", self.chat_tonic),
            ("xenioo", self.xenioo),
            ("connectycube", self.connectycube),
            ("help_scout", self.help_scout),
        ]
    }

    /// `provider`'s override, if it has one.
    pub fn of(&self, provider: crate::providers::Provider) -> Option<T> {
        self.by_slug()
            .into_iter()
            .find(|(slug, _)| *slug == provider.slug())
            .and_then(|(_, value)| value)
    }
}

/// The largest `upstream_concurrency` accepted: far above what one upstream should see from
/// one gateway, and a bound that keeps a typo from meaning "unlimited".
pub const MAX_UPSTREAM_CONCURRENCY: usize = 10_000;

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_depth: 15,
            max_aliases: 30,
            max_root_fields: 20,
            max_document_bytes: 32_768,
            max_cost: 20_000,
            requests_per_minute: 600,
            safelist: None,
            upstream_timeout_ms: 10_000,
            max_subscriptions_per_client: 20,
            upstream_timeouts_ms: ProviderTimeouts::default(),
            upstream_max_retries: 2,
            upstream_retry_backoff_ms: 100,
            upstream_retry_max_wait_ms: 5_000,
            upstream_retry_budget_percent: 20,
            circuit_failure_threshold: 5,
            circuit_cooldown_ms: 30_000,
            upstream_concurrency: 16,
            upstream_concurrency_per_provider: ProviderConcurrency::default(),
        }
    }
}

impl LimitsConfig {
    /// [`upstream_timeout_ms`](Self::upstream_timeout_ms) as a `Duration`.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    /// The timeout of `provider`'s calls: its override, else `upstream_timeout_ms`.
    pub fn upstream_timeout_of(&self, provider: crate::providers::Provider) -> Duration {
        let ms = self.upstream_timeouts_ms.of(provider);
        Duration::from_millis(ms.unwrap_or(self.upstream_timeout_ms))
    }

    /// The most calls in flight towards `provider`: its override, else
    /// `upstream_concurrency`.
    pub fn upstream_concurrency_of(&self, provider: crate::providers::Provider) -> usize {
        self.upstream_concurrency_per_provider
            .of(provider)
            .unwrap_or(self.upstream_concurrency)
    }
}

/// `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP (protobuf); see
/// [`crate::telemetry::traces`]. Off unless `otlp_endpoint` is set.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector, `http(s)://host:port` (spans go to its `/v1/traces`), or the
    /// full traces URL ending in `/v1/traces`. Default: none, which turns traces off (no
    /// exporter, no spans).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default: `"chatstats"`.
    pub service_name: String,
    /// Share of new traces that are sampled, 0.0 to 1.0; a request that arrives with a
    /// `traceparent` keeps its caller's decision. Default: `1.0`.
    pub sample_ratio: f64,
    /// How long finished spans wait to be exported together, in milliseconds (1 to 60000).
    /// Default: `5000`.
    pub batch_delay_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "chatstats".into(),
            sample_ratio: 1.0,
            batch_delay_ms: 5_000,
        }
    }
}

/// `[shared]`: the Redis tier that replicas of this server share (see [`crate::shared`]): the
/// Xenioo call lease and snapshot, the blocks (a second level behind each replica's cache),
/// the single flight of block fills, the per-client rate limits and APQ registrations.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedConfig {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://` (TLS). A credential: never
    /// printed, not even in errors. Required; usually `"${REDIS_URL}"`.
    pub redis_url: Secret,
    /// Prefix of every key this server writes: `[A-Za-z0-9_.-]`, 1 to 64 characters.
    /// Replicas that share upstream accounts must use the same. Default: `"chatstats"`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Bound on every Redis operation in a request, in milliseconds (1 to 10000); an
    /// operation that takes longer counts as the tier being down. Default: `150`.
    #[serde(default = "default_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
    /// `true`: exit at start when Redis cannot be reached (or refuses the password).
    /// `false`: warn and run on this process's own state until Redis comes back.
    /// Default: `false`.
    #[serde(default)]
    pub required_to_start: bool,
}

fn default_namespace() -> String {
    "chatstats".to_owned()
}

fn default_fetch_timeout_ms() -> u64 {
    150
}

impl SharedConfig {
    /// [`fetch_timeout_ms`](Self::fetch_timeout_ms) as a `Duration`.
    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_millis(self.fetch_timeout_ms)
    }
}

/// One `[[clients]]` entry: an API key and what its holder may do.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Unique name, used in logs and metrics (never the key). Required.
    pub name: String,
    /// The API key, sent as `Authorization: Bearer <key>` or `x-api-key`; unique and
    /// non-empty. Required; usually `"${SOME_ENV_VAR}"`.
    pub key: Secret,
    /// Workspace ids this client may see, or `["*"]` for all. Required, non-empty.
    pub workspaces: Vec<String>,
    /// What the client may do. Default: `["read"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Read]
}

/// A permission granted to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Run queries and subscriptions.
    Read,
    /// Run mutations that trigger upstream exports (e.g. the Chat-Tonic NPS e-mail).
    Export,
    /// Administrative operations.
    Admin,
}

/// One `[[workspaces]]` entry: a tenant and its accounts on each provider. A provider
/// whose table is absent is not used by this workspace.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkspaceConfig {
    /// Unique id, `[A-Za-z0-9_-]+`, used in the API and in clients' `workspaces`. Required.
    pub id: String,
    /// Human-readable name. Default: the id.
    pub name: String,
    /// Zone that days, weeks and months are cut in unless a query says otherwise: an
    /// IANA name (`"Australia/Sydney"`) or an offset (`"+10:00"`). Default: `"UTC"`.
    pub time_zone: Zone,
    /// `[workspaces.message2give]`. Default: not used.
    pub message2give: Option<Message2GiveConfig>,
    /// `[workspaces.chat_tonic]`. Default: not used.
    pub chat_tonic: Option<ChatTonicConfig>,
    /// `[workspaces.xenioo]`. Default: not used.
    pub xenioo: Option<XeniooConfig>,
    /// `[workspaces.connectycube]`. Default: not used.
    pub connectycube: Option<ConnectyCubeConfig>,
    /// `[workspaces.help_scout]`. Default: not used.
    pub help_scout: Option<HelpScoutConfig>,
}

/// The TOML form of [`WorkspaceConfig`]; exists only because `name` defaults to
/// another key's value, which serde's `default` cannot express.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspaceConfig {
    id: String,
    name: Option<String>,
    #[serde(default = "default_zone", deserialize_with = "zone")]
    time_zone: Zone,
    message2give: Option<Message2GiveConfig>,
    chat_tonic: Option<ChatTonicConfig>,
    xenioo: Option<XeniooConfig>,
    connectycube: Option<ConnectyCubeConfig>,
    help_scout: Option<HelpScoutConfig>,
}

impl<'de> Deserialize<'de> for WorkspaceConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WorkspaceConfig, D::Error> {
        let raw = RawWorkspaceConfig::deserialize(deserializer)?;
        Ok(WorkspaceConfig {
            name: raw.name.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            time_zone: raw.time_zone,
            message2give: raw.message2give,
            chat_tonic: raw.chat_tonic,
            xenioo: raw.xenioo,
            connectycube: raw.connectycube,
            help_scout: raw.help_scout,
        })
    }
}

fn default_zone() -> Zone {
    Zone::Named(chrono_tz::UTC)
}

/// `[workspaces.message2give]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message2GiveConfig {
    /// API root. Default: `"https://api.app.message2give.com/2019-01-23"`.
    #[serde(default = "default_message2give_url")]
    pub base_url: BaseUrl,
    /// Organisation id in `/organisations/{id}/...` (URL-path-safe).
    /// Default: `"self"`, the token's own organisation.
    #[serde(default = "default_organisation")]
    pub organisation: String,
    /// Session token, sent as `x-token`. Required.
    pub token: Secret,
    /// MFA token, sent as `x-mfa`, for organisations that enforce MFA. Default: none.
    pub mfa: Option<Secret>,
}

fn default_message2give_url() -> BaseUrl {
    BaseUrl::parse("https://api.app.message2give.com/2019-01-23")
        .expect("the built-in message2give URL is a valid https URL")
}

fn default_organisation() -> String {
    "self".to_owned()
}

/// `[workspaces.chat_tonic]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTonicConfig {
    /// The customer's own Chat-Tonic host (there is no shared one). Required.
    pub base_url: BaseUrl,
    /// Account codename from the Chat-Tonic team, used as a path segment: non-empty,
    /// letters, digits, `-`, `.`, `_`, `~`. Required.
    pub codename: String,
    /// Access token, sent as `Authorization: Bearer`. Required.
    pub access_token: Secret,
}

/// `[workspaces.xenioo]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XeniooConfig {
    /// API root. Default: `"https://publicapi.xenioo.com"`.
    #[serde(default = "default_xenioo_url")]
    pub base_url: BaseUrl,
    /// Account auth token, sent as `Authorization: Bearer`. Required.
    pub account_token: Secret,
    /// Least time between two statistics calls for this account, in seconds; at least 1.
    /// Xenioo refuses a second call within the hour. Default: `3600`.
    #[serde(default = "default_xenioo_interval")]
    pub min_call_interval_secs: u64,
}

fn default_xenioo_url() -> BaseUrl {
    BaseUrl::parse("https://publicapi.xenioo.com")
        .expect("the built-in Xenioo URL is a valid https URL")
}

fn default_xenioo_interval() -> u64 {
    3_600
}

impl XeniooConfig {
    /// [`min_call_interval_secs`](Self::min_call_interval_secs) as a `Duration`.
    pub fn min_call_interval(&self) -> Duration {
        Duration::from_secs(self.min_call_interval_secs)
    }
}

/// `[workspaces.connectycube]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectyCubeConfig {
    /// API root. Default: `"https://api.connectycube.com"`.
    #[serde(default = "default_connectycube_url")]
    pub base_url: BaseUrl,
    /// Administration API key, sent as `CB-Administration-API-Key`. Required.
    pub admin_api_key: Secret,
}

fn default_connectycube_url() -> BaseUrl {
    BaseUrl::parse("https://api.connectycube.com")
        .expect("the built-in ConnectyCube URL is a valid https URL")
}

/// `[workspaces.help_scout]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelpScoutConfig {
    /// API root. Default: `"https://api.helpscout.net"`.
    pub base_url: BaseUrl,
    /// How to authenticate; see [`HelpScoutAuth`] for the keys. Required.
    pub auth: HelpScoutAuth,
    /// Mailbox ids (positive) that reports are filtered to by default. Default: `[]`, all.
    pub mailboxes: Vec<i64>,
}

/// Help Scout credentials.
///
/// TOML keys: either `access_token`, or both `client_id` and `client_secret` (exactly
/// one form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelpScoutAuth {
    /// A static OAuth access token (`access_token`).
    AccessToken(Secret),
    /// The OAuth2 client-credentials flow (`client_id` + `client_secret`); the
    /// provider client fetches and refreshes the token.
    ClientCredentials {
        /// The app id.
        client_id: String,
        /// The app secret.
        client_secret: Secret,
    },
}

/// The TOML form of [`HelpScoutConfig`]: the three credential keys are flat and
/// optional here, and [`HelpScoutConfig`]'s `Deserialize` checks that exactly one
/// form is given. (`#[serde(flatten)]` would lose `deny_unknown_fields`.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHelpScoutConfig {
    #[serde(default = "default_help_scout_url")]
    base_url: BaseUrl,
    access_token: Option<Secret>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    #[serde(default)]
    mailboxes: Vec<i64>,
}

fn default_help_scout_url() -> BaseUrl {
    BaseUrl::parse("https://api.helpscout.net")
        .expect("the built-in Help Scout URL is a valid https URL")
}

impl<'de> Deserialize<'de> for HelpScoutConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HelpScoutConfig, D::Error> {
        const FORMS: &str = "use exactly one form: access_token, or client_id with client_secret";
        let raw = RawHelpScoutConfig::deserialize(deserializer)?;
        let auth = match (raw.access_token, raw.client_id, raw.client_secret) {
            (Some(token), None, None) => HelpScoutAuth::AccessToken(token),
            (None, Some(client_id), Some(client_secret)) => HelpScoutAuth::ClientCredentials {
                client_id,
                client_secret,
            },
            (None, None, None) => {
                return Err(serde::de::Error::custom(format!("no credentials; {FORMS}")));
            }
            (Some(_), _, _) => {
                return Err(serde::de::Error::custom(format!(
                    "access_token cannot be combined with client_id or client_secret; {FORMS}"
                )));
            }
            (None, Some(_), None) => {
                return Err(serde::de::Error::custom(format!(
                    "client_id is set but client_secret is missing; {FORMS}"
                )));
            }
            (None, None, Some(_)) => {
                return Err(serde::de::Error::custom(format!(
                    "client_secret is set but client_id is missing; {FORMS}"
                )));
            }
        };
        Ok(HelpScoutConfig {
            base_url: raw.base_url,
            auth,
            mailboxes: raw.mailboxes,
        })
    }
}

/// `listen`: a string parsed as a socket address, with an error that shows the form.
fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a socket address; expected an IP address and a port such as \
             \"127.0.0.1:8080\", \"0.0.0.0:8080\" or \"[::1]:8080\""
        ))
    })
}

/// `time_zone`: a string parsed by [`Zone::parse`], whose error explains the forms.
fn zone<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Zone, D::Error> {
    let text = String::deserialize(deserializer)?;
    Zone::parse(&text).map_err(serde::de::Error::custom)
}

/// Why the configuration could not be loaded. `Display` is the message for the user:
/// it names the file position or key path, what is wrong and what is allowed, and
/// never contains a configured credential.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {}: {source}", path.display())]
    Read {
        /// The file we tried to read.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("config: TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The parser's description, without the quoted source line (which may hold a
        /// literal credential).
        message: String,
    },
    /// A `${NAME}` reference is malformed or names an unset variable.
    #[error("config: {path}: {problem}")]
    Env {
        /// Key path of the string holding the reference.
        path: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A key is unknown or missing, or a value has the wrong type or form.
    #[error("config: {path}: {problem}")]
    Shape {
        /// Key path of the offending key, or of the table missing a key.
        path: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// The values are well-formed but break a rule (duplicate id, unknown workspace...).
    #[error("config: {path}: {problem}")]
    Invalid {
        /// Key path of the offending value.
        path: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

impl ConfigError {
    /// The key path the error is about (`workspaces[0].chat_tonic.base_url`), if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Env { path, .. }
            | ConfigError::Shape { path, .. }
            | ConfigError::Invalid { path, .. } => Some(path),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

impl Config {
    /// Parse TOML text. `env` resolves `${NAME}` references (tests pass a closure; production passes std::env::var).
    ///
    /// `${NAME}` may appear anywhere inside any string value (`"Bearer-${X}"`), `$${`
    /// is a literal `${`, and text that comes from the environment is not expanded
    /// again. Only string values are expanded, so numbers and booleans stay literal.
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|err| syntax_error(text, &err))?;
        let mut value = toml::Value::Table(table);
        interpolate::interpolate(&mut value, "", env)?;
        let config: Config =
            serde_path_to_error::deserialize(de::ValueDeserializer(value)).map_err(shape_error)?;
        validate::validate(&config)?;
        Ok(config)
    }

    /// Read a file and parse it with the process environment.
    ///
    /// A variable whose value is not valid UTF-8 counts as unset.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text, &|name| std::env::var(name).ok())
    }
}

/// Turns toml's error into line/column + message. toml's own `Display` quotes the
/// offending source line, which could be a literal credential, so we drop it.
fn syntax_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |span| span.start).min(text.len());
    // A span may point into the middle of a multi-byte character; back up to a boundary.
    let offset = (0..=offset)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    ConfigError::Syntax {
        line,
        column,
        message: err.message().trim_end().to_owned(),
    }
}

fn shape_error(err: serde_path_to_error::Error<de::DeError>) -> ConfigError {
    let mut path = err.path().to_string();
    if path == "." {
        path = "(top level)".to_owned();
    }
    let inner = err.into_inner();
    // serde_path_to_error records the offending key for unknown keys in tables; this
    // keeps the message right should a future version stop doing so.
    if let de::DeError::UnknownKey { key, .. } = &inner {
        if path == "(top level)" {
            path = key.clone();
        } else if !path.ends_with(&format!(".{key}")) && path != *key {
            path = format!("{path}.{key}");
        }
    }
    ConfigError::Shape {
        path,
        problem: inner.to_string(),
    }
}

/// The settings read only at start: a reload that changes one of them keeps the running value
/// and names it in the log ([`Config::reload`]). Everything else (clients, workspaces, the
/// other `[limits]`, `[server] introspection`) applies to the requests that start after it.
pub const RESTART_ONLY: [&str; 4] = [
    "server.listen",
    "server.graphiql",
    "server.cors_origins",
    "cache",
];

/// What a configuration reload read: the configuration to apply and the restart-only settings
/// that differ in the file (kept at their running values).
#[derive(Debug)]
pub struct Reloaded {
    /// The file's configuration, with every [`RESTART_ONLY`] setting as it runs now.
    pub config: Config,
    /// The [`RESTART_ONLY`] settings the file changes, which take effect only at a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Config {
    /// Re-read the configuration file for a running server whose configuration is `running`
    /// (SIGHUP). `listen`: the `--listen` given on the command line, which overrides the
    /// file's `[server] listen` now as it did at start. An error leaves nothing changed: the
    /// caller keeps `running`.
    pub fn reload(
        path: &Path,
        running: &Config,
        listen: Option<SocketAddr>,
    ) -> Result<Reloaded, ConfigError> {
        let mut config = Config::load(path)?;
        if let Some(listen) = listen {
            config.server.listen = listen;
        }
        Ok(config.keeping_restart_only(running))
    }

    /// `self` with every [`RESTART_ONLY`] setting taken from `running`, and the list of those
    /// that differed.
    pub fn keeping_restart_only(mut self, running: &Config) -> Reloaded {
        let mut needs_restart = Vec::new();
        if self.server.listen != running.server.listen {
            needs_restart.push("server.listen");
        }
        if self.server.graphiql != running.server.graphiql {
            needs_restart.push("server.graphiql");
        }
        if self.server.cors_origins != running.server.cors_origins {
            needs_restart.push("server.cors_origins");
        }
        if self.cache != running.cache {
            needs_restart.push("cache");
        }
        if self.telemetry != running.telemetry {
            needs_restart.push("telemetry");
        }
        if self.shared != running.shared {
            needs_restart.push("shared");
        }
        self.server.listen = running.server.listen;
        self.server.graphiql = running.server.graphiql;
        self.server
            .cors_origins
            .clone_from(&running.server.cors_origins);
        self.cache = running.cache.clone();
        self.telemetry = running.telemetry.clone();
        self.shared = running.shared.clone();
        Reloaded {
            config: self,
            needs_restart,
        }
    }
}
