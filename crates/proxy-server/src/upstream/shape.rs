//! Reshapes a chat-completions body the way Qwen's OAuth endpoint accepts it (see
//! `qwen-protocol.md`): one leading system message whose content is an array of parts, the
//! first carrying `cache_control: {"type": "ephemeral"}`; user messages whose content is only
//! text parts sent as plain strings; `stream_options.include_usage` on streaming requests.
//! API-key upstreams never go through this.
//!
//! The body is not parsed into a `Value`: its top-level fields, its messages and the role and
//! content of each message are read as slices of its text ([`splice`]), and the new body is
//! written into one buffer sized up front: what changes is written anew, every other value is
//! copied byte for byte (string escapes, number forms and the whitespace inside it included).
//! Duplicate keys are read as a full parse reads them (the last one counts). The result,
//! parsed, is what reshaping the parsed body gives.

use super::splice::{self, Field};

/// The leading part when there is no system text to carry `cache_control`.
const EMPTY_CACHED_PART: &[u8] =
    br#"{"type":"text","text":"","cache_control":{"type":"ephemeral"}}"#;
const EPHEMERAL: &[u8] = br#"{"type":"ephemeral"}"#;
/// Room for what a reshape adds to a body (the leading system message, a `cache_control`,
/// `stream_options`); only a system message's content array of strings adds more, 23 bytes
/// for each string.
const ADDED: usize = 192;

/// Reshapes `body`, JSON that a full parse accepts ([`splice::check`]). Done once per client
/// request, whatever the number of attempts
/// ([`Outgoing::for_qwen`](super::request::Outgoing::for_qwen)). A body that is not an object
/// is returned as it is.
pub(crate) fn for_qwen(body: &str) -> Vec<u8> {
    if !body.trim_start().starts_with('{') {
        return body.as_bytes().to_vec();
    }
    let fields: Vec<Field<'_>> = splice::fields(body).collect();
    let messages = splice::last(&fields, "messages").filter(|value| is_array(value));
    let streams = splice::last(&fields, "stream") == Some("true");
    let options = splice::last(&fields, "stream_options");
    let changed: &[&str] = match (messages, streams) {
        (Some(_), true) => &["messages", "stream_options"],
        (Some(_), false) => &["messages"],
        (None, true) => &["stream_options"],
        (None, false) => &[],
    };
    let mut out = Vec::with_capacity(body.len() + ADDED);
    splice::write_object(&mut out, fields, changed, |out, index| {
        match (changed[index], messages) {
            ("messages", Some(messages)) => write_messages(out, messages),
            _ => write_stream_options(out, options),
        }
    });
    out
}

/// A message, and as much of it as the reshape needs.
struct Message<'a> {
    text: &'a str,
    kind: Kind<'a>,
}

enum Kind<'a> {
    /// `system` or `developer`, with its content.
    System(Option<&'a str>),
    User(Option<&'a str>),
    Other,
}

impl<'a> Message<'a> {
    fn new(text: &'a str, [role, content]: [Option<&'a str>; 2]) -> Self {
        let kind = match role {
            Some(role) if splice::is_str(role, "system") => Kind::System(content),
            Some(role) if splice::is_str(role, "developer") => Kind::System(content),
            Some(role) if splice::is_str(role, "user") => Kind::User(content),
            _ => Kind::Other,
        };
        Self { text, kind }
    }
}

/// The messages array: the system messages' parts in one leading system message, then the
/// other messages in order.
fn write_messages(out: &mut Vec<u8>, messages: &str) {
    let messages: Vec<Message<'_>> = splice::elements_with(messages, ["role", "content"])
        .map(|(text, fields)| Message::new(text, fields))
        .collect();
    out.extend_from_slice(br#"[{"role":"system","content":["#);
    let mut parts = SystemParts {
        out: &mut *out,
        written: false,
    };
    for message in &messages {
        if let Kind::System(Some(content)) = message.kind {
            parts.append(content);
        }
    }
    parts.finish();
    out.extend_from_slice(b"]}");
    for message in &messages {
        match message.kind {
            Kind::System(_) => continue,
            Kind::User(Some(content)) => {
                out.push(b',');
                write_user(out, message.text, content);
            }
            Kind::User(None) | Kind::Other => {
                out.push(b',');
                out.extend_from_slice(message.text.as_bytes());
            }
        }
    }
    out.push(b']');
}

/// Writes the parts of the leading system message: the first one carries `cache_control`.
struct SystemParts<'o> {
    out: &'o mut Vec<u8>,
    written: bool,
}

