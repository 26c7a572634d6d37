//! The explorer: `GET /` and its two assets, compiled into the binary (`node/explorer/`), so a
//! node serves it with no network access and nothing to install. It reads only this API
//! (`docs/EXPLORER.md`).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page, its script and its stylesheet.
const INDEX: &str = include_str!("../../explorer/index.html");
const APP: &str = include_str!("../../explorer/app.js");
const STYLE: &str = include_str!("../../explorer/style.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on each load: a node upgraded in place serves its new explorer at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /`.
pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /explorer/app.js`.
pub(super) async fn app() -> Response {
    asset(APP, "text/javascript; charset=utf-8")
}

/// `GET /explorer/style.css`.
pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// Bytes of the three assets, uncompressed: what a first load transfers besides API answers.
pub fn weight() -> usize {
    INDEX.len() + APP.len() + STYLE.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_and_weighs_less_than_its_budget() {
        assert!(INDEX.contains("/explorer/app.js") && INDEX.contains("/explorer/style.css"));
        // docs/EXPLORER.md: the first load stays under 300 KB with the API answers.
        assert!(weight() < 100 * 1024, "{} bytes", weight());
    }
}
