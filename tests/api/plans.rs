//! Compiled plans (`graphql::plan`, issue 14): a request that passed validation before runs
//! on its operation's plan, and answers exactly what async-graphql answers: the same data and
//! the same errors at the same paths.

use serde_json::{json, Value};

use crate::examples::example_file::{today, ExampleFile};
use crate::helpers::{sample, spawn_app_with, spawn_reloadable_app_with, TestApp};

/// `chatstats_executions_total{executor}` of `app`.
async fn executions(app: &TestApp, executor: &str) -> f64 {
    let metrics = app.metrics().await;
    let labels = format!("executor=\"{executor}\"");
    sample(&metrics, "chatstats_executions_total", &labels).unwrap_or(0.0)
}

/// The errors of `body`, each as its JSON text, sorted (the executors may list them in
/// another order: async-graphql as its fields complete).
fn sorted_errors(body: &Value) -> Vec<String> {
    let mut errors: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    errors.sort();
    errors
}

/// The request `query` with `variables` answered on its plan and on async-graphql, on the same
/// warm server (kept answers off): a first run validates it (async-graphql), a second runs on
/// its plan, and a third, with an unused variable added (another request, not validated
/// before), on async-graphql again. Returns the second's and third's bodies, and whether the
/// second ran on a plan.
async fn both_ways(app: &TestApp, query: &str, variables: &Value) -> (Value, Value, bool) {
    let first = app.query_with(query, variables.clone()).await;
    let planned_before = executions(app, "plan").await;
    let plan = app.query_with(query, variables.clone()).await;
    let planned = executions(app, "plan").await - planned_before;
    let mut other = variables.clone();
    other["unusedByTheOperation"] = json!(1);
    let graphql = app.query_with(query, other).await;
    assert_eq!(
        executions(app, "plan").await - planned_before,
        planned,
        "a request not validated before never runs on a plan"
    );
    assert!(
        first.get("data").is_some(),
        "the request was executed: {first}"
    );
    (plan, graphql, planned == 1.0)
}

fn assert_same_answer(name: &str, plan: &Value, graphql: &Value) {
    assert_eq!(
        plan["data"], graphql["data"],
        "{name}: the plan's data is async-graphql's"
    );
    assert_eq!(
        sorted_errors(plan),
        sorted_errors(graphql),
        "{name}: the plan's errors are async-graphql's"
    );
}

#[tokio::test]
async fn every_example_answers_the_same_on_its_plan_as_on_async_graphql() {
    let mut planned = Vec::new();
    for example in ExampleFile::all().expect("the examples parse") {
        if example.is_session() {
            continue;
        }
        let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
        let variables = example.variables_at(today());
        let (plan, graphql, ran_on_plan) = both_ways(&app, &example.document, &variables).await;
        assert!(
            plan["data"]["workspace"].is_object(),
            "{}: an answer to compare: {plan}",
            example.name
        );
        assert_same_answer(&example.name, &plan, &graphql);
        if ran_on_plan {
            planned.push(example.name.clone());
        }
    }
    for name in ["dashboard", "overview", "bot_report", "channel_drilldown"] {
        assert!(
            planned.iter().any(|planned| planned == name),
            "the {name} example runs on its plan (planned: {planned:?})"
        );
    }
}

#[tokio::test]
async fn errors_are_the_same_on_a_plan_as_on_async_graphql() {
    let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let window = r#"window: { from: $from, to: $to, granularity: HOUR }"#;
    let cases = [
        // NOT_FOUND: null and an error at the workspace.
        (
            "an unknown workspace",
            r#"query Q($from: DateTime!, $to: DateTime!) {
                known: workspace(id: "acme") { name }
                unknown: workspace(id: "nope") {
                    users { new(window: { from: $from, to: $to }) { total } } }
            }"#
                .to_string(),
        ),
        // Parts refused at HOUR: errors at each series; a nullable channel series whose every
        // part is refused is left out; a channel that does not exist is null.
        (
            "refused parts and a missing channel",
            format!(
                r#"query Q($from: DateTime!, $to: DateTime!) {{ workspace(id: "acme") {{
                    dialogs {{ created({window}) {{ total sources exact }} }}
                    messages {{ sent({window}) {{ total points {{ at value }} }} }}
                    chat: channel(id: "help_scout:chat") {{
                        name conversations({window}) {{ total }} }}
                    none: channel(id: "help_scout:nope") {{ name }}
                }} }}"#
            ),
        ),
        // Xenioo keeps 30 days: out-of-retention errors at each series with a Xenioo part,
        // `change` over a previous window, and typenames at every level.
        (
            "old windows and typenames",
            r#"query Q($from: DateTime!, $to: DateTime!) { __typename workspace(id: "acme") {
                __typename timeZone sources { __typename provider healthy lastSuccessAt lastError
                    nextCallAllowedAt nextCallWait }
                users { __typename new(window: { from: "2025-03-10T00:00:00Z", to: "2025-03-17T00:00:00Z" }) {
                    __typename total change min max exact stale metric unit aggregation
                    points { __typename at value } } }
                bots { __typename id name channels { __typename id name kind provider }
                    m: metric(kind: MESSAGES, window: { from: $from, to: $to }) { total } }
            } }"#
                .to_string(),
        ),
    ];
    let variables = json!({
        "from": (today() - chrono::Duration::days(3)).to_rfc3339(),
        "to": today().to_rfc3339(),
    });
    for (name, query) in cases {
        let (plan, graphql, ran_on_plan) = both_ways(&app, &query, &variables).await;
        assert!(ran_on_plan, "{name}: runs on its plan");
        assert!(
            !sorted_errors(&plan).is_empty(),
            "{name}: errors to compare: {plan}"
        );
        assert_same_answer(name, &plan, &graphql);
    }
}

