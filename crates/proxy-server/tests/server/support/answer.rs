//! Sending a request through `Proxy::service` in-process, and reading what comes back: a whole
//! answer (JSON, errors in OpenAI's and Anthropic's shapes) or a stream of server-sent events.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Body;
use proxy_server::{Proxy, StreamError};
use serde_json::Value;
use tower::ServiceExt as _;

use super::within;

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `Retry-After` header in seconds; fails the test without one.
    pub fn retry_after_seconds(&self) -> u64 {
        self.header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds")
    }

    /// Asserts an OpenAI error body with `status` and `code`; returns its message.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
        message(&body)
    }

    /// Asserts an Anthropic error body with `status` and error `kind`; returns its message.
    pub fn anthropic_error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert_eq!(
            body.as_object().map(|fields| fields.len()),
            Some(2),
            "only type and error: {body}"
        );
        message(&body)
    }

    /// The events of an event-stream answer, as (event name, JSON data).
    pub fn events(&self) -> Vec<(String, Value)> {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("text/event-stream"));
        events(&self.text())
    }
}

/// The `error.message` of an error body.
fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

/// Sends `request` through the proxy's service in-process.
async fn send(
    proxy: &Proxy,
    request: Request<Full<Bytes>>,
) -> Response<impl Body<Data = Bytes, Error = StreamError>> {
    proxy
        .service()
        .oneshot(request)
        .await
        .expect("the service never fails")
}

/// Sends `request` through the proxy's service in-process and reads the answer whole.
pub async fn call(proxy: &Proxy, request: Request<Full<Bytes>>) -> Answer {
    within(async {
        let (parts, body) = send(proxy, request).await.into_parts();
        let body = body.collect().await.expect("a whole body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
}

/// A streamed answer: its events and how the body ended.
#[derive(Debug)]
pub struct Stream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Every event as (`event:` name, `data` JSON).
    pub events: Vec<(String, Value)>,
    /// The body ended with an error (the response was aborted) rather than cleanly.
    pub broken: bool,
}

impl Stream {
    pub fn names(&self) -> Vec<&str> {
        names(&self.events)
    }

    /// The data of every event named `name`.
    pub fn data(&self, name: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|(event, _)| event == name)
            .map(|(_, data)| data)
            .collect()
    }

    /// The last event's data.
    pub fn last(&self) -> &Value {
        &self.events.last().expect("at least one event").1
    }

    /// Asserts that every event's `type` is its name and that the sequence numbers count from 0.
    pub fn assert_well_formed(&self) {
        for (index, (name, data)) in self.events.iter().enumerate() {
            assert_eq!(data["type"], *name, "event {index}");
            assert_eq!(data["sequence_number"], index, "event {index} ({name})");
        }
    }
}

/// Sends `request` and reads the stream until it ends or breaks.
pub async fn call_stream(proxy: &Proxy, request: Request<Full<Bytes>>) -> Stream {
    within(async {
        let (parts, body) = send(proxy, request).await.into_parts();
        let mut body = std::pin::pin!(body);
        let mut bytes = Vec::new();
        let mut broken = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes.extend_from_slice(frame.data_ref().map_or(&[][..], |data| data)),
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        Stream {
            status: parts.status,
            headers: parts.headers,
            events: events(&String::from_utf8(bytes).expect("UTF-8 events")),
            broken,
        }
    })
    .await
}

/// Parses `event: NAME\ndata: JSON\n\n` events.
pub fn events(text: &str) -> Vec<(String, Value)> {
    text.split_terminator("\n\n")
        .map(|event| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|rest| rest.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an event: {event:?}"));
            let data = serde_json::from_str(data).unwrap_or_else(|error| panic!("{error}: {data}"));
            (name.to_owned(), data)
        })
        .collect()
}

/// The names of `events`, in order.
pub fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}
