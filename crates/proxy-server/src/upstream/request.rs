//! A chat-completions request on its way upstream, parsed no further than needed.
//!
//! A client's own chat request is read once into a small borrowed summary (model, stream,
//! asked output tokens) and kept as bytes: an OpenAI-compatible upstream gets those bytes
//! untouched, and the body is parsed into a `Value` only when something must change in it (a
//! model alias, the output-token cap, Qwen's OAuth body shape). The quick read does not check
//! everything a full parse does (a lone UTF-16 surrogate in a string, nesting past 128 levels):
//! such a body passes as it is, and is refused with 400 only where it must be parsed. A
//! translated request arrives parsed; it is serialized as it is at most once, also before the
//! Qwen shape changes it, so that an OpenAI-compatible credential tried after a Qwen one still
//! gets the original.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::layers::request_id::LoggedId;

/// A chat-completions request for [`Upstream::chat`](super::Upstream::chat).
#[derive(Debug)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) stream: bool,
    /// The client request's id, for warnings.
    pub(crate) id: LoggedId,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// The client's bytes, known to be a JSON object.
    Raw {
        bytes: Bytes,
        /// The largest of its `max_tokens` and `max_completion_tokens`.
        output_tokens: Option<u64>,
    },
    /// Parsed; `bytes` is its serialization once made.
    Parsed { json: Value, bytes: Option<Bytes> },
}

/// Why a client's body is not a chat request.
#[derive(Debug)]
pub(crate) enum Malformed {
    /// JSON, but not an object.
    NotAnObject,
    /// Not JSON (or an object with a field twice).
    Json(serde_json::Error),
    /// No `model`, or one that is not a string.
    NoModel,
}

/// The fields of a client's body the proxy looks at; everything else is only validated.
#[derive(Deserialize)]
struct Summary<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
}

impl ChatRequest {
    /// A client's chat-completions body.
    ///
    /// # Errors
    ///
    /// [`Malformed`] when it is not a JSON object with a string `model`.
    pub(crate) fn from_client(bytes: Bytes, id: LoggedId) -> Result<Self, Malformed> {
        // A derived `Deserialize` also takes an array (its fields by position): only an object
        // is a request.
        let is_object = bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
        let summary: Summary<'_> = match serde_json::from_slice(&bytes) {
            Ok(summary) if is_object => summary,
            Err(error) if is_object || error.is_syntax() || error.is_eof() => {
                return Err(Malformed::Json(error));
            }
            Ok(_) | Err(_) => return Err(Malformed::NotAnObject),
        };
        let model = summary
            .model
            .and_then(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get()).ok())
            .ok_or(Malformed::NoModel)?
            .into_owned();
        let stream = summary.stream.is_some_and(|raw| raw.get() == "true");
        let output_tokens = [summary.max_tokens, summary.max_completion_tokens]
            .into_iter()
            .flatten()
            .filter_map(|raw| raw.get().parse::<u64>().ok())
            .max();
        Ok(Self {
            model,
            stream,
            id,
            body: Body::Raw {
                bytes,
                output_tokens,
            },
        })
    }

    /// A request built by a translator.
    pub(crate) fn from_json(model: String, stream: bool, json: Value, id: LoggedId) -> Self {
        Self {
            model,
            stream,
            id,
            body: Body::Parsed { json, bytes: None },
        }
    }

    /// The largest of `max_tokens` and `max_completion_tokens` the request asks for.
    pub(crate) fn output_tokens(&self) -> Option<u64> {
        match &self.body {
            Body::Raw { output_tokens, .. } => *output_tokens,
            Body::Parsed { json, .. } => ["max_tokens", "max_completion_tokens"]
                .iter()
                .filter_map(|field| json.get(field).and_then(Value::as_u64))
                .max(),
        }
    }

    /// The body to change, parsed on first need.
    ///
    /// # Errors
    ///
    /// The full parse's error for a body only the quick read accepted.
    pub(crate) fn json_mut(&mut self) -> Result<&mut Value, serde_json::Error> {
        if let Body::Raw { bytes, .. } = &self.body {
            let json = serde_json::from_slice(bytes)?;
            self.body = Body::Parsed { json, bytes: None };
        }
        match &mut self.body {
            Body::Parsed { json, bytes } => {
                *bytes = None;
                Ok(json)
            }
            Body::Raw { .. } => unreachable!("parsed just above"),
        }
    }

    /// Done changing it: the bodies to send.
    pub(crate) fn into_outgoing(self) -> Outgoing {
        match self.body {
            Body::Raw { bytes, .. } => Outgoing {
                as_sent: Some(bytes),
                json: None,
                for_qwen: None,
            },
            Body::Parsed { json, bytes } => Outgoing {
                as_sent: bytes,
                json: Some(json),
                for_qwen: None,
            },
        }
    }
}

/// The bodies of a request's attempts, each made once, on first need: as it is (for
/// OpenAI-compatible upstreams) and reshaped for Qwen's OAuth endpoint.
#[derive(Debug)]
pub(crate) struct Outgoing {
    as_sent: Option<Bytes>,
    json: Option<Value>,
    for_qwen: Option<Bytes>,
}

