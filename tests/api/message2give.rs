//! message2give through channels, dialogs, operators, groups and surveys, checked against the
//! sandbox's own data, with the month/offset parameters the sandbox saw.

use chatstats::sandbox::accounts::ACME;
use chatstats::sandbox::message2give::{survey_day, user_day};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::helpers::{assert_no_errors, points, spawn_app, utc};

/// Sessions of all acme users on the message2give day starting at `day_start`.
fn sessions(chat: &str, day_start: DateTime<Utc>) -> f64 {
    ACME.message2give
        .users
        .iter()
        .filter_map(|u| user_day("acme", chat, None, u, day_start))
        .map(|d| d.sessions_count as f64)
        .sum()
}

#[tokio::test]
async fn web_conversations_by_local_day_across_sydneys_dst_end_match_the_sandbox() {
    let app = spawn_app().await;
    // Sydney leaves DST on 2024-04-07 (+11:00 → +10:00); April is fetched at April 1's offset.
    let body = app
        .query(r#"{ workspace(id: "acme") { channel(id: "message2give:web") {
            conversations(window: {from: "2024-04-01T00:00:00+11:00", to: "2024-04-15T00:00:00+10:00"}) {
              exact points { at value } } } } }"#)
        .await;
    assert_no_errors(&body);
    let series = &body["data"]["workspace"]["channel"]["conversations"];
    let pts = points(series);
    assert_eq!(pts.len(), 14);
    assert_eq!(
        series["exact"],
        json!(false),
        "days after the change are an hour off the month's offset"
    );
    for (i, (_, value)) in pts.iter().enumerate() {
        // message2give's day D of April starts at local midnight at +11:00.
        let day_start = utc(2024, 3, 31) + Duration::hours(13) + Duration::days(i as i64);
        assert_eq!(*value, Some(sessions("web", day_start)), "local day {i}");
    }
    let calls = app.calls_to("message2give").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, "/organisations/self/stats/chat/web");
    assert_eq!(calls[0].param("timezone_offset"), Some("-660"));
    assert_eq!(calls[0].param("month"), Some("2024-03-31T13:00:00.000Z"));
}

#[tokio::test]
async fn a_window_over_two_months_fetches_each_month_once_at_its_own_offset() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") { channel(id: "message2give:sms") {
            conversations(window: {from: "2024-03-25T00:00:00+11:00", to: "2024-04-10T00:00:00+10:00", granularity: WEEK}) { total } } } }"#)
        .await;
    assert_no_errors(&body);
    let mut calls: Vec<(String, String)> = app
        .calls_to("message2give")
        .await
        .iter()
        .map(|c| {
            (
                c.param("timezone_offset").unwrap_or("").to_string(),
                c.param("month").unwrap_or("").to_string(),
            )
        })
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            ("-660".to_string(), "2024-02-29T13:00:00.000Z".to_string()),
            ("-660".to_string(), "2024-03-31T13:00:00.000Z".to_string()),
        ]
    );
}

