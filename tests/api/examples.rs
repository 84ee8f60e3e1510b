//! The example operations of `schema/examples` (issue 4): each costs exactly the upstream calls
//! its header documents on a cold server, and none warm; and a window that overlaps a cached
//! one fetches only the chunks that are missing.

pub mod example_file;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, assert_only_codes, spawn_app, TestApp};
use example_file::{today, ExampleFile, Step, PROVIDERS};

/// POST an example with `x-chatstats-trace: 1`; returns the JSON body.
async fn run(app: &TestApp, example: &ExampleFile, variables: &Value) -> Value {
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("x-chatstats-trace", "1")
        .json(&json!({ "query": example.document, "variables": variables }))
        .send()
        .await
        .expect("server answers");
    assert!(
        response.status().is_success(),
        "{}: HTTP {}",
        example.name,
        response.status()
    );
    response.json().await.expect("JSON body")
}

/// The sandbox's call log as calls per provider (every provider present, 0 when not called).
async fn calls_per_provider(app: &TestApp) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = PROVIDERS.iter().map(|p| (p.to_string(), 0)).collect();
    for call in app.calls().await {
        *counts.entry(call.provider).or_default() += 1;
    }
    counts
}

/// Cold on a fresh server: exactly the documented calls; warm: the same data and no call.
async fn costs_its_documented_calls_cold_and_none_warm(name: &str) {
    let example = ExampleFile::load(name).expect("the example file parses");
    let app = spawn_app().await;
    let calls = example.calls.clone();
    costs_calls_cold_and_none_warm(&app, &example, &calls).await;
}

/// Cold on `app` (a fresh server): exactly `calls` per provider; warm: the same data and no
/// call.
async fn costs_calls_cold_and_none_warm(
    app: &TestApp,
    example: &ExampleFile,
    calls: &BTreeMap<String, u64>,
) {
    let name = example.name.as_str();
    let variables = example.variables_at(today());

    let cold = run(app, example, &variables).await;
    if example.errors.is_empty() {
        assert_no_errors(&cold);
    } else {
        let allowed: Vec<&str> = example.errors.iter().map(String::as_str).collect();
        assert_only_codes(&cold, &allowed);
    }
    assert!(
        cold["data"]["workspace"].is_object(),
        "{name}: no workspace in {cold}"
    );
    let counts = calls_per_provider(app).await;
    assert_eq!(
        &counts,
        calls,
        "{name}: cold calls per provider (the `# calls:` line); log: {:?}",
        app.calls().await
    );

    let warm = run(app, example, &variables).await;
    assert_eq!(warm["data"], cold["data"], "{name}: warm answers the same");
    assert_eq!(
        calls_per_provider(app).await,
        counts,
        "{name}: a warm run makes no upstream call"
    );
    assert_eq!(
        warm["extensions"]["upstream"]["upstreamCalls"],
        json!(0),
        "{name}: the trace agrees"
    );
}

#[tokio::test]
async fn the_overview_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("overview").await;
}

#[tokio::test]
async fn the_operator_leaderboard_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("operator_leaderboard").await;
}

#[tokio::test]
async fn the_channel_drilldown_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("channel_drilldown").await;
}

#[tokio::test]
async fn the_bot_report_example_costs_its_documented_calls_cold_and_none_warm() {
    costs_its_documented_calls_cold_and_none_warm("bot_report").await;
}

