//! Which conversation a request belongs to, from what clients already send, so the pool can
//! keep every turn of it on one credential (each upstream account has its own prompt cache).
//!
//! The signals, first found wins (docs/clients.md says which client sends which):
//!
//! 1. the `x-session-affinity` header: any client can set it explicitly;
//! 2. Claude Code's `X-Claude-Code-Session-Id` header;
//! 3. Codex CLI's `session-id` (or `session_id`) header;
//! 4. in the body: Claude Code's `metadata.user_id` session part (`{"session_id": ...}` in
//!    JSON, or the `_session_<id>` suffix of older versions), Codex's `prompt_cache_key`, Qwen
//!    Code's `metadata.sessionId` (its DashScope provider), then OpenAI's `user` (a user, not a
//!    conversation: all of that user's requests then share a credential);
//! 5. otherwise the conversation's opening: its system prompt and first user message, which
//!    every later turn repeats.
//!
//! The key is a 64-bit hash of the client key's name, the signal's kind and its value, with a
//! seed drawn at start-up: nothing readable is kept, two client keys never share a pin, and
//! values cannot be chosen to collide.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};

use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Headers that name a conversation, in the order they are looked at.
static HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-session-affinity"),
    HeaderName::from_static("x-claude-code-session-id"),
    HeaderName::from_static("session-id"),
    HeaderName::from_static("session_id"),
];

/// Hashes conversation signals with a seed drawn when the proxy is built. foldhash's quality
/// variant, not SipHash: an opening's system prompt can be tens of kilobytes, hashed on every
/// request, and SipHash took about five times as long; a collision (two conversations sharing
/// a pin) costs nothing but balance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conversations {
    seed: foldhash::quality::RandomState,
}

/// What identifies the conversation, before hashing.
#[derive(Debug, PartialEq, Eq)]
enum Signal<'a> {
    Header(&'a [u8]),
    Session(&'a str),
    User(&'a str),
    Opening(&'a str, &'a str),
}

/// The fields of a body that can name a conversation, borrowed. A body parsed for other
/// fields too (a chat-completions request's) reads these with [`BodySignals::read`] in the
/// same pass.
#[derive(Default)]
pub(crate) struct BodySignals<'a> {
    metadata: Option<&'a RawValue>,
    prompt_cache_key: Option<&'a RawValue>,
    user: Option<&'a RawValue>,
    system: Option<&'a RawValue>,
    instructions: Option<&'a RawValue>,
    messages: Option<Opening<'a>>,
    input: Option<Opening<'a>>,
}

impl<'a> BodySignals<'a> {
    /// Reads the value of `key` from `map` into these signals when it is one of theirs, else
    /// skips it. A field given twice keeps its last value.
    pub(crate) fn read<'de: 'a, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "metadata" => self.metadata = map.next_value()?,
            "prompt_cache_key" => self.prompt_cache_key = map.next_value()?,
            "user" => self.user = map.next_value()?,
            "system" => self.system = map.next_value()?,
            "instructions" => self.instructions = map.next_value()?,
            "messages" => self.messages = map.next_value()?,
            "input" => self.input = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for BodySignals<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SignalsVisitor)
    }
}

struct SignalsVisitor;

impl<'de> Visitor<'de> for SignalsVisitor {
    type Value = BodySignals<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodySignals<'de>, A::Error> {
        let mut signals = BodySignals::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            signals.read(&key, &mut map)?;
        }
        Ok(signals)
    }
}

/// A JSON string borrowed from the body, owned only where escapes had to be undone: serde's
/// own `Cow<str>` is always owned, an allocation for every key of every request.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

impl Conversations {
    /// The conversation of a request from client key `client` with these headers and body
    /// (chat completions, Messages or Responses JSON); `None` when nothing identifies one.
    pub(crate) fn key(&self, client: &str, headers: &HeaderMap, body: &[u8]) -> Option<u64> {
        self.named_by_headers(client, headers).or_else(|| {
            let signals: BodySignals<'_> = serde_json::from_slice(body).unwrap_or_default();
            self.named_by_body(client, &signals)
        })
    }

