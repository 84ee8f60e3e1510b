//! What recording a request's metrics costs (issue 15, item 5): the calls the request path
//! makes for every GraphQL request and every upstream call, timed one thread alone and two
//! threads at once (the contention a mutex per family shows).
//!
//! Run it with `cargo bench --bench metrics` (a release build; no server, no network). It
//! prints nanoseconds per call for each kind of call and for a whole request's worth of them.
//! Every loop is bounded in count.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatstats::process_metrics::Metrics;
use chatstats::providers::Provider;

/// Calls in each timed run.
const CALLS: u32 = 1_000_000;

/// One request's worth: its operation label and request counter/histogram, one upstream call
/// (counter and histogram) and two chunk-cache lookups.
fn one_request(metrics: &Metrics) {
    let label = metrics.operation_label(black_box(Some("Dashboard")));
    metrics.graphql_request(&label, 200, Duration::from_millis(3), &[]);
    metrics.upstream_request(
        Provider::HelpScout,
        "volume-by-channel",
        "ok",
        Duration::from_millis(20),
    );
    metrics.cache_lookup("miss");
    metrics.cache_lookup("hit");
}

fn time(what: &str, threads: usize, call: impl Fn(&Metrics) + Send + Sync + 'static) {
    let metrics = Arc::new(Metrics::new());
    let call = Arc::new(call);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let metrics = metrics.clone();
            let call = call.clone();
            std::thread::spawn(move || {
                for _ in 0..CALLS {
                    call(&metrics);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a bench thread does not panic");
    }
    let elapsed = started.elapsed();
    let per_call = elapsed.as_nanos() as f64 / f64::from(CALLS);
    println!("{what:<28} threads={threads}  {per_call:>8.1} ns per call (wall, each thread)");
}

fn main() {
    for threads in [1, 2] {
        time("operation_label", threads, |m| {
            black_box(m.operation_label(black_box(Some("Dashboard"))));
        });
        time("graphql_request", threads, |m| {
            m.graphql_request("Dashboard", 200, Duration::from_millis(3), &[])
        });
        time("upstream_request", threads, |m| {
            m.upstream_request(
                Provider::HelpScout,
                "volume-by-channel",
                "ok",
                Duration::from_millis(20),
            )
        });
        time("cache_lookup", threads, |m| m.cache_lookup("hit"));
        time("one request (5 calls)", threads, one_request);
    }
}
