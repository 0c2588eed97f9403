//! The upstream's final answer as the client gets it: a whole body with its status, or a
//! stream with the event-stream headers every streaming route sends.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::observe::completion_usage;
use super::stream::UpstreamBody;
use crate::body::ProxyBody;
use crate::meter::Meter;

/// The upstream's final answer, ready for the client.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A whole answer: a non-streaming success, or an error passed through.
    Complete {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    /// A streamed success.
    Stream {
        content_type: Option<HeaderValue>,
        body: Box<UpstreamBody>,
    },
}

impl Answer {
    /// Hands a successful answer's usage to `meter`: a whole answer's at once (its bytes stand
    /// in for the text when it reports no usage), a stream's when its body is dropped. Returns
    /// a whole answer's tokens, for the caller to count on the credential (0 for a stream,
    /// whose meter counts them, and without a meter).
    pub(crate) fn metered(mut self, meter: Option<Meter>) -> (Self, u64) {
        let Some(meter) = meter else {
            return (self, 0);
        };
        let tokens = match &mut self {
            Self::Complete { body, .. } => {
                meter.answered(completion_usage(body), body.len() as u64)
            }
            Self::Stream { body, .. } => {
                body.set_meter(meter);
                0
            }
        };
        (self, tokens)
    }

    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let (status, content_type, body, streamed) = match self {
            Self::Complete {
                status,
                content_type,
                body,
            } => (status, content_type, ProxyBody::full(body), false),
            Self::Stream { content_type, body } => {
                (StatusCode::OK, content_type, ProxyBody::stream(body), true)
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        if streamed {
            set_event_stream_headers(response.headers_mut());
        }
        if let Some(content_type) = content_type {
            response.headers_mut().insert(CONTENT_TYPE, content_type);
        } else if !streamed {
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        response
    }
}

/// The headers of a server-sent event stream: its content type, and no caching.
pub(crate) fn set_event_stream_headers(headers: &mut HeaderMap) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}
