//! A seeded generator of hostile HTTP requests: mutations of the valid seed documents
//! (truncation, byte flips, splices, token swaps, deep nesting, alias floods, wrong argument
//! types), bad variables and envelopes, wrong content types and accepts, GET/POST mixes,
//! huge headers, invalid UTF-8, persisted-query junk, batches, oversized bodies and raw
//! malformed HTTP. Request `i` depends only on the seed and `i`, so a failure names a
//! request that can be made again alone.

use reqwest::Method;
use serde_json::{json, Value};

/// xorshift64*: small, fast, deterministic; plenty to vary picks and sizes.
pub struct XorShift(u64);

impl XorShift {
    /// Any seed (0 included): splitmix64 spreads it over the state, which must not be 0.
    pub fn new(seed: u64) -> XorShift {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift((z ^ (z >> 31)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// In `low..high` (`low` when the range is empty).
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high.saturating_sub(low))
    }

    /// True `percent`% of the time.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A size spread over orders of magnitude: as many small as large.
    pub fn size(&mut self, low: usize, high: usize) -> usize {
        let (low, high) = (low.max(1) as f64, high.max(2) as f64);
        let t = self.below(1_000_000) as f64 / 1_000_000.0;
        (low * (high / low).powf(t)) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A name no schema type or field has.
    pub fn ident(&mut self) -> String {
        let n = self.range(2, 10);
        let letters: String = (0..n)
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect();
        format!("zz{letters}")
    }

    /// A random JSON value at most `depth` deep.
    pub fn json(&mut self, depth: usize) -> Value {
        match self.below(if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.next() as i64),
            3 => json!(self.below(1000) as f64 / 7.0),
            4 => json!(self.ident()),
            5 => json!(self.pick(INSTANTS).to_string()),
            6 => Value::Array((0..self.below(4)).map(|_| self.json(depth - 1)).collect()),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..self.below(4) {
                    let key = self.pick(&["from", "to", "granularity", "timeZone", "zz"]);
                    map.insert(key.to_string(), self.json(depth - 1));
                }
                Value::Object(map)
            }
        }
    }
}

const INSTANTS: &[&str] = &[
    "2025-03-01T00:00:00Z",
    "2025-02-30T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2025-03-01",
    "yesterday",
    "",
];

/// One hostile HTTP request.
pub struct HttpCase {
    pub kind: &'static str,
    pub method: Method,
    /// Path and query string, already percent-encoded.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Bytes written to a TCP socket as they are, instead of a request through reqwest.
    pub raw: Option<Vec<u8>>,
}

impl HttpCase {
    fn post(kind: &'static str, body: Vec<u8>) -> HttpCase {
        HttpCase {
            kind,
            method: Method::POST,
            target: "/graphql".into(),
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body,
            raw: None,
        }
    }

    fn query(kind: &'static str, query: &str, variables: &Value) -> HttpCase {
        HttpCase::post(
            kind,
            json!({"query": query, "variables": variables})
                .to_string()
                .into_bytes(),
        )
    }

