//! The upstream economy (SPEC §4): each distinct upstream request at most once per query,
//! nothing the second time, one call for many concurrent identical queries, stale data when a
//! refresh fails, no sharing between accounts, and a cache bounded by bytes.

use serde_json::{json, Value};

use crate::helpers::{
    assert_no_errors, assert_only_codes, errors, sample, spawn_app, spawn_app_with, TestApp,
};

const OVERVIEW: &str = r#"{ workspace(id: "acme") {
    chat: channel(id: "help_scout:chat") { conversations(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    email: channel(id: "help_scout:email") { conversations(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    dialogs { created(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } }
    messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-15T00:00:00Z", timeZone: "UTC"}) { total } } } }"#;

async fn traced(app: &TestApp, query: &str) -> Value {
    app.http
        .post(app.url("/graphql"))
        .header("x-chatstats-trace", "1")
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn series_that_share_an_upstream_request_cost_one_call_and_nothing_warm() {
    let app = spawn_app().await;
    let cold = traced(&app, OVERVIEW).await;
    assert_only_codes(&cold, &["OUT_OF_RETENTION"]);
    // Help Scout: one report (two 30-day blocks: 02-11..03-13 and 03-13..04-12) serves chat,
    // email and dialogs.created; ConnectyCube: dialogs + messages (one 100-day block each);
    // message2give: web + sms sessions for dialogs, SMS usage for messages; Chat-Tonic: one
    // dashboard (the March block); Xenioo: nothing (the window is older than its 30 days).
    let calls = app.calls().await;
    let count = |provider: &str| calls.iter().filter(|c| c.provider == provider).count();
    assert_eq!(
        [
            count("help_scout"),
            count("connectycube"),
            count("message2give"),
            count("chat_tonic"),
            count("xenioo")
        ],
        [1, 2, 3, 1, 0],
        "{calls:?}"
    );
    assert_eq!(cold["extensions"]["upstream"]["upstreamCalls"], json!(7));
    let warm = traced(&app, OVERVIEW).await;
    assert_eq!(warm["data"], cold["data"]);
    assert_eq!(
        app.calls().await.len(),
        calls.len(),
        "warm costs no upstream call"
    );
    assert_eq!(warm["extensions"]["upstream"]["upstreamCalls"], json!(0));
    // One hit per block read: the Help Scout call was two blocks.
    assert_eq!(warm["extensions"]["upstream"]["cacheHits"], json!(8));
}

#[tokio::test]
async fn five_aliases_of_one_series_make_one_call() {
    let app = spawn_app().await;
    let field = r#"sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z"}, provider: CONNECTYCUBE) { total }"#;
    let aliases: String = (0..5).map(|i| format!("a{i}: {field} ")).collect();
    let body = app
        .query(&format!(
            r#"{{ workspace(id: "acme") {{ messages {{ {aliases} }} }} }}"#
        ))
        .await;
    assert_no_errors(&body);
    let totals: Vec<&Value> = (0..5)
        .map(|i| &body["data"]["workspace"]["messages"][format!("a{i}")]["total"])
        .collect();
    assert!(totals
        .iter()
        .all(|t| *t == totals[0] && t.as_f64().is_some()));
    assert_eq!(app.calls().await.len(), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_identical_cold_queries_cost_the_calls_of_one() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "*", "latency_ms": 200})).await;
    let queries = (0..100).map(|_| app.query(OVERVIEW));
    let bodies = futures::future::join_all(queries).await;
    for body in &bodies {
        assert_only_codes(body, &["OUT_OF_RETENTION"]);
        assert_eq!(body["data"], bodies[0]["data"]);
    }
    assert_eq!(
        app.calls().await.len(),
        7,
        "the calls of one query (see the test above)"
    );
}

#[tokio::test]
async fn a_failing_refresh_serves_the_older_entry_as_stale() {
    // Live TTL 1 s; a window that touches the present makes live chunks. No retries: the
    // test counts one failed refresh (retries have their own tests in `resilience`).
    let app = spawn_app_with(|config| {
        config.cache.live_ttl_secs = 1;
        config.limits.upstream_max_retries = 0;
    })
    .await;
    let now = chrono::Utc::now();
    let query = format!(
        r#"{{ workspace(id: "acme") {{ messages {{ sent(window: {{from: "{}", to: "{}", timeZone: "UTC"}}, provider: CONNECTYCUBE) {{ total stale }} }} }} }}"#,
        crate::helpers::rfc3339(now - chrono::Duration::days(3)),
        crate::helpers::rfc3339(now + chrono::Duration::days(1))
    );
    let fresh = app.query(&query).await;
    assert_no_errors(&fresh);
    assert_eq!(
        fresh["data"]["workspace"]["messages"]["sent"]["stale"],
        json!(false)
    );
    app.fault(json!({"provider": "connectycube", "status": 503}))
        .await;
    // Wait until the live entry is no longer fresh: the behaviour under test is expiry.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let stale = app.query(&query).await;
    assert!(stale.get("errors").is_none(), "{stale}");
    let series = &stale["data"]["workspace"]["messages"]["sent"];
    assert_eq!(series["stale"], json!(true));
    assert_eq!(
        series["total"],
        fresh["data"]["workspace"]["messages"]["sent"]["total"]
    );
    let warnings = stale["extensions"]["warnings"]
        .as_array()
        .expect("a warning in extensions");
    assert!(
        warnings[0].as_str().expect("text").contains("ConnectyCube"),
        "{warnings:?}"
    );
    assert_eq!(
        app.calls_to("connectycube").await.len(),
        2,
        "the refresh was attempted"
    );
}

#[tokio::test]
async fn two_workspaces_with_different_credentials_never_share_an_entry() {
    let app = spawn_app().await;
    let window = r#"window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z", timeZone: "UTC"}, provider: CONNECTYCUBE"#;
    let query = format!(
        r#"{{ acme: workspace(id: "acme") {{ messages {{ sent({window}) {{ total }} }} }}
            globex: workspace(id: "globex") {{ messages {{ sent({window}) {{ total }} }} }} }}"#
    );
    let body = app.query(&query).await;
    assert_no_errors(&body);
    let acme = body["data"]["acme"]["messages"]["sent"]["total"].as_f64();
    let globex = body["data"]["globex"]["messages"]["sent"]["total"].as_f64();
    assert_ne!(acme, globex);
    assert_eq!(
        acme,
        Some(chatstats::sandbox::connectycube::messages_sent(
            "acme",
            crate::helpers::utc(2025, 3, 1),
            crate::helpers::utc(2025, 3, 8)
        ) as f64)
    );
    assert_eq!(
        globex,
        Some(chatstats::sandbox::connectycube::messages_sent(
            "globex",
            crate::helpers::utc(2025, 3, 1),
            crate::helpers::utc(2025, 3, 8)
        ) as f64)
    );
    assert_eq!(
        app.calls_to("connectycube").await.len(),
        2,
        "same request, two accounts: two calls"
    );
}

#[tokio::test]
async fn a_query_that_fails_upstream_is_not_cached() {
    // No retries, so the injected failure reaches the query.
    let app = spawn_app_with(|config| config.limits.upstream_max_retries = 0).await;
    app.fault(json!({"provider": "connectycube", "status": 500, "times": 1}))
        .await;
    let query = r#"{ workspace(id: "acme") { messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z"}, provider: CONNECTYCUBE) { total sources } } } }"#;
    let failed = app.query(query).await;
    assert_eq!(errors(&failed)[0].0, "UPSTREAM_UNAVAILABLE");
    let ok = app.query(query).await;
    assert_no_errors(&ok);
    assert_eq!(
        ok["data"]["workspace"]["messages"]["sent"]["sources"],
        json!(["CONNECTYCUBE"])
    );
}

/// A warm series is one cache read per window whatever its number of parts: `messages.sent`
/// has five (ConnectyCube, Chat-Tonic, two of Xenioo's, message2give), and with `change` it is
/// computed for the window before too. Xenioo's out-of-retention error is kept with it.
#[tokio::test]
async fn a_warm_series_of_several_parts_is_one_cache_read_per_window() {
    // Kept answers off: the second query is resolved, not served its answer.
    let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let query = r#"{ workspace(id: "acme") { messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z"}) { total change sources } } } }"#;
    let hits = |metrics: String| {
        sample(&metrics, "chatstats_cache_lookups_total", "outcome=\"hit\"").unwrap_or(0.0)
    };
    let cold = app.query(query).await;
    assert_only_codes(&cold, &["OUT_OF_RETENTION"]);
    assert!(
        cold["data"]["workspace"]["messages"]["sent"]["sources"]
            .as_array()
            .is_some_and(|s| s.len() >= 3),
        "several parts contribute: {cold}"
    );
    let before = hits(app.metrics().await);
    let warm = app.query(query).await;
    assert_eq!(warm, cold, "the same series, with the same error");
    assert_eq!(
        hits(app.metrics().await),
        before + 2.0,
        "the window and the one before, each read whole"
    );
}

/// A series is kept whole (`catalogue::compute`) only when every failure in it would fail again
/// for the same window: one part's passing upstream failure is not served to the next query
/// with the other parts' kept values.
#[tokio::test]
async fn a_series_with_one_part_failed_upstream_is_not_kept_with_its_other_parts() {
    let app = spawn_app_with(|config| {
        config.limits.upstream_max_retries = 0;
        config.cache.answer_max_bytes = 0;
    })
    .await;
    app.fault(json!({"provider": "connectycube", "status": 500, "times": 1}))
        .await;
    let query = r#"{ workspace(id: "acme") { messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z"}) { total sources } } } }"#;
    let sources = |body: &Value| body["data"]["workspace"]["messages"]["sent"]["sources"].clone();
    let failed = app.query(query).await;
    assert!(
        errors(&failed)
            .iter()
            .any(|(code, provider, _)| code == "UPSTREAM_UNAVAILABLE"
                && provider.as_deref() == Some("CONNECTYCUBE")),
        "{failed}"
    );
    let without = sources(&failed);
    assert!(
        without
            .as_array()
            .is_some_and(|s| !s.is_empty() && !s.contains(&json!("CONNECTYCUBE"))),
        "the other parts answer: {failed}"
    );
    let ok = app.query(query).await;
    // Xenioo's 30 days do not reach March 2025: that error stays, and is the only one.
    assert_only_codes(&ok, &["OUT_OF_RETENTION"]);
    let with = sources(&ok);
    assert!(
        with.as_array()
            .is_some_and(|s| s.contains(&json!("CONNECTYCUBE"))
                && without.as_array().unwrap().iter().all(|p| s.contains(p))),
        "ConnectyCube contributes again, beside the others: {ok}"
    );
}

#[tokio::test]
async fn a_series_that_asks_only_for_its_total_uses_connectycubes_total_call() {
    use chatstats::sandbox::connectycube::{dialogs_created, messages_sent};
    let app = spawn_app().await;
    let (from, to) = (
        crate::helpers::utc(2024, 9, 1),
        crate::helpers::utc(2024, 9, 1) + chrono::Duration::days(250),
    );
    let query = format!(
        r#"{{ workspace(id: "acme") {{ messages {{ sent(window: {{from: "{}", to: "{}", timeZone: "UTC"}}, provider: CONNECTYCUBE) {{ total exact }} }} }} }}"#,
        crate::helpers::rfc3339(from),
        crate::helpers::rfc3339(to)
    );
    let body = app.query(&query).await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["workspace"]["messages"]["sent"]["total"].as_f64(),
        Some(messages_sent("acme", from, to) as f64)
    );
    let calls = app.calls_to("connectycube").await;
    assert_eq!(
        calls.len(),
        1,
        "one total call instead of three day pages: {calls:?}"
    );
    assert_eq!(calls[0].path, "/admin/stats/messages/sent-total");
    assert_eq!(
        calls[0].param("start_date"),
        Some(from.timestamp().to_string().as_str())
    );

    // A combined series asking only for its total over whole UTC days within one or two
    // 100-day blocks reads the per-day blocks instead (one call either way, and the block
    // serves every later window inside it), and adds them to the others' buckets.
    let body = app
        .query(r#"{ workspace(id: "acme") { dialogs { created(window: {from: "2025-04-01T00:00:00Z", to: "2025-04-04T00:00:00Z", timeZone: "UTC"}) { total sources } } } }"#)
        .await;
    assert_no_errors(&body);
    let (from, to) = (
        crate::helpers::utc(2025, 4, 1),
        crate::helpers::utc(2025, 4, 4),
    );
    let help_scout: u64 = ["chat", "email", "phone"]
        .iter()
        .map(|c| chatstats::sandbox::help_scout::conversations("acme", c, &[], &[], &[], from, to))
        .sum();
    let message2give: u64 = (0..3)
        .flat_map(|d| ["web", "sms"].map(move |chat| (d, chat)))
        .flat_map(|(d, chat)| {
            chatstats::sandbox::accounts::ACME
                .message2give
                .users
                .iter()
                .filter_map(move |u| {
                    chatstats::sandbox::message2give::user_day(
                        "acme",
                        chat,
                        None,
                        u,
                        from + chrono::Duration::days(d),
                    )
                })
        })
        .map(|d| d.sessions_count)
        .sum();
    let expected = dialogs_created("acme", &[], from, to) + help_scout + message2give;
    assert_eq!(
        body["data"]["workspace"]["dialogs"]["created"]["total"].as_f64(),
        Some(expected as f64)
    );
    let dialog_calls: Vec<String> = app
        .calls_to("connectycube")
        .await
        .iter()
        .filter(|c| c.path.starts_with("/admin/stats/dialogs/"))
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(dialog_calls, ["/admin/stats/dialogs/created-per-day"]);
}

#[tokio::test]
async fn a_series_and_its_previous_window_share_one_report_and_are_fetched_at_once() {
    use crate::helpers::utc;
    use chatstats::sandbox::help_scout::conversations;
    let app = spawn_app().await;
    // Each upstream call takes 300 ms: were `previous` fetched after the series, the trace
    // would show the previous report starting after the first one ended.
    app.fault(json!({"provider": "*", "latency_ms": 300})).await;
    let body = traced(
        &app,
        r#"{ workspace(id: "acme") { channel(id: "help_scout:email") {
            conversations(window: {from: "2025-03-10T00:00:00Z", to: "2025-03-17T00:00:00Z", timeZone: "UTC"}) {
                total change previous { total } } } } }"#,
    )
    .await;
    assert_no_errors(&body);
    let series = &body["data"]["workspace"]["channel"]["conversations"];
    let (week, before) = (
        conversations(
            "acme",
            "email",
            &[],
            &[],
            &[],
            utc(2025, 3, 10),
            utc(2025, 3, 17),
        ),
        conversations(
            "acme",
            "email",
            &[],
            &[],
            &[],
            utc(2025, 3, 3),
            utc(2025, 3, 10),
        ),
    );
    assert_eq!(series["total"].as_f64(), Some(week as f64));
    assert_eq!(series["previous"]["total"].as_f64(), Some(before as f64));
    assert_eq!(
        series["change"].as_f64(),
        Some((week as f64 - before as f64) / before as f64)
    );
    // One report over both weeks: the two 30-day blocks that cover them (02-11..04-12), one
    // legal day-view call.
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].param("start"), Some("2025-02-11T00:00:00Z"));
    assert_eq!(calls[0].param("end"), Some("2025-04-12T00:00:00Z"));
    assert_eq!(calls[0].param("viewBy"), Some("day"));

    // ConnectyCube likewise: one page for the series and its previous window.
    let body = app
        .query(r#"{ workspace(id: "acme") { messages { sent(window: {from: "2025-03-10T00:00:00Z", to: "2025-03-17T00:00:00Z", timeZone: "UTC"}, provider: CONNECTYCUBE) { change } } } }"#)
        .await;
    assert_no_errors(&body);
    assert!(body["data"]["workspace"]["messages"]["sent"]["change"]
        .as_f64()
        .is_some());
    assert_eq!(app.calls_to("connectycube").await.len(), 1);
}

