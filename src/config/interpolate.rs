//! `${NAME}` substitution on the parsed TOML tree, before any typing.
//!
//! Working on the `toml::Value` tree (not the raw text) means a substituted value can
//! never change the TOML structure (a quote in a token cannot end the string), and we
//! know the key path of every string for error messages. Only string *values* are
//! expanded, never keys, and each value is expanded once: text that comes from the
//! environment is used literally, so a secret that happens to contain `${` is safe.

use super::ConfigError;

/// Where a `${...}` reference went wrong. Messages name the variable when it is a
/// well-formed name, and never repeat the surrounding string (it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Unset(String),
    Unclosed,
    Empty,
    BadName,
}

impl Problem {
    fn message(&self) -> String {
        const FORMS: &str = "write ${NAME} with NAME made of letters, digits and '_' \
                             (not starting with a digit), or $${ for a literal ${";
        match self {
            Problem::Unset(name) => format!("environment variable {name} is not set"),
            Problem::Unclosed => format!("a ${{ reference has no closing '}}'; {FORMS}"),
            Problem::Empty => format!("empty ${{}} reference; {FORMS}"),
            Problem::BadName => format!("malformed ${{...}} reference; {FORMS}"),
        }
    }
}

/// Replaces every `${NAME}` in every string value of `value` (recursively) with
/// `env(NAME)`; `$${` stands for a literal `${`. `path` is the key path of `value`
/// (`""` for the document root).
pub(super) fn interpolate(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => {
            *text = expand(text, env).map_err(|problem| ConfigError::Env {
                path: path.to_owned(),
                problem: problem.message(),
            })?;
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{index}]"), env)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &child, env)?;
            }
        }
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
    Ok(())
}

fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Problem> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let from_dollar = &rest[dollar..];
        if let Some(tail) = from_dollar.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = from_dollar.strip_prefix("${") {
            let end = tail.find('}').ok_or(Problem::Unclosed)?;
            let name = &tail[..end];
            check_name(name)?;
            let value = env(name).ok_or_else(|| Problem::Unset(name.to_owned()))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            // A lone `$` (e.g. in a password pattern) is ordinary text.
            out.push('$');
            rest = &from_dollar[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The portable shell rule for variable names: `[A-Za-z_][A-Za-z0-9_]*`.
fn check_name(name: &str) -> Result<(), Problem> {
    let mut chars = name.chars();
    match chars.next() {
        None => Err(Problem::Empty),
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {
            if chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(())
            } else {
                Err(Problem::BadName)
            }
        }
        Some(_) => Err(Problem::BadName),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("127.0.0.1:4000".to_owned()),
            "TOKEN" => Some("t0k${EN}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn a_reference_embedded_in_text_is_replaced_in_place() {
        assert_eq!(
            expand("http://${HOST}/api", &env),
            Ok("http://127.0.0.1:4000/api".to_owned())
        );
        assert_eq!(
            expand("Bearer-${TOKEN}", &env),
            Ok("Bearer-t0k${EN}".to_owned())
        );
    }

    #[test]
    fn a_substituted_value_is_not_expanded_again() {
        assert_eq!(expand("${TOKEN}", &env), Ok("t0k${EN}".to_owned()));
    }

    #[test]
    fn a_doubled_dollar_before_a_brace_is_a_literal_reference() {
        assert_eq!(expand("a$${HOST}b", &env), Ok("a${HOST}b".to_owned()));
        assert_eq!(expand("cost: $5, $$", &env), Ok("cost: $5, $$".to_owned()));
    }

    #[test]
    fn unset_unclosed_empty_and_badly_named_references_are_errors() {
        assert_eq!(
            expand("${NOPE}", &env),
            Err(Problem::Unset("NOPE".to_owned()))
        );
        assert_eq!(expand("abc${", &env), Err(Problem::Unclosed));
        assert_eq!(expand("${HOST", &env), Err(Problem::Unclosed));
        assert_eq!(expand("${}", &env), Err(Problem::Empty));
        assert_eq!(expand("${1BAD}", &env), Err(Problem::BadName));
        assert_eq!(expand("${A-B}", &env), Err(Problem::BadName));
    }

    #[test]
    fn errors_carry_the_key_path_including_array_indexes() {
        let mut value: toml::Value = toml::from_str(
            "[[workspaces]]\nid = \"a\"\n[[workspaces]]\nid = \"b\"\n\
             [workspaces.chat_tonic]\naccess_token = \"${CHAT_TONIC_TOKEN}\"\n",
        )
        .expect("valid TOML");
        let err = interpolate(&mut value, "", &env).expect_err("variable is unset");
        assert_eq!(
            err.to_string(),
            "config: workspaces[1].chat_tonic.access_token: environment variable CHAT_TONIC_TOKEN is not set"
        );
    }

    #[test]
    fn a_malformed_reference_error_does_not_repeat_the_string() {
        let mut value: toml::Value =
            toml::from_str("key = \"sup3rs3cret${oops\"").expect("valid TOML");
        let err = interpolate(&mut value, "", &env).expect_err("reference is unclosed");
        let message = err.to_string();
        assert!(message.starts_with("config: key: a ${ reference has no closing '}'"));
        assert!(!message.contains("sup3rs3cret"), "{message}");
    }
}