    /// The conversation a request's headers name, if any: they come before its body.
    pub(crate) fn named_by_headers(&self, client: &str, headers: &HeaderMap) -> Option<u64> {
        let value = HEADERS
            .iter()
            .find_map(|name| headers.get(name))
            .map(http::HeaderValue::as_bytes)
            .filter(|value| !value.is_empty())?;
        Some(self.hash(client, &Signal::Header(value)))
    }

    /// The conversation the signals of a request's body name, if any.
    pub(crate) fn named_by_body(&self, client: &str, signals: &BodySignals<'_>) -> Option<u64> {
        let signal = body_signal(signals)?;
        Some(self.hash(client, &signal.as_signal()))
    }

    fn hash(&self, client: &str, signal: &Signal<'_>) -> u64 {
        let mut hasher = self.seed.build_hasher();
        client.hash(&mut hasher);
        match signal {
            Signal::Header(value) => (0_u8, value).hash(&mut hasher),
            Signal::Session(value) => (1_u8, value).hash(&mut hasher),
            Signal::User(value) => (2_u8, value).hash(&mut hasher),
            Signal::Opening(system, user) => (3_u8, system, user).hash(&mut hasher),
        }
        hasher.finish()
    }
}

/// A body signal: borrowed from the body, owned only where a string had escapes to undo.
enum BodySignal<'a> {
    Session(Cow<'a, str>),
    User(Cow<'a, str>),
    Opening(&'a str, &'a str),
}

impl BodySignal<'_> {
    fn as_signal(&self) -> Signal<'_> {
        match self {
            Self::Session(value) => Signal::Session(value),
            Self::User(value) => Signal::User(value),
            Self::Opening(system, user) => Signal::Opening(system, user),
        }
    }
}

/// The fields of `metadata` that name a session or user, borrowed.
#[derive(Deserialize, Default)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<&'a RawValue>,
}

fn body_signal<'a>(signals: &BodySignals<'a>) -> Option<BodySignal<'a>> {
    let metadata: Option<Metadata<'a>> = signals
        .metadata
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    let user_id = metadata
        .as_ref()
        .and_then(|metadata| string(metadata.user_id));
    if let Some(session) = user_id.as_deref().and_then(claude_code_session) {
        return Some(BodySignal::Session(Cow::Owned(session)));
    }
    if let Some(session) = metadata.and_then(|metadata| string(metadata.session_id)) {
        return Some(BodySignal::Session(session));
    }
    if let Some(key) = string(signals.prompt_cache_key) {
        return Some(BodySignal::Session(key));
    }
    if let Some(user) = string(signals.user).or(user_id) {
        return Some(BodySignal::User(user));
    }
    opening(signals)
}

/// The session of Claude Code's `metadata.user_id`: `{"session_id": "..."}` as JSON text
/// (2.x), or the part after `_session_` (1.x: `user_<hash>_account_<uuid>_session_<uuid>`).
fn claude_code_session(user_id: &str) -> Option<String> {
    /// The JSON form of `user_id`.
    #[derive(Deserialize)]
    struct UserId<'a> {
        #[serde(borrow, default)]
        session_id: Option<Cow<'a, str>>,
    }
    if user_id.trim_start().starts_with('{')
        && let Ok(UserId { session_id }) = serde_json::from_str::<UserId<'_>>(user_id)
    {
        return session_id
            .filter(|session| !session.is_empty())
            .map(Cow::into_owned);
    }
    user_id
        .rsplit_once("_session_")
        .map(|(_, session)| session.to_owned())
        .filter(|session| !session.is_empty())
}

