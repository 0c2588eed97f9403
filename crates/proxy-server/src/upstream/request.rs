//! A chat-completions request on its way upstream, parsed no further than needed.
//!
//! A client's own chat request is read once into a small borrowed summary (model, stream,
//! asked output tokens) and kept as bytes: an OpenAI-compatible upstream gets those bytes
//! untouched. A change (a model alias, the output-token cap, Qwen's OAuth body shape) is
//! spliced into the bytes ([`splice`](super::splice)): the fields it changes are written
//! anew and every other byte is copied, without parsing the body into a `Value`. The quick
//! read does not check everything a full parse does (a lone UTF-16 surrogate or invalid
//! UTF-8 in a string, a number out of range, nesting 128 levels deep): such a body passes as it
//! is, and is refused with 400, with the full parse's error, where something must change in it.
//! A translated request arrives as a `Value`, with the client's reasoning request beside it
//! (api-translate's [`Reasoning`]); it is serialized once. The reasoning fields depend on the
//! credential, which is chosen later and may change on failover: each credential's body is
//! that serialization with its style's fields spliced in (`reasoning_effort`, Qwen's
//! `enable_thinking` and `thinking_budget`, or none), and for Qwen OAuth accounts the Qwen
//! shape spliced into that. Each of these bodies is made at most once per request
//! ([`Outgoing::for_flavor`]), and a credential of another kind tried after one still gets
//! its own.

use std::borrow::Cow;
use std::sync::Arc;

use api_translate::reasoning::{Reasoning, Style};
use bytes::Bytes;
use credential_pool::{Flavor, ReasoningStyle};
use serde::Deserialize;
use serde::de::{Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use usage_ledger::Api;

use super::shape;
use super::splice;
use crate::client::Client;
use crate::conversation::{BodySignals, Text};
use crate::layers::request_id::LoggedId;

/// The fields that ask for a number of output tokens.
const OUTPUT_TOKEN_FIELDS: [&str; 2] = ["max_tokens", "max_completion_tokens"];

/// A chat-completions request for [`Upstream::chat`](super::Upstream::chat).
#[derive(Debug)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) stream: bool,
    /// The client request's id, for warnings.
    pub(crate) id: LoggedId,
    /// The conversation it belongs to, to keep on one credential ([`crate::conversation`]).
    pub(crate) conversation: Option<u64>,
    /// Who sent it: its client key limits the credentials it may use.
    pub(crate) client: Arc<Client>,
    /// The API it came in on, for the usage ledger.
    pub(crate) api: Api,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// The client's bytes, known to be a JSON object, maybe with fields spliced in.
    Raw {
        bytes: Bytes,
        /// Its `max_tokens` and `max_completion_tokens`.
        output_tokens: [Option<u64>; 2],
        /// Whether a full parse is known to accept it (see [`splice::check`]).
        checked: bool,
    },
    /// Built by a translator, with the client's reasoning request, which is written per
    /// credential.
    Parsed(Value, Option<Reasoning>),
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

/// The fields of a client's body the proxy looks at, and the signals of its conversation,
/// read in one pass; everything else is only validated.
#[derive(Default)]
struct Summary<'a> {
    model: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    max_tokens: Option<&'a RawValue>,
    max_completion_tokens: Option<&'a RawValue>,
    signals: BodySignals<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Summary<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SummaryVisitor)
    }
}

struct SummaryVisitor;

impl<'de> Visitor<'de> for SummaryVisitor {
    type Value = Summary<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a chat-completions request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summary<'de>, A::Error> {
        let mut summary = Summary::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            // Given twice, a field the proxy acts on would be ambiguous: the upstream might
            // read the other one.
            let field = match &*key {
                "model" => &mut summary.model,
                "stream" => &mut summary.stream,
                "max_tokens" => &mut summary.max_tokens,
                "max_completion_tokens" => &mut summary.max_completion_tokens,
                other => {
                    summary.signals.read(other, &mut map)?;
                    continue;
                }
            };
            if field.is_some() {
                return Err(A::Error::custom(format_args!("duplicate field `{key}`")));
            }
            *field = map.next_value()?;
        }
        Ok(summary)
    }

    /// An array is no request, but is read to its end first, so that a cut one is told
    /// apart as broken JSON.
    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Summary<'de>, A::Error> {
        while items.next_element::<IgnoredAny>()?.is_some() {}
        Err(A::Error::invalid_type(serde::de::Unexpected::Seq, &self))
    }
}

