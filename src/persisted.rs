//! Persisted queries (SPEC §8): Apollo's automatic persisted queries (APQ) and an optional
//! safelist of operations that partners may run.
//!
//! Entry point: [`PersistedQueries::resolve`], run by [`crate::graphql::guard`] before a
//! request is parsed; it fills in the query text of a request that sent only a hash and
//! refuses what the safelist does not list.
//!
//! **APQ** (the protocol Apollo clients speak): `extensions.persistedQuery` is
//! `{"version": 1, "sha256Hash": "<hex>"}`.
//! - hash without query: the stored text runs; unknown hash → `PersistedQueryNotFound`
//!   (`extensions.code = PERSISTED_QUERY_NOT_FOUND`), and the client resends with the text;
//! - hash with query: the hash must be the SHA-256 of the text (`BAD_USER_INPUT` otherwise);
//!   the text is stored and runs.
//!
//! The store is a bounded in-memory cache ([`APQ_MAX_BYTES`] of query text, least recently
//! used first out), so registering many documents cannot exhaust memory. With `[shared]` it is
//! the first level, and Redis the second: a registration is written to both (the Redis entry
//! under `{namespace}:apq:{hash}`, for [`APQ_SHARED_TTL`], renewed by each registration), and a
//! hash missing here is looked up in Redis (one round trip, at most `fetch_timeout_ms`), so an
//! operation registered through one replica is a hit on every other. A text read from Redis
//! runs only if it hashes to the requested hash, and is then kept here too. Without the tier
//! (or while it is down) the store is this replica's alone, as before. The safelist is never in
//! Redis: it is each replica's config.
//!
//! **Safelist** (`[limits] safelist = "file.json"`): when set, a caller without the `admin`
//! scope may run only listed operations, by hash (`persistedQuery.sha256Hash` equal to a
//! listed id or to the SHA-256 of a listed body) or by exact body; anything else is refused
//! with `PERSISTED_QUERY_NOT_IN_LIST` (the code Apollo Router uses). [`Safelist::parse`] reads
//! three shapes, described in the README.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{ServerError, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::config::{ConfigError, Scope};
use crate::error::code;
use crate::shared::SharedTier;

/// Query text the APQ store keeps at most, in bytes.
pub const APQ_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// How long a registration stays in the shared tier after the last time it was registered.
/// Each entry is at most `[limits] max_document_bytes`; an Apollo client registers again after a
/// `PERSISTED_QUERY_NOT_FOUND`, so an expired entry costs one extra round trip of that client.
pub const APQ_SHARED_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The `extensions.code` of an unknown APQ hash (what Apollo clients look for).
pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
/// The `extensions.code` of an operation the safelist does not list.
pub const PERSISTED_QUERY_NOT_IN_LIST: &str = "PERSISTED_QUERY_NOT_IN_LIST";

/// The APQ store and the safelist.
pub struct PersistedQueries {
    apq: moka::future::Cache<String, Arc<str>>,
    safelist: Option<Safelist>,
    /// The second level of the APQ store ([`SharedTier::none`] without `[shared]`).
    shared: SharedTier,
}