/// A variable that does not parse as a window fails its field at execution (not before), so
/// the request counts as validated; the plan cannot bind it and hands it to async-graphql,
/// which answers it the same again.
#[tokio::test]
async fn a_request_whose_windows_do_not_bind_is_answered_by_async_graphql() {
    let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let query = r#"query Q($from: DateTime!, $to: DateTime!) { workspace(id: "acme") {
        users { new(window: { from: $from, to: $to }) { total } } } }"#;
    let bad = json!({ "from": "2025-03-10T00:00:00Z", "to": "soon" });
    let first = app.query_with(query, bad.clone()).await;
    let second = app.query_with(query, bad).await;
    assert_eq!(first, second, "the same answer both times");
    assert!(
        second["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("\"soon\"")),
        "says what is wrong: {second}"
    );
    assert_eq!(executions(&app, "plan").await, 0.0);
    assert_eq!(executions(&app, "async_graphql").await, 2.0);
    // The same text with values that bind runs on its plan from its second request.
    let good = json!({ "from": "2025-03-10T00:00:00Z", "to": "2025-03-17T00:00:00Z" });
    let (plan, graphql, ran_on_plan) = both_ways(&app, query, &good).await;
    assert!(ran_on_plan);
    assert!(plan["data"]["workspace"]["users"]["new"]["total"].is_number());
    assert_same_answer("good values", &plan, &graphql);
}

/// A plan keeps its series' specs per workspace; a reload makes new workspaces, so the next
/// request builds them from the new configuration: a provider removed no longer contributes.
#[tokio::test]
async fn a_plan_answers_with_the_configuration_a_reload_put_in_force() {
    let (app, reloader, config) =
        spawn_reloadable_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let query = r#"query Q($from: DateTime!, $to: DateTime!) { workspace(id: "acme") {
        messages { sent(window: { from: $from, to: $to }) { total sources } } } }"#;
    let variables = json!({ "from": "2025-03-10T00:00:00Z", "to": "2025-03-17T00:00:00Z" });
    let sources = |body: &Value| body["data"]["workspace"]["messages"]["sent"]["sources"].clone();
    let (before, _, ran_on_plan) = both_ways(&app, query, &variables).await;
    assert!(ran_on_plan);
    assert!(
        sources(&before)
            .as_array()
            .is_some_and(|s| s.contains(&json!("CONNECTYCUBE"))),
        "ConnectyCube contributes at first: {before}"
    );

    let mut without = config;
    let acme = without
        .workspaces
        .iter_mut()
        .find(|w| w.id == "acme")
        .expect("the sandbox has acme");
    acme.connectycube = None;
    reloader.apply(without).await.expect("the reload applies");

    let planned = executions(&app, "plan").await;
    let after = app.query_with(query, variables.clone()).await;
    assert_eq!(
        executions(&app, "plan").await,
        planned + 1.0,
        "still on its plan"
    );
    let after_sources = sources(&after);
    assert!(
        after_sources.is_array()
            && !after_sources
                .as_array()
                .unwrap()
                .contains(&json!("CONNECTYCUBE")),
        "ConnectyCube no longer contributes: {after}"
    );
    let about_connectycube = sorted_errors(&after)
        .into_iter()
        .filter(|error| error.contains("CONNECTYCUBE") || error.contains("ConnectyCube"))
        .collect::<Vec<_>>();
    assert!(
        about_connectycube.is_empty(),
        "nor is it asked (a provider not configured is not an error): {after}"
    );
}

/// `points(fill:)` with a literal is answered plainly (by a plan, and by `TimeSeries` on
/// async-graphql); with a variable it goes through the field's own resolver. Both agree, on a
/// window whose last days have no data yet (they are still to come).
#[tokio::test]
async fn points_with_a_literal_fill_answer_as_the_field_resolver_does() {
    let app = spawn_app_with(|config| config.cache.answer_max_bytes = 0).await;
    let from = (today() - chrono::Duration::days(3)).to_rfc3339();
    let to = (today() + chrono::Duration::days(3)).to_rfc3339();
    let series = |fill: &str| {
        format!(
            r#"workspace(id: "acme") {{ channel(id: "message2give:web") {{
                responseTime(window: {{ from: "{from}", to: "{to}" }}) {{
                    total points(fill: {fill}) {{ at value }} }} }} }}"#
        )
    };
    let mut answers = Vec::new();
    for fill in ["ZERO", "NULL", "OMIT"] {
        let literal = format!("{{ {} }}", series(fill));
        let (planned, _, ran_on_plan) = both_ways(&app, &literal, &json!({})).await;
        assert!(ran_on_plan, "{fill}: a literal fill runs on the plan");
        let variable = format!("query Q($fill: Fill) {{ {} }}", series("$fill"));
        let resolved = app.query_with(&variable, json!({ "fill": fill })).await;
        assert_eq!(
            planned["data"], resolved["data"],
            "{fill}: the literal and the variable answer the same"
        );
        answers.push(planned["data"]["workspace"]["channel"]["responseTime"]["points"].clone());
    }
    let values = |points: &Value| -> Vec<Value> {
        points
            .as_array()
            .into_iter()
            .flatten()
            .map(|point| point["value"].clone())
            .collect()
    };
    let (zero, null, omit) = (
        values(&answers[0]),
        values(&answers[1]),
        values(&answers[2]),
    );
    assert!(
        zero.len() == null.len() && omit.len() < zero.len() && zero.contains(&json!(0.0)),
        "ZERO and NULL keep every bucket, OMIT leaves the empty ones out: {answers:?}"
    );
    assert!(
        null.contains(&Value::Null),
        "NULL shows empty buckets as null: {null:?}"
    );
}