impl SystemParts<'_> {
    /// A system message's content: a string becomes one text part, an array gives its
    /// elements (strings as text parts), anything else nothing.
    fn append(&mut self, content: &str) {
        if content.starts_with('"') {
            self.part(content);
        } else if is_array(content) {
            for part in splice::elements(content) {
                self.part(part);
            }
        }
    }

    fn part(&mut self, part: &str) {
        let first = !std::mem::replace(&mut self.written, true);
        if !first {
            self.out.push(b',');
        }
        match (first, part.as_bytes().first()) {
            (_, Some(b'"')) => write_text_part(self.out, part, first),
            (true, Some(b'{')) => {
                splice::write_object(
                    self.out,
                    splice::fields(part),
                    &["cache_control"],
                    |out, _| {
                        out.extend_from_slice(EPHEMERAL);
                    },
                );
            }
            (true, _) => {
                // Only an object can carry `cache_control`: an empty text part leads.
                self.out.extend_from_slice(EMPTY_CACHED_PART);
                self.out.push(b',');
                self.out.extend_from_slice(part.as_bytes());
            }
            (false, _) => self.out.extend_from_slice(part.as_bytes()),
        }
    }

    fn finish(self) {
        if !self.written {
            self.out.extend_from_slice(EMPTY_CACHED_PART);
        }
    }
}

