//! Chat-Tonic through users, dialogs, service level, satisfaction, operators and the NPS
//! export, checked against the sandbox's own data, with the parameters the sandbox saw.

use chatstats::sandbox::chat_tonic::{dashboard_row, operator_stats};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, points, spawn_app, utc, TestApp};

async fn series(app: &TestApp, field: &str, window: &str) -> Value {
    // Only `users` fields take a provider filter (they combine Chat-Tonic and Xenioo).
    let provider = if field.starts_with("users") {
        ", provider: CHAT_TONIC"
    } else {
        ""
    };
    let query = format!(
        r#"{{ workspace(id: "acme") {{ {field}(window: {window}{provider}) {{ total exact sources points {{ at value }} }} }} }} }}"#
    );
    let body = app.query(&query).await;
    assert_no_errors(&body);
    let mut value = body["data"]["workspace"].clone();
    for key in field
        .split(" { ")
        .flat_map(|s| s.split('{'))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        value = value[key].clone();
    }
    value
}

fn spans(
    pts: &[(DateTime<Utc>, Option<f64>)],
    end: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, Option<f64>)> {
    pts.iter()
        .enumerate()
        .map(|(i, (at, v))| (*at, pts.get(i + 1).map(|p| p.0).unwrap_or(end), *v))
        .collect()
}

#[tokio::test]
async fn new_users_by_day_in_utc_use_day_rows_and_match_the_sandbox() {
    let app = spawn_app().await;
    let s = series(
        &app,
        "users { new",
        r#"{from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z", timeZone: "UTC"}"#,
    )
    .await;
    assert_eq!(s["sources"], json!(["CHAT_TONIC"]));
    let pts = points(&s);
    assert_eq!(pts.len(), 7);
    for (from, to, value) in spans(&pts, utc(2025, 3, 10)) {
        assert_eq!(value, Some(dashboard_row("acme", from, to).new_users));
    }
    assert_eq!(
        s["total"].as_f64(),
        Some(dashboard_row("acme", utc(2025, 3, 3), utc(2025, 3, 10)).new_users)
    );
    let calls = app.calls_to("chat_tonic").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/api/v1/acme/stats/bigquery");
    assert_eq!(calls[0].param("queryName"), Some("dashboard"));
    assert_eq!(calls[0].param("dateFormatGroup"), Some("%Y-%m-%d"));
    // newUsers is a sum: served from the UTC-month block that covers the week.
    assert_eq!(
        calls[0].param("startDate"),
        Some("2025-03-01T00:00:00.000Z")
    );
    assert_eq!(calls[0].param("endDate"), Some("2025-04-01T00:00:00.000Z"));
}