impl PersistedQueries {
    pub fn new(safelist: Option<Safelist>) -> PersistedQueries {
        PersistedQueries {
            apq: moka::future::Cache::builder()
                .weigher(|hash: &String, query: &Arc<str>| {
                    u32::try_from(hash.len() + query.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(APQ_MAX_BYTES)
                .build(),
            safelist,
            shared: SharedTier::none(),
        }
    }

    /// Keep APQ registrations in `shared` too, so that every replica knows them.
    pub fn with_shared(mut self, shared: SharedTier) -> PersistedQueries {
        self.shared = shared;
        self
    }

    /// The text registered under `hash`: here first, then in the shared tier (kept here when
    /// found there and it hashes right).
    async fn registered(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(query) = self.apq.get(hash).await {
            return Some(query);
        }
        let bytes = self.shared.get(&self.shared_key(hash)).await?;
        // Only what hashes to the request's hash runs: a value in Redis is not trusted more
        // than a client's registration.
        let query = String::from_utf8(bytes)
            .ok()
            .filter(|query| sha256_hex(query) == hash)?;
        let query: Arc<str> = Arc::from(query);
        self.apq.insert(hash.to_owned(), query.clone()).await;
        Some(query)
    }

    /// Store `query` under `hash` here and in the shared tier.
    async fn register(&self, hash: String, query: &str) {
        self.shared
            .set_px(&self.shared_key(&hash), query.as_bytes(), APQ_SHARED_TTL)
            .await;
        self.apq.insert(hash, Arc::from(query)).await;
    }

    fn shared_key(&self, hash: &str) -> String {
        self.shared.key(&["apq", hash])
    }

    /// Fill `request.query` from the persisted-query extension and apply the safelist.
    /// `max_bytes` bounds what may be registered.
    pub async fn resolve(
        &self,
        request: &mut async_graphql::Request,
        caller: &Caller,
        max_bytes: usize,
    ) -> Result<(), ServerError> {
        // Admins may run anything: they need GraphiQL and ad-hoc queries on a safelisted
        // deployment.
        let safelist = self.safelist.as_ref().filter(|_| !caller.has(Scope::Admin));
        let Some(extension) = request.extensions.get("persistedQuery") else {
            return match safelist {
                Some(list) if !list.has_body(&request.query) => Err(not_in_list()),
                _ => Ok(()),
            };
        };
        let hash = requested_hash(extension)?;
        if request.query.is_empty() {
            let listed = self.safelist.as_ref().and_then(|list| list.by_hash(&hash));
            let stored = match listed {
                Some(body) => Some(body),
                // A safelisted caller may run only listed bodies, and every listed body is
                // found by its hash above: the APQ store cannot add one.
                None if safelist.is_some() => None,
                None => self.registered(&hash).await,
            };
            return match (stored, safelist) {
                (Some(body), Some(list)) if !list.has_body(&body) => Err(not_in_list()),
                (Some(body), _) => {
                    request.query = body.to_string();
                    Ok(())
                }
                (None, Some(_)) => Err(not_in_list()),
                (None, None) => Err(coded("PersistedQueryNotFound", PERSISTED_QUERY_NOT_FOUND)),
            };
        }
        if sha256_hex(&request.query) != hash {
            return Err(coded(
                "extensions.persistedQuery.sha256Hash is not the SHA-256 of `query` \
                 (lower-case hex of the UTF-8 text); fix the hash or send the query alone",
                code::BAD_USER_INPUT,
            ));
        }
        if let Some(list) = safelist {
            if !list.has_body(&request.query) {
                return Err(not_in_list());
            }
        }
        if request.query.len() <= max_bytes {
            self.register(hash, &request.query).await;
        }
        Ok(())
    }
}

/// `sha256Hash` of a `persistedQuery` extension, lower-cased, after checking the version.
fn requested_hash(extension: &Value) -> Result<String, ServerError> {
    let bad = |what: &str| {
        coded(
            &format!(
                "extensions.persistedQuery {what}; expected {{\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}}"
            ),
            code::BAD_USER_INPUT,
        )
    };
    let Value::Object(fields) = extension else {
        return Err(bad("must be an object"));
    };
    match fields.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        _ => return Err(bad("has an unsupported `version`")),
    }
    match fields.get("sha256Hash") {
        // Safelist ids need not be hashes (Apollo manifests allow any id), so any short
        // identifier is looked up; only a hash sent with a body must be its SHA-256.
        Some(Value::String(hash))
            if !hash.is_empty()
                && hash.len() <= 128
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(hash.to_ascii_lowercase())
        }
        _ => Err(bad("needs `sha256Hash`, 64 hex digits (or a safelist id)")),
    }
}

fn not_in_list() -> ServerError {
    coded(
        "this deployment runs only safelisted operations, and this one is not listed; \
         send a listed operation (by its id or exact text) or ask for it to be added",
        PERSISTED_QUERY_NOT_IN_LIST,
    )
}

fn coded(message: &str, value: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", value);
    error
}

/// Lower-case hex SHA-256 of `text`, as APQ defines the hash.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The operations a safelist allows.
#[derive(Debug, Default)]
pub struct Safelist {
    /// Listed id (and the SHA-256 of every body) → body.
    by_hash: HashMap<String, Arc<str>>,
    bodies: HashSet<Arc<str>>,
}

impl Safelist {
    /// Read and check the file named by `[limits] safelist`.
    pub fn load(path: &Path) -> Result<Safelist, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            path: "limits.safelist".into(),
            problem: format!("{}: {problem}", path.display()),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
        Safelist::parse(&text).map_err(invalid)
    }