/// A non-empty JSON string, borrowed unless it had escapes.
fn string(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    raw.and_then(|raw| serde_json::from_str::<Text<'_>>(raw.get()).ok())
        .map(|Text(value)| value)
        .filter(|value| !value.is_empty())
}

/// The conversation's opening: its system prompt (or instructions) and first user message, as
/// their JSON text. Every later turn of a conversation sends both again, unchanged.
fn opening<'a>(signals: &BodySignals<'a>) -> Option<BodySignal<'a>> {
    let Opening { system, first_user } = signals.messages.or(signals.input)?;
    let system = signals.system.or(signals.instructions).or(system);
    Some(BodySignal::Opening(
        system.map_or("", RawValue::get),
        first_user?.get(),
    ))
}

/// The first system (or developer) message and the first user message of a `messages` or
/// `input` array, read as the body is parsed, without keeping the others. Any other value
/// (Responses' `input` may be a string) reads as no messages.
#[derive(Default, Clone, Copy)]
struct Opening<'a> {
    system: Option<&'a RawValue>,
    first_user: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Opening<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OpeningVisitor)
    }
}

/// The `Visitor` methods of a value that every JSON scalar reads as its default (no opening,
/// no turn): the upstream judges such a body, the conversation key only skips it.
macro_rules! scalars_read_as_default {
    ($de:lifetime, $value:ty) => {
        fn visit_borrowed_str<E>(self, _: &$de str) -> Result<$value, E> {
            Ok(<$value>::default())
        }

        fn visit_str<E>(self, _: &str) -> Result<$value, E> {
            Ok(<$value>::default())
        }

        fn visit_bool<E>(self, _: bool) -> Result<$value, E> {
            Ok(<$value>::default())
        }

        fn visit_i64<E>(self, _: i64) -> Result<$value, E> {
            Ok(<$value>::default())
        }

        fn visit_u64<E>(self, _: u64) -> Result<$value, E> {
            Ok(<$value>::default())
        }

        fn visit_f64<E>(self, _: f64) -> Result<$value, E> {
            Ok(<$value>::default())
        }

        fn visit_unit<E>(self) -> Result<$value, E> {
            Ok(<$value>::default())
        }
    };
}

struct OpeningVisitor;

impl<'de> Visitor<'de> for OpeningVisitor {
    type Value = Opening<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("an array of messages, or any other JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Opening<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Opening::default())
    }

    scalars_read_as_default!('de, Opening<'de>);

    fn visit_seq<A: SeqAccess<'de>>(self, mut turns: A) -> Result<Opening<'de>, A::Error> {
        let mut opening = Opening::default();
        loop {
            // A turn of another shape reads as no turn, and is skipped: the upstream will
            // judge it.
            let Some(turn) = turns.next_element::<Turn<'de>>()? else {
                return Ok(opening);
            };
            match turn.role {
                Some("system" | "developer") if opening.system.is_none() => {
                    opening.system = turn.content;
                }
                Some("user") => {
                    opening.first_user = turn.content;
                    break;
                }
                _ => {}
            }
        }
        while turns.next_element::<IgnoredAny>()?.is_some() {}
        Ok(opening)
    }
}

/// One message or input item: its role and content, borrowed, read in the one pass over the
/// body (a system prompt may be tens of kilobytes: it is not read twice). A turn that is not an
/// object, gives a field twice, or has a role that is not a plain string reads as no turn.
#[derive(Default)]
struct Turn<'a> {
    role: Option<&'a str>,
    content: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Turn<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TurnVisitor)
    }
}

struct TurnVisitor;

impl<'de> Visitor<'de> for TurnVisitor {
    type Value = Turn<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a message, or any other JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Turn<'de>, A::Error> {
        let (mut role, mut content) = (None::<&'de RawValue>, None::<&'de RawValue>);
        let mut well_formed = true;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let field = match &*key {
                "role" => &mut role,
                "content" => &mut content,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            well_formed &= field.is_none();
            *field = Some(map.next_value()?);
        }
        // `null` is no value; a role is a string read as written (one with escapes, or of
        // another type, makes no turn).
        let role = match role.map(RawValue::get) {
            None | Some("null") => None,
            Some(raw) => {
                let plain = raw
                    .strip_prefix('"')
                    .and_then(|raw| raw.strip_suffix('"'))
                    .filter(|plain| !plain.contains('\\'));
                well_formed &= plain.is_some();
                plain
            }
        };
        let content = content.filter(|raw| raw.get() != "null");
        Ok(if well_formed {
            Turn { role, content }
        } else {
            Turn::default()
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Turn<'de>, A::Error> {
        while items.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Turn::default())
    }