#[tokio::test]
async fn hours_and_months_ask_chat_tonic_for_that_grouping() {
    let app = spawn_app().await;
    let hours = series(&app, "dialogs { pending", r#"{from: "2025-03-03T06:00:00Z", to: "2025-03-03T12:00:00Z", granularity: HOUR, timeZone: "UTC"}"#).await;
    for (from, to, value) in spans(&points(&hours), utc(2025, 3, 3) + Duration::hours(12)) {
        assert_eq!(value, Some(dashboard_row("acme", from, to).pending));
    }
    let months = series(&app, "dialogs { resolved", r#"{from: "2025-01-01T00:00:00Z", to: "2025-04-01T00:00:00Z", granularity: MONTH, timeZone: "UTC"}"#).await;
    let pts = points(&months);
    assert_eq!(pts.len(), 3);
    for (from, to, value) in spans(&pts, utc(2025, 4, 1)) {
        assert_eq!(value, Some(dashboard_row("acme", from, to).resolved));
    }
    let groups: Vec<String> = app
        .calls_to("chat_tonic")
        .await
        .iter()
        .filter_map(|c| c.param("dateFormatGroup").map(str::to_string))
        .collect();
    assert_eq!(groups, vec!["%Y-%m-%d %H".to_string(), "%Y-%m".to_string()]);
}

#[tokio::test]
async fn sydney_days_across_dst_are_built_exactly_from_hour_rows() {
    let app = spawn_app().await;
    let s = series(&app, "users { new", r#"{from: "2024-04-05T00:00:00+11:00", to: "2024-04-09T00:00:00+10:00", timeZone: "Australia/Sydney"}"#).await;
    let pts = points(&s);
    assert_eq!(pts.len(), 4);
    let end = DateTime::parse_from_rfc3339("2024-04-09T00:00:00+10:00")
        .expect("valid")
        .with_timezone(&Utc);
    let lengths: Vec<i64> = spans(&pts, end)
        .iter()
        .map(|(f, t, _)| (*t - *f).num_hours())
        .collect();
    assert_eq!(
        lengths,
        vec![24, 24, 25, 24],
        "2024-04-07 has 25 hours in Sydney"
    );
    for (from, to, value) in spans(&pts, end) {
        assert_eq!(value, Some(dashboard_row("acme", from, to).new_users));
    }
    assert_eq!(s["exact"], json!(true));
    let calls = app.calls_to("chat_tonic").await;
    assert_eq!(calls[0].param("dateFormatGroup"), Some("%Y-%m-%d %H"));
}

#[tokio::test]
async fn active_users_are_never_summed_the_total_is_chat_tonics_own() {
    let app = spawn_app().await;
    let window = r#"{from: "2025-03-03T00:00:00Z", to: "2025-03-17T00:00:00Z", granularity: WEEK, timeZone: "UTC"}"#;
    let s = series(&app, "users { active", window).await;
    let truth = dashboard_row("acme", utc(2025, 3, 3), utc(2025, 3, 17)).active_users;
    assert_eq!(s["total"].as_f64(), Some(truth));
    let daily_sum: f64 = (0..14)
        .map(|d| {
            dashboard_row(
                "acme",
                utc(2025, 3, 3) + Duration::days(d),
                utc(2025, 3, 3) + Duration::days(d + 1),
            )
            .active_users
        })
        .sum();
    assert!(truth < daily_sum, "distinct users are not additive");
    assert_eq!(s["exact"], json!(false), "weeks are merged from day rows");
}

#[tokio::test]
async fn satisfaction_and_service_level_are_averages_with_chat_tonics_total() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") {
            satisfaction { nps(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-06T00:00:00Z", timeZone: "UTC"}) { unit aggregation total points { at value } } }
            dialogs { serviceLevel(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-06T00:00:00Z", timeZone: "UTC"}) { attention { unit total } } }
            users { total(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-06T00:00:00Z", timeZone: "UTC"}) { aggregation total points { value } } } } }"#)
        .await;
    assert_no_errors(&body);
    let ws = &body["data"]["workspace"];
    let nps = &ws["satisfaction"]["nps"];
    assert_eq!(
        (nps["unit"].clone(), nps["aggregation"].clone()),
        (json!("SCORE"), json!("AVERAGE"))
    );
    for (from, to, value) in spans(&points(nps), utc(2025, 3, 6)) {
        assert_eq!(value, Some(dashboard_row("acme", from, to).nps));
    }
    let window_row = dashboard_row("acme", utc(2025, 3, 3), utc(2025, 3, 6));
    assert_eq!(nps["total"].as_f64(), Some(window_row.nps));
    assert_eq!(
        ws["dialogs"]["serviceLevel"]["attention"]["unit"],
        json!("PERCENT")
    );
    assert_eq!(
        ws["dialogs"]["serviceLevel"]["attention"]["total"].as_f64(),
        Some(window_row.attention)
    );
    assert_eq!(ws["users"]["total"]["aggregation"], json!("LAST"));
    assert_eq!(
        ws["users"]["total"]["total"].as_f64(),
        Some(window_row.total_users)
    );
    // One call over exactly the window serves NPS and the service level (their exact totals
    // come only from such a call); users.total, a level, is read from the month block.
    let calls = app.calls_to("chat_tonic").await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls
        .iter()
        .any(|c| c.param("startDate") == Some("2025-03-03T00:00:00.000Z")
            && c.param("endDate") == Some("2025-03-06T00:00:00.000Z")));
}

#[tokio::test]
async fn operators_carry_chat_tonics_summary() {
    let app = spawn_app().await;
    let body = app
        .query(r#"{ workspace(id: "acme") { operators(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z", timeZone: "UTC"}) {
            id provider name status summary(window: {from: "2025-03-03T00:00:00Z", to: "2025-03-10T00:00:00Z", timeZone: "UTC"}) { queriesResolved onlineTime } } } }"#)
        .await;
    assert_no_errors(&body);
    let operators: Vec<&Value> = body["data"]["workspace"]["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .filter(|o| o["provider"] == json!("CHAT_TONIC"))
        .collect();
    assert_eq!(operators.len(), 4);
    let lucia = operators
        .iter()
        .find(|o| o["id"] == json!("chat_tonic:5f286ede4dbdcf209af"))
        .expect("Lucia");
    assert_eq!(lucia["name"], json!("Lucia Ortiz"));
    assert_eq!(lucia["status"], json!("ONLINE"));
    let truth = operator_stats(
        "acme",
        "5f286ede4dbdcf209af",
        utc(2025, 3, 3),
        utc(2025, 3, 10),
    );
    assert_eq!(
        lucia["summary"]["queriesResolved"],
        json!(truth.queries_resolved)
    );
    assert_eq!(
        lucia["summary"]["onlineTime"].as_f64(),
        Some(truth.online_time as f64)
    );
    let chamo = operators
        .iter()
        .find(|o| o["id"] == json!("chat_tonic:5ed96d95aef725fdfb"))
        .expect("Chamo");
    assert_eq!(chamo["status"], json!("UNKNOWN"), "no status in the report");
    let report_calls = app
        .calls_to("chat_tonic")
        .await
        .iter()
        .filter(|c| c.path.ends_with("/stats/operator"))
        .count();
    assert_eq!(
        report_calls, 1,
        "the list and every summary share one report"
    );
}

#[tokio::test]
async fn the_nps_export_is_requested_every_time_and_never_cached() {
    let app = spawn_app().await;
    let mutation = r#"mutation { requestNpsExport(workspaceId: "acme", window: {from: "2025-03-01T00:00:00Z", to: "2025-04-01T00:00:00Z", timeZone: "UTC"}, respondents: PROMOTER) {
        respondents window { from to } requestedAt } }"#;
    for _ in 0..2 {
        let body = app.query(mutation).await;
        assert_no_errors(&body);
        assert_eq!(
            body["data"]["requestNpsExport"]["respondents"],
            json!("PROMOTER")
        );
        assert_eq!(
            body["data"]["requestNpsExport"]["window"]["from"],
            json!("2025-03-01T00:00:00Z")
        );
    }
    let calls: Vec<_> = app
        .calls_to("chat_tonic")
        .await
        .into_iter()
        .filter(|c| c.path.ends_with("/stats/nps/export"))
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].param("typeUser"), Some("promoter"));
    let unknown = app
        .query(r#"mutation { requestNpsExport(workspaceId: "nope", window: {from: "2025-03-01T00:00:00Z", to: "2025-04-01T00:00:00Z"}) { requestedAt } }"#)
        .await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"],
        json!("NOT_FOUND")
    );
}

#[tokio::test]
async fn a_failed_nps_export_is_not_retried() {
    let app = spawn_app().await;
    app.fault(json!({"provider": "chat_tonic", "status": 503}))
        .await;
    let body = app
        .query(r#"mutation { requestNpsExport(workspaceId: "acme", window: {from: "2025-03-01T00:00:00Z", to: "2025-04-01T00:00:00Z"}) { requestedAt } }"#)
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("UPSTREAM_UNAVAILABLE")
    );
    assert_eq!(app.calls_to("chat_tonic").await.len(), 1);
}
