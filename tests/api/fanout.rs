//! A fan-out over many accounts (issue 11): one query over 1,000 workspaces, each on its own
//! generated sandbox account, keeps at most `[limits] upstream_concurrency` calls in flight
//! towards each provider — measured from the sandbox's call log, which records when each call
//! started and ended — and still answers every workspace right.
//!
//! Xenioo is left out of the query: each of its calls is a 30-day hourly snapshot of 18
//! types, so a thousand of them measure JSON volume rather than the cap (its calls pass
//! through the same capped door, `providers::upstream`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use chatstats::config::Config;
use chatstats::sandbox::accounts;
use chatstats::sandbox::calls::most_in_flight;
use chatstats::sandbox::chat_tonic::dashboard_row;
use chatstats::sandbox::connectycube::messages_sent;
use chatstats::sandbox::help_scout::{conversations, CHANNELS};
use chatstats::sandbox::message2give::survey_day;
use chatstats::sandbox::{self, SandboxOptions};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, rfc3339, sample, spawn_app_on, TestApp};

const ACCOUNTS: usize = 1_000;
/// `[limits] upstream_concurrency` in this test.
const CAP: usize = 16;
/// ConnectyCube's override, so the test also sees a per-provider cap at work.
const CONNECTYCUBE_CAP: usize = 6;
/// Injected at every upstream, so that each provider's calls last long enough to overlap.
const LATENCY_MS: u64 = 10;

const FAN_OUT: &str = r#"query ($w: Window!) {
  workspaces {
    id
    messages {
      cc: sent(window: $w, provider: CONNECTYCUBE) { total }
      ct: sent(window: $w, provider: CHAT_TONIC) { total }
      m2g: sent(window: $w, provider: MESSAGE2GIVE) { total }
    }
    dialogs { hs: created(window: $w, provider: HELP_SCOUT) { total } }
  }
}"#;

/// A sandbox serving `accounts` generated accounts and a server on its generated config.
async fn spawn_fan_out(accounts: usize, edit: impl FnOnce(&mut Config)) -> TestApp {
    let sandbox = sandbox::start_with_accounts(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxOptions::default(),
        accounts,
    )
    .await
    .expect("sandbox starts");
    let config_toml = sandbox.generated_config_toml();
    let http = reqwest::Client::builder()
        .timeout(StdDuration::from_secs(120))
        .build()
        .expect("client");
    spawn_app_on(sandbox, &config_toml, edit, http).await
}

/// Seven whole UTC days ending two days ago: closed history for every provider.
fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    let today = Utc::now()
        .duration_trunc(Duration::days(1))
        .expect("truncates to the day");
    (today - Duration::days(9), today - Duration::days(2))
}

/// What the sandbox's truth says each alias of [`FAN_OUT`] must total for `account`.
fn expected(account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let found = accounts::find(account).expect("a generated account");
    let days = (0..)
        .map(|d| from + Duration::days(d))
        .take_while(|d| *d < to);
    let sms: u64 = days
        .flat_map(|day| {
            found
                .message2give
                .surveys
                .iter()
                .map(move |survey| survey_day(account, survey, day).0)
        })
        .sum();
    let help_scout: u64 = CHANNELS
        .iter()
        .map(|channel| conversations(account, channel, &[], &[], &[], from, to))
        .sum();
    json!({
        "cc": messages_sent(account, from, to) as f64,
        "ct": dashboard_row(account, from, to).messages_sent,
        "m2g": sms as f64,
        "hs": help_scout as f64,
    })
}

