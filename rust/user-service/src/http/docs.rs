//! The API's own description: `GET /openapi.json` (the OpenAPI 3.1 document generated from
//! `proto/`) and `GET /docs`, a human API reference rendered from it by Swagger UI.
//!
//! Both are compiled into the binary: the document is `grimos_proto::OPENAPI_JSON`, so it
//! always describes the code it was built with, and Swagger UI is the copy `just vendor` keeps
//! in `assets/swagger-ui/` (npm `swagger-ui-dist`, pinned). Nothing is fetched at build or run
//! time, so the page works offline. The page's URLs are relative (`docs/...`,
//! `openapi.json`), so it also works behind a proxy that serves user-service under a prefix.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Swagger UI bundle (its scripts and styles in one file).
const SWAGGER_UI_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
/// Swagger UI's stylesheet.
const SWAGGER_UI_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

/// The reference page: Swagger UI's container, its assets and [`INIT_JS`]. The empty icon keeps
/// browsers from asking for `/favicon.ico`, which is not served.
const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>grimOS API reference</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"#;

/// Starts Swagger UI on the served document. `validatorUrl: null` keeps it from sending the
/// document to swagger.io's online validator: the page makes no request off this server.
const INIT_JS: &str = r##"window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  docExpansion: "list",
});
"##;

/// The routes of the document and the reference page.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
        .route("/docs/init.js", get(init_js))
        .route("/docs/swagger-ui-bundle.js", get(swagger_ui_js))
        .route("/docs/swagger-ui.css", get(swagger_ui_css))
}

/// A 200 with `body` as `content_type`. Everything here is fixed at build time, so clients may
/// keep it for a while; the page and the document are revalidated sooner than the bundle.
fn asset(content_type: &'static str, max_age: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static(max_age)),
        ],
        body,
    )
        .into_response()
}

async fn openapi_json() -> Response {
    asset(
        "application/json",
        "public, max-age=60",
        grimos_proto::OPENAPI_JSON.as_bytes(),
    )
}

async fn docs() -> Response {
    asset(
        "text/html; charset=utf-8",
        "public, max-age=60",
        DOCS_HTML.as_bytes(),
    )
}

async fn init_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        "public, max-age=60",
        INIT_JS.as_bytes(),
    )
}

async fn swagger_ui_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        "public, max-age=3600",
        SWAGGER_UI_JS,
    )
}

async fn swagger_ui_css() -> Response {
    asset(
        "text/css; charset=utf-8",
        "public, max-age=3600",
        SWAGGER_UI_CSS,
    )
}