/// The dashboard's window follows the clock, so its minimum follows the calendar (a month
/// boundary doubles message2give's calls): cold, it costs exactly the minimum the providers'
/// grids give for today's window, every provider including Xenioo (the window lies within its
/// 30 days); warm, nothing. On a day whose window lies in one month and one block of every
/// grid, that minimum is the header's.
#[tokio::test]
async fn the_dashboard_example_costs_its_windows_minimum_cold_and_none_warm() {
    let example = ExampleFile::load("dashboard").expect("the example file parses");
    let day_offset = |name: &str| {
        example
            .variables
            .iter()
            .find(|(variable, _)| variable == name)
            .map(|(_, days)| *days)
            .expect("the `# variables:` line names `from` and `to`")
    };
    let step = Step {
        from: day_offset("from"),
        to: day_offset("to"),
        zone: None,
    };
    let app = spawn_app().await;
    let zone = app.query(r#"{ workspace(id: "acme") { timeZone } }"#).await["data"]["workspace"]
        ["timeZone"]
        .as_str()
        .expect("the workspace's zone")
        .to_string();
    // The grids' blocks, and Chat-Tonic's one call over exactly the window for the series
    // only that call's whole-window row gives exactly (active users, NPS, CSAT, service level).
    // `now` is the moment the window is asked on that day: today's is now, another day's is
    // its noon (the Chat-Tonic month a call may read ahead to is the one of `now`).
    let minimum_on = |day: DateTime<Utc>, now: DateTime<Utc>| {
        let mut counts = session_minimum(std::slice::from_ref(&step), day, now, &zone);
        *counts.entry("chat_tonic".to_string()).or_default() += 1;
        counts
    };
    let minimum = minimum_on(today(), Utc::now());
    assert_eq!(
        minimum["xenioo"], 1,
        "the window lies within Xenioo's history"
    );
    // The cheapest day of a year is one whose window lies in one month and one block.
    let cheapest_day = (0..366)
        .map(|offset| {
            let day = today() + chrono::Duration::days(offset);
            minimum_on(day, day + chrono::Duration::hours(12))
        })
        .min_by_key(|counts| counts.values().sum::<u64>())
        .expect("366 days");
    assert_eq!(
        cheapest_day, example.minimum,
        "the header's minimum is that of a day in one month and one block of every grid"
    );
    costs_calls_cold_and_none_warm(&app, &example, &minimum).await;
}

/// The fewest upstream calls the explorer session's steps allow when run one request after
/// another on one server (the arithmetic in the file's header): each step fetches only the
/// blocks no earlier step fetched, with the fewest legal calls for them. Read from the
/// providers' own grids, so it follows the calendar the test runs on.
///
/// `now` is when the session runs (after `today`, which the steps count from): it decides
/// which Chat-Tonic months a call reads ahead and whether the Xenioo snapshot covers a step.
fn session_minimum(
    steps: &[Step],
    today: DateTime<Utc>,
    now: DateTime<Utc>,
    workspace_zone: &str,
) -> BTreeMap<String, u64> {
    use chatstats::fetch::plan_reading_ahead;
    use chatstats::providers::{chat_tonic, connectycube, help_scout, message2give};
    use chatstats::series::{Granularity, Window, Zone};
    let mut help_scout_blocks = HashSet::new();
    let mut connectycube_blocks = HashSet::new();
    let mut chat_tonic_blocks = HashSet::new();
    let mut message2give_months = HashSet::new();
    let mut counts: BTreeMap<String, u64> = PROVIDERS.iter().map(|p| (p.to_string(), 0)).collect();
    let mut add = |provider: &str, calls: usize| {
        *counts.entry(provider.to_string()).or_default() += calls as u64;
    };
    let mut xenioo = false;
    for step in steps {
        let zone = Zone::parse(step.zone.as_deref().unwrap_or(workspace_zone)).expect("a zone");
        let window = Window::new(
            today + chrono::Duration::days(step.from),
            today + chrono::Duration::days(step.to),
            Granularity::Day,
            zone,
        )
        .expect("a valid window");
        let missing = |needed: Vec<i64>, seen: &mut HashSet<i64>| -> Vec<i64> {
            needed.into_iter().filter(|b| seen.insert(*b)).collect()
        };
        let hs = missing(
            help_scout::blocks_for(&window).expect("day windows use the day view"),
            &mut help_scout_blocks,
        );
        add("help_scout", help_scout::plan_blocks(&hs).len());
        // Two endpoints (dialogs created, messages sent) on the same grid.
        let cc = missing(connectycube::blocks_for(&window), &mut connectycube_blocks);
        add("connectycube", 2 * connectycube::plan_blocks(&cc).len());
        // The missing months, each call stretched over the missing months read ahead.
        let group = chat_tonic::plan_dashboard(&window).group;
        let asked = chat_tonic::blocks_for(&window);
        let unseen = |blocks: &[i64]| -> Vec<i64> {
            blocks
                .iter()
                .copied()
                .filter(|b| !chat_tonic_blocks.contains(&(group, *b)))
                .collect()
        };
        let (ct, ahead) = (unseen(&asked), unseen(&chat_tonic::read_ahead(&asked, now)));
        let calls = plan_reading_ahead(&|run| chat_tonic::plan_blocks(run, group), &ct, &ahead);
        chat_tonic_blocks.extend(calls.iter().flatten().map(|b| (group, *b)));
        add("chat_tonic", calls.len());
        // Three month calls: stats/chat web and sms, usage/sms/console.
        let months = message2give::plan(&window)
            .into_iter()
            .filter(|m| message2give_months.insert(*m))
            .count();
        add("message2give", 3 * months);
        xenioo |= window.to() > now - chrono::Duration::days(30);
    }
    add("xenioo", usize::from(xenioo));
    counts
}

/// The explorer session (`schema/examples/explorer_session.graphql`) with its steps counted from
/// UTC midnight `day`, replayed on one server: it costs exactly the minimum of the header's
/// arithmetic per provider (for a session run now), and every step answers exactly what a fresh
/// server (empty cache) answers for that window alone. Returns the calls per provider.
///
/// The Xenioo snapshot covers the last 30 days up to the current hour, so a session server and
/// a fresh one answer a window that reaches 30 days back alike only within one hour: when the
/// hour turns during a replay that differs, the replay is made once more (it takes minutes).
async fn replay_session(day: DateTime<Utc>) -> BTreeMap<String, u64> {
    let hour = || Utc::now().timestamp() / 3600;
    let started = hour();
    match replay_session_once(day).await {
        Ok(counts) => counts,
        Err(difference) if hour() != started => {
            eprintln!("the hour turned during the replay ({difference}); once more");
            replay_session_once(day)
                .await
                .unwrap_or_else(|difference| panic!("{difference}"))
        }
        Err(difference) => panic!("{difference}"),
    }
}

/// One replay of [`replay_session`]: the calls per provider, or the first step whose answer
/// differs from a fresh server's.
async fn replay_session_once(day: DateTime<Utc>) -> Result<BTreeMap<String, u64>, String> {
    let example = ExampleFile::load("explorer_session").expect("the session file parses");
    let steps = example.steps().expect("the steps parse");
    assert_eq!(steps.len(), 20, "a 20-window session");
    let allowed: Vec<&str> = example.errors.iter().map(String::as_str).collect();
    let app = spawn_app().await;
    let zone = app.query(r#"{ workspace(id: "acme") { timeZone } }"#).await["data"]["workspace"]
        ["timeZone"]
        .as_str()
        .expect("the workspace's zone")
        .to_string();
    let mut answers = Vec::new();
    for step in &steps {
        let body = run(&app, &example, &step.variables_at(day)).await;
        assert_only_codes(&body, &allowed);
        assert!(body["data"]["workspace"].is_object(), "{step:?}: {body}");
        answers.push(body);
    }
    let counts = calls_per_provider(&app).await;
    let minimum = session_minimum(&steps, day, Utc::now(), &zone);
    eprintln!("explorer session from {day}: calls per provider {counts:?}, minimum {minimum:?}");
    assert_eq!(
        counts, minimum,
        "{day}: calls per provider of the whole session"
    );
    for (step, answer) in steps.iter().zip(&answers) {
        let fresh_app = spawn_app().await;
        let fresh = run(&fresh_app, &example, &step.variables_at(day)).await;
        if answer["data"] != fresh["data"] {
            return Err(format!(
                "{day} {step:?}: the session's answer differs from a fresh server's:\n{}\n{}",
                answer["data"], fresh["data"]
            ));
        }
    }
    Ok(counts)
}

#[tokio::test]
async fn the_explorer_session_costs_its_documented_minimum_and_answers_as_fresh_servers_do() {
    let counts = replay_session(today()).await;
    assert_eq!(
        counts["xenioo"], 1,
        "one Xenioo snapshot serves the session"
    );
    let total: u64 = counts.values().sum();
    assert!(total <= 30, "the session costs {total} calls: {counts:?}");
}

/// The session counted from days whose calendar falls differently: both zones touching three
/// months (the most message2give months), Sydney's two DST changes inside the windows (months
/// fetched at different offsets), and a year end. The server's clock is the real one, so those
/// days' blocks are history, nothing is read ahead and Xenioo's part is out of retention: the
/// replay checks that the arithmetic of `session_minimum` (which the year's range is computed
/// with) is what the server does, and that the answers are exact.
#[tokio::test]
async fn the_explorer_session_counted_from_other_days_costs_its_minimum_and_answers_exactly() {
    let days = ["2026-03-02", "2026-05-03", "2026-10-06", "2026-01-01"];
    for day in days {
        let day: DateTime<Utc> = format!("{day}T00:00:00Z").parse().expect("a date");
        let counts = replay_session(day).await;
        assert_eq!(counts["xenioo"], 0, "{day}: older than any snapshot");
    }
}

/// The session's minimum over a whole year of days it could run on (the grids and months fall
/// differently each day): the header's range.
#[test]
fn the_explorer_sessions_minimum_stays_within_the_documented_range_on_every_day_of_a_year() {
    let example = ExampleFile::load("explorer_session").expect("the session file parses");
    let steps = example.steps().expect("the steps parse");
    let (low, high) = example
        .document
        .lines()
        .find_map(|line| line.trim().strip_prefix("# session-range:"))
        .and_then(|range| range.trim().split_once(".."))
        .and_then(|(low, high)| Some((low.parse::<u64>().ok()?, high.parse::<u64>().ok()?)))
        .expect("a `# session-range: LOW..HIGH` line");
    let mut totals = Vec::new();
    for offset in 0..366 {
        let day = today() + chrono::Duration::days(offset);
        // The session as run on that day, at the time of day it runs now.
        let now = day + (Utc::now() - today());
        let minimum = session_minimum(&steps, day, now, "Australia/Sydney");
        totals.push(minimum.values().sum::<u64>());
    }
    let (min, max) = (
        totals.iter().copied().min().expect("366 days"),
        totals.iter().copied().max().expect("366 days"),
    );
    eprintln!("explorer session minimum over a year: {min}..={max}");
    assert_eq!((min, max), (low, high), "the header's `session-range`");
    assert!(max <= 30, "at most 30 calls on every day, not {max}");
}

#[test]
fn every_example_is_one_named_operation_whose_calls_are_the_documented_minimum() {
    let examples = ExampleFile::all().expect("every example file parses");
    let names: Vec<&str> = examples.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bot_report",
            "channel_drilldown",
            "dashboard",
            "operator_leaderboard",
            "overview"
        ]
    );
    for example in &examples {
        let operations = example
            .document
            .lines()
            .filter(|line| line.starts_with("query "))
            .count();
        assert_eq!(operations, 1, "{}: one named query", example.name);
        assert_eq!(
            example.calls, example.minimum,
            "{}: the gateway makes more calls than the upstream APIs need",
            example.name
        );
    }
}

