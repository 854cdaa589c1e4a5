//! The auditor web UI, served at `/ui/` from assets compiled into the
//! binary (`crates/collector/ui/`): plain HTML, CSS and JavaScript modules,
//! no framework, no build step.
//!
//! Every asset is sent with a strict Content-Security-Policy (`default-src
//! 'self'`, no inline script or style, no framing), `nosniff` and
//! `no-referrer`. The assets hold no secrets and need no credential; the UI
//! asks the auditor for their credential, keeps it in the tab's
//! `sessionStorage` and sends it as a bearer token to the API.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

/// The policy every UI response carries.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const API_JS: &str = include_str!("../ui/api.js");
const FORMAT_JS: &str = include_str!("../ui/format.js");
const STYLE: &str = include_str!("../ui/style.css");
const FAVICON: &str = include_str!("../ui/favicon.svg");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `/ui/…`, merged into [`crate::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/api.js",
            get(|| async { asset(API_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/format.js",
            get(|| async { asset(FORMAT_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset(FAVICON, "image/svg+xml") }),
        )
}
