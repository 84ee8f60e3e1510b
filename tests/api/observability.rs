//! Observability: the request log line, `/metrics`, graceful shutdown and secrets.
