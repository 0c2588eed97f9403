//! `GET /dashboard`: one page, its assets embedded in the binary (`include_str!`): plain
//! HTML, CSS and JavaScript, no CDN, charts drawn as inline SVG. It asks for the management
//! key and keeps it in the tab's `sessionStorage` only; all its data comes from
//! `/v0/management/...`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::reply;

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// The asset at `path`, if there is one.
pub fn asset(path: &str) -> Option<Response<Bytes>> {
    let (content_type, text) = match path {
        "/dashboard" | "/dashboard/" => ("text/html; charset=utf-8", PAGE),
        "/dashboard/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/dashboard/style.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    let mut response = reply::with_type(
        StatusCode::OK,
        content_type,
        Bytes::from_static(text.as_bytes()),
    );
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(response)
}
