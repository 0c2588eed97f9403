//! The reshape as it was done on a full `serde_json::Value`, kept as the oracle that the raw
//! reshape is held to: parsed, its result must equal this one's for every body a full parse
//! accepts (a property test over generated chat bodies, with duplicate keys, escapes, odd
//! whitespace and values of every kind), and it must refuse every other body with the full
//! parse's error.

use serde_json::{Map, Value};

/// Reshapes `body` in place.
pub(super) fn for_qwen(body: &mut Value) {
    if let Value::Object(fields) = body {
        shape(fields);
    }
}

fn shape(fields: &mut Map<String, Value>) {
    if let Some(Value::Array(messages)) = fields.get_mut("messages") {
        let original = std::mem::take(messages);
        let mut parts = Vec::new();
        let mut rest = Vec::with_capacity(original.len() + 1);
        rest.push(Value::Null);
        for mut message in original {
            match role(&message) {
                Some("system" | "developer") => append_system_parts(&mut parts, &mut message),
                Some("user") => {
                    flatten_text_content(&mut message);
                    rest.push(message);
                }
                _ => rest.push(message),
            }
        }
        if !parts.first().is_some_and(Value::is_object) {
            parts.insert(0, text_part(String::new()));
        }
        if let Some(Value::Object(first)) = parts.first_mut() {
            first.insert(
                "cache_control".to_owned(),
                object([("type", Value::from("ephemeral"))]),
            );
        }
        // Built directly: `json!` would copy `parts` through a serializer.
        rest[0] = object([
            ("role", Value::from("system")),
            ("content", Value::Array(parts)),
        ]);
        *messages = rest;
    }
    if fields.get("stream").and_then(Value::as_bool) == Some(true) {
        let options = fields
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(options) = options {
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
    }
}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// Moves a system message's content into `parts`: a string becomes one text part, an array
/// contributes its parts as they are.
fn append_system_parts(parts: &mut Vec<Value>, message: &mut Value) {
    match message.get_mut("content").map(Value::take) {
        Some(Value::String(text)) => parts.push(text_part(text)),
        Some(Value::Array(items)) => parts.extend(items.into_iter().map(|item| match item {
            Value::String(text) => text_part(text),
            other => other,
        })),
        _ => {}
    }
}

/// `{"type": "text", "text": text}`.
fn text_part(text: String) -> Value {
    object([("type", Value::from("text")), ("text", Value::String(text))])
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// A user message whose content is a non-empty array of only text parts gets its texts joined
/// with `\n` into a plain string; any other content stays as it is.
fn flatten_text_content(message: &mut Value) {
    let Some(Value::Array(items)) = message.get("content") else {
        return;
    };
    let texts: Option<Vec<&str>> = items
        .iter()
        .map(|item| {
            (item.get("type").and_then(Value::as_str) == Some("text"))
                .then(|| item.get("text").and_then(Value::as_str))
                .flatten()
        })
        .collect();
    let Some(texts) = texts.filter(|texts| !texts.is_empty()) else {
        return;
    };
    let joined = texts.join("\n");
    message["content"] = Value::String(joined);
}

mod agreement {
    use std::fmt::Write as _;

    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::splice;

    /// A JSON text to write, with the choices a client could make: keys in any order and
    /// repeated, strings escaped or not, numbers in any form.
    #[derive(Clone, Debug)]
    enum Json {
        Literal(&'static str),
        Str {
            text: String,
            escaped: bool,
        },
        Array(Vec<Json>),
        Object(Vec<(Json, Json)>),
        /// `"\udc00"`: only the quick read accepts it.
        LoneSurrogate,
    }

    impl Json {
        fn write(&self, out: &mut String, space: &str) {
            match self {
                Self::Literal(text) => out.push_str(text),
                Self::Str { text, escaped } => write_string(out, text, *escaped),
                Self::LoneSurrogate => out.push_str(r#""\udc00""#),
                Self::Array(items) => {
                    out.push('[');
                    for (index, item) in items.iter().enumerate() {
                        if index > 0 {
                            out.push(',');
                        }
                        out.push_str(space);
                        item.write(out, space);
                        out.push_str(space);
                    }
                    out.push(']');
                }
                Self::Object(fields) => {
                    out.push('{');
                    for (index, (key, value)) in fields.iter().enumerate() {
                        if index > 0 {
                            out.push(',');
                        }
                        out.push_str(space);
                        key.write(out, space);
                        out.push_str(space);
                        out.push(':');
                        out.push_str(space);
                        value.write(out, space);
                    }
                    out.push_str(space);
                    out.push('}');
                }
            }
        }
    }

    /// `text` as a JSON string; `escaped` writes every character but ASCII letters and digits
    /// as a `\u` escape (surrogate pairs beyond the BMP).
    fn write_string(out: &mut String, text: &str, escaped: bool) {
        if !escaped {
            out.push_str(&serde_json::to_string(text).unwrap_or_default());
            return;
        }
        out.push('"');
        for unit in text.encode_utf16() {
            if char::from_u32(u32::from(unit)).is_some_and(|c| c.is_ascii_alphanumeric()) {
                out.push(char::from(u8::try_from(unit).unwrap_or(b'?')));
            } else {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
        out.push('"');
    }

    fn string(text: impl Strategy<Value = String>) -> impl Strategy<Value = Json> {
        (text, any::<bool>()).prop_map(|(text, escaped)| Json::Str { text, escaped })
    }

    fn word(word: &'static str) -> impl Strategy<Value = Json> {
        string(Just(word.to_owned()))
    }

    fn text() -> impl Strategy<Value = Json> {
        string("[a-z é☕😀\"\\\\\n\t/\\[\\]{}:,]{0,8}")
    }

    fn number() -> impl Strategy<Value = Json> {
        prop::sample::select(vec![
            "0",
            "-1",
            "7",
            "1.50",
            "1E3",
            "-2.5e-3",
            "18446744073709551616",
            "123456789012345678901234567890",
        ])
        .prop_map(Json::Literal)
    }

    fn any_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            4 => prop::sample::select(vec!["null", "true", "false"]).prop_map(Json::Literal),
            4 => number(),
            4 => text(),
            1 => Just(Json::LoneSurrogate),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::vec((key(), inner), 0..4).prop_map(Json::Object),
            ]
        })
    }

    fn key() -> impl Strategy<Value = Json> {
        prop_oneof![
            string(prop::sample::select(vec![
                "type".to_owned(),
                "text".to_owned(),
                "role".to_owned(),
                "content".to_owned(),
                "cache_control".to_owned(),
                "include_usage".to_owned(),
            ])),
            text(),
        ]
    }

    /// An object of `fields`, in a shuffled order, each maybe repeated with another value.
    fn object(
        fields: Vec<BoxedStrategy<(Json, Json)>>,
        repeats: BoxedStrategy<(Json, Json)>,
    ) -> impl Strategy<Value = Json> {
        (fields, prop::collection::vec(repeats, 0..2))
            .prop_map(|(mut fields, repeats)| {
                fields.extend(repeats);
                fields
            })
            .prop_shuffle()
            .prop_map(Json::Object)
    }

    fn field(
        name: &'static str,
        value: impl Strategy<Value = Json> + 'static,
    ) -> BoxedStrategy<(Json, Json)> {
        (word(name), value).boxed()
    }

    fn part() -> impl Strategy<Value = Json> {
        prop_oneof![
            4 => object(
                vec![
                    field("type", prop_oneof![word("text"), word("image_url"), number()]),
                    field("text", prop_oneof![4 => text(), 1 => any_json()]),
                ],
                prop_oneof![
                    field("cache_control", any_json()),
                    field("text", text()),
                    field("type", word("text")),
                ]
                .boxed(),
            ),
            1 => text(),
            1 => any_json(),
        ]
    }

    fn content() -> impl Strategy<Value = Json> {
        prop_oneof![
            3 => text(),
            4 => prop::collection::vec(part(), 0..4).prop_map(Json::Array),
            1 => any_json(),
        ]
    }

    fn message() -> impl Strategy<Value = Json> {
        let role = prop_oneof![
            word("system"),
            word("developer"),
            word("user"),
            word("assistant"),
            word("tool"),
            any_json(),
        ];
        prop_oneof![
            8 => object(
                vec![field("role", role), field("content", content())],
                prop_oneof![
                    field("content", content()),
                    field("role", word("user")),
                    field("name", text()),
                    (key(), any_json()).boxed(),
                ]
                .boxed(),
            ),
            1 => any_json(),
        ]
    }

    fn body() -> impl Strategy<Value = Json> {
        let stream = prop_oneof![
            word("x"),
            Just(Json::Literal("true")),
            Just(Json::Literal("false")),
        ];
        let options = prop_oneof![
            3 => object(
                vec![field("include_usage", any_json())],
                (key(), any_json()).boxed(),
            ),
            1 => any_json(),
        ];
        object(
            vec![
                field("model", text()),
                field(
                    "messages",
                    prop_oneof![
                        8 => prop::collection::vec(message(), 0..6).prop_map(Json::Array),
                        1 => any_json(),
                    ],
                ),
                field("stream", stream),
                field("stream_options", options),
                (key(), any_json()).boxed(),
            ],
            prop_oneof![
                field(
                    "messages",
                    prop::collection::vec(message(), 0..3).prop_map(Json::Array)
                ),
                field("stream_options", any_json()),
                field("stream", Just(Json::Literal("true"))),
            ]
            .boxed(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn the_raw_reshape_agrees_with_the_value_reshape(
            body in body(),
            space in prop::sample::select(vec!["", " ", "\t", "\r\n  "]),
        ) {
            let mut text = String::new();
            body.write(&mut text, space);
            match (serde_json::from_str::<Value>(&text), splice::check(text.as_bytes())) {
                (Ok(mut expected), Ok(checked)) => {
                    super::for_qwen(&mut expected);
                    let reshaped = super::super::for_qwen(checked);
                    let parsed: Value = serde_json::from_slice(&reshaped).expect("JSON");
                    prop_assert_eq!(parsed.to_string(), expected.to_string(), "{}", text);
                }
                (Err(full), Err(checked)) => {
                    prop_assert_eq!(checked.to_string(), full.to_string(), "{}", text);
                }
                (full, checked) => {
                    prop_assert!(false, "{text}: the full parse gave {full:?}, the check {checked:?}");
                }
            }
        }
    }
}
