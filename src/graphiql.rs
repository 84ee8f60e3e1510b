//! GraphiQL at `/`, working offline: the page and its scripts are served from the binary.
//!
//! `async_graphql::http::GraphiQLSource` writes a page that loads React and GraphiQL from
//! unpkg.com, so the IDE stays blank on a closed network (an air-gapped deployment, CI, a
//! partner's laptop behind a proxy). The files under `assets/graphiql/` are the unmodified
//! UMD builds from npm (graphiql 4.1.2, react 18.3.1, react-dom 18.3.1, all MIT; their
//! licences sit beside them), embedded with `include_bytes!` and served under
//! `/assets/graphiql/`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

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
];

/// The page: the same set-up as `GraphiQLSource` (fetcher on `/graphql`, same-origin
/// credentials), with every URL local.
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
    <script src="/assets/graphiql/react.production.min.js"></script>
    <script src="/assets/graphiql/react-dom.production.min.js"></script>
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    <script src="/assets/graphiql/graphiql.min.js"></script>
    <script>
      const url = new URL('/graphql', window.location.origin).toString();
      ReactDOM.createRoot(document.getElementById('graphiql')).render(
        React.createElement(GraphiQL, {
          fetcher: GraphiQL.createFetcher({
            url,
            fetch: (input, init = {}) => fetch(input, { ...init, credentials: 'same-origin' }),
          }),
          defaultEditorToolsVisibility: true,
        })
      );
    </script>
  </body>
</html>
"#;

/// `/` (the page) and `/assets/graphiql/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
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