    fn get(kind: &'static str, params: &[(&str, &[u8])]) -> HttpCase {
        let query: String = params
            .iter()
            .map(|(name, value)| format!("{name}={}", percent_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        HttpCase {
            kind,
            method: Method::GET,
            target: format!("/graphql?{query}"),
            headers: Vec::new(),
            body: Vec::new(),
            raw: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> HttpCase {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// For a failure message: kind, method, target and the start of the body.
    pub fn describe(&self, index: usize) -> String {
        let body = self.raw.as_deref().unwrap_or(&self.body);
        let shown: String = String::from_utf8_lossy(&body[..body.len().min(160)]).into();
        let target: String = self.target.chars().take(120).collect();
        format!(
            "#{index} [{}] {} {target} ({} body bytes) {shown:?}",
            self.kind,
            self.method,
            body.len()
        )
    }
}

/// Every byte but the unreserved ones as `%XX`, so any bytes (invalid UTF-8 too) fit a URL.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JSON body `{"query": "<bytes>"}` with the bytes in the string as they are (escaped as
/// JSON needs, so only invalid UTF-8 makes it invalid JSON).
fn body_with_raw_query(query: &[u8], variables: &Value) -> Vec<u8> {
    let mut body = br#"{"query": ""#.to_vec();
    for &b in query {
        match b {
            b'"' => body.extend(br#"\""#),
            b'\\' => body.extend(br"\\"),
            b'\n' => body.extend(br"\n"),
            0x00..=0x1f => body.extend(format!("\\u{b:04x}").as_bytes()),
            _ => body.push(b),
        }
    }
    body.extend(format!(r#"", "variables": {variables}}}"#).as_bytes());
    body
}

/// The variables every seed document may use (more than a document declares is allowed).
pub fn seed_variables() -> Value {
    json!({"from": "2025-03-01T00:00:00Z", "to": "2025-03-08T00:00:00Z"})
}

const CHEAP: &str = r#"{ workspace(id: "acme") { id name timeZone } }"#;

/// The kinds, each with a weight out of [`WEIGHTS`]'s sum.
const KINDS: &[(&str, usize)] = &[
    ("truncated document", 6),
    ("byte flips", 8),
    ("splice", 6),
    ("token swap", 8),
    ("deep nesting", 6),
    ("alias flood", 4),
    ("wrong argument type", 8),
    ("bad variables", 6),
    ("bad JSON envelope", 6),
    ("content type", 4),
    ("accept", 3),
    ("GET/POST mix", 6),
    ("huge headers", 3),
    ("invalid UTF-8", 4),
    ("persisted query", 4),
    ("batch", 2),
    ("random bytes", 3),
    ("oversized", 2),
    ("raw HTTP", 4),
];

/// Request `index` of the run seeded `seed`.
pub fn http_case(seed: u64, index: usize, documents: &[String]) -> HttpCase {
    let mut rng = XorShift::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let total: usize = KINDS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    let kind = KINDS
        .iter()
        .find(|(_, weight)| {
            let hit = roll < *weight;
            roll = roll.saturating_sub(*weight);
            hit
        })
        .map_or("random bytes", |(kind, _)| kind);
    // Kinds that leave the document alone mostly send a cheap one: a valid example costs
    // a full resolution, and these kinds are about the envelope, not the document.
    let envelope_only = matches!(
        kind,
        "accept"
            | "content type"
            | "huge headers"
            | "GET/POST mix"
            | "persisted query"
            | "batch"
            | "oversized"
            | "raw HTTP"
    );
    let document = if envelope_only && rng.chance(75) {
        CHEAP.to_owned()
    } else {
        rng.pick(documents).clone()
    };
    let variables = seed_variables();
    match kind {
        "truncated document" => {
            let cut = floor_char_boundary(&document, rng.below(document.len()));
            HttpCase::query(kind, &document[..cut], &variables)
        }
        "byte flips" => {
            let mut bytes = document.into_bytes();
            for _ in 0..rng.range(1, 9) {
                let at = rng.below(bytes.len());
                bytes[at] = if rng.chance(85) {
                    rng.pick(b"{}()[]:$@!.\"\\#,=| azAZ09_\n\t").to_owned()
                } else {
                    rng.next() as u8
                };
            }
            match String::from_utf8(bytes) {
                Ok(text) => HttpCase::query(kind, &text, &variables),
                Err(e) => HttpCase::post(kind, body_with_raw_query(e.as_bytes(), &variables)),
            }
        }
        "splice" => {
            let bytes = document.as_bytes();
            let a = rng.below(bytes.len());
            let b = rng.range(a, bytes.len().min(a + 400));
            let at = rng.below(bytes.len());
            let spliced: Vec<u8> = match rng.below(3) {
                // Delete a range.
                0 => [&bytes[..a], &bytes[b..]].concat(),
                // Copy a range elsewhere.
                1 => [&bytes[..at], &bytes[a..b], &bytes[at..]].concat(),
                // Repeat a range many times.
                _ => {
                    let times = rng.size(2, 200);
                    let mut out = bytes[..b].to_vec();
                    for _ in 0..times {
                        out.extend_from_slice(&bytes[a..b]);
                    }
                    out.extend_from_slice(&bytes[b..]);
                    out
                }
            };
            let text = String::from_utf8_lossy(&spliced).into_owned();
            HttpCase::query(kind, &text, &variables)
        }
        "token swap" => {
            let replacement = match rng.below(8) {
                0 => rng.ident(),
                1 => rng
                    .pick(&[
                        "query",
                        "mutation",
                        "subscription",
                        "fragment",
                        "on",
                        "null",
                        "true",
                        "schema",
                        "extend",
                        "type",
                    ])
                    .to_string(),
                2 => rng
                    .pick(&[
                        "__schema",
                        "__type",
                        "__typename",
                        "workspaces",
                        "workspace",
                        "sources",
                        "bots",
                        "requestNpsExport",
                    ])
                    .to_string(),
                3 => format!("${}", rng.ident()),
                4 => rng
                    .pick(&[
                        "...",
                        "...on Query",
                        "@skip(if: true)",
                        "@include(if: $zz)",
                        "@deprecated",
                        "!",
                        "|",
                        "&",
                        "=",
                    ])
                    .to_string(),
                5 => (rng.next() as i64).to_string(),
                6 => format!("\"{}\"", rng.ident()),
                _ => String::new(),
            };
            HttpCase::query(
                kind,
                &swap_token(&document, &mut rng, &replacement),
                &variables,
            )
        }
        "deep nesting" => deep_nesting(&mut rng, &document),
        "alias flood" => {
            let n = rng.size(2, 5_000);
            let field = rng.pick(&[
                r#"workspace(id: "acme") { id name }"#,
                "__typename",
                "workspaces { id sources { provider healthy } }",
                r#"workspace(id: "acme") { messages { sent(window: {from: $from, to: $to}) { total } } }"#,
            ]);
            let aliases: String = (0..n).map(|i| format!("a{i}: {field}\n")).collect();
            HttpCase::query(
                kind,
                &format!("query($from: DateTime!, $to: DateTime!) {{ {aliases} }}"),
                &variables,
            )
        }
        "wrong argument type" => {
            let value = wrong_literal(&mut rng);
            HttpCase::query(
                kind,
                &swap_argument(&document, &mut rng, &value),
                &variables,
            )
        }
        "bad variables" => {
            let variables = match rng.below(5) {
                0 => rng.json(3),
                1 => json!({"from": rng.json(2), "to": rng.json(2)}),
                2 => json!({"from": *rng.pick(INSTANTS), "to": *rng.pick(INSTANTS)}),
                3 => {
                    let n = rng.size(1, 3_000);
                    json!({"from": format!("{}[", "[".repeat(n)), "to": "x".repeat(n)})
                }
                _ => {
                    let depth = rng.size(10, 3_000);
                    let text = format!(
                        r#"{{"query": {}, "variables": {{"from": {}1{}}}}}"#,
                        Value::String(document.clone()),
                        "[".repeat(depth),
                        "]".repeat(depth)
                    );
                    return HttpCase::post(kind, text.into_bytes());
                }
            };
            HttpCase::query(kind, &document, &variables)
        }
        "bad JSON envelope" => {
            let valid = json!({"query": document, "variables": variables}).to_string();
            let bytes = valid.as_bytes();
            let body = match rng.below(7) {
                0 => bytes[..rng.below(bytes.len())].to_vec(),
                1 => {
                    let mut out = bytes.to_vec();
                    for _ in 0..rng.range(1, 5) {
                        let at = rng.below(out.len());
                        out[at] = *rng.pick(b"{}[]\",:\\ 0n");
                    }
                    out
                }
                2 => [bytes, *rng.pick(&[&b"}"[..], b",", b" x", b"\0", b"{}"])].concat(),
                3 => format!(
                    r#"{{"query": "{{ __typename }}", "query": {}}}"#,
                    Value::String(document)
                )
                .into_bytes(),
                4 => [&b"\xef\xbb\xbf"[..], bytes].concat(),
                5 => json!({"query": document, "variables": variables, rng.ident(): rng.json(3)})
                    .to_string()
                    .into_bytes(),
                _ => json!({rng.pick(&["Query", "QUERY", "query ", "q"]).to_string(): document})
                    .to_string()
                    .into_bytes(),
            };
            HttpCase::post(kind, body)
        }
        "content type" => {
            let content_type = rng
                .pick(&[
                    "text/plain",
                    "application/graphql",
                    "application/graphql-response+json",
                    "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=zz",
                    "application/json; charset=latin1",
                    "application/json;;;",
                    "APPLICATION/JSON",
                    "application/jsonp",
                    "*/*",
                    "",
                    "application/json, text/plain",
                ])
                .to_string();
            let body = if rng.chance(50) {
                document.into_bytes()
            } else {
                json!({"query": document, "variables": variables})
                    .to_string()
                    .into_bytes()
            };
            HttpCase::post(kind, body).header("content-type", content_type)
        }
        "accept" => {
            let accept = rng
                .pick(&[
                    "text/html",
                    "image/png",
                    "application/xml",
                    "application/graphql-response+json;q=0",
                    "",
                    ",,,",
                    "*/*;q=0.1, text/plain",
                    "application/*",
                    "application/json; charset=utf-16",
                ])
                .to_string();
            HttpCase::query(kind, &document, &variables).header("accept", accept)
        }
        "GET/POST mix" => get_post_mix(&mut rng, &document, &variables),
        "huge headers" => huge_headers(&mut rng, &document, &variables),
        "invalid UTF-8" => {
            let junk: Vec<u8> = (0..rng.range(1, 6))
                .map(|_| 0x80 + rng.below(0x80) as u8)
                .collect();
            let at = rng.below(document.len());
            let at = floor_char_boundary(&document, at);
            let query = [
                &document.as_bytes()[..at],
                &junk,
                &document.as_bytes()[at..],
            ]
            .concat();
            match rng.below(3) {
                0 => HttpCase::post(kind, body_with_raw_query(&query, &variables)),
                1 => HttpCase::get(kind, &[("query", &query)]),
                _ => HttpCase::query(kind, &document, &variables).header(
                    rng.pick::<&str>(&[
                        "x-chatstats-trace",
                        "accept",
                        "content-type",
                        "x-api-key",
                        "user-agent",
                    ]),
                    junk,
                ),
            }
        }
        "persisted query" => {
            let hash = match rng.below(5) {
                0 => json!("0".repeat(64)),
                1 => json!(rng.ident()),
                2 => json!("f".repeat(rng.size(1, 100_000))),
                3 => rng.json(2),
                _ => json!(format!("{:064x}", rng.next())),
            };
            let extension = match rng.below(4) {
                0 => json!({"version": 1, "sha256Hash": hash}),
                1 => json!({"version": rng.json(1), "sha256Hash": hash}),
                2 => rng.json(3),
                _ => json!({"version": 1}),
            };
            let mut body = json!({"extensions": {"persistedQuery": extension}});
            if rng.chance(50) {
                body["query"] = json!(document);
            }
            HttpCase::post(kind, body.to_string().into_bytes())
        }
        "batch" => {
            let n = rng.size(1, 2_000);
            let one = json!({"query": document, "variables": variables});
            HttpCase::post(kind, Value::Array(vec![one; n]).to_string().into_bytes())
        }
        "random bytes" => {
            let n = rng.size(1, 20_000);
            let bytes = rng.bytes(n);
            HttpCase::post(kind, bytes)
        }
        "oversized" => {
            // Mostly just over `max_document_bytes`; a few over the body limit.
            let n = if rng.chance(90) {
                rng.size(33_000, 300_000)
            } else {
                rng.size(1_000_000, 4_000_000)
            };
            let padding = " ".repeat(n);
            HttpCase::query(kind, &format!("{document}{padding}"), &variables)
        }
        _ => raw_http(&mut rng, &document),
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Byte ranges of the names (identifiers) in `text`.
fn names(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

fn swap_token(document: &str, rng: &mut XorShift, replacement: &str) -> String {
    let names = names(document);
    let (start, end) = *rng.pick(&names);
    format!("{}{replacement}{}", &document[..start], &document[end..])
}

/// A literal of a type no argument of ours has where it is put (or a variable never declared).
fn wrong_literal(rng: &mut XorShift) -> String {
    match rng.below(10) {
        0 => (rng.next() as i64).to_string(),
        1 => format!("{}.5e300", rng.below(1000)),
        2 => format!("\"{}\"", rng.ident()),
        3 => rng.pick(&["true", "false", "null"]).to_string(),
        4 => rng.ident().to_uppercase(),
        5 => "[1, \"a\", null]".to_owned(),
        6 => "{zz: 1}".to_owned(),
        7 => format!("${}", rng.ident()),
        8 => "\"\"\"block\nstring\"\"\"".to_owned(),
        _ => "99999999999999999999999999".to_owned(),
    }
}

/// `document` with the value of one argument (or input field) replaced by `value`.
fn swap_argument(document: &str, rng: &mut XorShift, value: &str) -> String {
    // Value positions: right after `name:` inside parentheses or braces.
    let bytes = document.as_bytes();
    let mut starts = Vec::new();
    for (i, window) in bytes.windows(2).enumerate() {
        if window == b": " && i > 0 && (bytes[i - 1].is_ascii_alphanumeric()) {
            starts.push(i + 2);
        }
    }
    if starts.is_empty() {
        return document.to_owned();
    }
    let start = *rng.pick(&starts);
    let mut end = start;
    if bytes.get(start) == Some(&b'"') {
        end += 1;
        while end < bytes.len() && bytes[end] != b'"' {
            end += 1;
        }
        end = (end + 1).min(bytes.len());
    } else if bytes.get(start) == Some(&b'{') {
        let mut depth = 0;
        while end < bytes.len() {
            match bytes[end] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end += 1;
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
    } else {
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || b"$_-.".contains(&bytes[end]))
        {
            end += 1;
        }
    }
    // Field aliases (`chat: channel(...)`) match too: a wrong literal there is a parse error,
    // which is hostile input as well.
    format!("{}{value}{}", &document[..start], &document[end..])
}

fn deep_nesting(rng: &mut XorShift, document: &str) -> HttpCase {
    let kind = "deep nesting";
    let n = rng.size(8, 5_000);
    let variables = seed_variables();
    let query = match rng.below(6) {
        0 => format!("{{ {}id{} }}", "workspaces { ".repeat(n), " }".repeat(n)),
        1 => format!(
            r#"{{ workspace(id: {}"acme"{}) {{ id }} }}"#,
            "[".repeat(n),
            "]".repeat(n)
        ),
        2 => format!(
            r#"{{ workspace(id: "acme") {{ messages {{ sent(window: {}{{from: $from, to: $to}}{}) {{ total }} }} }} }}"#,
            "{zz: ".repeat(n),
            "}".repeat(n)
        ),
        3 => format!(
            "{{ {}__typename{} }}",
            "... on Query { ".repeat(n),
            " }".repeat(n)
        ),
        // Unbalanced: only openers, at a random place in a real document.
        4 => {
            let at = floor_char_boundary(document, rng.below(document.len()));
            format!("{}{}{}", &document[..at], "{(".repeat(n), &document[at..])
        }
        _ => format!(
            "{{ __schema {{ types {{ {}name{} }} }} }}",
            "fields { type { ofType { ".repeat(n.min(60)),
            " } } }".repeat(n.min(60))
        ),
    };
    HttpCase::query(kind, &query, &variables)
}

fn get_post_mix(rng: &mut XorShift, document: &str, variables: &Value) -> HttpCase {
    let kind = "GET/POST mix";
    let variables_text = variables.to_string();
    match rng.below(8) {
        // A GET of the document, maybe with broken variables.
        0 => HttpCase::get(
            kind,
            &[
                ("query", document.as_bytes()),
                ("variables", if rng.chance(50) { variables_text.as_bytes() } else { b"{nope" }),
            ],
        ),
        // A GET of a mutation.
        1 => HttpCase::get(
            kind,
            &[("query", br#"mutation { requestNpsExport(workspaceId: "acme", window: {from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z"}) { requestedAt } }"#)],
        ),
        // A GET carrying a body (ignored) and no query.
        2 => {
            let mut case = HttpCase::get(kind, &[]);
            case.body = json!({"query": document}).to_string().into_bytes();
            case.headers.push(("content-type".into(), b"application/json".to_vec()));
            case
        }
        // A POST with the query in the URL and an empty or JSON body.
        3 => {
            let mut case = HttpCase::post(kind, if rng.chance(50) { Vec::new() } else { b"{}".to_vec() });
            case.target = format!("/graphql?query={}", percent_encode(document.as_bytes()));
            case
        }
        // Other methods.
        4 => {
            let mut case = HttpCase::query(kind, document, variables);
            case.method = rng
                .pick(&[Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS, Method::HEAD, Method::TRACE])
                .clone();
            case
        }
        // GET with parameters repeated, empty, or of the wrong shape.
        5 => HttpCase::get(
            kind,
            &[
                ("query", document.as_bytes()),
                ("query", b"{ __typename }"),
                ("operationName", rng.ident().as_bytes()),
                ("extensions", b"[1]"),
            ],
        ),
        // Other paths.
        6 => {
            let mut case = HttpCase::query(kind, document, variables);
            case.target = rng
                .pick(&["/graphql/", "/GRAPHQL", "/graphql/../graphql", "//graphql", "/graphql%00", "/graphql?", "/graphql#x"])
                .to_string();
            case
        }
        // A GET upgrade request that is not a proper WebSocket handshake.
        _ => HttpCase::get(kind, &[("query", document.as_bytes())])
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-protocol", rng.pick(&["graphql-transport-ws", "graphql-ws", "zz", ""]).to_string()),
    }
}

fn huge_headers(rng: &mut XorShift, document: &str, variables: &Value) -> HttpCase {
    let kind = "huge headers";
    let mut case = HttpCase::query(kind, document, variables);
    match rng.below(3) {
        0 => {
            let n = rng.size(1_000, 600_000);
            let name = rng
                .pick(&[
                    "x-api-key",
                    "authorization",
                    "cookie",
                    "x-zz",
                    "accept",
                    "x-chatstats-trace",
                ])
                .to_string();
            let value: Vec<u8> = (0..n).map(|_| b'!' + rng.below(94) as u8).collect();
            case = case.header(&name, value);
        }
        1 => {
            for i in 0..rng.size(10, 400) {
                case.headers.push((format!("x-zz-{i}"), b"v".to_vec()));
            }
        }
        _ => {
            for _ in 0..rng.size(10, 400) {
                case.headers
                    .push(("x-api-key".into(), rng.ident().into_bytes()));
            }
        }
    }
    case
}

/// Malformed HTTP/1.1 written to the socket: hyper must refuse it, not the handler crash.
fn raw_http(rng: &mut XorShift, document: &str) -> HttpCase {
    let body = json!({"query": document}).to_string();
    let len = body.len();
    let raw: Vec<u8> = match rng.below(10) {
        0 => format!("POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", len / 2).into_bytes(),
        1 => format!("POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n{body}\r\n0\r\n\r\n").into_bytes(),
        2 => format!("POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{body}").into_bytes(),
        3 => b"GET /graphql?query=%7B__typename%7D HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        4 => b"GET /graphql?query=%7B__typename%7D HTTP/1.1\r\nHost: x\r\nBad Header: v\r\nConnection: close\r\n\r\n".to_vec(),
        5 => [&b"GET /graphql?query=%7B__typename%7D HTTP/1.1\r\nHost: x\r\nX-Zz: a\x01b\x7f"[..], b"\r\nConnection: close\r\n\r\n"].concat(),
        6 => b"G\xffT /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        7 => format!("POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -{len}\r\nConnection: close\r\n\r\n{body}").into_bytes(),
        8 => [&b"GET /graphql?query=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..]].concat(),
        _ => {
            let n = rng.size(1, 2_000);
            let mut bytes = rng.bytes(n);
            bytes.extend_from_slice(b"\r\n\r\n");
            bytes
        }
    };
    HttpCase {
        kind: "raw HTTP",
        method: Method::POST,
        target: "/graphql".into(),
        headers: Vec::new(),
        body: Vec::new(),
        raw: Some(raw),
    }
}
