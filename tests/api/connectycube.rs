//! ConnectyCube messages and dialogs through `messages.sent` and `dialogs.created`, checked
//! against the sandbox's own data, with the paging and `types[]` the sandbox saw.

use chatstats::sandbox::accounts::ACME;
use chatstats::sandbox::connectycube::{dialogs_created, messages_sent};
use chatstats::sandbox::help_scout::conversations;
use chatstats::sandbox::message2give::user_day;
use serde_json::json;

use crate::helpers::{assert_no_errors, days, points, rfc3339, spawn_app, utc};

#[tokio::test]
async fn messages_over_250_days_fetch_every_page_and_match_the_sandbox() {
    let app = spawn_app().await;
    let from = utc(2024, 9, 1);
    let to = from + days(250);
    let query = r#"query($w: Window!) { workspace(id: "acme") { messages { sent(window: $w, provider: CONNECTYCUBE) { total sources points { at value } } } } }"#;
    let body = app
        .query_with(
            query,
            json!({"w": {"from": rfc3339(from), "to": rfc3339(to), "timeZone": "UTC"}}),
        )
        .await;
    assert_no_errors(&body);
    let series = &body["data"]["workspace"]["messages"]["sent"];
    let pts = points(series);
    assert_eq!(pts.len(), 250);
    for (i, (at, value)) in pts.iter().enumerate() {
        let day = from + days(i as i64);
        assert_eq!(*at, day);
        assert_eq!(
            *value,
            Some(messages_sent("acme", day, day + days(1)) as f64),
            "day {day}"
        );
    }
    assert_eq!(
        series["total"].as_f64(),
        Some(messages_sent("acme", from, to) as f64)
    );
    assert_eq!(series["sources"], json!(["CONNECTYCUBE"]));

    // One full page per 100-day block of the cache grid (UTC days from 1970-01-01) that
    // covers the window: 2024-06-26..2024-10-04..2025-01-12..2025-04-22..2025-07-31.
    let calls = app.calls_to("connectycube").await;
    let mut starts: Vec<i64> = calls
        .iter()
        .map(|call| {
            assert_eq!(call.path, "/admin/stats/messages/sent-per-day");
            assert_eq!(
                (call.param("limit"), call.param("offset")),
                (Some("100"), Some("0"))
            );
            let start: i64 = call
                .param("start_date")
                .and_then(|s| s.parse().ok())
                .expect("start");
            let end: i64 = call
                .param("end_date")
                .and_then(|s| s.parse().ok())
                .expect("end");
            assert_eq!(end - start, 100 * 86_400, "{call:?}");
            assert_eq!(start % (100 * 86_400), 0, "on the grid: {call:?}");
            start
        })
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 4, "{calls:?}");
    assert!(starts[0] <= from.timestamp() && starts[3] + 100 * 86_400 >= to.timestamp());
}

#[tokio::test]
async fn dialogs_filtered_by_type_send_types_and_match_the_sandbox() {
    let app = spawn_app().await;
    let query = r#"{ workspace(id: "acme") { dialogs { created(
        window: {from: "2025-04-01T00:00:00Z", to: "2025-04-11T00:00:00Z", timeZone: "UTC"}, types: [PRIVATE, GROUP]) {
        total sources points { at value } } } } }"#;
    let body = app.query(query).await;
    assert_no_errors(&body);
    let series = &body["data"]["workspace"]["dialogs"]["created"];
    assert_eq!(
        series["sources"],
        json!(["CONNECTYCUBE"]),
        "Help Scout has no dialog types"
    );
    for (at, value) in points(series) {
        assert_eq!(
            value,
            Some(dialogs_created("acme", &[2, 3], at, at + days(1)) as f64)
        );
    }
    let expected = dialogs_created("acme", &[2, 3], utc(2025, 4, 1), utc(2025, 4, 11)) as f64;
    assert!(expected > 0.0);
    assert!(expected < dialogs_created("acme", &[], utc(2025, 4, 1), utc(2025, 4, 11)) as f64);
    assert_eq!(series["total"].as_f64(), Some(expected));
    let calls = app.calls_to("connectycube").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/admin/stats/dialogs/created-per-day");
    assert_eq!(calls[0].params_named("types[]"), vec!["2", "3"]);
}

#[tokio::test]
async fn dialogs_created_adds_connectycube_help_scout_and_message2give_bucket_by_bucket() {
    let app = spawn_app().await;
    let query = r#"{ workspace(id: "acme") { dialogs { created(
        window: {from: "2025-04-01T00:00:00Z", to: "2025-04-04T00:00:00Z", timeZone: "UTC"}) { sources points { at value } } } } }"#;
    let body = app.query(query).await;
    assert_no_errors(&body);
    let series = &body["data"]["workspace"]["dialogs"]["created"];
    assert_eq!(
        series["sources"],
        json!(["MESSAGE2GIVE", "CONNECTYCUBE", "HELP_SCOUT"])
    );
    for (at, value) in points(series) {
        let end = at + days(1);
        let help_scout: u64 = ["chat", "email", "phone"]
            .iter()
            .map(|c| conversations("acme", c, &[], &[], &[], at, end))
            .sum();
        let message2give: u64 = ["web", "sms"]
            .iter()
            .flat_map(|chat| ACME.message2give.users.iter().map(move |u| (chat, u)))
            .filter_map(|(chat, u)| user_day("acme", chat, None, u, at))
            .map(|d| d.sessions_count)
            .sum();
        assert!(message2give > 0);
        let expected = dialogs_created("acme", &[], at, end) + help_scout + message2give;
        assert_eq!(value, Some(expected as f64));
    }
}

#[tokio::test]
async fn previous_and_change_cover_the_window_right_before() {
    let app = spawn_app().await;
    let query = r#"{ workspace(id: "globex") { messages { sent(
        window: {from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z", timeZone: "UTC"}, provider: CONNECTYCUBE) {
        total change previous { total window { from to } } } } } }"#;
    let body = app.query(query).await;
    assert_no_errors(&body);
    let series = &body["data"]["workspace"]["messages"]["sent"];
    let current = messages_sent("globex", utc(2025, 2, 1), utc(2025, 2, 8)) as f64;
    let previous = messages_sent("globex", utc(2025, 1, 25), utc(2025, 2, 1)) as f64;
    assert_eq!(series["total"].as_f64(), Some(current));
    assert_eq!(series["previous"]["total"].as_f64(), Some(previous));
    assert_eq!(
        series["previous"]["window"]["from"],
        json!("2025-01-25T00:00:00Z")
    );
    assert_eq!(
        series["previous"]["window"]["to"],
        json!("2025-02-01T00:00:00Z")
    );
    let change = series["change"].as_f64().expect("change");
    assert!((change - (current - previous) / previous).abs() < 1e-12);
}
