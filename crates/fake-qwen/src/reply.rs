//! Building the fake's HTTP answers: JSON bodies, OAuth and OpenAI error bodies, WAF captcha
//! pages, and the body type that also carries streamed (and deliberately cut) answers.

use std::fmt;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};

/// The body of every answer: whole or streamed. A [`Cut`] error makes hyper abort the
/// connection mid-answer, without the terminating chunk.
pub(crate) type Body = UnsyncBoxBody<Bytes, Cut>;

/// Every answer the fake gives.
pub(crate) type Reply = Response<Body>;

/// The error a streamed answer ends with when the test scripted a connection cut.
#[derive(Debug)]
pub(crate) struct Cut;

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fake Qwen was told to cut this answer off")
    }
}

impl std::error::Error for Cut {}

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `status` with a JSON body.
pub(crate) fn json(status: u16, body: &serde_json::Value) -> Reply {
    build(status, "application/json", body.to_string())
}

/// `status` with the OAuth error shape `{"error": ..., "error_description": ...}`.
pub(crate) fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    json(
        status,
        &serde_json::json!({ "error": error, "error_description": description }),
    )
}

/// `status` with a JSON `server_error`, as a failing upstream would answer.
pub(crate) fn server_error(status: u16) -> Reply {
    oauth_error(
        status,
        "server_error",
        "The fake Qwen server was told to fail this request",
    )
}

/// `status` with a JSON body already serialized.
pub(crate) fn json_text(status: u16, body: String) -> Reply {
    build(status, "application/json", body)
}

/// `status` with the OpenAI error shape `{"error": {"code", "message", "type"}}` Qwen's model API
/// answers with.
pub(crate) fn api_error(status: u16, code: &str, message: &str, kind: &str) -> Reply {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message, "type": kind } }),
    )
}

/// `status` (a 3xx) with `Location: location` and a short HTML body, as web servers redirect.
pub(crate) fn redirect(status: u16, location: &str) -> Reply {
    let mut reply = build(
        status,
        "text/html; charset=utf-8",
        format!("<html><body>Moved to <a href=\"{location}\">here</a>.</body></html>\n"),
    );
    if let Ok(value) = header::HeaderValue::from_str(location) {
        reply.headers_mut().insert(header::LOCATION, value);
    }
    reply
}

/// `status` with the JSON text `body` sent in chunks of `chunk_size` bytes, without
/// `Content-Length`, so the client learns its size only by reading it.
pub(crate) fn chunked_json(status: u16, body: Vec<u8>, chunk_size: usize) -> Reply {
    let chunks: std::collections::VecDeque<Bytes> = body
        .chunks(chunk_size.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    with_body(
        status,
        "application/json",
        Chunks(chunks)
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

/// A body of ready chunks whose total size is not announced.
struct Chunks(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.0
                .pop_front()
                .map(|chunk| Ok(hyper::body::Frame::data(chunk))),
        )
    }
}

/// `status` with a page shaped like Alibaba Cloud WAF's captcha interstitial.
pub(crate) fn waf_page(status: u16) -> Reply {
    build(status, "text/html; charset=utf-8", WAF_PAGE.to_owned())
}

fn build(status: u16, content_type: &str, body: String) -> Reply {
    with_body(status, content_type, full(body))
}

/// `status` with `body` of `content_type`.
pub(crate) fn with_body(status: u16, content_type: &str, body: Body) -> Reply {
    let mut reply = Response::new(body);
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        reply.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    reply
}

const WAF_PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Access verification</title>
<script>var aliyun_waf_aa = "fake-qwen"; var aliyun_waf_bb = "0";</script>
</head>
<body>
<div id="aliyun_waf_captcha_container">
<p>We have detected unusual traffic from your network. Please slide to complete the captcha.</p>
<div id="nc_1_wrapper" class="nc-container captcha"></div>
</div>
</body>
</html>
"#;