#[tokio::test]
async fn a_series_and_its_previous_window_from_per_window_calls_are_fetched_concurrently() {
    let app = spawn_app().await;
    // Chat-Tonic's NPS needs one dashboard call per window (only a call over exactly that
    // range gives its exact total); both must be in flight together: the trace's start times
    // and latencies show whether they overlapped.
    app.fault(json!({"provider": "chat_tonic", "latency_ms": 400}))
        .await;
    let body = traced(
        &app,
        r#"{ workspace(id: "acme") { satisfaction { nps(window: {from: "2025-03-10T00:00:00Z", to: "2025-03-17T00:00:00Z", timeZone: "UTC"}) { change } } } }"#,
    )
    .await;
    assert_no_errors(&body);
    let calls = body["extensions"]["upstream"]["calls"]
        .as_array()
        .expect("trace calls");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let span = |call: &Value| {
        let start = call["startedMs"].as_f64().expect("startedMs");
        (
            start,
            start + call["latencyMs"].as_f64().expect("latencyMs"),
        )
    };
    let (a, b) = (span(&calls[0]), span(&calls[1]));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the two calls overlap in time: {calls:?}"
    );
}

/// Issue 11: a 14-day history window slid by one day reads the Help Scout and ConnectyCube
/// blocks the first window fetched (30-day and 100-day blocks on fixed grids), so it costs no
/// call to either, and answers the sandbox's truth for the new window.
#[tokio::test]
async fn a_fourteen_day_history_window_slid_by_one_day_costs_no_help_scout_or_connectycube_call() {
    use crate::helpers::utc;
    use chatstats::sandbox::connectycube::{dialogs_created, messages_sent};
    use chatstats::sandbox::help_scout::conversations;
    let app = spawn_app().await;
    let query = |from: &str, to: &str| {
        let window = format!(r#"window: {{from: "{from}", to: "{to}", timeZone: "UTC"}}"#);
        format!(
            r#"{{ workspace(id: "acme") {{
                chat: channel(id: "help_scout:chat") {{ conversations({window}) {{ total points {{ value }} }} }}
                dialogs {{ created({window}, provider: CONNECTYCUBE) {{ total points {{ value }} }} }}
                messages {{ sent({window}, provider: CONNECTYCUBE) {{ total }} }} }} }}"#
        )
    };
    let first = app
        .query(&query("2025-03-01T00:00:00Z", "2025-03-15T00:00:00Z"))
        .await;
    assert_no_errors(&first);
    let before = app.calls().await;
    assert!(
        before.iter().any(|c| c.provider == "help_scout")
            && before.iter().any(|c| c.provider == "connectycube"),
        "the first window fetched from both: {before:?}"
    );
    let slid = app
        .query(&query("2025-03-02T00:00:00Z", "2025-03-16T00:00:00Z"))
        .await;
    assert_no_errors(&slid);
    let after = app.calls().await;
    assert_eq!(
        after.len(),
        before.len(),
        "the slid window made calls: {:?}",
        &after[before.len()..]
    );
    let (from, to) = (utc(2025, 3, 2), utc(2025, 3, 16));
    let workspace = &slid["data"]["workspace"];
    assert_eq!(
        workspace["chat"]["conversations"]["total"].as_f64(),
        Some(conversations("acme", "chat", &[], &[], &[], from, to) as f64)
    );
    let days = workspace["dialogs"]["created"]["points"]
        .as_array()
        .expect("points");
    assert_eq!(days.len(), 14);
    for (i, day) in days.iter().enumerate() {
        let start = from + chrono::Duration::days(i as i64);
        assert_eq!(
            day["value"].as_f64(),
            Some(dialogs_created("acme", &[], start, start + chrono::Duration::days(1)) as f64),
            "day {i}"
        );
    }
    assert_eq!(
        workspace["messages"]["sent"]["total"].as_f64(),
        Some(messages_sent("acme", from, to) as f64)
    );
}

