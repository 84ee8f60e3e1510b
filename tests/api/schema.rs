//! The committed SDL matches the code, and the schema explains itself.

use serde_json::Value;

use crate::helpers::spawn_app;

fn committed(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .expect("committed schema file")
}

#[test]
fn the_committed_sdl_matches_the_code() {
    assert_eq!(
        committed("schema/schema.graphql"),
        chatstats::graphql::sdl(false),
        "schema/schema.graphql is stale: run `cargo run -- schema > schema/schema.graphql`"
    );
}

#[test]
fn the_committed_federation_sdl_matches_the_code() {
    let sdl = chatstats::graphql::sdl(true);
    assert!(
        sdl.contains("extend schema @link(")
            && sdl.contains("url: \"https://specs.apollo.dev/federation/v2."),
        "federation v2 link"
    );
    assert!(
        sdl.contains("type Workspace @key(fields: \"id\")"),
        "Workspace is an entity"
    );
    assert_eq!(
        committed("schema/federation.graphql"),
        sdl,
        "schema/federation.graphql is stale: run `cargo run -- schema --federation > schema/federation.graphql`"
    );
}

#[tokio::test]
async fn every_type_field_and_argument_is_described() {
    let app = spawn_app().await;
    let body = app
        .query(
            r#"{ __schema { types { name kind description
                fields { name description args { name description } }
                inputFields { name description }
                enumValues { name description } } } }"#,
        )
        .await;
    let mut missing = Vec::new();
    let described = |v: &Value| {
        v["description"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty())
    };
    for ty in body["data"]["__schema"]["types"].as_array().expect("types") {
        let name = ty["name"].as_str().expect("name");
        // Built-in scalars, introspection and federation plumbing are not ours to describe.
        if name.starts_with("__")
            || [
                "String",
                "Int",
                "Float",
                "Boolean",
                "ID",
                "_Any",
                "_Entity",
                "_Service",
                "link__Import",
                "link__Purpose",
            ]
            .contains(&name)
        {
            continue;
        }
        if !described(ty) {
            missing.push(name.to_string());
        }
        for field in ty["fields"].as_array().into_iter().flatten() {
            let field_name = field["name"].as_str().expect("field name");
            if field_name.starts_with('_') {
                continue;
            }
            if !described(field) {
                missing.push(format!("{name}.{field_name}"));
            }
            for arg in field["args"].as_array().into_iter().flatten() {
                if !described(arg) {
                    missing.push(format!("{name}.{field_name}({})", arg["name"]));
                }
            }
        }
        for input in ty["inputFields"].as_array().into_iter().flatten() {
            if !described(input) {
                missing.push(format!("{name}.{}", input["name"]));
            }
        }
        for value in ty["enumValues"].as_array().into_iter().flatten() {
            if !described(value) {
                missing.push(format!("{name}.{}", value["name"]));
            }
        }
    }
    assert!(missing.is_empty(), "undescribed: {missing:?}");
}

/// Series answered as one value (`graphql::time_series`'s plain path) are the executor's
/// answers: the same query with every selection behind an inline fragment (which the plain
/// path leaves to async-graphql) answers the same JSON. (async-graphql 7.2 orders an object's
/// keys as its fields complete, so the two are compared as maps; the plain path keeps the
/// selection's order, checked on one series.)
#[tokio::test]
async fn series_built_as_one_value_answer_as_the_executor_does() {
    let app = spawn_app().await;
    let to = chrono::Utc::now().date_naive();
    let window = format!(
        r#"window: {{ from: "{}T00:00:00Z", to: "{to}T00:00:00Z" }}"#,
        to - chrono::Duration::days(14)
    );
    // Every plain field (`change` computes the previous window with this one), aliases,
    // `__typename` at both levels, and fields in a chosen order.
    let fields = "sum: total metric unit aggregation min max __typename sources exact stale \
                  points { value when: at __typename } total change";
    let query = |series: &dyn Fn(&str) -> String| {
        format!(
            r#"{{ workspace(id: "acme") {{
                users {{ new({window}) {{ {new} }} active({window}) {{ {active} }} }}
                messages {{ sent({window}) {{ {sent} }} }}
                dialogs {{ created({window}) {{ {created} }} serviceLevel({window}) {{ attention {{ {attention} }} }} }}
                satisfaction {{ nps({window}) {{ {nps} }} }}
                web: channel(id: "message2give:web") {{ waitTime({window}) {{ {wait} }} }}
                bots {{ name metric(kind: MESSAGES, {window}) {{ {bot} }} }}
            }} }}"#,
            new = series(fields),
            active = series(fields),
            sent = series(fields),
            created = series(fields),
            attention = series(fields),
            nps = series(fields),
            wait = series(fields),
            bot = series(fields),
        )
    };
    let plain = app.query(&query(&|fields| fields.to_string())).await;
    let executed = app
        .query(&query(&|fields| {
            format!(
                "... on TimeSeries {{ {} }}",
                fields
                    .replace("{ value", "{ ... on Point { value")
                    .replace("__typename }", "__typename } }")
            )
        }))
        .await;
    assert_eq!(plain.get("errors"), executed.get("errors"), "{plain}");
    assert_eq!(plain["data"], executed["data"]);
    // Not an empty answer: series with points and values.
    let series = &plain["data"]["workspace"]["dialogs"]["created"];
    let keys: Vec<&str> = series
        .as_object()
        .expect("a series")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "sum",
            "metric",
            "unit",
            "aggregation",
            "min",
            "max",
            "__typename",
            "sources",
            "exact",
            "stale",
            "points",
            "total",
            "change"
        ],
        "the selection's order"
    );
    let points = series["points"].as_array().expect("points");
    assert!(points.len() >= 14, "{series}");
    assert!(points
        .iter()
        .any(|p| p["value"].as_f64().unwrap_or(0.0) > 0.0));
    assert!(points[0]["when"].as_str().unwrap().ends_with('Z'));
    let bots = plain["data"]["workspace"]["bots"].as_array().expect("bots");
    assert!(!bots.is_empty());
}
