//! Output a resolver writes as JSON text itself, for the HTTP transport.
//!
//! A dashboard's answer is mostly `points`: hundreds of small objects that async-graphql holds
//! as a [`Value`] each (an `IndexMap`, a `String` per instant) only to serialize and drop them
//! again. When the request carries [`RawJson`] (the HTTP handler adds it; other transports
//! serialize responses themselves and do not), a resolver may answer with
//! `Value::Binary(json_text)` instead, and [`encode`] writes that text as is. No field of the
//! schema is a binary scalar, so `Binary` has no other meaning in a response.

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
                write_str(out, name);
                out.push(b':');
                write_value(out, field)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(out, scalar)?,
    }
    Ok(())
}

/// `text` as a JSON string, as serde_json writes it. Response keys and instants have nothing
/// to escape, so they are copied as they are.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(out, text);
        return;
    }
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Integers below this are written by [`write_number`] directly: a count is most values.
const DIRECT_INTEGER_BELOW: f64 = 1e15;

/// `value` as [`Value`]'s JSON for it: a number, or null when it has none (NaN, infinite).
pub fn write_number(out: &mut Vec<u8>, value: Option<f64>) {
    match value {
        // serde_json writes a whole f64 as its digits and `.0` (`12.0`, never `-0.0` here).
        Some(v) if v.is_sign_positive() && v < DIRECT_INTEGER_BELOW && v.fract() == 0.0 => {
            out.extend_from_slice(itoa::Buffer::new().format(v as u64).as_bytes());
            out.extend_from_slice(b".0");
        }
        other => match other.and_then(serde_json::Number::from_f64) {
            // Writing into a Vec cannot fail.
            Some(number) => drop(serde_json::to_writer(out, &number)),
            // No value, NaN or infinite.
            None => out.extend_from_slice(b"null"),
        },
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
    fn strings_are_written_as_serde_json_writes_them() {
        for text in [
            "at",
            "value",
            "2025-03-09T13:00:00Z",
            "é ü",
            "quote \" back \\ tab \t \u{1}",
            "",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn numbers_are_written_as_values_write_them() {
        let around = |v: f64| [v.next_down(), v, v.next_up()];
        let edges = [0.0, 1.0, 1e15, 1e16, 9_007_199_254_740_992.0, 1e21];
        let values = edges
            .into_iter()
            .flat_map(around)
            .chain([-0.0, -1.0, -2.5, 12.0, 0.1, 123_456.75, 1e-7, f64::MAX])
            .chain([f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
            .map(Some)
            .chain([None]);
        for value in values {
            let mut out = Vec::new();
            write_number(&mut out, value);
            let as_value = value
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&as_value).unwrap(),
                "{value:?}"
            );
        }
    }
}
