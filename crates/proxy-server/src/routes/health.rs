//! `HEAD /` and `HEAD /api/hello`: 200 without a body, for clients' connectivity probes.
//!
//! `GET /healthz`: liveness and how many credentials could serve a request right now (not
//! disabled, not cooling down for any model, below their rate cap). Always 200; needs no key.

use std::time::Instant;

use http::{Response, StatusCode};
use serde_json::json;

use super::State;
use crate::api_error::json_response;
use crate::body::ProxyBody;

pub(super) fn probe() -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    response
}

pub(super) fn check(state: &State) -> Response<ProxyBody> {
    let statuses = state.upstream.pool().statuses(Instant::now());
    let usable = statuses
        .iter()
        .filter(|status| {
            status.disabled.is_none()
                && status.cooling.is_empty()
                && status
                    .requests_per_minute
                    .is_none_or(|cap| status.requests_in_window < cap.get())
        })
        .count();
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "credentials": { "total": statuses.len(), "usable": usable },
        }),
    )
}