impl ChatRequest {
    /// A client's chat-completions body, in the conversation `conversation` names from the
    /// body's signals (read in the same pass).
    ///
    /// # Errors
    ///
    /// [`Malformed`] when it is not a JSON object with a string `model`.
    pub(crate) fn from_client(
        bytes: Bytes,
        id: LoggedId,
        conversation: impl FnOnce(&BodySignals<'_>) -> Option<u64>,
    ) -> Result<Self, Malformed> {
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
            .map(|raw| raw.and_then(|raw| token_count(raw.get())));
        let conversation = conversation(&summary.signals);
        Ok(Self {
            model,
            stream,
            id,
            conversation,
            client: Client::anonymous(),
            api: Api::ChatCompletions,
            body: Body::Raw {
                bytes,
                output_tokens,
                checked: false,
            },
        })
    }

    /// A request built by a translator of `api`, sent to `upstream_model` (the client's
    /// model after its alias), with what the client asked of the model's reasoning.
    pub(crate) fn from_json(
        api: Api,
        upstream_model: &str,
        stream: bool,
        mut json: Value,
        reasoning: Option<Reasoning>,
        id: LoggedId,
    ) -> Self {
        if json.get("model").and_then(Value::as_str) != Some(upstream_model) {
            json["model"] = Value::from(upstream_model);
        }
        Self {
            model: upstream_model.to_owned(),
            stream,
            id,
            conversation: None,
            client: Client::anonymous(),
            api,
            body: Body::Parsed(json, reasoning),
        }
    }

    /// The same request, from `client`, in `conversation`.
    pub(crate) fn routed(mut self, client: Arc<Client>, conversation: Option<u64>) -> Self {
        self.client = client;
        self.conversation = conversation.or(self.conversation);
        self
    }

    /// The largest of `max_tokens` and `max_completion_tokens` the request asks for.
    pub(crate) fn output_tokens(&self) -> Option<u64> {
        match &self.body {
            Body::Raw { output_tokens, .. } => output_tokens.iter().flatten().copied().max(),
            Body::Parsed(json, _) => OUTPUT_TOKEN_FIELDS
                .iter()
                .filter_map(|field| json.get(field).and_then(Value::as_u64))
                .max(),
        }
    }

    /// Asks for `model` (an alias's target) instead.
    ///
    /// # Errors
    ///
    /// The full parse's error for a body only the quick read accepted.
    pub(crate) fn set_model(&mut self, model: &str) -> Result<(), serde_json::Error> {
        match &mut self.body {
            Body::Parsed(json, _) => json["model"] = Value::from(model),
            Body::Raw { bytes, checked, .. } => {
                splice_fields(bytes, checked, &["model"], |out| {
                    // Writing to a `Vec` does not fail.
                    let _ = serde_json::to_writer(out, model);
                })?;
            }
        }
        model.clone_into(&mut self.model);
        Ok(())
    }

    /// Lowers `max_tokens` and `max_completion_tokens` above `cap` to `cap` (agents such as
    /// Claude Code ask for more than Qwen's models can produce, which the upstream refuses
    /// with a 400).
    ///
    /// # Errors
    ///
    /// The full parse's error for a body only the quick read accepted.
    pub(crate) fn cap_output_tokens(&mut self, cap: u32) -> Result<(), serde_json::Error> {
        let over = |tokens: Option<u64>| tokens > Some(u64::from(cap));
        match &mut self.body {
            Body::Parsed(json, _) => {
                for field in OUTPUT_TOKEN_FIELDS {
                    if over(json.get(field).and_then(Value::as_u64)) {
                        json[field] = Value::from(cap);
                    }
                }
            }
            Body::Raw {
                bytes,
                output_tokens,
                checked,
            } => {
                let names = match output_tokens.map(over) {
                    [true, true] => &OUTPUT_TOKEN_FIELDS[..],
                    [true, false] => &OUTPUT_TOKEN_FIELDS[..1],
                    [false, true] => &OUTPUT_TOKEN_FIELDS[1..],
                    [false, false] => return Ok(()),
                };
                splice_fields(bytes, checked, names, |out| {
                    // Writing to a `Vec` does not fail.
                    let _ = serde_json::to_writer(out, &cap);
                })?;
                *output_tokens = output_tokens.map(|tokens| tokens.map(|n| n.min(u64::from(cap))));
            }
        }
        Ok(())
    }

    /// Done changing it: the bodies to send.
    pub(crate) fn into_outgoing(self) -> Outgoing {
        match self.body {
            Body::Raw { bytes, checked, .. } => Outgoing {
                as_sent: bytes,
                checked,
                reasoning: None,
                made: Default::default(),
            },
            // Serializing a `Value` cannot fail (its map keys are strings), and a full parse
            // need not accept what it gives (it may nest deeper): it is never parsed in full.
            Body::Parsed(json, reasoning) => Outgoing {
                as_sent: Bytes::from(serde_json::to_vec(&json).unwrap_or_default()),
                checked: true,
                reasoning,
                made: Default::default(),
            },
        }
    }
}

/// A token count as a full parse's `as_u64` reads it: a JSON integer that fits in a `u64`.
fn token_count(value: &str) -> Option<u64> {
    value.parse().ok()
}

/// Rewrites the fields `names` of the client's body, each value by `write_value` (see
/// [`splice::write_object`]); the body is checked first unless it was.
fn splice_fields(
    bytes: &mut Bytes,
    checked: &mut bool,
    names: &[&str],
    write_value: impl Fn(&mut Vec<u8>),
) -> Result<(), serde_json::Error> {
    let text = checked_text(bytes, *checked)?;
    *checked = true;
    // A number or a model name is rarely longer than what it replaces.
    let mut out = Vec::with_capacity(text.len() + 64);
    splice::write_object(&mut out, splice::fields(text), names, |out, _| {
        write_value(out);
    });
    *bytes = Bytes::from(out);
    Ok(())
}

/// The body as text, after [`splice::check`] unless `checked`.
fn checked_text(bytes: &[u8], checked: bool) -> Result<&str, serde_json::Error> {
    if checked {
        std::str::from_utf8(bytes).map_err(serde_json::Error::custom)
    } else {
        splice::check(bytes)
    }
}

/// The bodies of a request's attempts, one per kind of credential, each made on first need and
/// at most once: for OpenAI-compatible upstreams the body as it is, with the reasoning fields
/// of the upstream's style, and for Qwen OAuth accounts that body with Qwen's fields,
/// reshaped.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The body as it came, or as the translator made it (without reasoning fields).
    as_sent: Bytes,
    /// Whether a full parse is known to accept `as_sent`, or need not.
    checked: bool,
    /// A translated request's reasoning request.
    reasoning: Option<Reasoning>,
    /// The bodies made so far, by [`slot`].
    made: [Option<Bytes>; SLOTS],
}