/// Issue 11: cache keys and single flight are per upstream account, not per workspace: a
/// thousand workspaces configured on acme's ConnectyCube account (a generated config) cost the
/// calls of one, and each answers acme's figure.
#[tokio::test]
async fn a_thousand_workspaces_on_one_account_cost_the_calls_of_one() {
    use chatstats::sandbox::connectycube::messages_sent;
    const WORKSPACES: usize = 1000;
    let app = spawn_app_with(|config| {
        let acme = config.workspaces[0].clone();
        config.workspaces = (0..WORKSPACES)
            .map(|i| {
                let mut workspace = acme.clone();
                workspace.id = format!("acme-{i}");
                workspace.name = format!("Acme branch {i}");
                workspace
            })
            .collect();
        config.limits.max_cost = u64::MAX / 2;
    })
    .await;
    let body = app
        .query(r#"{ workspaces { id messages { sent(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z", timeZone: "UTC"}, provider: CONNECTYCUBE) { total } } } }"#)
        .await;
    assert_no_errors(&body);
    let workspaces = body["data"]["workspaces"].as_array().expect("workspaces");
    assert_eq!(workspaces.len(), WORKSPACES);
    let expected = messages_sent(
        "acme",
        crate::helpers::utc(2025, 3, 1),
        crate::helpers::utc(2025, 3, 8),
    ) as f64;
    for workspace in workspaces {
        assert_eq!(
            workspace["messages"]["sent"]["total"].as_f64(),
            Some(expected),
            "{}",
            workspace["id"]
        );
    }
    let calls = app.calls_to("connectycube").await;
    assert_eq!(calls.len(), 1, "one account, one call: {calls:?}");
}

/// Issue 11: the per-request batch loader (async-graphql's DataLoader) receives the blocks all
/// fields ask for in one tick: two fields whose windows lie in adjacent 30-day Help Scout
/// blocks (02-11..03-13 and 03-13..04-12) are served by one merged call, not one each.
#[tokio::test]
async fn fields_that_ask_for_adjacent_blocks_in_one_query_are_fetched_in_one_call() {
    use crate::helpers::utc;
    use chatstats::sandbox::help_scout::conversations;
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") {
            chat: channel(id: "help_scout:chat") { conversations(window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z", timeZone: "UTC"}) { total } }
            email: channel(id: "help_scout:email") { conversations(window: {from: "2025-03-20T00:00:00Z", to: "2025-03-27T00:00:00Z", timeZone: "UTC"}) { total } } } }"#)
        .await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["workspace"]["chat"]["conversations"]["total"].as_f64(),
        Some(conversations(
            "acme",
            "chat",
            &[],
            &[],
            &[],
            utc(2025, 3, 1),
            utc(2025, 3, 8)
        ) as f64)
    );
    assert_eq!(
        body["data"]["workspace"]["email"]["conversations"]["total"].as_f64(),
        Some(conversations(
            "acme",
            "email",
            &[],
            &[],
            &[],
            utc(2025, 3, 20),
            utc(2025, 3, 27)
        ) as f64)
    );
    let calls = app.calls_to("help_scout").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].param("start"), Some("2025-02-11T00:00:00Z"));
    assert_eq!(calls[0].param("end"), Some("2025-04-12T00:00:00Z"));
}

