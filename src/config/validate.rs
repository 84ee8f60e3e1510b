//! The rules that types cannot express, checked once after typing. Every error names
//! the key path; none repeats a credential (duplicate keys are reported by position).
//! The first broken rule is reported, in file order: server, cache, limits,
//! workspaces, clients (clients refer to workspaces, so those are checked first), telemetry, shared.

use super::{
    CacheConfig, ClientConfig, Config, ConfigError, HelpScoutAuth, LimitsConfig, Secret,
    ServerConfig, SharedConfig, TelemetryConfig, WorkspaceConfig, MAX_UPSTREAM_CONCURRENCY,
};

pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    server(&config.server)?;
    cache(&config.cache)?;
    limits(&config.limits)?;
    workspaces(&config.workspaces)?;
    clients(&config.clients, &config.workspaces)?;
    telemetry(&config.telemetry)?;
    match &config.shared {
        Some(shared_config) => shared(shared_config),
        None => Ok(()),
    }
}

/// `[shared]`: the URL's form (never echoed: it may hold a password), the namespace's
/// characters and the timeout's range.
fn shared(shared: &SharedConfig) -> Result<(), ConfigError> {
    let url = url::Url::parse(shared.redis_url.expose()).ok();
    let scheme_ok = url
        .as_ref()
        .is_some_and(|url| matches!(url.scheme(), "redis" | "rediss") && url.host().is_some());
    if !scheme_ok {
        return Err(invalid(
            "shared.redis_url",
            "is not a Redis URL; expected redis://[user:password@]host[:port][/db] or \
             rediss://... (the value is not shown: it may hold a password)",
        ));
    }
    if redis::Client::open(shared.redis_url.expose()).is_err() {
        return Err(invalid(
            "shared.redis_url",
            "is not a valid Redis URL (check the port and the database number); the value is \
             not shown: it may hold a password",
        ));
    }
    let namespace_ok = (1..=64).contains(&shared.namespace.len())
        && shared
            .namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !namespace_ok {
        return Err(invalid(
            "shared.namespace",
            format!(
                "{:?} is not a namespace; use 1 to 64 of A-Z a-z 0-9 _ . - (default \"chatstats\")",
                shared.namespace
            ),
        ));
    }
    if !(1..=10_000).contains(&shared.fetch_timeout_ms) {
        return Err(invalid(
            "shared.fetch_timeout_ms",
            "must be from 1 to 10000 milliseconds (default 150)",
        ));
    }
    Ok(())
}

fn invalid(path: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        problem: problem.into(),
    }
}

fn server(server: &ServerConfig) -> Result<(), ConfigError> {
    for (index, origin) in server.cors_origins.iter().enumerate() {
        let path = format!("server.cors_origins[{index}]");
        if origin == "*" {
            if server.cors_origins.len() > 1 {
                return Err(invalid(
                    path,
                    "\"*\" already allows every origin; use it alone or list origins without it",
                ));
            }
            continue;
        }
        // Browsers send `Origin` in exactly the ASCII serialisation, so anything else
        // (a trailing slash, a path, an explicit default port) would never match.
        let is_origin = url::Url::parse(origin).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.origin().ascii_serialization() == *origin
        });
        if !is_origin {
            return Err(invalid(
                path,
                format!(
                    "{origin:?} is not an origin; expected scheme://host[:port] such as \
                     \"https://app.example.com\" (no path or trailing slash), or \"*\" for any origin"
                ),
            ));
        }
    }
    Ok(())
}

fn cache(cache: &CacheConfig) -> Result<(), ConfigError> {
    if cache.max_bytes == 0 {
        return Err(invalid(
            "cache.max_bytes",
            "must be greater than 0 (default 268435456, i.e. 256 MiB)",
        ));
    }
    Ok(())
}

