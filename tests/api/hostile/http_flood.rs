//! Ten thousand generated hostile HTTP requests against the real binary (rate limit off):
//! no 5xx, no dropped connection, no panic, every error in a JSON answer coded, the server
//! answering afterwards and its RSS bounded by its caches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::generate::{http_case, HttpCase};
use super::server::{cpu_secs, seed_documents, Target, ANSWER_BYTES, CACHE_BYTES};
use super::tally::Tally;

pub const SEED: u64 = 0x0c4a_7574_a75e_ed12;
const REQUESTS: usize = 10_000;
const WORKERS: usize = 8;
/// A bound on the whole run, so a server that slows to a crawl fails the test instead of
/// holding the suite. The run takes about 50 CPU-seconds (server and client, debug build):
/// 30 s on 2 idle cores, a few times that when other builds share them.
const BUDGET: Duration = Duration::from_secs(300);

/// What came back for one request.
enum Outcome {
    Http {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// A raw request the server answered by closing without a response.
    Closed,
    Failed(String),
}

/// Send `case`. A request that finds its pooled connection closed under it (hyper closes a
/// connection after refusing a body it did not read, and the client may already have taken
/// it for the next request: the request then fails reading the answer, or writing its body
/// with a broken pipe) is sent once more on a fresh connection, and counted.
async fn send(
    target: &Target,
    fresh: &reqwest::Client,
    case: &HttpCase,
    tally: &mut Tally,
) -> Outcome {
    if let Some(raw) = &case.raw {
        return send_raw(target, raw).await;
    }
    match send_with(&target.http, target, case).await {
        Outcome::Failed(why)
            if why.contains("IncompleteMessage")
                || why.contains("ConnectionReset")
                || why.contains("BrokenPipe") =>
        {
            tally.status("retried on a fresh connection");
            send_with(fresh, target, case).await
        }
        outcome => outcome,
    }
}

async fn send_with(http: &reqwest::Client, target: &Target, case: &HttpCase) -> Outcome {
    let mut request = http.request(
        case.method.clone(),
        format!("http://{}{}", target.binary.addr, case.target),
    );
    for (name, value) in &case.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            return Outcome::Failed(format!("the generator made a bad header {name}"));
        };
        request = request.header(name, value);
    }
    if !case.body.is_empty() {
        request = request.body(case.body.clone());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            match response.bytes().await {
                Ok(body) => Outcome::Http {
                    status,
                    content_type,
                    body: body.to_vec(),
                },
                Err(e) => Outcome::Failed(format!("{status}, then the body broke: {e}")),
            }
        }
        // A request body the server refused to read (413) may end the connection while the
        // client still writes; hyper then reports the write error, not the status.
        Err(_) if case.body.len() > 1_000_000 => Outcome::Closed,
        Err(e) => Outcome::Failed(format!("no response: {e:?}")),
    }
}

/// Write raw bytes and read the status line (or a close).
async fn send_raw(target: &Target, raw: &[u8]) -> Outcome {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target.binary.addr).await?;
        stream.write_all(raw).await?;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await?;
            answer.extend_from_slice(&buffer[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok::<_, std::io::Error>(answer);
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Err(_) => Outcome::Failed("a raw request got no answer in 10 s".into()),
        // A reset after a refusal is a close too.
        Ok(Err(_)) => Outcome::Closed,
        Ok(Ok(answer)) if answer.is_empty() => Outcome::Closed,
        Ok(Ok(answer)) => {
            let head = String::from_utf8_lossy(&answer).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Outcome::Http {
                status,
                content_type: String::new(),
                body: Vec::new(),
            }
        }
    }
}

