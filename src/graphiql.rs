//! GraphiQL at `/`, working offline and opening on a query that answers.
//!
//! `async_graphql::http::GraphiQLSource` writes a page that loads React and GraphiQL from
//! unpkg.com, so the IDE stays blank on a closed network (an air-gapped deployment, CI, a
//! partner's laptop behind a proxy). The files under `assets/graphiql/` are the unmodified
//! UMD builds from npm (graphiql 4.1.2, react 18.3.1, react-dom 18.3.1,
//! @graphiql/plugin-explorer 4.0.6, all MIT; their licences sit beside them, and
//! `assets/graphiql/README.md` pins each file's version and SHA-256 and says how to update
//! them), embedded with `include_bytes!` and served under `/assets/graphiql/`.
//!
//! The editor opens on an example ([`Example`]) instead of GraphiQL's "Welcome" comment:
//! the README's example query in sandbox mode (the sandbox holds its data), and in served
//! mode a query over the last seven days, built from the configured workspaces. With API
//! keys configured, the Headers tab is pre-filled with a placeholder to replace.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Days, Utc};
use serde_json::json;

use crate::config::Config;
use crate::series::Zone;

/// One embedded file: its name under `/assets/graphiql/`, media type and bytes.
struct Asset {
    name: &'static str,
    media: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "react.production.min.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql/react.production.min.js"),
    },
    Asset {
        name: "react-dom.production.min.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    },
    Asset {
        name: "graphiql.min.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql/graphiql.min.js"),
    },
    Asset {
        name: "graphiql.min.css",
        media: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql/graphiql.min.css"),
    },
    Asset {
        name: "plugin-explorer.umd.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql/plugin-explorer.umd.js"),
    },
    Asset {
        name: "plugin-explorer.css",
        media: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql/plugin-explorer.css"),
    },
];

/// The README, for its example query (between the `example-query` markers).
const README: &str = include_str!("../README.md");

/// What the Headers tab holds when API keys are configured: a placeholder, never a key.
pub const HEADERS_PLACEHOLDER: &str = r#"{"Authorization": "Bearer <your key>"}"#;

/// How many whole days the served-mode example covers, ending at today's midnight.
const EXAMPLE_DAYS: u64 = 7;

/// The query the editor opens on (GraphiQL's `defaultQuery`: a browser that has used this
/// GraphiQL before keeps its own tabs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Example {
    /// Sandbox mode: the README's example query, whose dates the sandbox has data for.
    Readme,
    /// Served mode, open access: `workspace(id:)` of the first configured workspace, over
    /// whole days of its time zone.
    Workspace(String, Zone),
    /// Served mode with API keys. `/` is open and a browser sends no key when it loads the
    /// page, so the page cannot know whose key the editor will send; naming a workspace
    /// would show every visitor a tenant's id. `workspaces` lists exactly those the key in
    /// the Headers tab may see.
    VisibleWorkspaces,
}

/// The GraphiQL page's settings, fixed at start.
#[derive(Clone, Debug)]
pub struct Page {
    example: Example,
    /// Pre-fill the Headers tab with [`HEADERS_PLACEHOLDER`] (API keys are configured).
    key_placeholder: bool,
}

impl Page {
    /// Sandbox mode: the README's example (the sandbox config has no API keys, but a
    /// placeholder follows the config all the same).
    pub fn sandbox(config: &Config) -> Page {
        Page {
            example: Example::Readme,
            key_placeholder: !config.clients.is_empty(),
        }
    }

    /// Served mode: the first workspace under open access, the caller's own otherwise.
    pub fn served(config: &Config) -> Page {
        let example = match (config.clients.is_empty(), config.workspaces.first()) {
            (true, Some(first)) => Example::Workspace(first.id.clone(), first.time_zone),
            _ => Example::VisibleWorkspaces,
        };
        Page {
            example,
            key_placeholder: !config.clients.is_empty(),
        }
    }

    /// The query the editor opens on at `now`.
    pub fn query(&self, now: DateTime<Utc>) -> String {
        match &self.example {
            Example::Readme => readme_example()
                .map(|query| {
                    format!(
                        "# The README's example: the sandbox's workspace \"acme\" (all five \
                         providers).\n# Run it with the ▶ button; open the Explorer (left \
                         bar) to add fields.\n{query}"
                    )
                })
                // The README lost its markers: a served-mode example still answers.
                .unwrap_or_else(|| recent_query(&Example::VisibleWorkspaces, now)),
            served => recent_query(served, now),
        }
    }

    /// The options handed to the `GraphiQL` component at `now`.
    fn options(&self, now: DateTime<Utc>) -> serde_json::Value {
        let mut options = json!({
            "defaultQuery": self.query(now),
            "defaultEditorToolsVisibility": true,
        });
        if self.key_placeholder {
            options["defaultHeaders"] = json!(HEADERS_PLACEHOLDER);
            // Open on the Headers tab, where the placeholder waits to be replaced.
            options["defaultEditorToolsVisibility"] = json!("headers");
        }
        options
    }