#[tokio::test]
async fn a_window_overlapping_cached_months_fetches_only_the_missing_month() {
    let app = spawn_app().await;
    // message2give SMS usage: one call per local month (Sydney, UTC+11 January to March 2025).
    let query = |from: &str, to: &str| {
        format!(
            r#"{{ workspace(id: "acme") {{ messages {{
                sent(window: {{from: "{from}", to: "{to}"}}, provider: MESSAGE2GIVE) {{ total }} }} }} }}"#
        )
    };
    let months = |calls: &[crate::helpers::Call]| -> Vec<String> {
        let mut months: Vec<String> = calls
            .iter()
            .map(|c| c.param("month").unwrap_or("<none>").to_string())
            .collect();
        months.sort();
        months
    };

    // January and February.
    let first = app
        .query(&query(
            "2025-01-01T00:00:00+11:00",
            "2025-03-01T00:00:00+11:00",
        ))
        .await;
    assert_no_errors(&first);
    let after_first = app.calls().await;
    assert_eq!(
        months(&after_first),
        ["2024-12-31T13:00:00.000Z", "2025-01-31T13:00:00.000Z"]
    );

    // February (cached) and March (missing).
    let second = app
        .query(&query(
            "2025-02-01T00:00:00+11:00",
            "2025-04-01T00:00:00+11:00",
        ))
        .await;
    assert_no_errors(&second);
    let after_second = app.calls().await;
    assert_eq!(
        months(&after_second[after_first.len()..]),
        ["2025-02-28T13:00:00.000Z"],
        "only March is fetched"
    );
    assert!(
        after_second
            .iter()
            .all(|c| c.provider == "message2give" && c.path.ends_with("/usage/sms/console")),
        "{after_second:?}"
    );
}