/// One body per reasoning style for OpenAI-compatible upstreams, and one for Qwen OAuth.
const SLOTS: usize = 4;

/// Where the body for a credential of `flavor` is kept.
fn slot(flavor: Flavor) -> usize {
    match flavor {
        Flavor::OpenAiCompatible(ReasoningStyle::Effort) => 0,
        Flavor::OpenAiCompatible(ReasoningStyle::Qwen) => 1,
        Flavor::OpenAiCompatible(ReasoningStyle::Off) => 2,
        Flavor::QwenOAuth => 3,
    }
}

/// api-translate's name for a credential's reasoning style.
fn style(style: ReasoningStyle) -> Style {
    match style {
        ReasoningStyle::Effort => Style::Effort,
        ReasoningStyle::Qwen => Style::Qwen,
        ReasoningStyle::Off => Style::Off,
    }
}

impl Outgoing {
    /// The body for a credential of `flavor`; `model` is the model the upstream is asked for
    /// (Qwen's thinking switch depends on it).
    ///
    /// # Errors
    ///
    /// The full parse's error for a body only the quick read accepted, which Qwen's shape
    /// must change.
    pub(crate) fn for_flavor(
        &mut self,
        flavor: Flavor,
        model: &str,
    ) -> Result<Bytes, serde_json::Error> {
        let slot = slot(flavor);
        if let Some(body) = &self.made[slot] {
            return Ok(body.clone());
        }
        let body = match flavor {
            Flavor::OpenAiCompatible(reasoning) => self.with_reasoning(reasoning, model),
            Flavor::QwenOAuth => {
                let plain =
                    self.for_flavor(Flavor::OpenAiCompatible(ReasoningStyle::Qwen), model)?;
                // `plain` is `as_sent`, or a translator's body with fields spliced in, which
                // is `checked` like the body it was made from.
                Bytes::from(shape::for_qwen(checked_text(&plain, self.checked)?))
            }
        };
        Ok(self.made[slot].insert(body).clone())
    }