impl Outgoing {
    /// The body as it is.
    pub(crate) fn as_sent(&mut self) -> Bytes {
        let Self { as_sent, json, .. } = self;
        as_sent
            .get_or_insert_with(|| serialize(json.as_ref().unwrap_or(&Value::Null)))
            .clone()
    }

    /// The body reshaped by `reshape` (in place) and serialized; [`as_sent`](Self::as_sent)
    /// still gives the body as it was.
    ///
    /// # Errors
    ///
    /// The full parse's error for a body only the quick read accepted.
    pub(crate) fn for_qwen(
        &mut self,
        reshape: impl FnOnce(&mut Value),
    ) -> Result<Bytes, serde_json::Error> {
        if let Some(body) = &self.for_qwen {
            return Ok(body.clone());
        }
        // The original is kept as bytes before the reshaping changes the `Value`.
        let original = self.as_sent();
        let mut json = match self.json.take() {
            Some(json) => json,
            None => serde_json::from_slice(&original)?,
        };
        reshape(&mut json);
        Ok(self.for_qwen.insert(serialize(&json)).clone())
    }
}

fn serialize(json: &Value) -> Bytes {
    // Serializing a `Value` cannot fail (its map keys are strings).
    Bytes::from(serde_json::to_vec(json).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(body: &str) -> Result<ChatRequest, Malformed> {
        ChatRequest::from_client(Bytes::from(body.to_owned()), LoggedId::default())
    }

    #[test]
    fn a_client_body_is_summarized_and_sent_as_it_came() {
        let body = r#"{"model":"m\u0031","stream":true,"max_tokens":9,"max_completion_tokens":70,"messages":[]}"#;
        let request = client(body).expect("a chat request");
        assert_eq!(request.model, "m1");
        assert!(request.stream);
        assert_eq!(request.output_tokens(), Some(70));
        assert_eq!(request.into_outgoing().as_sent(), body.as_bytes());
    }

    #[test]
    fn only_a_true_stream_streams_and_odd_token_counts_are_ignored() {
        for body in [
            r#"{"model":"m","stream":"true"}"#,
            r#"{"model":"m","stream":null}"#,
            r#"{"model":"m"}"#,
        ] {
            assert!(!client(body).expect("a chat request").stream, "{body}");
        }
        let request = client(r#"{"model":"m","max_tokens":-1,"max_completion_tokens":1.5}"#)
            .expect("a chat request");
        assert_eq!(request.output_tokens(), None);
    }

    #[test]
    fn malformed_bodies_are_told_apart() {
        for body in [
            "{\"model\": ",
            "{} {}",
            "[1",
            r#"{"model":"a","model":"b"}"#,
        ] {
            assert!(matches!(client(body), Err(Malformed::Json(_))), "{body}");
        }
        for body in [r#"["m", true]"#, " \"model\"", "7", "null"] {
            assert!(
                matches!(client(body), Err(Malformed::NotAnObject)),
                "{body}"
            );
        }
        for body in ["{}", r#"{"model": 7}"#, r#"{"model": null}"#] {
            assert!(matches!(client(body), Err(Malformed::NoModel)), "{body}");
        }
    }

    #[test]
    fn a_change_is_sent_and_each_body_is_made_once() {
        let mut request = client(r#"{"model":"a","max_tokens":5}"#).expect("a chat request");
        request.json_mut().expect("JSON")["model"] = json!("b");
        assert_eq!(request.output_tokens(), Some(5));
        let mut outgoing = request.into_outgoing();
        let sent = outgoing.as_sent();
        assert_eq!(sent, r#"{"model":"b","max_tokens":5}"#.as_bytes());
        assert_eq!(
            outgoing.as_sent().as_ptr(),
            sent.as_ptr(),
            "serialized once"
        );
    }

    #[test]
    fn reshaping_for_qwen_leaves_the_body_as_sent_alone() {
        let reshape = |json: &mut Value| json["shaped"] = json!(true);
        let original = r#"{"model":"a"}"#;
        let mut from_client = client(original).expect("a chat request").into_outgoing();
        let mut translated = ChatRequest::from_json(
            "a".into(),
            false,
            json!({"model": "a"}),
            LoggedId::default(),
        )
        .into_outgoing();
        for outgoing in [&mut from_client, &mut translated] {
            let shaped = outgoing.for_qwen(reshape).expect("JSON");
            assert_eq!(shaped, r#"{"model":"a","shaped":true}"#.as_bytes());
            let again = outgoing
                .for_qwen(|_| panic!("reshaped twice"))
                .expect("JSON");
            assert_eq!(again, shaped);
            assert_eq!(outgoing.as_sent(), original.as_bytes());
        }
    }

    #[test]
    fn a_body_only_the_quick_read_accepts_passes_as_it_is_and_is_never_replaced() {
        let lone_surrogate = r#"{"model":"a","messages":[{"role":"user","content":"\udc00"}]}"#;
        let mut request = client(lone_surrogate).expect("the quick read accepts it");
        assert!(request.json_mut().is_err(), "the full parse refuses it");

        let mut outgoing = client(lone_surrogate)
            .expect("a chat request")
            .into_outgoing();
        assert_eq!(outgoing.as_sent(), lone_surrogate.as_bytes());
        assert!(outgoing.for_qwen(|_| {}).is_err());
        assert_eq!(outgoing.as_sent(), lone_surrogate.as_bytes());
    }
}
