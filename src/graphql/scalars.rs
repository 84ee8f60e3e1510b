//! The custom scalars: `DateTime` (an RFC 3339 instant) and `TimeZone` (IANA name or offset).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, Utc};

use crate::error::code;
use crate::series::{window, Zone};

/// Our scalars' parse errors carry their code themselves: the client's input, whichever
/// phase async-graphql parses them in.
fn bad_input<T: async_graphql::InputType>(error: InputValueError<T>) -> InputValueError<T> {
    error.with_extension("code", code::BAD_USER_INPUT)
}

/// An instant in RFC 3339 form, e.g. `2025-03-01T00:00:00Z` or `2025-03-01T10:00:00+10:00`.
/// Output is always UTC with a `Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instant(pub DateTime<Utc>);

/// An instant in RFC 3339 form, e.g. `2025-03-01T00:00:00Z` or `2025-03-01T10:00:00+10:00`.
/// Output is always UTC with a `Z`.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for Instant {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| Instant(t.with_timezone(&Utc)))
                .map_err(|e| {
                    bad_input(InputValueError::custom(format!(
                        "{s:?} is not an RFC 3339 instant ({e}); write e.g. \"2025-03-01T00:00:00Z\""
                    )))
                }),
            _ => Err(bad_input(InputValueError::expected_type(value))),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.rfc3339())
    }
}

impl Instant {
    /// `to_rfc3339_opts(SecondsFormat::AutoSi, true)`, written directly for bucket starts
    /// (see [`window::rfc3339`]).
    pub(crate) fn rfc3339(&self) -> String {
        window::rfc3339(self.0)
    }
}

/// A time zone: an IANA name (`Australia/Sydney`, `Europe/Madrid`, `UTC`) or a fixed UTC
/// offset (`+10:00`, `-03:30`, `Z`). Calendar buckets (days, weeks, months) follow it,
/// including daylight-saving changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeZone(pub Zone);

/// A time zone: an IANA name (`Australia/Sydney`, `Europe/Madrid`, `UTC`) or a fixed UTC
/// offset (`+10:00`, `-03:30`, `Z`). Calendar buckets (days, weeks, months) follow it,
/// including daylight-saving changes.
#[Scalar(
    name = "TimeZone",
    specified_by_url = "https://www.iana.org/time-zones"
)]
impl ScalarType for TimeZone {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Zone::parse(s)
                .map(TimeZone)
                .map_err(|e| bad_input(InputValueError::custom(e.to_string()))),
            _ => Err(bad_input(InputValueError::expected_type(value))),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone as _};

    #[test]
    fn instants_are_written_as_chrono_writes_them() {
        let instants = [
            Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(7, 1, 9, 5, 4, 3).unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 4, 13, 30, 0).unwrap()
                + chrono::Duration::milliseconds(250),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            DateTime::<Utc>::MIN_UTC,
        ];
        for instant in instants {
            assert_eq!(
                Instant(instant).rfc3339(),
                instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }
}