/// `{"type":"text","text":<text>}`, `text` copied as it is.
fn write_text_part(out: &mut Vec<u8>, text: &str, cached: bool) {
    out.extend_from_slice(br#"{"type":"text","text":"#);
    out.extend_from_slice(text.as_bytes());
    if cached {
        out.extend_from_slice(br#","cache_control":"#);
        out.extend_from_slice(EPHEMERAL);
    }
    out.push(b'}');
}

/// A user message whose content is a non-empty array of only text parts gets its texts joined
/// with `\n` into a plain string; any other content stays as it is.
fn write_user(out: &mut Vec<u8>, message: &str, content: &str) {
    if !is_array(content) || !only_text_parts(content) {
        out.extend_from_slice(message.as_bytes());
        return;
    }
    splice::write_object(out, splice::fields(message), &["content"], |out, _| {
        // The texts are JSON strings: their contents joined with the escape `\n` are one.
        out.push(b'"');
        for (index, part) in splice::elements(content).enumerate() {
            if index > 0 {
                out.extend_from_slice(br"\n");
            }
            let [_, text] = splice::find(part, ["type", "text"]);
            let contents = text.and_then(splice::string_contents).unwrap_or_default();
            out.extend_from_slice(contents.as_bytes());
        }
        out.push(b'"');
    });
}

/// Whether the array `content` is not empty and holds only text parts: objects whose `type`
/// is `"text"` and whose `text` is a string.
fn only_text_parts(content: &str) -> bool {
    let mut parts = splice::elements(content).peekable();
    parts.peek().is_some()
        && parts.all(|part| {
            let [kind, text] = splice::find(part, ["type", "text"]);
            kind.is_some_and(|kind| splice::is_str(kind, "text"))
                && text.is_some_and(|text| text.starts_with('"'))
        })
}

/// `stream_options` with `include_usage: true`: the client's other options are kept when it
/// sent an object.
fn write_stream_options(out: &mut Vec<u8>, options: Option<&str>) {
    match options {
        Some(options) if options.starts_with('{') => {
            splice::write_object(
                out,
                splice::fields(options),
                &["include_usage"],
                |out, _| {
                    out.extend_from_slice(b"true");
                },
            );
        }
        _ => out.extend_from_slice(br#"{"include_usage":true}"#),
    }
}

fn is_array(value: &str) -> bool {
    value.starts_with('[')
}

#[cfg(test)]
mod oracle;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// `body` reshaped, parsed again; checked against the `Value` reshape on the way.
    fn shaped(body: Value) -> Value {
        let reshaped = agrees(&body.to_string());
        serde_json::from_str(&reshaped).expect("JSON")
    }

    /// The reshape of `body` (which a full parse accepts), after checking that it parses into
    /// what the `Value` reshape makes of the parsed body, fields in the same order.
    fn agrees(body: &str) -> String {
        let reshaped = String::from_utf8(for_qwen(body)).expect("UTF-8");
        let mut expected: Value = serde_json::from_str(body).expect("JSON");
        oracle::for_qwen(&mut expected);
        let parsed: Value = serde_json::from_str(&reshaped).expect("the reshape is JSON");
        assert_eq!(parsed.to_string(), expected.to_string(), "{body}");
        reshaped
    }

    #[test]
    fn system_messages_merge_into_one_leading_cached_system_message() {
        let body = shaped(json!({
            "model": "coder-model",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "hi" },
                { "role": "system", "content": [{ "type": "text", "text": "Use English." }] },
                { "role": "assistant", "content": "hello" },
            ],
        }));
        assert_eq!(
            body["messages"],
            json!([
                { "role": "system", "content": [
                    { "type": "text", "text": "Be brief.", "cache_control": { "type": "ephemeral" } },
                    { "type": "text", "text": "Use English." },
                ] },
                { "role": "user", "content": "hi" },
                { "role": "assistant", "content": "hello" },
            ])
        );
        assert_eq!(body["model"], "coder-model");
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn without_a_system_message_an_empty_cached_part_leads() {
        let body = shaped(json!({ "messages": [{ "role": "user", "content": "hi" }] }));
        assert_eq!(
            body["messages"][0],
            json!({ "role": "system", "content": [
                { "type": "text", "text": "", "cache_control": { "type": "ephemeral" } }
            ] })
        );
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn user_text_parts_become_a_string_but_images_stay() {
        let body = shaped(json!({ "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "line one" },
                { "type": "text", "text": "line two" },
            ] },
            { "role": "user", "content": [
                { "type": "text", "text": "what is this?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
            ] },
            { "role": "user", "content": [] },
        ] }));
        assert_eq!(body["messages"][1]["content"], "line one\nline two");
        assert_eq!(body["messages"][2]["content"][1]["type"], "image_url");
        assert_eq!(body["messages"][3]["content"], json!([]));
    }

    #[test]
    fn streaming_requests_ask_for_usage() {
        let body = shaped(json!({
            "stream": true,
            "stream_options": { "other": 1 },
            "messages": [],
        }));
        assert_eq!(
            body["stream_options"],
            json!({ "other": 1, "include_usage": true })
        );
        let body = shaped(json!({ "stream": true, "messages": [] }));
        assert_eq!(body["stream_options"], json!({ "include_usage": true }));
        let body = shaped(json!({ "stream": false, "messages": [] }));
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn a_cache_control_of_the_client_is_kept_and_not_duplicated() {
        let body = shaped(json!({ "messages": [
            { "role": "system", "content": [
                { "type": "text", "text": "S", "cache_control": { "type": "ephemeral" } }
            ] },
        ] }));
        assert_eq!(
            body["messages"],
            json!([{ "role": "system", "content": [
                { "type": "text", "text": "S", "cache_control": { "type": "ephemeral" } }
            ] }])
        );
    }

    const EMPTY: &str = r#"{"type":"text","text":"","cache_control":{"type":"ephemeral"}}"#;

    #[test]
    fn fields_keep_their_order_and_untouched_values_their_bytes() {
        let body = r#"{"temperature": 0.50, "model":"m\u00e9", "messages":[
            {"role":"assistant","content":"a\/b \ud83d\ude00 😀"},
            { "role" : "user", "content" : "caf\u00e9 ☕" }],
            "tools":[{"x":1E3, "y":  [ ]}], "stream":false, "n":123456789012345678901234567890}"#;
        assert_eq!(
            agrees(body),
            format!(
                r#"{{"temperature":0.50,"model":"m\u00e9","messages":[{{"role":"system","content":[{EMPTY}]}},{{"role":"assistant","content":"a\/b \ud83d\ude00 😀"}},{{ "role" : "user", "content" : "caf\u00e9 ☕" }}],"tools":[{{"x":1E3, "y":  [ ]}}],"stream":false,"n":123456789012345678901234567890}}"#
            )
        );
    }

    #[test]
    fn system_texts_and_joined_user_texts_keep_their_escapes() {
        let body = r#"{"messages":[
            {"role":"developer","content":"Be \"brief\".\n"},
            {"role":"user","content":[{"type":"text","text":"line \u0031"},{"text":"tab\there","type":"t\u0065xt"}]},
            {"role":"\u0073ystem","content":["plain \u2615",{"type":"text","text":"part"},7]}]}"#;
        assert_eq!(
            agrees(body),
            r#"{"messages":[{"role":"system","content":[{"type":"text","text":"Be \"brief\".\n","cache_control":{"type":"ephemeral"}},{"type":"text","text":"plain \u2615"},{"type":"text","text":"part"},7]},{"role":"user","content":"line \u0031\ntab\there"}]}"#
        );
    }

    #[test]
    fn a_duplicated_key_counts_once_with_its_last_value_as_in_a_full_parse() {
        let body = r#"{"messages":"not yet","stream":true,
            "stream_options":{"include_usage":false,"x":1,"include_usage":false},
            "messages":[
                {"role":"user","content":"a","content":[{"type":"text","text":"b"}],"role":"user"},
                {"role":"system","content":[{"type":"text","cache_control":1,"text":"s","cache_control":2}]}],
            "stream_options":{"y":2}}"#;
        assert_eq!(
            agrees(body),
            r#"{"messages":[{"role":"system","content":[{"type":"text","cache_control":{"type":"ephemeral"},"text":"s"}]},{"role":"user","content":"b","role":"user"}],"stream":true,"stream_options":{"y":2,"include_usage":true}}"#
        );
    }

    #[test]
    fn messages_and_contents_of_other_kinds_pass_as_they_are() {
        let body = r#"{"messages":[null,"text",[{"role":"system"}],
            {"role":"system","content":{"type":"text","text":"object"}},
            {"role":"system","content":null},
            {"role":"system"},
            {"role":"user","content":{"type":"text","text":"x"}},
            {"role":"user","content":42},
            {"role":"user"},
            {"role":["user"],"content":[{"type":"text","text":"kept"}]},
            {"role":"user","content":[{"type":"text","text":7}]},
            {"role":"user","content":[{"type":"text"}]},
            {"role":"user","content":["a"]},
            {"role":"system","content":[null,{"type":"text","text":"after"}]}],
            "stream":true,"stream_options":null}"#;
        assert_eq!(
            agrees(body),
            format!(
                r#"{{"messages":[{{"role":"system","content":[{EMPTY},null,{{"type":"text","text":"after"}}]}},null,"text",[{{"role":"system"}}],{{"role":"user","content":{{"type":"text","text":"x"}}}},{{"role":"user","content":42}},{{"role":"user"}},{{"role":["user"],"content":[{{"type":"text","text":"kept"}}]}},{{"role":"user","content":[{{"type":"text","text":7}}]}},{{"role":"user","content":[{{"type":"text"}}]}},{{"role":"user","content":["a"]}}],"stream":true,"stream_options":{{"include_usage":true}}}}"#
            )
        );
    }

    #[test]
    fn without_messages_only_the_stream_options_change() {
        assert_eq!(
            agrees(r#"{"messages":{"role":"user"}, "stream":true}"#),
            r#"{"messages":{"role":"user"},"stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(agrees(r#" { "model" : "m" } "#), r#"{"model":"m"}"#);
        assert_eq!(agrees("[1, 2]"), "[1, 2]");
    }

    #[test]
    fn values_nested_deeper_than_a_full_parse_allows_are_copied() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let body = format!(
            r#"{{"messages":[{{"role":"tool","content":{deep}}},{{"role":"user","content":[{{"type":"text","text":"t"}},{deep}]}}],"tools":{deep}}}"#
        );
        let reshaped = String::from_utf8(for_qwen(&body)).expect("UTF-8");
        assert_eq!(
            reshaped,
            format!(
                r#"{{"messages":[{{"role":"system","content":[{EMPTY}]}},{{"role":"tool","content":{deep}}},{{"role":"user","content":[{{"type":"text","text":"t"}},{deep}]}}],"tools":{deep}}}"#
            )
        );
    }
}
