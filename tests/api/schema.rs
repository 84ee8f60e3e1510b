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