    /// The page at `now`.
    pub fn html(&self, now: DateTime<Utc>) -> String {
        PAGE.replace(OPTIONS_MARKER, &script_json(&self.options(now)))
    }
}

/// The README's example query: the ```graphql block between `<!-- example-query` and
/// `<!-- /example-query -->` (the browser test reads the same block).
pub fn readme_example() -> Option<&'static str> {
    let (_, after) = README.split_once("<!-- example-query")?;
    let (block, _) = after.split_once("<!-- /example-query -->")?;
    let (_, code) = block.split_once("```graphql\n")?;
    let (query, _) = code.split_once("```")?;
    Some(query)
}

/// The served-mode example: the last [`EXAMPLE_DAYS`] whole days before `now`, with
/// `sources` showing who contributed. One workspace: days of its own zone (the window's
/// default zone); the caller's workspaces, which may differ in zone: UTC days.
fn recent_query(example: &Example, now: DateTime<Utc>) -> String {
    let utc = Zone::utc();
    let (zone, zone_argument) = match example {
        Example::Workspace(_, zone) => (zone, ""),
        _ => (&utc, r#", timeZone: "UTC""#),
    };
    let midnight = |date: chrono::NaiveDate| {
        zone.instant_of(
            date.and_hms_opt(0, 0, 0)
                .expect("midnight exists on every date"),
        )
    };
    let today = zone.local(now).date();
    let to = midnight(today);
    let from = midnight(today - Days::new(EXAMPLE_DAYS));
    let window = format!(
        r#"window: {{ from: "{}", to: "{}", granularity: DAY{zone_argument} }}"#,
        from.format("%Y-%m-%dT%H:%M:%SZ"),
        to.format("%Y-%m-%dT%H:%M:%SZ"),
    );
    let (intro, root) = match example {
        Example::Workspace(id, _) => (
            format!(
                "# The first workspace, \"{id}\", over the last {EXAMPLE_DAYS} days of its time \
                 zone."
            ),
            format!(r#"workspace(id: {})"#, json!(id)),
        ),
        _ => (
            format!(
                "# Every workspace your key may see, over the last {EXAMPLE_DAYS} UTC days.\n\
                 # First put your key in the Headers tab below, then press ↻ (bottom left, \
                 Re-fetch GraphQL schema) so that Docs and the Explorer load the schema."
            ),
            "workspaces".to_string(),
        ),
    };
    format!(
        r#"{intro}
# `window` is [from, to); granularity also takes HOUR, WEEK, MONTH, YEAR; timeZone any IANA zone.
# Run it with the ▶ button; open the Explorer (left bar) to add fields, Docs to read them.
{{
  {root} {{
    id
    name
    timeZone
    sources {{ provider healthy lastSuccessAt }}
    channels {{ id kind name }}
    dialogs {{
      created({window}) {{
        sources total change points {{ at value }}
      }}
    }}
    messages {{
      sent({window}) {{
        sources total min max points(fill: ZERO) {{ at value }}
      }}
    }}
  }}
}}
"#
    )
}

/// JSON that is safe inside a `<script>` element: `<`, `>` and `&` as `\u` escapes, so no
/// text in it (a query, a workspace id) can close the element.
fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const OPTIONS_MARKER: &str = "__CHATSTATS_GRAPHIQL_OPTIONS__";

/// The page: the same set-up as `GraphiQLSource` (fetcher on `/graphql`, same-origin
/// credentials) with every URL local, the explorer plugin, and the options of [`Page`] in a
/// JSON data block (`chatstats-graphiql`), which tests read too.
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>chatstats</title>
    <style>
      body { height: 100%; margin: 0; width: 100%; overflow: hidden; }
      #graphiql { height: 100vh; }
    </style>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="/assets/graphiql/graphiql.min.css">
    <link rel="stylesheet" href="/assets/graphiql/plugin-explorer.css">
    <script src="/assets/graphiql/react.production.min.js"></script>
    <script src="/assets/graphiql/react-dom.production.min.js"></script>
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    <script id="chatstats-graphiql" type="application/json">__CHATSTATS_GRAPHIQL_OPTIONS__</script>
    <script src="/assets/graphiql/graphiql.min.js"></script>
    <script src="/assets/graphiql/plugin-explorer.umd.js"></script>
    <script>
      const options = JSON.parse(document.getElementById('chatstats-graphiql').textContent);
      const url = new URL('/graphql', window.location.origin).toString();
      ReactDOM.createRoot(document.getElementById('graphiql')).render(
        React.createElement(GraphiQL, {
          ...options,
          fetcher: GraphiQL.createFetcher({
            url,
            fetch: (input, init = {}) => fetch(input, { ...init, credentials: 'same-origin' }),
          }),
          plugins: [GraphiQLPluginExplorer.explorerPlugin()],
        })
      );
    </script>
  </body>
</html>
"#;

/// `/` (the page) and `/assets/graphiql/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>(page: Page) -> Router<S> {
    Router::new()
        .route("/", get(move || async move { Html(page.html(Utc::now())) }))
        .route("/assets/graphiql/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.media));
    // The files never change within a build; a day keeps reloads cheap without pinning
    // an old GraphiQL in browsers across upgrades for long.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn config(clients: &str) -> Config {
        let toml =
            format!("{clients}\n[[workspaces]]\nid = \"north\"\n[[workspaces]]\nid = \"south\"\n");
        Config::from_toml_str(&toml, &|_| None).expect("a valid config")
    }

    const ONE_CLIENT: &str =
        "[[clients]]\nname = \"dash\"\nkey = \"k-123456\"\nworkspaces = [\"south\"]\n";

    fn noon(day: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-03-{day:02}T12:34:56Z"))
            .expect("a valid instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_readme_has_an_example_query_between_its_markers() {
        let query = readme_example().expect("README.md keeps the example-query markers");
        assert!(query.trim_start().starts_with('{'), "{query}");
        assert!(query.contains(r#"workspace(id: "acme")"#), "{query}");
    }

    #[test]
    fn sandbox_mode_opens_on_the_readme_example() {
        let page = Page::sandbox(&config(""));
        let query = page.query(noon(5));
        assert!(
            query.ends_with(readme_example().expect("example")),
            "{query}"
        );
        assert!(query.starts_with("# The README's example"), "{query}");
    }

    #[test]
    fn served_mode_with_open_access_opens_on_the_first_workspace_over_the_last_seven_days() {
        let page = Page::served(&config(""));
        assert_eq!(
            page.example,
            Example::Workspace("north".into(), Zone::utc())
        );
        let query = page.query(noon(10));
        assert!(query.contains(r#"workspace(id: "north")"#), "{query}");
        assert!(!query.contains("south"), "{query}");
        assert!(
            query.contains(r#"window: { from: "2026-03-03T00:00:00Z", to: "2026-03-10T00:00:00Z", granularity: DAY }"#),
            "{query}"
        );
    }

    #[test]
    fn the_first_workspaces_days_are_days_of_its_own_zone() {
        let toml = "[[workspaces]]\nid = \"syd\"\ntime_zone = \"Australia/Sydney\"\n";
        let config = Config::from_toml_str(toml, &|_| None).expect("a valid config");
        // 2026-03-10T12:34:56Z is 23:34 on the 10th in Sydney (UTC+11 until April).
        let query = Page::served(&config).query(noon(10));
        assert!(
            query.contains(r#"window: { from: "2026-03-02T13:00:00Z", to: "2026-03-09T13:00:00Z", granularity: DAY }"#),
            "{query}"
        );
    }

    #[test]
    fn served_mode_with_keys_names_no_workspace_and_prefills_a_placeholder_key() {
        let page = Page::served(&config(ONE_CLIENT));
        assert_eq!(page.example, Example::VisibleWorkspaces);
        let html = page.html(noon(10));
        for secret_or_tenant in ["k-123456", "north", "south"] {
            assert!(
                !html.contains(secret_or_tenant),
                "{secret_or_tenant}: {html}"
            );
        }
        let options = page.options(noon(10));
        assert_eq!(options["defaultHeaders"], HEADERS_PLACEHOLDER);
        assert_eq!(options["defaultEditorToolsVisibility"], "headers");
        let query = options["defaultQuery"].as_str().expect("a query");
        assert!(query.contains("\n  workspaces {"), "{query}");
        assert!(
            query.contains(r#"window: { from: "2026-03-03T00:00:00Z", to: "2026-03-10T00:00:00Z", granularity: DAY, timeZone: "UTC" }"#),
            "{query}"
        );
    }

    #[test]
    fn without_keys_the_headers_tab_stays_empty() {
        let options = Page::served(&config("")).options(noon(10));
        assert!(options.get("defaultHeaders").is_none(), "{options}");
    }

    #[test]
    fn nothing_in_the_options_can_close_the_script_element() {
        let page = Page {
            example: Example::Workspace("</script><script>alert(1)</script>&".into(), Zone::utc()),
            key_placeholder: true,
        };
        let html = page.html(noon(10));
        assert_eq!(
            html.matches("</script>").count(),
            PAGE.matches("</script>").count()
        );
        let opening = r#"type="application/json">"#;
        let start = html.find(opening).expect("data block") + opening.len();
        let end = start + html[start..].find("</script>").expect("its end");
        let options: serde_json::Value =
            serde_json::from_str(&html[start..end]).expect("the data block is JSON");
        assert_eq!(options, page.options(noon(10)));
    }

    /// `assets/graphiql/README.md` pins every served file by SHA-256: an update that forgets
    /// the table (or a file changed by accident) fails here.
    #[test]
    fn every_served_asset_is_pinned_in_the_assets_readme() {
        let pins = include_str!("../assets/graphiql/README.md");
        for asset in ASSETS {
            let digest = Sha256::digest(asset.bytes);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let row = pins
                .lines()
                .find(|line| line.contains(&format!("`{}`", asset.name)))
                .unwrap_or_else(|| {
                    panic!("{} has no row in assets/graphiql/README.md", asset.name)
                });
            assert!(
                row.contains(&hex),
                "{}: the pinned SHA-256 is not {hex}",
                asset.name
            );
        }
    }
}
