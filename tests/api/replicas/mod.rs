//! Several replicas of the real binary on one sandbox, sharing one real `redis-server`
//! (issue 12). This module holds the support: [`RedisServer`] (a redis-server on a free
//! loopback port, persistence off, killed on drop, restartable on its port) and [`Replicas`]
//! (N `chatstats serve` processes with one config that points at the sandbox and at Redis).

pub mod acceptance;
mod apq;
mod rate_limit;
mod redis_down;
mod sharing;
mod startup;
mod subscriptions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chatstats::sandbox::{self, Sandbox, SandboxOptions};

use crate::helpers::Binary;

/// A password no test sends by mistake: scanned for in Redis after the runs.
pub const REDIS_PASSWORD: &str = "redis-pw-Q7vX2";

/// A `redis-server` child process on `127.0.0.1:port`, killed (SIGKILL) on drop.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Start one on a free port, without a password.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(None).await
    }

    /// Start one on a free port that requires `password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_with(Some(password.to_owned())).await
    }

    async fn start_with(password: Option<String>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            password,
            child: None,
        };
        server.restart().await;
        server
    }

    /// `redis://[:password@]127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Kill the server (SIGKILL: as a crash, no goodbye to clients) and wait for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server (again) on the same port, empty, and wait until it answers PING.
    pub async fn restart(&mut self) {
        self.kill();
        let mut command = Command::new(redis_server_path());
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        self.child = Some(
            command
                .spawn()
                .expect("redis-server starts (apt install redis-server)"),
        );
        // Wait by connecting: the first PING answered is the server ready.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let attempt = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Ok(_))
        )
    }

    /// A connection for the test's own inspection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("redis-server answers")
    }

    /// Every key and its value (strings only; the tier writes nothing else).
    pub async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let mut connection = self.connection().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut connection)
            .await
            .expect("KEYS");
        let mut all = Vec::with_capacity(keys.len());
        for key in keys {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap_or(None);
            all.push((key, value.unwrap_or_default()));
        }
        all
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_server_path() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// A loopback port free a moment ago (the kernel picks it; we release it for the child).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A config file written for one test and removed on drop.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn write(text: &str) -> ConfigFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "chatstats-replicas-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("the temp dir is writable");
        ConfigFile { path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `[shared]` for `redis` with the given timeout (ms): the tests on 2 busy cores allow more
/// than the 150 ms default, so that load is not mistaken for Redis being down.
pub fn shared_section(redis_url: &str, fetch_timeout_ms: u64, required: bool) -> String {
    format!(
        "\n[shared]\nredis_url = \"{redis_url}\"\nnamespace = \"cs-test\"\n\
         fetch_timeout_ms = {fetch_timeout_ms}\nrequired_to_start = {required}\n"
    )
}

/// Upstream calls may take a minute: the sandbox runs in this (debug) test process, and a
/// cold Xenioo snapshot (47,000 entries) takes seconds to build on 2 busy cores, while these
/// tests count calls and errors, not latency.
const SLOW_MACHINE_LIMITS: &str = "\n[limits]\nupstream_timeout_ms = 60000\n";

/// N replicas of the real binary on one sandbox (in this test process) and one config.
pub struct Replicas {
    pub sandbox: Sandbox,
    pub servers: Vec<Binary>,
    pub config: ConfigFile,
    pub http: reqwest::Client,
}

impl Replicas {
    /// `n` replicas on a fresh sandbox (with `options`); the config is the sandbox's with
    /// `extra` appended (e.g. [`shared_section`]).
    pub async fn start(n: usize, options: SandboxOptions, extra: &str) -> Replicas {
        let sandbox = sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), options)
            .await
            .expect("sandbox starts");
        // One `[limits]` table: the slow machine's timeout joins the one `extra` may have.
        let extra = if extra.contains("\n[limits]\n") {
            extra.replacen("\n[limits]\n", SLOW_MACHINE_LIMITS, 1)
        } else {
            format!("{extra}{SLOW_MACHINE_LIMITS}")
        };
        let text = format!("{}{extra}", sandbox.config_toml());
        Replicas::start_on(n, sandbox, &text)
    }

    /// `n` replicas with the config `text` (which points at `sandbox`).
    pub fn start_on(n: usize, sandbox: Sandbox, text: &str) -> Replicas {
        let config = ConfigFile::write(text);
        let servers = (0..n)
            .map(|_| Binary::start(Some(&config.path), &[]))
            .collect();
        Replicas {
            sandbox,
            servers,
            config,
            http: reqwest::Client::new(),
        }
    }

    /// POST `query` to replica `i`; the HTTP status and JSON body.
    pub async fn query(&self, i: usize, query: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(self.servers[i].url("/graphql"))
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await
            .expect("replica answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// The sandbox's upstream calls so far, `(provider, path?query, status)`.
    pub fn calls(&self) -> Vec<(String, String, u16)> {
        self.sandbox
            .state()
            .calls()
            .into_iter()
            .map(|call| {
                let target = format!("{}?{}", call.path, call.query);
                (call.provider.to_string(), target, call.status)
            })
            .collect()
    }

    /// Inject an upstream fault (`POST /_sim/faults`).
    pub async fn fault(&self, fault: serde_json::Value) {
        crate::helpers::inject_fault(&self.http, &self.sandbox, fault).await;
    }

    /// `/metrics` of replica `i`.
    pub async fn metrics(&self, i: usize) -> String {
        self.http
            .get(self.servers[i].url("/metrics"))
            .send()
            .await
            .expect("replica answers")
            .text()
            .await
            .expect("metrics text")
    }
}

/// Every credential in the config `text`: provider tokens, keys and secrets, client API keys
/// and the password of `[shared] redis_url`.
pub fn configured_secrets(text: &str) -> Vec<String> {
    use chatstats::config::{Config, HelpScoutAuth};
    let config = Config::from_toml_str(text, &|_| None).expect("a valid config");
    let mut secrets: Vec<String> = config
        .clients
        .iter()
        .map(|c| c.key.expose().to_owned())
        .collect();
    for w in &config.workspaces {
        if let Some(m) = &w.message2give {
            secrets.push(m.token.expose().to_owned());
            secrets.extend(m.mfa.iter().map(|s| s.expose().to_owned()));
        }
        if let Some(c) = &w.chat_tonic {
            secrets.push(c.access_token.expose().to_owned());
        }
        if let Some(x) = &w.xenioo {
            secrets.push(x.account_token.expose().to_owned());
        }
        if let Some(c) = &w.connectycube {
            secrets.push(c.admin_api_key.expose().to_owned());
        }
        if let Some(h) = &w.help_scout {
            match &h.auth {
                HelpScoutAuth::AccessToken(t) => secrets.push(t.expose().to_owned()),
                HelpScoutAuth::ClientCredentials { client_secret, .. } => {
                    secrets.push(client_secret.expose().to_owned())
                }
            }
        }
    }
    if let Some(shared) = &config.shared {
        if let Some(password) = url::Url::parse(shared.redis_url.expose())
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
        {
            secrets.push(password);
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

/// Asserts that no key and no value in `redis` contains any of `secrets`, and that there is
/// something to scan.
pub async fn assert_no_secret_in(redis: &RedisServer, secrets: &[String]) {
    assert!(!secrets.is_empty(), "secrets to look for");
    let all = redis.dump().await;
    assert!(!all.is_empty(), "the replicas stored something");
    for (key, value) in &all {
        let value = String::from_utf8_lossy(value);
        for secret in secrets {
            assert!(!key.contains(secret.as_str()), "a secret in key {key}");
            assert!(
                !value.contains(secret.as_str()),
                "a secret in the value of {key}"
            );
        }
    }
}