/// `points` builds its list itself for plain selections (`graphql::time_series::Points`): with
/// aliases, a repeated field and `__typename`, the answer is the one async-graphql's own
/// resolution gives for the same selection written through fragments (which always takes it).
#[tokio::test]
async fn plain_point_selections_answer_as_the_executors_own_resolution_does() {
    let app = spawn_app().await;
    let query = |selection: &str, fragments: &str| {
        format!(
            r#"{{ workspace(id: "acme") {{ dialogs {{
                created(window: {{from: "2025-03-01T00:00:00+11:00", to: "2025-03-15T00:00:00+11:00"}}) {{
                    points(fill: NULL) {{ {selection} }} }} }} }} }} {fragments}"#
        )
    };
    let plain = app
        .query(&query("__typename when: at value at v: value value", ""))
        .await;
    let through_fragments = app
        .query(&query(
            "... on Point { __typename when: at } ...P",
            "fragment P on Point { value at v: value value }",
        ))
        .await;
    assert_no_errors(&plain);
    assert_no_errors(&through_fragments);
    let points = plain["data"]["workspace"]["dialogs"]["created"]["points"]
        .as_array()
        .expect("a list of points");
    assert_eq!(points.len(), 14, "{plain}");
    assert!(
        points.iter().any(|p| p["value"].is_number()),
        "some day has dialogs: {plain}"
    );
    assert_eq!(
        serde_json::to_string(&plain["data"]).expect("JSON"),
        serde_json::to_string(&through_fragments["data"]).expect("JSON"),
        "same values, same key order"
    );
}
