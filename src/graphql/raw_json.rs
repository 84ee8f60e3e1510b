//! Output a resolver writes as JSON text itself, for the HTTP transport.
//!
//! A dashboard's answer is mostly `points`: hundreds of small objects that async-graphql holds
//! as a [`Value`] each (an `IndexMap`, a `String` per instant) only to serialize and drop them
//! again. When the request carries [`RawJson`] (the HTTP handler adds it; other transports
//! serialize responses themselves and do not), a resolver may answer with
//! `Value::Binary(json_text)` instead, and [`encode`] writes that text as is. No field of the
//! schema is a binary scalar, so `Binary` has no other meaning in a response.

use std::io::Write;

use async_graphql::{Response, Value};

/// Request data: the response is encoded by [`encode`], so resolvers may answer
/// `Value::Binary(json_text)`.
#[derive(Clone, Copy, Debug)]
pub struct RawJson;

/// `response` as the JSON body async-graphql's own serialization gives (`data`, then
/// `extensions` and `errors` when not empty), with `Binary` values written as the JSON text
/// they hold.
pub fn encode(response: &Response) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"data\":");
    write_value(&mut out, &response.data)?;
    if !response.extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        serde_json::to_writer(&mut out, &response.extensions)?;
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut out, &response.errors)?;
    }
    out.push(b'}');
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    match value {
        Value::Binary(json) => out.extend_from_slice(json),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (name, field)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, name)?;
                out.push(b':');
                write_value(out, field)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(out, scalar)?,
    }
    Ok(())
}

/// `text` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    serde_json::to_writer(out, text)
}

/// `value` as [`Value`]'s JSON for it: a number, or null when it has none (NaN, infinite).
pub fn write_number(out: &mut Vec<u8>, value: Option<f64>) -> serde_json::Result<()> {
    match value.and_then(serde_json::Number::from_f64) {
        Some(number) => serde_json::to_writer(out, &number),
        None => {
            out.write_all(b"null").map_err(serde_json::Error::io)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::indexmap::IndexMap;
    use async_graphql::{Name, ServerError};

    fn object(fields: Vec<(&str, Value)>) -> Value {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (Name::new(k), v))
                .collect::<IndexMap<_, _>>(),
        )
    }

    #[test]
    fn without_binary_values_the_body_is_async_graphqls_own() {
        let data = object(vec![
            ("s", Value::String("quote \" and \u{1} and é".into())),
            ("n", Value::from(1.5)),
            ("i", Value::from(-3)),
            ("b", Value::Boolean(true)),
            ("null", Value::Null),
            ("e", Value::Enum(Name::new("SUM"))),
            ("l", Value::List(vec![Value::from(1), object(vec![])])),
            ("empty", Value::List(vec![])),
        ]);
        let mut response = Response::new(data);
        assert_eq!(
            encode(&response).unwrap(),
            serde_json::to_vec(&response).unwrap()
        );
        response
            .extensions
            .insert("warnings".into(), Value::List(vec!["w".into()]));
        response.errors.push(ServerError::new("no", None));
        assert_eq!(
            encode(&response).unwrap(),
            serde_json::to_vec(&response).unwrap()
        );
        assert_eq!(
            encode(&Response::default()).unwrap(),
            serde_json::to_vec(&Response::default()).unwrap()
        );
    }

    #[test]
    fn binary_values_are_written_as_the_json_they_hold() {
        let response = Response::new(object(vec![
            (
                "points",
                Value::Binary(br#"[{"at":"x","value":1.0}]"#.to_vec().into()),
            ),
            ("total", Value::from(1.0)),
        ]));
        let body = encode(&response).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"data": {"points": [{"at": "x", "value": 1.0}], "total": 1.0}})
        );
    }

    #[test]
    fn numbers_are_written_as_values_write_them() {
        for value in [Some(0.0), Some(-2.5), Some(1e21), Some(f64::NAN), None] {
            let mut out = Vec::new();
            write_number(&mut out, value).unwrap();
            let as_value = value
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number);
            assert_eq!(out, serde_json::to_vec(&as_value).unwrap());
        }
    }
}