    scalars_read_as_default!('de, Turn<'de>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The turns as they were read before the one-pass `Turn`: each captured, then parsed by a
    /// derived struct (a failure skips the turn).
    fn opening_read_twice(messages: &str) -> (Option<String>, Option<String>) {
        #[derive(Deserialize)]
        struct Derived<'a> {
            #[serde(borrow, default)]
            role: Option<&'a str>,
            #[serde(borrow, default)]
            content: Option<&'a RawValue>,
        }
        let (mut system, mut user) = (None, None);
        let turns: Vec<&RawValue> = serde_json::from_str(messages).unwrap();
        for turn in turns {
            let Ok(turn) = serde_json::from_str::<Derived<'_>>(turn.get()) else {
                continue;
            };
            match turn.role {
                Some("system" | "developer") if system.is_none() => {
                    system = turn.content.map(|raw| raw.get().to_owned());
                }
                Some("user") => {
                    user = turn.content.map(|raw| raw.get().to_owned());
                    break;
                }
                _ => {}
            }
        }
        (system, user)
    }

    fn turn() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let role = prop::sample::select(vec![
            r#""role":"system""#,
            r#""role":"developer""#,
            r#""role":"user""#,
            r#""role":"assistant""#,
            r#""role":"us\u0065r""#,
            r#""role":null"#,
            r#""role":5"#,
        ]);
        let content = prop::sample::select(vec![
            r#""content":"hi""#,
            r#""content":"a \"b\"""#,
            r#""content":null"#,
            r#""content":[{"type":"text","text":"x"}]"#,
            r#""content":{"k":1}"#,
        ]);
        let other = prop::sample::select(vec![r#""name":"n""#, r#""x":[1,{"role":"user"}]"#]);
        let member = prop_oneof![
            role.prop_map(str::to_owned),
            content.prop_map(str::to_owned),
            other.prop_map(str::to_owned)
        ];
        prop_oneof![
            4 => prop::collection::vec(member, 0..4).prop_map(|members| format!("{{{}}}", members.join(","))),
            1 => prop::sample::select(vec!["1", "\"user\"", "null", "[]", "true"]).prop_map(str::to_owned),
        ]
    }

    proptest::proptest! {
        #[test]
        fn turns_read_in_one_pass_as_they_were_read_in_two(turns in proptest::collection::vec(turn(), 0..6)) {
            let messages = format!("[{}]", turns.join(","));
            let one_pass: Opening<'_> = serde_json::from_str(&messages).unwrap();
            let read = (
                one_pass.system.map(|raw| raw.get().to_owned()),
                one_pass.first_user.map(|raw| raw.get().to_owned()),
            );
            proptest::prop_assert_eq!(read, opening_read_twice(&messages), "{}", messages);
        }
    }

    #[test]
    fn text_is_borrowed_unless_it_had_escapes() {
        let Text(plain) = serde_json::from_str::<Text<'_>>(r#""model""#).unwrap();
        assert!(matches!(plain, Cow::Borrowed("model")));
        let Text(escaped) = serde_json::from_str::<Text<'_>>(r#""mod\u0065l""#).unwrap();
        assert!(matches!(escaped, Cow::Owned(ref text) if text == "model"));
        assert!(serde_json::from_str::<Text<'_>>("5").is_err());
        // An escaped key is still the key it spells.
        let signals: BodySignals<'_> =
            serde_json::from_str(r#"{"us\u0065r":"alice","messages":[]}"#).unwrap();
        assert_eq!(string(signals.user).as_deref(), Some("alice"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn each_client_signal_names_its_conversation() {
        let conversations = Conversations::default();
        let key = |h: &[(&'static str, &str)], body: &str| {
            conversations.key("team", &headers(h), body.as_bytes())
        };
        // Claude Code: the header and the session inside `metadata.user_id` agree on a turn.
        let cc = key(&[("x-claude-code-session-id", "s-1")], "{}");
        assert!(cc.is_some());
        assert_eq!(
            cc,
            key(&[("x-claude-code-session-id", "s-1")], "{\"messages\":[]}")
        );
        let cc_body = key(
            &[],
            r#"{"metadata":{"user_id":"{\"device_id\":\"d\",\"session_id\":\"s-1\"}"},"messages":[]}"#,
        );
        let cc_old = key(
            &[],
            r#"{"metadata":{"user_id":"user_ab_account_cd_session_s-1"}}"#,
        );
        assert_eq!(cc_body, cc_old, "both name session s-1");
        assert_ne!(
            cc_body,
            key(
                &[],
                r#"{"metadata":{"user_id":"{\"session_id\":\"s-2\"}"}}"#
            )
        );
        // Codex: the header, or the prompt cache key.
        assert!(key(&[("session-id", "c-1")], "{}").is_some());
        assert_eq!(
            key(&[], r#"{"prompt_cache_key":"c-1"}"#),
            key(&[], r#"{"metadata":{"sessionId":"c-1"}}"#),
            "a session is a session, whoever names it"
        );
        // Another client key never shares a pin.
        assert_ne!(
            conversations.key("team", &headers(&[("session-id", "c-1")]), b"{}"),
            conversations.key("other", &headers(&[("session-id", "c-1")]), b"{}")
        );
        // Nothing at all: no conversation.
        assert_eq!(key(&[], "{}"), None);
        assert_eq!(key(&[], "not json"), None);
    }

    #[test]
    fn without_a_signal_the_opening_names_the_conversation() {
        let conversations = Conversations::default();
        let key = |body: &str| conversations.key("k", &HeaderMap::new(), body.as_bytes());
        let turn1 =
            r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}]}"#;
        let turn2 = r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}"#;
        let other =
            r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"bye"}]}"#;
        assert!(key(turn1).is_some());
        assert_eq!(key(turn1), key(turn2));
        assert_ne!(key(turn1), key(other));
        // Anthropic's top-level system, and Responses' instructions and input.
        let anthropic = r#"{"system":"S","messages":[{"role":"user","content":"hi"}]}"#;
        let responses = r#"{"instructions":"S","input":[{"role":"user","content":"hi"}]}"#;
        assert!(key(anthropic).is_some() && key(responses).is_some());
        assert_eq!(
            key(r#"{"messages":[{"role":"assistant","content":"x"}]}"#),
            None
        );
    }

    #[test]
    fn messages_of_other_shapes_leave_the_other_signals_alone() {
        let conversations = Conversations::default();
        let key = |body: &str| conversations.key("k", &HeaderMap::new(), body.as_bytes());
        // Responses' `input` may be a plain string; a malformed turn is skipped.
        let user = key(r#"{"user":"u"}"#);
        assert!(user.is_some());
        for body in [
            r#"{"input":"hello","user":"u"}"#,
            r#"{"messages":{"role":"user"},"user":"u"}"#,
            r#"{"user":"u","messages":null}"#,
        ] {
            assert_eq!(key(body), user, "{body}");
        }
        assert_eq!(key(r#"{"input":"hello"}"#), None);
        assert_eq!(
            key(r#"{"messages":[7,{"role":"user","content":"hi"}]}"#),
            key(r#"{"messages":[{"role":"user","content":"hi"}]}"#)
        );
    }

    #[test]
    fn headers_come_first_in_the_documented_order() {
        let conversations = Conversations::default();
        let explicit = conversations.key(
            "k",
            &headers(&[("x-session-affinity", "mine"), ("session-id", "codex")]),
            b"{}",
        );
        assert_eq!(
            explicit,
            conversations.key("k", &headers(&[("x-session-affinity", "mine")]), b"{}")
        );
    }
}
