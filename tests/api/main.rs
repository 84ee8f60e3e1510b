//! The integration tests: one binary, one module per feature. Each test starts its own
//! sandbox and server on free loopback ports (see `helpers::spawn_app`).

mod answers;
mod auth;
mod chat_tonic;
mod connectycube;
mod docs;
mod economy;
mod ecosystem;
mod errors;
mod examples;
mod fanout;
mod federation;
mod help_scout;
mod helpers;
mod hostile;
mod http_surface;
mod limits;
mod matrix;
mod message2give;
mod observability;
mod plans;
mod reload;
mod replicas;
mod resilience;
mod schema;
mod subscriptions;
mod tracing_export;
mod xenioo;