fn limits(limits: &LimitsConfig) -> Result<(), ConfigError> {
    let zeros = [
        ("max_depth", limits.max_depth == 0),
        ("max_aliases", limits.max_aliases == 0),
        ("max_root_fields", limits.max_root_fields == 0),
        ("max_document_bytes", limits.max_document_bytes == 0),
        ("max_cost", limits.max_cost == 0),
        ("requests_per_minute", limits.requests_per_minute == 0),
        ("upstream_timeout_ms", limits.upstream_timeout_ms == 0),
        (
            "max_subscriptions_per_client",
            limits.max_subscriptions_per_client == 0,
        ),
        (
            "upstream_retry_backoff_ms",
            limits.upstream_retry_backoff_ms == 0,
        ),
        (
            "upstream_retry_max_wait_ms",
            limits.upstream_retry_max_wait_ms == 0,
        ),
        (
            "circuit_failure_threshold",
            limits.circuit_failure_threshold == 0,
        ),
        ("circuit_cooldown_ms", limits.circuit_cooldown_ms == 0),
    ];
    if let Some((key, _)) = zeros.iter().find(|(_, is_zero)| *is_zero) {
        return Err(invalid(
            format!("limits.{key}"),
            "must be at least 1 (0 would refuse every request); omit the key for the default",
        ));
    }
    let zero_timeout = limits
        .upstream_timeouts_ms
        .by_slug()
        .into_iter()
        .find(|(_, ms)| *ms == Some(0));
    if let Some((slug, _)) = zero_timeout {
        return Err(invalid(
            format!("limits.upstream_timeouts_ms.{slug}"),
            "must be at least 1 (0 would refuse every request); omit the key for the default",
        ));
    }
    upstream_concurrency(limits)?;
    if limits.upstream_max_retries > 10 {
        return Err(invalid(
            "limits.upstream_max_retries",
            "must be at most 10 (0 turns retries off; default 2)",
        ));
    }
    if limits.upstream_retry_budget_percent > 100 {
        return Err(invalid(
            "limits.upstream_retry_budget_percent",
            "must be a percentage from 0 to 100 (default 20)",
        ));
    }
    if limits
        .safelist
        .as_ref()
        .is_some_and(|path| path.as_os_str().is_empty())
    {
        return Err(invalid(
            "limits.safelist",
            "must not be empty; give a file path, or omit the key for no safelist",
        ));
    }
    Ok(())
}

/// `upstream_concurrency` and each override: at least 1 (0 would let no call through) and
/// at most [`MAX_UPSTREAM_CONCURRENCY`].
fn upstream_concurrency(limits: &LimitsConfig) -> Result<(), ConfigError> {
    let overrides = limits
        .upstream_concurrency_per_provider
        .by_slug()
        .map(|(slug, cap)| (format!("upstream_concurrency_per_provider.{slug}"), cap));
    let caps = std::iter::once((
        "upstream_concurrency".to_owned(),
        Some(limits.upstream_concurrency),
    ))
    .chain(overrides);
    for (key, cap) in caps {
        if cap.is_some_and(|cap| cap == 0 || cap > MAX_UPSTREAM_CONCURRENCY) {
            return Err(invalid(
                format!("limits.{key}"),
                format!(
                    "must be from 1 to {MAX_UPSTREAM_CONCURRENCY} (0 would let no upstream call \
                     through); omit the key for the default (16)"
                ),
            ));
        }
    }
    Ok(())
}

fn workspaces(workspaces: &[WorkspaceConfig]) -> Result<(), ConfigError> {
    if workspaces.is_empty() {
        return Err(invalid(
            "workspaces",
            "at least one [[workspaces]] table with an id is required",
        ));
    }
    for (index, workspace) in workspaces.iter().enumerate() {
        let at = format!("workspaces[{index}]");
        workspace_id(&at, workspace, &workspaces[..index])?;
        if workspace.name.is_empty() {
            return Err(invalid(
                format!("{at}.name"),
                "must not be empty; omit it to use the id",
            ));
        }
        providers(&at, workspace)?;
    }
    Ok(())
}

fn workspace_id(
    at: &str,
    workspace: &WorkspaceConfig,
    earlier: &[WorkspaceConfig],
) -> Result<(), ConfigError> {
    let id = &workspace.id;
    let path = format!("{at}.id");
    if id.is_empty() {
        return Err(invalid(
            path,
            "must not be empty; use letters, digits, '_' and '-'",
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            path,
            format!("{id:?} is not a valid id; use only letters, digits, '_' and '-'"),
        ));
    }
    if let Some(first) = earlier.iter().position(|other| other.id == *id) {
        return Err(invalid(
            path,
            format!(
                "{id:?} is already the id of workspaces[{first}]; workspace ids must be unique"
            ),
        ));
    }
    Ok(())
}

fn providers(at: &str, workspace: &WorkspaceConfig) -> Result<(), ConfigError> {
    if let Some(m2g) = &workspace.message2give {
        let at = format!("{at}.message2give");
        path_segment(&format!("{at}.organisation"), &m2g.organisation)?;
        secret(&format!("{at}.token"), &m2g.token)?;
        if let Some(mfa) = &m2g.mfa {
            secret(&format!("{at}.mfa"), mfa)?;
        }
    }
    if let Some(chat_tonic) = &workspace.chat_tonic {
        let at = format!("{at}.chat_tonic");
        path_segment(&format!("{at}.codename"), &chat_tonic.codename)?;
        secret(&format!("{at}.access_token"), &chat_tonic.access_token)?;
    }
    if let Some(xenioo) = &workspace.xenioo {
        let at = format!("{at}.xenioo");
        secret(&format!("{at}.account_token"), &xenioo.account_token)?;
        if xenioo.min_call_interval_secs == 0 {
            return Err(invalid(
                format!("{at}.min_call_interval_secs"),
                "must be at least 1; Xenioo allows one statistics call per account per hour \
                 (default 3600)",
            ));
        }
    }
    if let Some(connectycube) = &workspace.connectycube {
        secret(
            &format!("{at}.connectycube.admin_api_key"),
            &connectycube.admin_api_key,
        )?;
    }
    if let Some(help_scout) = &workspace.help_scout {
        let at = format!("{at}.help_scout");
        match &help_scout.auth {
            HelpScoutAuth::AccessToken(token) => secret(&format!("{at}.access_token"), token)?,
            HelpScoutAuth::ClientCredentials {
                client_id,
                client_secret,
            } => {
                if client_id.is_empty() {
                    return Err(invalid(format!("{at}.client_id"), "must not be empty"));
                }
                secret(&format!("{at}.client_secret"), client_secret)?;
            }
        }
        if let Some((index, id)) = help_scout
            .mailboxes
            .iter()
            .enumerate()
            .find(|(_, id)| **id <= 0)
        {
            return Err(invalid(
                format!("{at}.mailboxes[{index}]"),
                format!("mailbox ids are positive integers, found {id}"),
            ));
        }
    }
    Ok(())
}

