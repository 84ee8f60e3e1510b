//! The example operations in `schema/examples/*.graphql` and their machine-readable header.
//!
//! Shared by the integration tests (`tests/api/examples.rs`) and the load benchmark
//! (`benches/load.rs`, through `#[path]`), so that both read the documented call counts the
//! same way. A header line is a comment of the form `# key: value`:
//!
//! - `# calls: help_scout=2 connectycube=4 ...`: upstream calls of one cold run, per provider, as
//!   the gateway makes them (asserted by the tests; a provider left out means 0);
//! - `# minimum: ...`: the fewest calls the upstream APIs allow (same form), explained in the
//!   file's comment; the tests require `calls` to equal it, so a change that makes the gateway
//!   spend more fails until it is justified here;
//! - `# errors: OUT_OF_RETENTION ...` (optional): error codes the answer may carry;
//! - `# variables: from=-7d to=0d` (optional): `DateTime` variables as whole days relative to
//!   UTC midnight today, for operations whose window must follow the clock.
//!
//! A *session* file has `# step: from=-45d to=-38d zone=UTC` lines instead (one request per
//! step, `zone=workspace` for the workspace's zone): its cost follows the calendar, so it has
//! no `calls`/`minimum` lines; its test computes the minimum from the providers' grids and
//! checks the `# session-range: LOW..HIGH` line. [`ExampleFile::all`] leaves sessions out.

// Each of the two crates that include this file uses a different subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

/// The providers as the sandbox's call log names them, in the order reports list them.
pub const PROVIDERS: [&str; 5] = [
    "help_scout",
    "connectycube",
    "message2give",
    "chat_tonic",
    "xenioo",
];

/// One example operation and what its header documents.
#[derive(Debug, Clone)]
pub struct ExampleFile {
    /// The file stem, e.g. `overview`.
    pub name: String,
    /// The whole file: the GraphQL document (comments included, which GraphQL ignores).
    pub document: String,
    /// Calls of one cold run today, per provider (every provider of [`PROVIDERS`] present).
    pub calls: BTreeMap<String, u64>,
    /// The fewest calls the upstream APIs allow, per provider.
    pub minimum: BTreeMap<String, u64>,
    /// Error codes the answer may carry.
    pub errors: Vec<String>,
    /// Variable name → days relative to UTC midnight today.
    pub variables: Vec<(String, i64)>,
}

impl ExampleFile {
    /// The directory of the example files.
    pub fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/examples")
    }

    /// Reads and parses `schema/examples/{name}.graphql`.
    pub fn load(name: &str) -> Result<ExampleFile, String> {
        let path = Self::dir().join(format!("{name}.graphql"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(name, &text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every single-run example file (not the sessions, whose `# step:` lines replay one
    /// operation over several windows), sorted by name.
    pub fn all() -> Result<Vec<ExampleFile>, String> {
        let dir = Self::dir();
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
                .path();
            if path.extension().is_some_and(|ext| ext == "graphql") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    names.push(stem.to_string());
                }
            }
        }
        names.sort();
        let examples: Vec<ExampleFile> = names
            .iter()
            .map(|name| Self::load(name))
            .collect::<Result<_, _>>()?;
        Ok(examples
            .into_iter()
            .filter(|example| !example.is_session())
            .collect())
    }

    /// True for a session file (it has `# step:` lines).
    pub fn is_session(&self) -> bool {
        self.document
            .lines()
            .any(|line| line.trim().starts_with("# step:"))
    }

    /// Parses a file's text; `name` only labels it.
    pub fn parse(name: &str, text: &str) -> Result<ExampleFile, String> {
        let mut calls = None;
        let mut minimum = None;
        let mut errors = Vec::new();
        let mut variables = Vec::new();
        for line in text.lines() {
            let Some(comment) = line.trim().strip_prefix('#') else {
                continue;
            };
            let Some((key, value)) = comment.trim().split_once(':') else {
                continue;
            };
            match key.trim() {
                "calls" => calls = Some(parse_counts("calls", value)?),
                "minimum" => minimum = Some(parse_counts("minimum", value)?),
                "errors" => errors = value.split_whitespace().map(str::to_string).collect(),
                "variables" => variables = parse_variables(value)?,
                _ => {}
            }
        }
        // A session (`# step:` lines) documents its cost as arithmetic over its steps, which
        // follows the calendar; it has no fixed one-run counts.
        let session = text.lines().any(|line| line.trim().starts_with("# step:"));
        let none = || parse_counts("calls", "");
        let (calls, minimum) = match (calls, minimum) {
            (Some(calls), Some(minimum)) => (calls, minimum),
            (None, None) if session => (none()?, none()?),
            (None, _) => return Err("no `# calls: provider=N ...` header line".into()),
            (_, None) => return Err("no `# minimum: provider=N ...` header line".into()),
        };
        Ok(ExampleFile {
            name: name.to_string(),
            document: text.to_string(),
            calls,
            minimum,
            errors,
            variables,
        })
    }

    /// The variables of a run on the day `today` (UTC midnight), as a JSON object.
    pub fn variables_at(&self, today: DateTime<Utc>) -> Value {
        let object: Map<String, Value> = self
            .variables
            .iter()
            .map(|(name, days)| {
                let at = today + Duration::days(*days);
                let text = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                (name.clone(), Value::String(text))
            })
            .collect();
        Value::Object(object)
    }

    /// The sum of `calls` over providers.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// The sum of `minimum` over providers.
    pub fn total_minimum(&self) -> u64 {
        self.minimum.values().sum()
    }
}

/// One step of a session file (`# step: from=-45d to=-38d zone=UTC`): the window's ends in days
/// from UTC midnight today, and its zone (`None`: the workspace's).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub from: i64,
    pub to: i64,
    pub zone: Option<String>,
}

