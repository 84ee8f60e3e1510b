//! The server under attack: the real `chatstats` binary (so its RSS is its own and a panic
//! shows on its stderr, apart from the test process), against an in-process sandbox, with
//! the request rate limit off so every request reaches the parser and the guard.

use std::time::Duration;

use chatstats::sandbox::{self, Sandbox, SandboxOptions};
use serde_json::{json, Value};

use super::generate::seed_variables;
use crate::helpers::Binary;

/// The chunk cache and the answer cache are bounded by config; RSS may grow by them and by
/// what the allocator keeps, never by what the requests sent.
pub const CACHE_BYTES: u64 = 32 * 1024 * 1024;
pub const ANSWER_BYTES: u64 = 4 * 1024 * 1024;

pub struct Target {
    pub binary: Binary,
    /// Kept alive: the binary's upstreams.
    _sandbox: Sandbox,
    _dir: TempDir,
    pub http: reqwest::Client,
}

/// A directory removed when the test ends, passed or not.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Target {
    /// `name` keeps the config files of parallel tests apart.
    pub async fn start(name: &str) -> Target {
        let sandbox = sandbox::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            SandboxOptions::default(),
        )
        .await
        .expect("sandbox starts");
        // "Off": more tokens a minute than any bounded test can spend.
        let config = format!(
            "{}\n[limits]\nrequests_per_minute = 4000000000\n\n[cache]\nmax_bytes = {CACHE_BYTES}\nanswer_max_bytes = {ANSWER_BYTES}\n",
            sandbox.config_toml()
        );
        let dir =
            std::env::temp_dir().join(format!("chatstats-hostile-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let dir = TempDir(dir);
        let path = dir.0.join("config.toml");
        std::fs::write(&path, config).expect("config written");
        // Warnings only: ten thousand request lines at info would cost the 2 cores.
        let binary = Binary::start(Some(&path), &[("RUST_LOG", "warn")]);
        Target {
            binary,
            _sandbox: sandbox,
            _dir: dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.binary.url(path)
    }

    /// VmRSS of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.binary.child.id()))
            .expect("the server process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .expect("a VmRSS line")
    }

    /// CPU time the server process has used (user + system), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(&self.binary.child.id().to_string())
    }

    /// Lines of the server's stderr that report a panic.
    pub fn panics(&self) -> Vec<String> {
        self.binary
            .stderr_lines()
            .into_iter()
            .filter(|line| line.contains("panicked"))
            .collect()
    }

    /// A plain query still gets its plain answer.
    pub async fn assert_answers(&self) {
        let body: Value = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .expect("the server still answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(body, json!({"data": {"__typename": "Query"}}));
    }

    /// Run each seed document once, so the sandbox has built its data and the chunk cache
    /// holds what the valid mutations ask again: RSS measured after this is the baseline.
    pub async fn warm(&self, documents: &[String]) {
        for document in documents {
            let status = self
                .http
                .post(self.url("/graphql"))
                .json(&json!({ "query": document, "variables": seed_variables() }))
                .send()
                .await
                .expect("the server answers")
                .status();
            assert_eq!(status, 200, "warm-up: {document}");
        }
    }
}

/// The valid documents every mutation starts from: `schema/examples/*.graphql` and the
/// README's example query (between its `example-query` markers).
pub fn seed_documents() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(root.join("schema/examples"))
        .expect("schema/examples")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "graphql"))
        .collect();
    paths.sort();
    // Without their comment headers: flips in a comment would leave the document valid.
    let mut documents: Vec<String> = paths
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .expect("an example")
                .lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert!(documents.len() >= 4, "the examples moved");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let example = readme
        .split("<!-- example-query")
        .nth(1)
        .and_then(|rest| rest.split("```graphql").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README example query");
    documents.push(example.trim().to_owned());
    documents
}

/// CPU time (user + system) of process `pid` (`self` for this one), in seconds.
pub fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which may hold spaces, end with `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime (fields 14 and 15 of the line); 100 ticks a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}