/// Each provider lists its own channels (`Source::channels`, one `ChannelFeed` each): the list
/// is in provider order (message2give, Xenioo, Help Scout), every channel keeps its id, kind,
/// name and provider, each is found again by its id (asking only the provider its id names),
/// and an id of no provider is null.
#[tokio::test]
async fn each_provider_lists_its_channels_with_their_ids_kinds_and_names_in_provider_order() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") { channels { id kind name provider } } }"#)
        .await;
    assert_no_errors(&body);
    let channels = body["data"]["workspace"]["channels"]
        .as_array()
        .expect("channels")
        .clone();
    let row = |c: &Value| {
        [&c["id"], &c["kind"], &c["name"], &c["provider"]]
            .map(|v| v.as_str().unwrap_or_default().to_string())
    };
    let rows: Vec<[String; 4]> = channels.iter().map(row).collect();
    let fixed = |id: &str, kind: &str, name: &str, provider: &str| {
        [id, kind, name, provider].map(str::to_string)
    };
    assert_eq!(
        rows[..2],
        [
            fixed(
                "message2give:web",
                "WEB",
                "message2give web",
                "MESSAGE2GIVE"
            ),
            fixed(
                "message2give:sms",
                "SMS",
                "message2give sms",
                "MESSAGE2GIVE"
            ),
        ],
        "{rows:?}"
    );
    assert_eq!(
        rows[rows.len() - 3..],
        [
            fixed("help_scout:chat", "CHAT", "Help Scout chat", "HELP_SCOUT"),
            fixed(
                "help_scout:email",
                "EMAIL",
                "Help Scout email",
                "HELP_SCOUT"
            ),
            fixed(
                "help_scout:phone",
                "PHONE",
                "Help Scout phone",
                "HELP_SCOUT"
            ),
        ],
        "{rows:?}"
    );
    // Xenioo's come from its snapshot, sorted by name, WebChat a web channel.
    let xenioo = &rows[2..rows.len() - 3];
    assert!(xenioo.len() >= 2, "the snapshot's channels: {rows:?}");
    let names: Vec<&str> = xenioo
        .iter()
        .map(|[id, _, _, _]| id.strip_prefix("xenioo:").expect("a xenioo id"))
        .collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    for ([_, kind, name, provider], channel) in xenioo.iter().zip(&names) {
        let expected = if channel.eq_ignore_ascii_case("webchat") {
            "WEB"
        } else {
            "MESSAGING"
        };
        assert_eq!(
            (kind.as_str(), name.as_str(), provider.as_str()),
            (expected, format!("Xenioo {channel}").as_str(), "XENIOO")
        );
    }
    let xenioo_calls = app.calls_to("xenioo").await.len();
    for [id, kind, _, _] in &rows {
        let found = app
            .query(&format!(
                r#"{{ workspace(id: "acme") {{ channel(id: "{id}") {{ id kind }} }} }}"#
            ))
            .await;
        assert_no_errors(&found);
        assert_eq!(
            found["data"]["workspace"]["channel"],
            json!({ "id": id, "kind": kind })
        );
    }
    assert_eq!(
        app.calls_to("xenioo").await.len(),
        xenioo_calls,
        "the snapshot of the listing serves every lookup"
    );
    let none = app
        .query(r#"{ workspace(id: "acme") { channel(id: "nowhere:chat") { id } } }"#)
        .await;
    assert_no_errors(&none);
    assert_eq!(none["data"]["workspace"]["channel"], Value::Null);
}
