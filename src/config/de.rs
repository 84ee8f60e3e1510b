//! Typing the interpolated TOML tree: a small `Deserializer` over `toml::Value` whose
//! error type keeps serde's errors *structured*.
//!
//! Why not `toml::Value`'s own deserializer: its errors are pre-formatted strings such
//! as ``invalid type: string "hunter2", expected u64``, which (a) repeat the offending
//! value, and a value in the wrong place may be a secret, and (b) cannot be reworded
//! into "what is wrong, what is allowed". Here serde hands us the unknown key and the
//! list of allowed keys, the missing key, the kind of value found and the kind
//! expected, and [`DeError`]'s `Display` words them without ever printing a value.
//! `serde_path_to_error` wraps this deserializer to supply the key path.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Expected, IntoDeserializer, Unexpected, Visitor};

/// A `toml::Value` (already `${}`-interpolated) as a serde `Deserializer`.
pub(super) struct ValueDeserializer(pub(super) toml::Value);

/// What went wrong while typing one value; the key path is added by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeError {
    /// A key the table does not define.
    UnknownKey {
        key: String,
        allowed: &'static [&'static str],
    },
    /// A required key is absent.
    MissingKey(&'static str),
    /// A value of the wrong kind (a string where a number belongs, ...).
    WrongType { found: String, expected: String },
    /// A value of the right kind that does not fit (a negative or too large number).
    WrongValue { found: String, expected: String },
    /// A string that is not one of an enum's names.
    UnknownVariant {
        value: String,
        allowed: &'static [&'static str],
    },
    /// A message from a field's own parser (socket address, URL, time zone, ...).
    Custom(String),
}

impl std::error::Error for DeError {}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::UnknownKey { allowed: [], .. } => {
                f.write_str("unknown key; this table takes no keys")
            }
            DeError::UnknownKey { allowed, .. } => {
                write!(f, "unknown key; allowed: {}", allowed.join(", "))
            }
            DeError::MissingKey(key) => write!(f, "missing key {key}"),
            DeError::WrongType { found, expected } | DeError::WrongValue { found, expected } => {
                write!(f, "expected {expected}, found {found}")
            }
            DeError::UnknownVariant { value, allowed } => {
                write!(
                    f,
                    "unknown value {value:?}; allowed: {}",
                    allowed.join(", ")
                )
            }
            DeError::Custom(message) => f.write_str(message),
        }
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> DeError {
        DeError::Custom(message.to_string())
    }

    fn invalid_type(found: Unexpected<'_>, expected: &dyn Expected) -> DeError {
        DeError::WrongType {
            found: kind_of(&found, false),
            expected: friendly_expected(expected),
        }
    }

    fn invalid_value(found: Unexpected<'_>, expected: &dyn Expected) -> DeError {
        DeError::WrongValue {
            found: kind_of(&found, true),
            expected: friendly_expected(expected),
        }
    }

    fn invalid_length(len: usize, expected: &dyn Expected) -> DeError {
        DeError::Custom(format!("expected {expected}, found {len} items"))
    }

    fn unknown_variant(variant: &str, allowed: &'static [&'static str]) -> DeError {
        DeError::UnknownVariant {
            value: variant.to_owned(),
            allowed,
        }
    }

    fn unknown_field(field: &str, allowed: &'static [&'static str]) -> DeError {
        DeError::UnknownKey {
            key: field.to_owned(),
            allowed,
        }
    }

    fn missing_field(field: &'static str) -> DeError {
        DeError::MissingKey(field)
    }
}

/// Names the kind of a value, never the value. With `out_of_range`, a number of the
/// right kind is described by why it was refused.
fn kind_of(found: &Unexpected<'_>, out_of_range: bool) -> String {
    let kind = match found {
        Unexpected::Signed(n) if out_of_range && *n < 0 => "a negative integer",
        Unexpected::Signed(_) | Unexpected::Unsigned(_) if out_of_range => {
            "an integer out of range"
        }
        Unexpected::Signed(_) | Unexpected::Unsigned(_) => "an integer",
        Unexpected::Float(_) => "a float",
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "nothing",
        Unexpected::Option => "an optional value",
        Unexpected::Seq => "an array",
        Unexpected::Map => "a table",
        Unexpected::NewtypeStruct
        | Unexpected::Enum
        | Unexpected::UnitVariant
        | Unexpected::NewtypeVariant
        | Unexpected::TupleVariant
        | Unexpected::StructVariant => "a structured value",
        Unexpected::Other(description) => description,
    };
    kind.to_owned()
}