    /// Parse a safelist: Apollo's persisted-query manifest
    /// (`{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id",
    /// "body", ...}]}`), an object of id → body, or an array of bodies. Every body must be a
    /// valid GraphQL document.
    pub fn parse(text: &str) -> Result<Safelist, String> {
        let json: Json = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let entries: Vec<(Option<String>, String)> = match json {
            Json::Object(map) if map.contains_key("format") => manifest(&map)?,
            Json::Object(map) => map
                .into_iter()
                .map(|(id, body)| match body {
                    Json::String(body) => Ok((Some(id), body)),
                    _ => Err(format!("entry {id:?} must be a string (the query text)")),
                })
                .collect::<Result<_, _>>()?,
            Json::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, body)| match body {
                    Json::String(body) => Ok((None, body)),
                    _ => Err(format!("entry [{i}] must be a string (the query text)")),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(
                    "expected an Apollo persisted-query manifest, an object of id → query, \
                     or an array of queries"
                        .into(),
                )
            }
        };
        if entries.is_empty() {
            return Err(
                "lists no operations, so nothing could run; list some or remove the key".into(),
            );
        }
        let mut list = Safelist::default();
        for (index, (id, body)) in entries.into_iter().enumerate() {
            let name = id.clone().unwrap_or_else(|| format!("[{index}]"));
            async_graphql::parser::parse_query(&body)
                .map_err(|e| format!("operation {name:?} is not valid GraphQL: {e}"))?;
            let body: Arc<str> = Arc::from(body);
            list.by_hash.insert(sha256_hex(&body), body.clone());
            if let Some(id) = id {
                list.by_hash.insert(id.to_ascii_lowercase(), body.clone());
            }
            list.bodies.insert(body);
        }
        Ok(list)
    }

    fn by_hash(&self, hash: &str) -> Option<Arc<str>> {
        self.by_hash.get(hash).cloned()
    }

    fn has_body(&self, body: &str) -> bool {
        self.bodies.contains(body)
    }

    /// How many distinct operations are listed.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }
}

