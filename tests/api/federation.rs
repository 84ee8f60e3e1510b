//! Federation: `_entities` is batched. However many representations a gateway sends, the
//! upstream requests are those of one representation per provider (the request's memo), and
//! an id the caller may not see, or that does not exist, resolves to null.

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, spawn_app, TestApp};

/// The upstream requests the sandbox logged, as sorted (provider, path, params) lines.
async fn call_lines(app: &TestApp) -> Vec<String> {
    let mut lines: Vec<String> = app
        .calls()
        .await
        .iter()
        .map(|c| format!("{} {} {:?}", c.provider, c.path, c.params))
        .collect();
    lines.sort();
    lines
}

async fn operator_ids(app: &TestApp) -> (Vec<String>, Vec<String>) {
    // The window `operator(id)` searches: the last 30 days.
    let now = chrono::Utc::now();
    let from = crate::helpers::rfc3339(now - chrono::Duration::days(20));
    let to = crate::helpers::rfc3339(now);
    let body = app
        .query_with(
            r#"query($from: DateTime!, $to: DateTime!) { workspace(id: "acme") {
                operators(window: {from: $from, to: $to, timeZone: "UTC"}) { id provider } } }"#,
            json!({"from": from, "to": to}),
        )
        .await;
    assert_no_errors(&body);
    let ids = |provider: &str| -> Vec<String> {
        body["data"]["workspace"]["operators"]
            .as_array()
            .expect("operators")
            .iter()
            .filter(|o| o["provider"] == provider)
            .map(|o| o["id"].as_str().expect("id").to_string())
            .collect()
    };
    (ids("CHAT_TONIC"), ids("MESSAGE2GIVE"))
}

fn entities_query(representations: &[Value], selection: &str) -> String {
    let list: Vec<String> = representations
        .iter()
        .map(|r| format!(r#"{{__typename: {}, id: {}}}"#, r["__typename"], r["id"]))
        .collect();
    format!(
        "{{ _entities(representations: [{}]) {{ {selection} }} }}",
        list.join(", ")
    )
}

#[tokio::test]
async fn fifty_operator_representations_cost_the_calls_of_one_per_provider() {
    let lister = spawn_app().await;
    let (chat_tonic, message2give) = operator_ids(&lister).await;
    assert!(
        !chat_tonic.is_empty() && !message2give.is_empty(),
        "the sandbox has operators of both providers"
    );
    let selection = "... on Operator { id provider }";
    let representation = |id: &String| json!({"__typename": "Operator", "id": id});

    let one = spawn_app().await;
    let single: Vec<Value> = [&chat_tonic[0], &message2give[0]]
        .into_iter()
        .map(representation)
        .collect();
    let body = one.query(&entities_query(&single, selection)).await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["_entities"][0]["id"], json!(chat_tonic[0]));
    assert_eq!(body["data"]["_entities"][1]["id"], json!(message2give[0]));
    let calls_of_one = call_lines(&one).await;

    let many = spawn_app().await;
    let fifty: Vec<Value> = chat_tonic
        .iter()
        .chain(message2give.iter())
        .cycle()
        .take(50)
        .map(representation)
        .collect();
    let body = many.query(&entities_query(&fifty, selection)).await;
    assert_no_errors(&body);
    let resolved = body["data"]["_entities"].as_array().expect("entities");
    assert_eq!(resolved.len(), 50);
    for (entity, representation) in resolved.iter().zip(&fifty) {
        assert_eq!(entity["id"], representation["id"], "{body}");
    }
    let calls_of_fifty = call_lines(&many).await;
    assert!(!calls_of_one.is_empty());
    assert_eq!(calls_of_fifty, calls_of_one);
}

#[tokio::test]
async fn fifty_workspace_representations_with_a_series_cost_the_calls_of_one() {
    let selection = r#"... on Workspace { id name
        dialogs { created(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z"}) { total sources } }
        users { active(window: {from: "2025-02-01T00:00:00Z", to: "2025-02-08T00:00:00Z"}, provider: CHAT_TONIC) { points { value } } } }"#;
    let workspace = |id: &str| json!({"__typename": "Workspace", "id": id});

    let one = spawn_app().await;
    let body = one
        .query(&entities_query(&[workspace("acme")], selection))
        .await;
    assert_no_errors(&body);
    let total = body["data"]["_entities"][0]["dialogs"]["created"]["total"].clone();
    assert!(total.as_f64().is_some(), "{body}");
    let calls_of_one = call_lines(&one).await;

    let many = spawn_app().await;
    let fifty: Vec<Value> = (0..50).map(|_| workspace("acme")).collect();
    let body = many.query(&entities_query(&fifty, selection)).await;
    assert_no_errors(&body);
    let resolved = body["data"]["_entities"].as_array().expect("entities");
    assert_eq!(resolved.len(), 50);
    assert!(resolved
        .iter()
        .all(|e| e["id"] == "acme" && e["dialogs"]["created"]["total"] == total));
    assert!(!calls_of_one.is_empty());
    assert_eq!(call_lines(&many).await, calls_of_one);
}

#[tokio::test]
async fn unknown_and_foreign_entities_resolve_to_null() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.clients = vec![crate::helpers::client(
            "acme-only",
            "k-acme",
            &["acme"],
            &[chatstats::config::Scope::Read],
        )];
    })
    .await;
    let query = r#"{ _entities(representations: [
        {__typename: "Workspace", id: "acme"},
        {__typename: "Workspace", id: "globex"},
        {__typename: "Workspace", id: "nope"},
        {__typename: "Operator", id: "message2give:u-globex-dan"},
        {__typename: "Operator", id: "chat_tonic:no-such-operator"}
    ]) { ... on Workspace { id } ... on Operator { id } } }"#;
    let reply = app
        .post(&json!({"query": query}), &[("x-api-key", "k-acme")])
        .await;
    assert_eq!(reply.status, 200);
    assert_no_errors(&reply.body);
    assert_eq!(
        reply.body["data"]["_entities"],
        json!([{"id": "acme"}, null, null, null, null])
    );
}