#[tokio::test]
async fn a_fan_out_over_a_thousand_accounts_keeps_each_provider_within_its_cap_and_answers_all() {
    let app = spawn_fan_out(ACCOUNTS, |config| {
        config.limits.upstream_concurrency = CAP;
        config.limits.upstream_concurrency_per_provider.connectycube = Some(CONNECTYCUBE_CAP);
    })
    .await;
    app.fault(json!({"provider": "*", "latency_ms": LATENCY_MS}))
        .await;
    let (from, to) = window();
    let body = app
        .query_with(
            FAN_OUT,
            json!({"w": {"from": rfc3339(from), "to": rfc3339(to), "timeZone": "UTC"}}),
        )
        .await;
    assert_no_errors(&body);
    let workspaces = body["data"]["workspaces"].as_array().expect("workspaces");
    assert_eq!(workspaces.len(), ACCOUNTS);
    for workspace in workspaces {
        let id = workspace["id"].as_str().expect("id");
        let want = expected(id, from, to);
        let got = json!({
            "cc": workspace["messages"]["cc"]["total"],
            "ct": workspace["messages"]["ct"]["total"],
            "m2g": workspace["messages"]["m2g"]["total"],
            "hs": workspace["dialogs"]["hs"]["total"],
        });
        assert_eq!(got, want, "workspace {id}");
    }

    let calls = app.sandbox.state().calls();
    assert!(calls.iter().all(|c| c.status == 200), "every call answered");
    let metrics = app.metrics().await;
    for (provider, cap) in [
        ("connectycube", CONNECTYCUBE_CAP),
        ("chat_tonic", CAP),
        ("message2give", CAP),
        ("help_scout", CAP),
    ] {
        let made = calls.iter().filter(|c| c.provider == provider).count();
        assert!(
            made >= ACCOUNTS,
            "{provider}: {made} calls for {ACCOUNTS} accounts"
        );
        let queued = sample(
            &metrics,
            "chatstats_upstream_queue_seconds_count",
            &format!("provider=\"{provider}\""),
        );
        assert_eq!(
            queued,
            Some(made as f64),
            "{provider}: each call's wait is observed"
        );
        let most = most_in_flight(&calls, provider);
        assert!(
            most <= cap,
            "{provider}: {most} calls in flight at once, over its cap of {cap}"
        );
        assert!(
            most >= 2,
            "{provider}: the calls never overlapped (at most {most} at once)"
        );
    }
    let codenames: BTreeSet<&str> = calls
        .iter()
        .filter(|c| c.provider == "chat_tonic")
        .filter_map(|c| c.path.split('/').nth(3))
        .collect();
    assert_eq!(
        codenames.len(),
        ACCOUNTS,
        "one Chat-Tonic tenant per account"
    );
}

/// `chatstats sandbox --accounts 3 --write-config FILE`, the real binary: the file is written
/// before the address is printed, and a server can use it as it is.
#[tokio::test]
async fn the_sandbox_command_writes_a_config_for_its_generated_accounts_before_it_listens() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let path =
        std::env::temp_dir().join(format!("chatstats-fanout-cli-{}.toml", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatstats"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--accounts", "3"])
        .arg("--write-config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the chatstats binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = send.send(line);
        }
    });
    let line = lines
        .recv_timeout(StdDuration::from_secs(60))
        .expect("the sandbox prints its address");
    let base = line
        .strip_prefix("sandbox listening on ")
        .expect("the address line")
        .to_string();
    let written = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    let config = Config::from_toml_str(&written.expect("the config was written"), &|_| None)
        .expect("the written config is valid");
    let ids: Vec<&str> = config.workspaces.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["gen-00001", "gen-00002", "gen-00003"]);
    let cc = config.workspaces[2]
        .connectycube
        .as_ref()
        .expect("connectycube");
    assert_eq!(cc.base_url.as_str(), format!("{base}/connectycube"));
    // The sandbox serves the third account it wrote, and answers with that account's data.
    let (from, to) = window();
    let answer = reqwest::Client::new()
        .get(format!(
            "{base}/connectycube/admin/stats/messages/sent-total?start_date={}&end_date={}",
            from.timestamp(),
            to.timestamp()
        ))
        .header("CB-Administration-API-Key", cc.admin_api_key.expose())
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body, json!({"total": messages_sent("gen-00003", from, to)}));
}

#[test]
fn the_sandbox_command_refuses_more_generated_accounts_than_it_can_serve() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatstats"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--accounts", "10001"])
        .output()
        .expect("the chatstats binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--accounts") && stderr.contains("0..=10000"),
        "{stderr}"
    );
}
