//! # chatstats
//!
//! One GraphQL API over the statistics of five chat and support platforms (message2give,
//! Chat-Tonic, Xenioo, ConnectyCube, Help Scout). Every statistic is a time series the client
//! slices (window, granularity, time zone, filters); the server plans and fetches the upstream
//! calls.
//!
//! ## A tour, in the order a request flows
//!
//! - [`http`]: axum routes. `/graphql` (POST and GET, GraphQL over HTTP), GraphiQL at `/`,
//!   `/healthz`, `/readyz`, `/metrics`. Entry point: [`http::router`]. [`graphiql`] serves the
//!   IDE and its scripts from the binary, so it works offline; it opens on an example query
//!   that answers ([`graphiql::Page`]).
//! - [`ws`]: a `GET /graphql` with `Upgrade: websocket` is graphql-transport-ws: the key from
//!   the headers or `connection_init`, per-client subscription slots, close 1001 at shutdown.
//!   Entry point: [`ws::upgrade`]. The one subscription, [`graphql::subscription`], re-resolves
//!   a workspace whenever a chunk it used refreshes, through a renewed request scope.
//! - [`auth`]: API keys → [`auth::Caller`] (workspaces, scopes), checked in constant time by
//!   [`auth::Clients::authenticate`] for every `/graphql` request; [`rate_limit`]: the
//!   per-client token buckets. CORS is a tower-http layer on the router.
//! - [`graphql::guard`]: before a request is executed, [`persisted`] queries (APQ and the
//!   safelist) and the [`limits`] (size, depth, aliases, root fields, estimated cost).
//! - [`answers`]: a read-only request asked again while every chunk behind its answer is
//!   fresh gets the kept answer without being resolved; anything else is executed.
//! - [`graphql`]: the schema, one file per type. Series fields build a
//!   [`catalogue::SeriesSpec`] and hand it to [`graphql::time_series::series`]. Entry point:
//!   [`graphql::build_schema`]; the SDL comes from [`graphql::sdl`]. A series of plain fields
//!   is answered as one value, its `points` as JSON text on HTTP ([`graphql::raw_json`]).
//! - [`catalogue`]: what every series is made of (SPEC §2.1) and [`catalogue::compute`], which
//!   fetches each provider's part concurrently, puts it on the window's buckets and adds them.
//! - [`fetch`]: the doors to the upstreams, traced for `extensions.upstream`:
//!   [`fetch::Fetcher::blocks`] reads history blocks on each provider's calendar grid through
//!   a per-request async-graphql DataLoader that plans the fewest calls for a tick's missing
//!   blocks; [`fetch::Fetcher::get`] makes per-range requests at most once per query. Both sit
//!   on [`cache`]: the shared byte-bounded chunk cache (single flight, live/history TTLs, stale
//!   serving), keyed by upstream account (provider + SHA-256 fingerprint), not by workspace.
//! - [`providers`]: one client per upstream (`help_scout`, `connectycube`, ...) with its wire
//!   types, mapping answers into [`series::Sample`]s, each a [`providers::Source`] (the series
//!   it feeds, its finest granularity) beside its block grid and batch plan; [`providers::upstream`] holds the shared
//!   HTTP call, error mapping and health, and applies [`resilience`]: timeouts, retries with
//!   backoff and a budget, the circuit breaker per provider account; and the cap on calls in
//!   flight towards each provider, shared by all its accounts.
//! - [`series`]: the time-series engine, plain Rust with no I/O: zones, calendar buckets
//!   (DST-correct), windows, re-bucketing with the SUM/AVERAGE/DISTINCT/LAST rules, fill modes.
//! - [`workspace`]: the runtime of each configured workspace (its zone and clients);
//!   [`workspace::Workspace::sources`] lists its configured providers as [`providers::Source`]s.
//! - [`shared`]: the Redis tier replicas share (`[shared]`), reached through
//!   [`cache::ChunkCache::shared`]; without it every operation is a no-op.
//! - [`config`]: typed settings from TOML with `${ENV}` interpolation, validated with key paths.
//! - [`app`]: [`app::App::build`] wires config → clients → schema → router and binds the
//!   port; tests start the server through the same function.
//! - [`sandbox`]: faithful simulated upstreams on loopback (call log, fault injection), used by
//!   `chatstats serve` without a config, by the tests and by the benchmarks.
//! - [`error`]: the stable error codes and the one conversion to GraphQL errors.
//! - [`telemetry`]: logging, the one log line per GraphQL request
//!   ([`telemetry::observe_graphql`]) and the shutdown signal; [`process_metrics`]: the metrics
//!   behind `/metrics`, one registry per [`app::App`].

/// The allocator of every binary built on this crate (the server, the tests, the benches).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod answers;
pub mod app;
pub mod auth;
pub mod cache;
pub mod catalogue;
pub mod config;
pub mod error;
pub mod fetch;
pub mod graphiql;
pub mod graphql;
pub mod http;
pub mod limits;
pub mod persisted;
pub mod process_metrics;
pub mod providers;
pub mod rate_limit;
pub mod resilience;
pub mod sandbox;
pub mod series;
pub mod shared;
pub mod telemetry;
pub mod workspace;
pub mod ws;
