//! Building the fake's HTTP answers: JSON bodies, OAuth error bodies and WAF captcha pages.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

/// Every answer the fake gives.
pub(crate) type Reply = Response<Full<Bytes>>;

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

/// `status` with a page shaped like Alibaba Cloud WAF's captcha interstitial.
pub(crate) fn waf_page(status: u16) -> Reply {
    build(status, "text/html; charset=utf-8", WAF_PAGE.to_owned())
}

fn build(status: u16, content_type: &str, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
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
