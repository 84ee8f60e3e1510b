//! Who is calling: API keys from `[[clients]]` mapped to a [`Caller`] (SPEC §8).
//!
//! Entry point: [`Clients::authenticate`], called by the HTTP layer for every `/graphql`
//! request; the resulting [`Caller`] goes into the GraphQL request data, where resolvers ask it
//! which workspaces they may show ([`Caller::may_see`]) and which scopes it holds
//! ([`Caller::require`]).
//!
//! Keys are kept only as SHA-256 digests, and a presented key is compared with every
//! configured digest in constant time, so neither the comparison's duration nor the order of
//! the clients tells a prober how close a guess was. A key never appears in a response, a log
//! line or an error.

use std::collections::HashSet;

use async_graphql::{Context, ErrorExtensions};
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use crate::config::{ClientConfig, Scope};
use crate::error::code;

/// The header that carries an API key when `Authorization` is not used.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Which workspaces a caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visible {
    /// Every configured workspace (`workspaces = ["*"]`, or open access).
    All,
    /// Only these ids.
    Only(HashSet<String>),
}

/// The identity and permissions of the caller of one request.
///
/// A request without a `Caller` in its data sees nothing and may do nothing
/// ([`Caller::from_context`]), so a transport that forgets to authenticate fails closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The client's configured name; `None` under open access.
    name: Option<String>,
    workspaces: Visible,
    scopes: Vec<Scope>,
}

impl Caller {
    /// The caller under open access (no `[[clients]]`): everything, no name.
    pub fn open() -> Caller {
        Caller {
            name: None,
            workspaces: Visible::All,
            scopes: vec![Scope::Read, Scope::Export, Scope::Admin],
        }
    }

    /// A caller that may do nothing (the fallback when a request carries no `Caller`).
    pub fn nobody() -> Caller {
        Caller {
            name: None,
            workspaces: Visible::Only(HashSet::new()),
            scopes: Vec::new(),
        }
    }

    fn from_config(client: &ClientConfig) -> Caller {
        let workspaces = if client.workspaces.iter().any(|w| w == "*") {
            Visible::All
        } else {
            Visible::Only(client.workspaces.iter().cloned().collect())
        };
        Caller {
            name: Some(client.name.clone()),
            workspaces,
            scopes: client.scopes.clone(),
        }
    }

    /// The configured client name, for logs and metrics; `None` under open access.
    pub fn client_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// True when the caller may see workspace `id`.
    pub fn may_see(&self, id: &str) -> bool {
        match &self.workspaces {
            Visible::All => true,
            Visible::Only(ids) => ids.contains(id),
        }
    }

    /// How many of `total` configured workspaces the caller sees.
    pub fn workspace_count(&self, total: usize) -> usize {
        match &self.workspaces {
            Visible::All => total,
            Visible::Only(ids) => ids.len().min(total),
        }
    }

    /// True when the caller holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// `Ok` when the caller holds `scope`; otherwise a `FORBIDDEN` error that names the scope
    /// `what` needs.
    pub fn require(&self, scope: Scope, what: &str) -> async_graphql::Result<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(forbidden(scope, what))
        }
    }

    /// The caller of the request `ctx` belongs to, or [`Caller::nobody`].
    pub fn from_context<'a>(ctx: &Context<'a>) -> std::borrow::Cow<'a, Caller> {
        match ctx.data_opt::<Caller>() {
            Some(caller) => std::borrow::Cow::Borrowed(caller),
            None => std::borrow::Cow::Owned(Caller::nobody()),
        }
    }
}

/// The lower-case name of a scope as written in the config.
pub fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Export => "export",
        Scope::Admin => "admin",
    }
}

/// `FORBIDDEN`, naming the scope that is missing.
pub fn forbidden(scope: Scope, what: &str) -> async_graphql::Error {
    let name = scope_name(scope);
    async_graphql::Error::new(format!(
        "{what} needs the `{name}` scope, which this API key does not have; ask for a key with \
         scopes = [\"{name}\"]"
    ))
    .extend_with(|_, ext| {
        ext.set("code", code::FORBIDDEN);
        ext.set("scope", name);
    })
}

/// Why a request was not authenticated. The messages never repeat the presented key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    Missing,
    #[error("the API key is not valid; check it, or ask for a new one")]
    Unknown,
    #[error("the `Authorization` header must have the form `Bearer <key>`")]
    Malformed,
}