    /// The body with the reasoning fields of `reasoning` written into it: `as_sent` itself
    /// when there are none.
    fn with_reasoning(&self, reasoning: ReasoningStyle, model: &str) -> Bytes {
        let fields = self
            .reasoning
            .as_ref()
            .map(|asked| asked.fields(style(reasoning), model))
            .unwrap_or_default();
        if fields.is_empty() {
            return self.as_sent.clone();
        }
        // Only a translator's body has a reasoning request: the serialization of an object,
        // so UTF-8.
        let Ok(text) = std::str::from_utf8(&self.as_sent) else {
            return self.as_sent.clone();
        };
        let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        let mut out = Vec::with_capacity(text.len() + 64);
        splice::write_object(&mut out, splice::fields(text), &names, |out, index| {
            // Writing to a `Vec` does not fail.
            let _ = serde_json::to_writer(out, &fields[index].1);
        });
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An OpenAI-compatible upstream of the default reasoning style.
    const PLAIN: Flavor = Flavor::OpenAiCompatible(ReasoningStyle::Effort);

    fn client(body: &str) -> Result<ChatRequest, Malformed> {
        ChatRequest::from_client(Bytes::from(body.to_owned()), LoggedId::default(), |_| None)
    }

    /// The body an OpenAI-compatible upstream gets.
    fn plain(outgoing: &mut Outgoing) -> Bytes {
        outgoing.for_flavor(PLAIN, "m").expect("a body")
    }

    fn translated(json: Value, reasoning: Option<Reasoning>) -> ChatRequest {
        ChatRequest::from_json(
            Api::Messages,
            "a",
            false,
            json,
            reasoning,
            LoggedId::default(),
        )
    }

    #[test]
    fn a_client_body_is_summarized_and_sent_as_it_came() {
        let body = r#"{"model":"m\u0031","stream":true,"max_tokens":9,"max_completion_tokens":70,"messages":[]}"#;
        let request = client(body).expect("a chat request");
        assert_eq!(request.model, "m1");
        assert!(request.stream);
        assert_eq!(request.output_tokens(), Some(70));
        assert_eq!(plain(&mut request.into_outgoing()), body.as_bytes());
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
        request.set_model("b").expect("JSON");
        assert_eq!(request.model, "b");
        assert_eq!(request.output_tokens(), Some(5));
        let mut outgoing = request.into_outgoing();
        let sent = plain(&mut outgoing);
        assert_eq!(sent, r#"{"model":"b","max_tokens":5}"#.as_bytes());
        assert_eq!(
            plain(&mut outgoing).as_ptr(),
            sent.as_ptr(),
            "serialized once"
        );
    }

    #[test]
    fn an_alias_and_the_cap_are_spliced_in_and_every_other_byte_is_kept() {
        let body = r#"{ "messages": [ {"role":"user","content":"caf\u00e9 ☕"} ], "model" : "a\/b",
            "max_tokens": 100000, "max_completion_tokens": 10, "x": 1.50 }"#;
        let mut request = client(body).expect("a chat request");
        request.set_model("qwen \"3\"").expect("JSON");
        request.cap_output_tokens(65_536).expect("JSON");
        assert_eq!(request.output_tokens(), Some(65_536));
        assert_eq!(
            plain(&mut request.into_outgoing()),
            r#"{"messages":[ {"role":"user","content":"caf\u00e9 ☕"} ],"model":"qwen \"3\"","max_tokens":65536,"max_completion_tokens":10,"x":1.50}"#.as_bytes()
        );

        // Under the cap, nothing is read again or rewritten.
        let body = r#"{ "model":"m", "max_tokens": 10 }"#;
        let mut request = client(body).expect("a chat request");
        request.cap_output_tokens(65_536).expect("JSON");
        assert_eq!(plain(&mut request.into_outgoing()), body.as_bytes());

        // What a full parse does not read as a `u64` is not a count to lower.
        let body = r#"{"model":"m","max_tokens":1e6,"max_completion_tokens":70000}"#;
        let mut request = client(body).expect("a chat request");
        request.cap_output_tokens(65_536).expect("JSON");
        assert_eq!(
            plain(&mut request.into_outgoing()),
            r#"{"model":"m","max_tokens":1e6,"max_completion_tokens":65536}"#.as_bytes()
        );
    }

    #[test]
    fn a_translated_request_is_changed_as_a_value() {
        let json = json!({"model": "a", "max_tokens": 100_000, "max_completion_tokens": 7});
        let mut request = translated(json, None);
        request.set_model("b").expect("JSON");
        request.cap_output_tokens(10).expect("JSON");
        assert_eq!(request.model, "b");
        assert_eq!(request.output_tokens(), Some(10));
        assert_eq!(
            plain(&mut request.into_outgoing()),
            r#"{"model":"b","max_tokens":10,"max_completion_tokens":7}"#.as_bytes()
        );
    }

    #[test]
    fn reshaping_for_qwen_leaves_the_body_as_sent_alone() {
        let original = r#"{"model":"a","messages":[]}"#;
        let reshaped = r#"{"model":"a","messages":[{"role":"system","content":[{"type":"text","text":"","cache_control":{"type":"ephemeral"}}]}]}"#;
        let mut from_client = client(original).expect("a chat request").into_outgoing();
        let mut translated =
            translated(json!({"model": "a", "messages": []}), None).into_outgoing();
        for outgoing in [&mut from_client, &mut translated] {
            let shaped = outgoing.for_flavor(Flavor::QwenOAuth, "a").expect("JSON");
            assert_eq!(shaped, reshaped.as_bytes());
            let again = outgoing.for_flavor(Flavor::QwenOAuth, "a").expect("JSON");
            assert_eq!(again.as_ptr(), shaped.as_ptr(), "reshaped once");
            assert_eq!(plain(outgoing), original.as_bytes());
        }
    }

    #[test]
    fn a_body_only_the_quick_read_accepts_passes_as_it_is_and_is_never_replaced() {
        let lone_surrogate =
            r#"{"model":"a","max_tokens":9,"messages":[{"role":"user","content":"\udc00"}]}"#;
        let deep = format!(
            r#"{{"model":"a","max_tokens":9,"x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let bodies: [&[u8]; 5] = [
            lone_surrogate.as_bytes(),
            br#"{"model":"a","max_tokens":9,"messages":[],"x":["\ud800"]}"#,
            b"{\"model\":\"a\",\"max_tokens\":9,\"x\":\"\xff\"}",
            br#"{"model":"a","max_tokens":9,"temperature":1e400}"#,
            deep.as_bytes(),
        ];
        for body in bodies {
            let full = serde_json::from_slice::<Value>(body).expect_err("a full parse refuses it");
            let mut request =
                ChatRequest::from_client(Bytes::copy_from_slice(body), LoggedId::default(), |_| {
                    None
                })
                .expect("the quick read accepts it");
            let refused = request
                .set_model("b")
                .expect_err("an alias needs the full parse");
            assert_eq!(refused.to_string(), full.to_string(), "{body:?}");
            let refused = request.cap_output_tokens(1).expect_err("so does the cap");
            assert_eq!(refused.to_string(), full.to_string(), "{body:?}");

            let mut outgoing = request.into_outgoing();
            assert_eq!(plain(&mut outgoing), body);
            let refused = outgoing
                .for_flavor(Flavor::QwenOAuth, "a")
                .expect_err("so does Qwen's shape");
            assert_eq!(refused.to_string(), full.to_string(), "{body:?}");
            assert!(
                outgoing.for_flavor(Flavor::QwenOAuth, "a").is_err(),
                "every time"
            );
            assert_eq!(plain(&mut outgoing), body);
        }
    }

    #[test]
    fn each_credential_kind_gets_its_reasoning_fields_in_a_body_made_once() {
        let reasoning = Reasoning {
            enabled: true,
            effort: Some("high".to_owned()),
            budget_tokens: Some(20_000),
        };
        let json = json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "x"}]});
        let mut outgoing = translated(json, Some(reasoning)).into_outgoing();
        let parsed = |body: &Bytes| -> Value { serde_json::from_slice(body).expect("JSON") };
        let effort = outgoing.for_flavor(PLAIN, "qwen3-max").expect("a body");
        let qwen_key = Flavor::OpenAiCompatible(ReasoningStyle::Qwen);
        let qwen = outgoing.for_flavor(qwen_key, "qwen3-max").expect("a body");
        let off_key = Flavor::OpenAiCompatible(ReasoningStyle::Off);
        let off = outgoing.for_flavor(off_key, "qwen3-max").expect("a body");
        let oauth = outgoing
            .for_flavor(Flavor::QwenOAuth, "qwen3-max")
            .expect("a body");
        let message = json!([{"role": "user", "content": "x"}]);
        assert_eq!(
            parsed(&effort),
            json!({"model": "a", "messages": message, "reasoning_effort": "high"})
        );
        assert_eq!(
            parsed(&qwen),
            json!({"model": "a", "messages": message,
                "enable_thinking": true, "thinking_budget": 20_000})
        );
        assert_eq!(parsed(&off), json!({"model": "a", "messages": message}));
        assert_eq!(parsed(&oauth)["enable_thinking"], true);
        assert_eq!(parsed(&oauth)["thinking_budget"], 20_000);
        assert!(parsed(&oauth).get("reasoning_effort").is_none());
        for (flavor, made) in [
            (PLAIN, &effort),
            (qwen_key, &qwen),
            (off_key, &off),
            (Flavor::QwenOAuth, &oauth),
        ] {
            let again = outgoing.for_flavor(flavor, "qwen3-max").expect("a body");
            assert_eq!(again.as_ptr(), made.as_ptr(), "{flavor:?}: made once");
        }

        // A model without Qwen's switch: Qwen-style upstreams get the body as it is.
        let reasoning = Reasoning {
            enabled: true,
            effort: Some("low".to_owned()),
            budget_tokens: None,
        };
        let mut outgoing = translated(json!({"model": "a"}), Some(reasoning)).into_outgoing();
        let as_is = outgoing.for_flavor(off_key, "coder-model").expect("a body");
        let qwen = outgoing
            .for_flavor(qwen_key, "coder-model")
            .expect("a body");
        assert_eq!(qwen.as_ptr(), as_is.as_ptr(), "not copied");
    }
}
