//! What the floods found in `src/ws.rs` and `src/http.rs`, written as tests of what the
//! protocols ask for (fixed since: graphql-transport-ws close codes 4401 and 4409, coded JSON
//! for every refusal of `/graphql`). None was a crash or a hang; the floods count them (the WS
//! close codes, the `<4xx, ...>` rows).

use reqwest::Method;
use serde_json::{json, Value};

use super::server::Target;
use super::tally::Tally;
use super::ws_flood::{Conn, Got, CHEAP_SUBSCRIPTION};

#[tokio::test]
async fn a_subscribe_before_connection_init_closes_4401_unauthorized() {
    let target = Target::start("4401").await;
    let mut tally = Tally::default();
    let mut conn = Conn::open(&target).await;
    let subscribe =
        json!({"id": "1", "type": "subscribe", "payload": {"query": CHEAP_SUBSCRIPTION}});
    conn.text(&mut tally, "subscribe", &subscribe.to_string())
        .await;
    assert_eq!(conn.until_closed(&mut tally).await, "4401");
}

#[tokio::test]
async fn a_subscribe_with_the_id_of_a_running_one_closes_4409_subscriber_already_exists() {
    let target = Target::start("4409").await;
    let mut tally = Tally::default();
    let mut conn = Conn::ready(&target, &mut tally).await;
    let subscribe =
        json!({"id": "1", "type": "subscribe", "payload": {"query": CHEAP_SUBSCRIPTION}});
    conn.text(&mut tally, "subscribe", &subscribe.to_string())
        .await;
    match conn.next(&mut tally).await {
        Got::Text(message) => assert_eq!(message["type"], "next", "{message}"),
        other => panic!("{other:?}"),
    }
    conn.text(&mut tally, "subscribe", &subscribe.to_string())
        .await;
    assert_eq!(conn.until_closed(&mut tally).await, "4409");
}

#[tokio::test]
async fn every_refusal_of_graphql_is_a_json_error_with_a_code() {
    let target = Target::start("4xx").await;
    let big = format!(
        r#"{{"query": "{{ __typename }}", "pad": "{}"}}"#,
        "x".repeat(3 << 20)
    );
    type Case<'a> = (Method, &'a [(&'a str, &'a str)], String);
    let cases: [Case; 3] = [
        (
            Method::POST,
            &[("accept", "text/html")],
            r#"{"query": "{ __typename }"}"#.into(),
        ),
        (Method::PUT, &[], r#"{"query": "{ __typename }"}"#.into()),
        (Method::POST, &[], big),
    ];
    for (method, headers, body) in cases {
        let mut request = target
            .http
            .request(method.clone(), target.url("/graphql"))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_client_error(), "{method} {headers:?}: {status}");
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {headers:?}: {status} is not JSON: {text:?}"));
        assert!(
            json["errors"][0]["extensions"]["code"].is_string(),
            "{method} {headers:?}: {status} {json}"
        );
    }
}