/// Who may call `/graphql`, and how often: what the HTTP layer checks before GraphQL runs.
pub struct Access {
    /// The API keys (empty: open access).
    pub clients: Clients,
    /// One bucket per client name, or per peer IP under open access. Shared with the
    /// `Access` a reload builds while `requests_per_minute` stays the same, so reloading does
    /// not refill anyone's bucket.
    pub rate: std::sync::Arc<crate::rate_limit::RateLimiter>,
    /// `[server] cors_origins`: origins browsers may call from (`"*"`: any).
    pub cors_origins: Vec<String>,
}

/// One configured client: its key as a digest and what it may do.
struct Client {
    digest: [u8; 32],
    caller: Caller,
}

/// All configured API keys. Empty means open access.
pub struct Clients {
    clients: Vec<Client>,
}

impl Clients {
    pub fn new(configs: &[ClientConfig]) -> Clients {
        Clients {
            clients: configs
                .iter()
                .map(|c| Client {
                    digest: digest(c.key.expose()),
                    caller: Caller::from_config(c),
                })
                .collect(),
        }
    }

    /// True when no `[[clients]]` are configured: every request is [`Caller::open`].
    pub fn is_open(&self) -> bool {
        self.clients.is_empty()
    }

    /// The caller the request's headers identify.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(Caller::open());
        }
        let key = presented_key(headers)?;
        self.lookup(key).cloned().ok_or(AuthError::Unknown)
    }

    /// The caller whose key is `key`. Every configured digest is compared, in constant time,
    /// whatever matches.
    fn lookup(&self, key: &[u8]) -> Option<&Caller> {
        let presented = digest_bytes(key);
        let mut found = None;
        for client in &self.clients {
            if constant_time_eq(&client.digest, &presented) {
                found = Some(&client.caller);
            }
        }
        found
    }
}

/// The key in `Authorization: Bearer <key>`, else in `x-api-key`.
fn presented_key(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.as_bytes();
        let Some(scheme_end) = value.iter().position(|b| *b == b' ') else {
            return Err(AuthError::Malformed);
        };
        let (scheme, rest) = value.split_at(scheme_end);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Err(AuthError::Malformed);
        }
        let key = rest.trim_ascii();
        if key.is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(key);
    }
    match headers.get(API_KEY_HEADER) {
        Some(value) if !value.as_bytes().trim_ascii().is_empty() => {
            Ok(value.as_bytes().trim_ascii())
        }
        _ => Err(AuthError::Missing),
    }
}

fn digest(key: &str) -> [u8; 32] {
    digest_bytes(key.as_bytes())
}

fn digest_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality whose running time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderValue;

    fn client(name: &str, key: &str, workspaces: &[&str], scopes: &[Scope]) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            key: Secret::new(key),
            workspaces: workspaces.iter().map(|w| w.to_string()).collect(),
            scopes: scopes.to_vec(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn constant_time_eq_is_equality() {
        let a = digest("one");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
        assert!(!constant_time_eq(&digest("one"), &digest("two")));
    }

    #[test]
    fn both_transports_identify_the_client_and_nothing_else_does() {
        let clients = Clients::new(&[
            client("dash", "k-dash", &["acme"], &[Scope::Read]),
            client("ops", "k-ops", &["*"], &[Scope::Read, Scope::Export]),
        ]);
        let by_bearer = clients
            .authenticate(&headers(&[("authorization", "Bearer k-ops")]))
            .expect("known");
        assert_eq!(by_bearer.client_name(), Some("ops"));
        assert!(by_bearer.may_see("anything") && by_bearer.has(Scope::Export));
        let by_header = clients
            .authenticate(&headers(&[("x-api-key", "k-dash")]))
            .expect("known");
        assert_eq!(by_header.client_name(), Some("dash"));
        assert!(by_header.may_see("acme") && !by_header.may_see("globex"));
        assert!(!by_header.has(Scope::Export));
        assert_eq!(
            clients.authenticate(&headers(&[("authorization", "bearer k-dash")])),
            Ok(by_header.clone())
        );
        assert_eq!(
            clients.authenticate(&HeaderMap::new()),
            Err(AuthError::Missing)
        );
        assert_eq!(
            clients.authenticate(&headers(&[("x-api-key", "k-dash2")])),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            clients.authenticate(&headers(&[("authorization", "Basic k-dash")])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            clients.authenticate(&headers(&[("authorization", "Bearer ")])),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn no_clients_means_open_access_with_every_scope() {
        let clients = Clients::new(&[]);
        assert!(clients.is_open());
        let caller = clients.authenticate(&HeaderMap::new()).expect("open");
        assert_eq!(caller.client_name(), None);
        assert!(caller.may_see("acme") && caller.has(Scope::Export) && caller.has(Scope::Read));
    }

    #[test]
    fn nobody_sees_nothing() {
        let nobody = Caller::nobody();
        assert!(!nobody.may_see("acme") && !nobody.has(Scope::Read));
    }
}
