//! `[shared] required_to_start`: a replica that cannot use Redis either refuses to start
//! (naming `shared.redis_url`, never the password) or warns and runs on its own.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use chatstats::sandbox::{self, SandboxOptions};

use super::{shared_section, ConfigFile, RedisServer, Replicas, REDIS_PASSWORD};
use crate::helpers::{eventually, sample};

const WRONG_PASSWORD: &str = "wrong-pw-K3jd9";

/// Runs `chatstats serve` on `config` and waits (at most 30 s) for it to exit by itself:
/// its exit status and stderr.
async fn exit_of(config: &ConfigFile) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatstats"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config.path)
        .env_remove("CHATSTATS_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the chatstats binary starts");
    let status = eventually(Duration::from_secs(30), "the binary to exit", || {
        let status = child.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("stderr is text");
    (status, stderr)
}

#[tokio::test]
async fn required_to_start_with_a_wrong_password_exits_non_zero_naming_the_key() {
    let redis = RedisServer::start_with_password(REDIS_PASSWORD).await;
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let url = format!("redis://:{WRONG_PASSWORD}@127.0.0.1:{}/0", redis.port);
    let config = ConfigFile::write(&format!(
        "{}{}",
        sandbox.config_toml(),
        shared_section(&url, 500, true)
    ));
    let (status, stderr) = exit_of(&config).await;
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(stderr.contains("shared.redis_url"), "{stderr}");
    assert!(stderr.contains("password"), "the reason is given: {stderr}");
    assert!(!stderr.contains(WRONG_PASSWORD), "{stderr}");
    assert!(!stderr.contains(REDIS_PASSWORD), "{stderr}");
}

#[tokio::test]
async fn required_to_start_with_redis_unreachable_exits_non_zero() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    redis.kill();
    let sandbox = sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
    )
    .await
    .expect("sandbox starts");
    let config = ConfigFile::write(&format!(
        "{}{}",
        sandbox.config_toml(),
        shared_section(&url, 500, true)
    ));
    let (status, stderr) = exit_of(&config).await;
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(stderr.contains("shared.redis_url"), "{stderr}");
}

#[tokio::test]
async fn without_required_to_start_a_wrong_password_warns_and_the_replica_serves_alone() {
    let redis = RedisServer::start_with_password(REDIS_PASSWORD).await;
    let url = format!("redis://:{WRONG_PASSWORD}@127.0.0.1:{}/0", redis.port);
    let replicas = Replicas::start(
        1,
        SandboxOptions::default(),
        &shared_section(&url, 500, false),
    )
    .await;
    let (status, body) = replicas
        .query(0, r#"{ workspace(id: "acme") { id } }"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["workspace"]["id"], "acme", "{body}");
    let metrics = replicas.metrics(0).await;
    assert_eq!(sample(&metrics, "chatstats_shared_tier_up", ""), Some(0.0));
    let stderr = replicas.servers[0].stderr_lines().join("\n");
    assert!(
        stderr.contains("WARN") && stderr.contains("shared.redis_url"),
        "{stderr}"
    );
    assert!(!stderr.contains(WRONG_PASSWORD), "{stderr}");
    // Xenioo fails closed: no lease, no call; UPSTREAM_THROTTLED with retryAfter.
    let (status, body) = replicas
        .query(
            0,
            &format!(
                r#"{{ workspace(id: "acme") {{ users {{ returning({}) {{ total }} }} }} }}"#,
                crate::helpers::recent_window()
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "UPSTREAM_THROTTLED", "{body}");
    assert!(
        error["extensions"]["retryAfter"].as_u64().is_some(),
        "{body}"
    );
    assert!(
        replicas.calls().iter().all(|(p, _, _)| p != "xenioo"),
        "{:?}",
        replicas.calls()
    );
}

#[tokio::test]
async fn with_the_right_password_the_tier_is_up() {
    let redis = RedisServer::start_with_password(REDIS_PASSWORD).await;
    let replicas = Replicas::start(
        1,
        SandboxOptions::default(),
        &shared_section(&redis.url(), 500, true),
    )
    .await;
    let metrics = replicas.metrics(0).await;
    assert_eq!(sample(&metrics, "chatstats_shared_tier_up", ""), Some(1.0));
    let stderr = replicas.servers[0].stderr_lines().join("\n");
    assert!(!stderr.contains(REDIS_PASSWORD), "{stderr}");
}