#[tokio::test]
async fn response_time_is_weighted_by_sessions_by_day_and_by_week() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") { channel(id: "message2give:web") {
            day: responseTime(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z", timeZone: "UTC"}) { exact points { at value } }
            week: responseTime(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z", granularity: WEEK, timeZone: "UTC"}) { exact total unit aggregation } } } }"#)
        .await;
    assert_no_errors(&body);
    let channel = &body["data"]["workspace"]["channel"];
    let (mut all_weighted, mut all_weight) = (0.0, 0.0);
    for (i, (_, value)) in points(&channel["day"]).iter().enumerate() {
        let day = utc(2025, 3, 3) + Duration::days(i as i64);
        let (mut weighted, mut weight) = (0.0, 0.0);
        for user in ACME.message2give.users {
            if let Some(d) = user_day("acme", "web", None, user, day) {
                if let Some(avg) = d.response {
                    weighted += avg * d.sessions_count as f64;
                    weight += d.sessions_count as f64;
                }
            }
        }
        assert!(weight > 0.0);
        assert!(
            (value.expect("a value") - weighted / weight).abs() < 1e-9,
            "day {i}"
        );
        all_weighted += weighted;
        all_weight += weight;
    }
    assert_eq!(channel["day"]["exact"], json!(true));
    assert_eq!(channel["week"]["unit"], json!("SECONDS"));
    assert_eq!(channel["week"]["aggregation"], json!("AVERAGE"));
    assert_eq!(channel["week"]["exact"], json!(true), "weights are known");
    let week = channel["week"]["total"].as_f64().expect("total");
    assert!((week - all_weighted / all_weight).abs() < 1e-9);
}

#[tokio::test]
async fn surveys_list_and_count_sms_messages_and_units() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") { surveys(window: {from: "2025-02-01T00:00:00Z", to: "2025-03-01T00:00:00Z", timeZone: "UTC"}) {
            id provider
            messages(window: {from: "2025-02-01T00:00:00Z", to: "2025-03-01T00:00:00Z", granularity: MONTH, timeZone: "UTC"}) { total }
            units(window: {from: "2025-02-01T00:00:00Z", to: "2025-03-01T00:00:00Z", granularity: MONTH, timeZone: "UTC"}) { total } } } }"#)
        .await;
    assert_no_errors(&body);
    let surveys = body["data"]["workspace"]["surveys"]
        .as_array()
        .expect("surveys");
    assert_eq!(surveys.len(), ACME.message2give.surveys.len());
    for survey in surveys {
        let id = survey["id"]
            .as_str()
            .expect("id")
            .strip_prefix("message2give:")
            .expect("prefixed");
        let (mut messages, mut units) = (0, 0);
        for d in 0..28 {
            let (m, u) = survey_day("acme", id, utc(2025, 2, 1) + Duration::days(d));
            messages += m;
            units += u;
        }
        assert!(messages > 0);
        assert_eq!(survey["messages"]["total"].as_f64(), Some(messages as f64));
        assert_eq!(survey["units"]["total"].as_f64(), Some(units as f64));
    }
    assert_eq!(
        app.calls_to("message2give").await.len(),
        1,
        "one SMS usage call serves the list and both series"
    );
}

#[tokio::test]
async fn operators_and_groups_come_from_the_months_statistics() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") {
            operatorGroups(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z", timeZone: "UTC"}) {
              id members { id } sessions(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z", timeZone: "UTC"}) { total } }
            operators(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z", timeZone: "UTC"}) { id provider groups { id } } } }"#)
        .await;
    assert_no_errors(&body);
    let groups = body["data"]["workspace"]["operatorGroups"]
        .as_array()
        .expect("groups");
    assert_eq!(groups.len(), ACME.message2give.ccts.len());
    for group in groups {
        let id = group["id"]
            .as_str()
            .expect("id")
            .strip_prefix("message2give:")
            .expect("prefixed");
        let cct = ACME
            .message2give
            .ccts
            .iter()
            .find(|c| c.id == id)
            .expect("known cct");
        let members: Vec<&str> = group["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        let expected: Vec<String> = cct
            .users
            .iter()
            .map(|u| format!("message2give:{u}"))
            .collect();
        assert_eq!(members, expected);
        let mut total = 0.0;
        for d in 0..7 {
            for chat in ["web", "sms"] {
                for user in cct.users {
                    total += user_day(
                        "acme",
                        chat,
                        Some(id),
                        user,
                        utc(2025, 2, 1) + Duration::days(d),
                    )
                    .map(|u| u.sessions_count as f64)
                    .unwrap_or(0.0);
                }
            }
        }
        assert_eq!(
            group["sessions"]["total"].as_f64(),
            Some(total),
            "group {id}"
        );
    }
    let m2g: Vec<&serde_json::Value> = body["data"]["workspace"]["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .filter(|o| o["provider"] == json!("MESSAGE2GIVE"))
        .collect();
    assert_eq!(m2g.len(), ACME.message2give.users.len());
}

#[tokio::test]
async fn one_operators_sessions_by_channel() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ operator(id: "message2give:u-acme-ana") { id name status
            sessions(window: {from: "2025-02-03T00:00:00Z", to: "2025-02-05T00:00:00Z", timeZone: "UTC"}, channel: SMS) { points { at value } } } }"#)
        .await;
    assert_no_errors(&body);
    let operator = &body["data"]["operator"];
    assert_eq!(operator["name"], json!(null));
    assert_eq!(operator["status"], json!("UNKNOWN"));
    let values: Vec<Option<f64>> = points(&operator["sessions"])
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let expected: Vec<Option<f64>> = (0..2)
        .map(|d| {
            user_day(
                "acme",
                "sms",
                None,
                "u-acme-ana",
                utc(2025, 2, 3) + Duration::days(d),
            )
            .map(|u| u.sessions_count as f64)
        })
        .collect();
    assert_eq!(values, expected);
}