impl ExampleFile {
    /// The `# step:` lines, in order.
    pub fn steps(&self) -> Result<Vec<Step>, String> {
        self.document
            .lines()
            .filter_map(|line| line.trim().strip_prefix('#'))
            .filter_map(|comment| comment.trim().split_once(':'))
            .filter(|(k, _)| k.trim() == "step")
            .map(|(_, value)| {
                let mut step = Step {
                    from: 0,
                    to: 0,
                    zone: None,
                };
                for pair in value.split_whitespace() {
                    match pair.split_once('=') {
                        Some(("zone", "workspace")) => step.zone = None,
                        Some(("zone", zone)) => step.zone = Some(zone.to_string()),
                        Some((name @ ("from" | "to"), days)) => {
                            let days: i64 = days
                                .strip_suffix('d')
                                .and_then(|d| d.parse().ok())
                                .ok_or_else(|| format!("`step`: `{pair}` is not `{name}=Nd`"))?;
                            if name == "from" {
                                step.from = days;
                            } else {
                                step.to = days;
                            }
                        }
                        _ => return Err(format!("`step`: unknown `{pair}`")),
                    }
                }
                Ok(step)
            })
            .collect()
    }
}

impl Step {
    /// The step's variables (`from`, `to`, `zone`) on the day `today` (UTC midnight).
    pub fn variables_at(&self, today: DateTime<Utc>) -> Value {
        let at = |days: i64| {
            (today + Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        serde_json::json!({
            "from": at(self.from),
            "to": at(self.to),
            "zone": self.zone,
        })
    }
}

/// UTC midnight of the current day.
pub fn today() -> DateTime<Utc> {
    let now = Utc::now();
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|midnight| midnight.and_utc())
        .unwrap_or(now)
}

/// `provider=N provider=N ...` → counts for every provider of [`PROVIDERS`] (absent = 0).
fn parse_counts(key: &str, value: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut counts: BTreeMap<String, u64> = PROVIDERS.iter().map(|p| (p.to_string(), 0)).collect();
    for pair in value.split_whitespace() {
        let (provider, n) = pair.split_once('=').ok_or_else(|| {
            format!("`{key}`: `{pair}` is not `provider=N` (e.g. `help_scout=1`)")
        })?;
        let slot = counts.get_mut(provider).ok_or_else(|| {
            format!(
                "`{key}`: unknown provider `{provider}`; expected one of {}",
                PROVIDERS.join(", ")
            )
        })?;
        *slot = n
            .parse()
            .map_err(|_| format!("`{key}`: `{n}` for {provider} is not a whole number of calls"))?;
    }
    Ok(counts)
}

/// `name=-7d name=0d` → (name, days).
fn parse_variables(value: &str) -> Result<Vec<(String, i64)>, String> {
    value
        .split_whitespace()
        .map(|pair| {
            let days = pair
                .split_once('=')
                .and_then(|(name, days)| Some((name, days.strip_suffix('d')?)))
                .and_then(|(name, days)| Some((name.to_string(), days.parse().ok()?)));
            days.ok_or_else(|| {
                format!("`variables`: `{pair}` is not `name=Nd` (days from UTC midnight today, e.g. `from=-7d`)")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    // The load benchmark includes this file too and is built without the test harness, which
    // leaves these tests out but still compiles the module.
    #[allow(unused_imports)]
    use super::*;

    const HEADER: &str = "# calls: help_scout=2 xenioo=1\n# minimum: help_scout=1\n\
                          # errors: OUT_OF_RETENTION\n# variables: from=-7d to=0d\nquery Q { __typename }\n";

    #[test]
    fn a_header_gives_counts_for_every_provider_with_zero_for_those_left_out() {
        let example = ExampleFile::parse("q", HEADER).expect("valid header");
        assert_eq!(example.calls["help_scout"], 2);
        assert_eq!(example.calls["xenioo"], 1);
        assert_eq!(example.calls["connectycube"], 0);
        assert_eq!(example.calls.len(), PROVIDERS.len());
        assert_eq!((example.total_calls(), example.total_minimum()), (3, 1));
        assert_eq!(example.errors, vec!["OUT_OF_RETENTION"]);
    }

    #[test]
    fn day_variables_are_rfc3339_instants_relative_to_the_given_midnight() {
        let example = ExampleFile::parse("q", HEADER).expect("valid header");
        let today = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .expect("RFC 3339")
            .with_timezone(&Utc);
        assert_eq!(
            example.variables_at(today),
            serde_json::json!({"from": "2026-11-16T00:00:00Z", "to": "2026-11-23T00:00:00Z"})
        );
    }

    #[test]
    fn an_unknown_provider_is_refused_with_the_allowed_names() {
        let error = ExampleFile::parse("q", "# calls: helpscout=1\n# minimum:\n")
            .expect_err("unknown provider");
        assert!(error.contains("unknown provider `helpscout`"), "{error}");
        assert!(error.contains("help_scout"), "{error}");
    }

    #[test]
    fn a_file_without_a_minimum_line_is_refused() {
        let error = ExampleFile::parse("q", "# calls: xenioo=1\n").expect_err("no minimum line");
        assert!(error.contains("# minimum:"), "{error}");
    }

    #[test]
    fn a_variable_without_a_day_suffix_is_refused() {
        let error = ExampleFile::parse("q", "# calls:\n# minimum:\n# variables: from=-7\n")
            .expect_err("no `d` suffix");
        assert!(error.contains("`from=-7`"), "{error}");
    }
}
