//! Counts of what was sent and what came back, printed as a table (visible with
//! `cargo test -- --nocapture`), and the first few failures, reported together at the end.

use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Default)]
pub struct Tally {
    /// Sent, by kind of hostile input.
    pub kinds: BTreeMap<String, u64>,
    /// HTTP statuses (`"transport error"` when no response came).
    pub statuses: BTreeMap<String, u64>,
    /// `extensions.code` of every error received.
    pub codes: BTreeMap<String, u64>,
    /// WebSocket close codes received (`"none"`: the connection ended without a close frame).
    pub closes: BTreeMap<String, u64>,
    /// One example request for each answer without a coded JSON error (`<406, uncoded>`).
    pub examples: BTreeMap<String, String>,
    /// Milliseconds spent, by kind (for the table's mean per kind).
    pub millis: BTreeMap<String, u64>,
    /// What broke a rule, at most [`MAX_FAILURES`] kept (and all counted).
    pub failures: Vec<String>,
    pub failure_count: u64,
}

const MAX_FAILURES: usize = 20;

impl Tally {
    pub fn kind(&mut self, kind: &str) {
        *self.kinds.entry(kind.to_owned()).or_default() += 1;
    }

    /// Count `code`, keeping `example` as its first example.
    pub fn code_with_example(&mut self, code: &str, example: impl FnOnce() -> String) {
        self.code(code);
        self.examples.entry(code.to_owned()).or_insert_with(example);
    }

    pub fn spent(&mut self, kind: &str, millis: u64) {
        *self.millis.entry(kind.to_owned()).or_default() += millis;
    }

    pub fn status(&mut self, status: impl ToString) {
        *self.statuses.entry(status.to_string()).or_default() += 1;
    }

    pub fn code(&mut self, code: &str) {
        *self.codes.entry(code.to_owned()).or_default() += 1;
    }

    pub fn close(&mut self, close: impl ToString) {
        *self.closes.entry(close.to_string()).or_default() += 1;
    }

    pub fn fail(&mut self, what: String) {
        self.failure_count += 1;
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(what);
        }
    }

    pub fn total(&self) -> u64 {
        self.kinds.values().sum()
    }

    pub fn merge(&mut self, other: Tally) {
        for (into, from) in [
            (&mut self.kinds, other.kinds),
            (&mut self.statuses, other.statuses),
            (&mut self.codes, other.codes),
            (&mut self.closes, other.closes),
            (&mut self.millis, other.millis),
        ] {
            for (key, n) in from {
                *into.entry(key).or_default() += n;
            }
        }
        for (key, example) in other.examples {
            self.examples.entry(key).or_insert(example);
        }
        self.failure_count += other.failure_count;
        for failure in other.failures {
            if self.failures.len() < MAX_FAILURES {
                self.failures.push(failure);
            }
        }
    }

    /// The table, one section per map, with `title` and the `extra` lines (RSS, time) on top.
    pub fn table(&self, title: &str, extra: &[String]) -> String {
        let mut out = format!("\n=== {title} ===\n");
        for line in extra {
            let _ = writeln!(out, "{line}");
        }
        for (name, map) in [
            ("kind", &self.kinds),
            ("HTTP status", &self.statuses),
            ("error code", &self.codes),
            ("WS close code", &self.closes),
        ] {
            if map.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "{name:<34} {:>8}",
                format!("total {}", map.values().sum::<u64>())
            );
            for (key, n) in map {
                let _ = match self.millis.get(key).filter(|_| name == "kind") {
                    Some(ms) => writeln!(out, "  {key:<32} {n:>8}   mean {:>5} ms", ms / n.max(&1)),
                    None => writeln!(out, "  {key:<32} {n:>8}"),
                };
            }
        }
        if !self.examples.is_empty() {
            let _ = writeln!(out, "an example of each answer without a coded JSON error:");
            for (key, example) in &self.examples {
                let _ = writeln!(out, "  {key}: {example}");
            }
        }
        let _ = writeln!(out, "rule violations: {}", self.failure_count);
        out
    }

    /// Panics listing the kept failures when any rule was broken.
    pub fn assert_clean(&self) {
        assert!(
            self.failure_count == 0,
            "{} violations, the first {}:\n{}",
            self.failure_count,
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}
