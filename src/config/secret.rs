//! [`Secret`]: a credential from the config that never prints itself.

use std::fmt;

use serde::Deserialize;

/// A credential (API key, token, client secret) read from the config.
///
/// `Debug` and `Display` print `[redacted]`, so a secret cannot reach a log line, an
/// error message or a `{:?}` of the whole [`Config`](super::Config) by accident. There
/// is deliberately no `Serialize`: the only way to the value is [`Secret::expose`],
/// which makes every use easy to find in review.
#[derive(Clone, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential, e.g. one the sandbox generates for its simulated upstreams.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself, for the one place that puts it into a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the credential is the empty string (always a configuration mistake).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Compares without an early exit on the first differing byte, so that code which
/// (against advice) compares a presented API key with `==` does not leak through
/// timing how much of the key was right. Only the length can be learnt.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_print_redacted_instead_of_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }

    #[test]
    fn secrets_are_equal_only_when_every_byte_matches() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("abcd"));
        assert_ne!(Secret::new(""), Secret::new("a"));
    }
}