/// Rewords serde's Rust-flavoured expectations (`u64`, `struct CacheConfig`, `a
/// sequence`) for someone editing a TOML file.
fn friendly_expected(expected: &dyn Expected) -> String {
    let rust = expected.to_string();
    let max = match rust.as_str() {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        _ => None,
    };
    if let Some(max) = max {
        return format!("a whole number from 0 to {max}");
    }
    match rust.as_str() {
        "u64" | "usize" => "a whole number of 0 or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "an array".to_owned(),
        "path string" => "a file path (a string)".to_owned(),
        s if s.starts_with("struct ") || s == "a map" => "a table".to_owned(),
        _ => rust,
    }
}

impl<'de> IntoDeserializer<'de, DeError> for ValueDeserializer {
    type Deserializer = ValueDeserializer;

    fn into_deserializer(self) -> ValueDeserializer {
        self
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            toml::Value::String(s) => visitor.visit_string(s),
            toml::Value::Integer(i) => visitor.visit_i64(i),
            toml::Value::Float(f) => visitor.visit_f64(f),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            // No setting is a TOML date-time; say so rather than guess a string form.
            toml::Value::Datetime(_) => Err(de::Error::invalid_type(
                Unexpected::Other("a TOML date-time"),
                &visitor,
            )),
            toml::Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(ValueDeserializer));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            toml::Value::Table(table) => {
                let mut map = MapDeserializer::new(
                    table
                        .into_iter()
                        .map(|(key, value)| (key, ValueDeserializer(value))),
                );
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    /// TOML has no null: a present key is always `Some`; an absent one never gets here
    /// (serde's derive turns it into `None`).
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    /// Enums in the config are plain names (`scopes = ["read"]`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            toml::Value::String(name) => visitor.visit_enum(name.into_deserializer()),
            other => ValueDeserializer(other).deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be typed, not read
    struct Sample {
        count: u32,
        name: String,
        flags: Option<Vec<bool>>,
    }

    fn type_sample(text: &str) -> Result<Sample, (String, DeError)> {
        let value = toml::Value::Table(text.parse::<toml::Table>().expect("valid TOML"));
        serde_path_to_error::deserialize(ValueDeserializer(value))
            .map_err(|err| (err.path().to_string(), err.into_inner()))
    }

    #[test]
    fn a_well_formed_table_is_typed() {
        let sample = type_sample("count = 3\nname = \"x\"\nflags = [true, false]").expect("valid");
        assert_eq!(sample.count, 3);
        assert_eq!(sample.flags, Some(vec![true, false]));
    }

    #[test]
    fn a_wrong_type_names_both_kinds_but_not_the_value() {
        let (path, err) = type_sample("count = \"hunter2\"\nname = \"x\"").expect_err("wrong type");
        assert_eq!(path, "count");
        assert_eq!(
            err.to_string(),
            "expected a whole number from 0 to 4294967295, found a string"
        );
    }

    #[test]
    fn a_number_out_of_range_says_so() {
        let (_, err) = type_sample("count = -1\nname = \"x\"").expect_err("negative");
        assert_eq!(
            err.to_string(),
            "expected a whole number from 0 to 4294967295, found a negative integer"
        );
        let (_, err) = type_sample("count = 4294967296\nname = \"x\"").expect_err("too large");
        assert_eq!(
            err.to_string(),
            "expected a whole number from 0 to 4294967295, found an integer out of range"
        );
    }

    #[test]
    fn an_unknown_key_is_in_the_path_and_the_allowed_keys_are_listed() {
        let (path, err) =
            type_sample("count = 1\nname = \"x\"\nnmae = \"y\"").expect_err("unknown");
        assert_eq!(path, "nmae");
        assert_eq!(err.to_string(), "unknown key; allowed: count, name, flags");
    }

    #[test]
    fn an_array_element_of_the_wrong_type_is_named_by_index() {
        let (path, err) =
            type_sample("count = 1\nname = \"x\"\nflags = [true, 1]").expect_err("bad element");
        assert_eq!(path, "flags[1]");
        assert_eq!(err.to_string(), "expected true or false, found an integer");
    }

    #[test]
    fn a_date_time_is_refused_as_any_setting() {
        let (path, err) = type_sample("count = 1\nname = 1979-05-27").expect_err("date-time");
        assert_eq!(path, "name");
        assert_eq!(err.to_string(), "expected a string, found a TOML date-time");
    }
}