/// The rules, for one request: never 5xx; a 200 is JSON whose every error is coded; a 4xx
/// JSON body's errors are coded too. 4xx answers that are not JSON are counted by status.
fn judge(tally: &mut Tally, index: usize, case: &HttpCase, outcome: Outcome) {
    tally.kind(case.kind);
    let (status, content_type, body) = match outcome {
        Outcome::Http {
            status,
            content_type,
            body,
        } => (status, content_type, body),
        Outcome::Closed => {
            tally.status("closed, no response");
            if case.raw.is_none() && case.body.len() <= 1_000_000 {
                tally.fail(format!("closed: {}", case.describe(index)));
            }
            return;
        }
        Outcome::Failed(why) => {
            tally.status("transport error");
            tally.fail(format!("{why}: {}", case.describe(index)));
            return;
        }
    };
    tally.status(status);
    if !(100..500).contains(&status) {
        tally.fail(format!(
            "status {status}: {} -> {}",
            case.describe(index),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
        return;
    }
    if case.raw.is_some() || case.method == reqwest::Method::HEAD {
        return;
    }
    let json: Option<Value> = content_type
        .contains("json")
        .then(|| serde_json::from_slice(&body).ok())
        .flatten();
    let Some(json) = json else {
        if status == 200 {
            tally.fail(format!("200 without JSON: {}", case.describe(index)));
        } else {
            tally.code_with_example(&format!("<{status}, not JSON>"), || {
                case.describe(index).chars().take(150).collect()
            });
        }
        return;
    };
    let errors = json["errors"].as_array().cloned().unwrap_or_default();
    if status == 200 && errors.is_empty() && !json["data"].is_object() {
        tally.fail(format!(
            "200 with neither data nor errors: {}",
            case.describe(index)
        ));
    }
    if status != 200 && errors.is_empty() {
        tally.code_with_example(&format!("<{status}, no errors>"), || {
            case.describe(index).chars().take(150).collect()
        });
    }
    for error in &errors {
        match error["extensions"]["code"].as_str() {
            Some(code) => {
                tally.code(code);
                // Hostile input is the client's fault: the server must not blame itself.
                if code == "INTERNAL_SERVER_ERROR" {
                    tally.fail(format!("{error}: {}", case.describe(index)));
                }
            }
            None => {
                tally.code_with_example(&format!("<{status}, uncoded>"), || {
                    case.describe(index).chars().take(150).collect()
                });
                tally.fail(format!("uncoded error {error}: {}", case.describe(index)));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_generated_requests_get_no_5xx_only_coded_errors_and_bounded_rss() {
    let target = Arc::new(Target::start("http").await);
    let documents = Arc::new(seed_documents());
    target.warm(&documents).await;
    let rss_before = target.rss_kib();
    let cpu_before = target.cpu_secs();
    let own_cpu_before = cpu_secs("self");
    let started = Instant::now();
    let deadline = started + BUDGET;
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers = (0..WORKERS).map(|_| {
        let (target, documents, next, tally) = (
            target.clone(),
            documents.clone(),
            next.clone(),
            tally.clone(),
        );
        tokio::spawn(async move {
            let fresh = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client");
            let mut mine = Tally::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= REQUESTS || Instant::now() >= deadline {
                    break;
                }
                let case = http_case(SEED, index, &documents);
                let sent = Instant::now();
                let outcome = send(&target, &fresh, &case, &mut mine).await;
                mine.spent(case.kind, sent.elapsed().as_millis() as u64);
                judge(&mut mine, index, &case, outcome);
            }
            tally.lock().expect("tally").merge(mine);
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.expect("a worker ran to its end");
    }
    let elapsed = started.elapsed();
    target.assert_answers().await;
    let rss_after = target.rss_kib();
    let panics = target.panics();
    let tally = std::mem::take(&mut *tally.lock().expect("tally"));
    println!(
        "{}",
        tally.table(
            &format!("hostile HTTP: seed {SEED:#x}, {WORKERS} concurrent, real binary, rate limit off"),
            &[
                format!("sent {} requests in {:.1} s", tally.total(), elapsed.as_secs_f64()),
                format!("server RSS {rss_before} KiB after warm-up, {rss_after} KiB after the flood"),
                format!("server panics: {}", panics.len()),
                format!(
                    "CPU during the flood: server {:.1} s, test process (client and sandbox) {:.1} s",
                    target.cpu_secs() - cpu_before,
                    cpu_secs("self") - own_cpu_before
                ),
            ],
        )
    );
    assert!(panics.is_empty(), "the server panicked: {panics:?}");
    tally.assert_clean();
    assert!(
        tally.total() >= REQUESTS as u64,
        "only {} of {REQUESTS} requests within {BUDGET:?}",
        tally.total()
    );
    // The caches may fill; beyond them, a margin for the allocator and the largest bodies
    // in flight (8 at up to 4 MB, each held a few times while parsed).
    let bound_kib = (CACHE_BYTES + ANSWER_BYTES) / 1024 + 160 * 1024;
    assert!(
        rss_after.saturating_sub(rss_before) < bound_kib,
        "RSS grew from {rss_before} to {rss_after} KiB (bound {bound_kib} KiB of growth)"
    );
}