/// An empty credential is always a mistake, typically an environment variable that
/// is set but empty. The message deliberately says nothing about the value.
fn secret(path: &str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.is_empty() {
        return Err(invalid(path, "must not be empty"));
    }
    Ok(())
}

/// A value placed as one segment of an upstream URL path: RFC 3986 unreserved
/// characters only, so it needs no escaping and cannot add segments or traverse (`..`).
fn path_segment(path: &str, value: &str) -> Result<(), ConfigError> {
    const ALLOWED: &str = "use only letters, digits, '-', '.', '_' and '~'";
    if value.is_empty() {
        return Err(invalid(path, format!("must not be empty; {ALLOWED}")));
    }
    let unreserved = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
    if !unreserved || value == "." || value == ".." {
        return Err(invalid(
            path,
            format!("{value:?} is not safe in a URL path; {ALLOWED} (and not \".\" or \"..\")"),
        ));
    }
    Ok(())
}

fn clients(clients: &[ClientConfig], workspaces: &[WorkspaceConfig]) -> Result<(), ConfigError> {
    for (index, client) in clients.iter().enumerate() {
        let at = format!("clients[{index}]");
        let earlier = &clients[..index];
        if client.name.is_empty() {
            return Err(invalid(format!("{at}.name"), "must not be empty"));
        }
        if let Some(first) = earlier.iter().position(|other| other.name == client.name) {
            return Err(invalid(
                format!("{at}.name"),
                format!(
                    "{:?} is already the name of clients[{first}]; client names must be unique",
                    client.name
                ),
            ));
        }
        secret(&format!("{at}.key"), &client.key)?;
        if let Some(first) = earlier.iter().position(|other| other.key == client.key) {
            return Err(invalid(
                format!("{at}.key"),
                format!("same key as clients[{first}].key; every client needs its own key"),
            ));
        }
        client_workspaces(&at, client, workspaces)?;
        if client.scopes.is_empty() {
            return Err(invalid(
                format!("{at}.scopes"),
                "must list at least one scope; allowed: read, export, admin (default [\"read\"])",
            ));
        }
    }
    Ok(())
}

fn client_workspaces(
    at: &str,
    client: &ClientConfig,
    workspaces: &[WorkspaceConfig],
) -> Result<(), ConfigError> {
    if client.workspaces.is_empty() {
        return Err(invalid(
            format!("{at}.workspaces"),
            "must list at least one workspace id, or \"*\" for all workspaces",
        ));
    }
    for (index, id) in client.workspaces.iter().enumerate() {
        if id != "*" && !workspaces.iter().any(|workspace| workspace.id == *id) {
            let known: Vec<String> = workspaces
                .iter()
                .map(|workspace| format!("{:?}", workspace.id))
                .collect();
            return Err(invalid(
                format!("{at}.workspaces[{index}]"),
                format!(
                    "unknown workspace {id:?}; allowed: {}, or \"*\" for all workspaces",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn telemetry(telemetry: &TelemetryConfig) -> Result<(), ConfigError> {
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        // Named by shape only: the value may come from the environment and carry a token.
        let usable = url::Url::parse(endpoint).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|host| !host.is_empty())
                && url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none()
        });
        if !usable {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                "must be an http(s) URL such as \"http://127.0.0.1:4318\" (a collector's OTLP/HTTP \
                 port) without credentials, query or fragment; omit the key to turn traces off",
            ));
        }
    }
    if telemetry.service_name.trim().is_empty() {
        return Err(invalid(
            "telemetry.service_name",
            "must not be empty (default \"chatstats\")",
        ));
    }
    if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
        return Err(invalid(
            "telemetry.sample_ratio",
            "must be between 0.0 and 1.0 (default 1.0: every new trace is sampled)",
        ));
    }
    if !(1..=60_000).contains(&telemetry.batch_delay_ms) {
        return Err(invalid(
            "telemetry.batch_delay_ms",
            "must be between 1 and 60000 milliseconds (default 5000)",
        ));
    }
    Ok(())
}