fn manifest(map: &serde_json::Map<String, Json>) -> Result<Vec<(Option<String>, String)>, String> {
    if map.get("format").and_then(Json::as_str) != Some("apollo-persisted-query-manifest") {
        return Err("`format` must be \"apollo-persisted-query-manifest\"".into());
    }
    if map.get("version").and_then(Json::as_u64) != Some(1) {
        return Err("`version` must be 1".into());
    }
    let Some(operations) = map.get("operations").and_then(Json::as_array) else {
        return Err("`operations` must be an array".into());
    };
    operations
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let id = op.get("id").and_then(Json::as_str);
            let body = op.get("body").and_then(Json::as_str);
            match (id, body) {
                (Some(id), Some(body)) => Ok((Some(id.to_owned()), body.to_owned())),
                _ => Err(format!("operations[{i}] needs string `id` and `body`")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "{ workspaces { id } }";

    #[test]
    fn the_hash_is_lower_case_hex_sha256() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_three_safelist_shapes_parse() {
        let manifest = serde_json::json!({
            "format": "apollo-persisted-query-manifest", "version": 1,
            "operations": [{"id": "abc", "name": "W", "type": "query", "body": Q}]
        });
        let list = Safelist::parse(&manifest.to_string()).expect("manifest");
        assert!(list.has_body(Q));
        assert_eq!(list.by_hash("abc").as_deref(), Some(Q));
        assert_eq!(list.by_hash(&sha256_hex(Q)).as_deref(), Some(Q));
        let object = Safelist::parse(&serde_json::json!({"x1": Q}).to_string()).expect("object");
        assert_eq!(object.by_hash("x1").as_deref(), Some(Q));
        let array =
            Safelist::parse(&serde_json::json!([Q, "{ __typename }"]).to_string()).expect("array");
        assert_eq!(array.len(), 2);
        assert!(!array.has_body("{ workspaces { name } }"));
    }

    #[test]
    fn bad_safelists_say_what_is_wrong() {
        for (text, expected) in [
            ("nope", "not valid JSON"),
            ("[]", "lists no operations"),
            ("[1]", "entry [0] must be a string"),
            (r#"["{ broken"]"#, "is not valid GraphQL"),
            (
                r#"{"format": "other", "version": 1, "operations": []}"#,
                "`format` must be",
            ),
            (
                r#"{"format": "apollo-persisted-query-manifest", "version": 2, "operations": []}"#,
                "`version` must be 1",
            ),
            (
                r#"{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id": "a"}]}"#,
                "operations[0] needs",
            ),
            ("42", "expected an Apollo"),
        ] {
            let error = Safelist::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    fn request(query: &str, hash: Option<&str>) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(query);
        if let Some(hash) = hash {
            request.extensions.insert(
                "persistedQuery".into(),
                Value::from_json(serde_json::json!({"version": 1, "sha256Hash": hash}))
                    .expect("value"),
            );
        }
        request
    }

    fn code_of(error: &ServerError) -> String {
        error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn apq_misses_then_registers_then_hits() {
        let store = PersistedQueries::new(None);
        let caller = Caller::open();
        let hash = sha256_hex(Q);
        let miss = store
            .resolve(&mut request("", Some(&hash)), &caller, 1000)
            .await;
        assert_eq!(
            code_of(&miss.expect_err("miss")),
            "\"PERSISTED_QUERY_NOT_FOUND\""
        );
        let wrong = store
            .resolve(
                &mut request(Q, Some(&sha256_hex("{ other }"))),
                &caller,
                1000,
            )
            .await;
        assert_eq!(
            code_of(&wrong.expect_err("wrong hash")),
            "\"BAD_USER_INPUT\""
        );
        store
            .resolve(&mut request(Q, Some(&hash)), &caller, 1000)
            .await
            .expect("registers");
        let mut hit = request("", Some(&hash.to_ascii_uppercase()));
        store.resolve(&mut hit, &caller, 1000).await.expect("hit");
        assert_eq!(hit.query, Q);
    }

    #[tokio::test]
    async fn the_safelist_admits_listed_operations_and_admins_only() {
        let list = Safelist::parse(&serde_json::json!({"op1": Q}).to_string()).expect("list");
        let store = PersistedQueries::new(Some(list));
        let reader = Caller::nobody();
        store
            .resolve(&mut request(Q, None), &reader, 1000)
            .await
            .expect("listed body");
        let mut by_id = request("", Some(&"0".repeat(64)));
        let refused = store.resolve(&mut by_id, &reader, 1000).await;
        assert_eq!(
            code_of(&refused.expect_err("unknown id")),
            "\"PERSISTED_QUERY_NOT_IN_LIST\""
        );
        let mut by_hash = request("", Some(&sha256_hex(Q)));
        store
            .resolve(&mut by_hash, &reader, 1000)
            .await
            .expect("listed hash");
        assert_eq!(by_hash.query, Q);
        let other = store
            .resolve(&mut request("{ __typename }", None), &reader, 1000)
            .await;
        assert_eq!(
            code_of(&other.expect_err("unlisted")),
            "\"PERSISTED_QUERY_NOT_IN_LIST\""
        );
        store
            .resolve(&mut request("{ __typename }", None), &Caller::open(), 1000)
            .await
            .expect("admins may run anything");
    }
}
