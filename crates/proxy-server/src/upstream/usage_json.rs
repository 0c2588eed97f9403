//! Reads an upstream's `usage` object straight from its bytes: the few numbers metering keeps,
//! every other value skipped. It gives what deserializing [`Usage`] with `serde_json` gives
//! (`null` for no usage; a missing count is 0; anything else out of shape, a duplicate field
//! included, is no usage at all) at a sixth of the cost, which is most of what metering a
//! whole answer costs. Two differences no upstream meets: keys are compared as written (not
//! unescaped), and an array where an object belongs is out of shape (`serde_json` reads it
//! field by field).

use crate::meter::{PromptDetails, Usage};

/// How deep values inside `usage` may nest before it is given up (`serde_json` stops at 128).
const MAX_DEPTH: usize = 128;

/// The usage `value` starts with (its bytes from the value on; what follows it is ignored):
/// `None` for `null` and for anything that is not a usage object.
pub(crate) fn read(value: &[u8]) -> Option<Usage> {
    if let Some(usage) = read_plain(value) {
        return Some(usage);
    }
    let mut cursor = Cursor {
        bytes: value,
        at: 0,
    };
    cursor.skip_whitespace();
    if cursor.literal(b"null") {
        return None;
    }
    let mut usage = Usage::default();
    let (mut prompt, mut completion) = (false, false);
    let (mut details, mut hit, mut cached) = (false, false, false);
    cursor.object(|cursor, key| {
        match key {
            b"prompt_tokens" => usage.prompt_tokens = cursor.once(&mut prompt)?.count()?,
            b"completion_tokens" => {
                usage.completion_tokens = cursor.once(&mut completion)?.count()?;
            }
            b"prompt_cache_hit_tokens" => {
                usage.prompt_cache_hit_tokens = cursor.once(&mut hit)?.nullable(Cursor::count)?;
            }
            b"cached_tokens" => {
                usage.cached_tokens = cursor.once(&mut cached)?.nullable(Cursor::count)?;
            }
            b"prompt_tokens_details" => {
                usage.prompt_tokens_details =
                    cursor.once(&mut details)?.nullable(Cursor::details)?;
            }
            _ => cursor.skip_value(0)?,
        }
        Some(())
    })?;
    Some(usage)
}

/// The layout most upstreams write, `{"prompt_tokens":P,"completion_tokens":C,"total_tokens":T}`
/// exactly, read by comparing it with that text: `None` for anything else (which [`read`]
/// then reads member by member).
fn read_plain(value: &[u8]) -> Option<Usage> {
    let mut cursor = Cursor {
        bytes: value,
        at: 0,
    };
    let mut field = |name: &[u8]| {
        cursor.literal(name).then_some(())?;
        cursor.count()
    };
    let prompt_tokens = field(b"{\"prompt_tokens\":")?;
    let completion_tokens = field(b",\"completion_tokens\":")?;
    field(b",\"total_tokens\":")?;
    cursor.literal(b"}").then(|| Usage {
        prompt_tokens,
        completion_tokens,
        ..Usage::default()
    })
}

/// A position in the bytes being read.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Steps over `byte` after any whitespace, when it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    /// Steps over `word` (`null`, `true`, `false`), when it is next.
    fn literal(&mut self, word: &[u8]) -> bool {
        let next = self.bytes[self.at..].starts_with(word);
        if next {
            self.at += word.len();
        }
        next
    }

    /// Marks a field as seen; `None` (out of shape) when it was seen before.
    fn once(&mut self, seen: &mut bool) -> Option<&mut Self> {
        (!std::mem::replace(seen, true)).then_some(self)
    }

    /// An object whose members `member` reads, given the cursor at each value and its key.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            let key = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            self.skip_whitespace();
            member(self, key)?;
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// A string's bytes between its quotes, escapes as written.
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut end = start;
        loop {
            end += memchr::memchr(b'"', &self.bytes[end..])?;
            // The quote ends the string unless an odd run of backslashes escapes it.
            let backslashes = self.bytes[start..end]
                .iter()
                .rev()
                .take_while(|&&byte| byte == b'\\')
                .count();
            if backslashes % 2 == 0 {
                break;
            }
            end += 1;
        }
        self.at = end + 1;
        Some(&self.bytes[start..end])
    }

    /// `null` as `None`, else what `read` reads.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal(b"null") {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A count of tokens: a JSON integer from 0 that fits in a `u64` (fractions, exponents
    /// and signs are not counts).
    fn count(&mut self) -> Option<u64> {
        let start = self.at;
        let mut value: u64 = 0;
        let mut overflow = false;
        while let Some(digit) = self.peek().filter(u8::is_ascii_digit) {
            let next = value
                .checked_mul(10)
                .and_then(|tens| tens.checked_add(u64::from(digit - b'0')));
            overflow |= next.is_none();
            value = next.unwrap_or(0);
            self.at += 1;
        }
        let digits = self.at - start;
        let well_formed = digits > 0 && (self.bytes[start] != b'0' || digits == 1);
        if overflow || !well_formed || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(value)
    }

    /// `prompt_tokens_details`: an object whose `cached_tokens` is kept.
    fn details(&mut self) -> Option<PromptDetails> {
        let mut details = PromptDetails::default();
        let mut cached = false;
        self.object(|cursor, key| {
            if key == b"cached_tokens" {
                details.cached_tokens = cursor.once(&mut cached)?.nullable(Cursor::count)?;
            } else {
                cursor.skip_value(0)?;
            }
            Some(())
        })?;
        Some(details)
    }

    /// Steps over any JSON value, `depth` levels inside `usage`.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|cursor, _| cursor.skip_value(depth + 1)),
            b'[' => {
                self.at += 1;
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.skip_whitespace();
                    self.skip_value(depth + 1)?;
                    if self.eat(b']') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.literal(b"null").then_some(()),
            _ => self.number(),
        }
    }

    /// Steps over a JSON number.
    fn number(&mut self) -> Option<()> {
        let digits = |cursor: &mut Self| {
            let count = cursor.bytes[cursor.at..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            cursor.at += count;
            count
        };
        self.at += usize::from(self.peek() == Some(b'-'));
        let start = self.at;
        let whole = digits(self);
        if whole == 0 || (whole > 1 && self.bytes[start] == b'0') {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `serde_json` reads from the same bytes.
    fn by_serde(value: &[u8]) -> Option<Usage> {
        serde_json::Deserializer::from_slice(value)
            .into_iter::<Option<Usage>>()
            .next()
            .and_then(Result::ok)
            .flatten()
    }

    #[test]
    fn reads_what_upstreams_send() {
        for (value, expected) in [
            (
                &br#"{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15}"#[..],
                Some((9, 6, 0)),
            ),
            (
                br#"{ "prompt_tokens" : 12 , "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 1} }"#,
                Some((12, 3, 8)),
            ),
            (
                br#"{"prompt_tokens":7,"completion_tokens":3,"prompt_cache_hit_tokens":2,"prompt_cache_miss_tokens":5}"#,
                Some((7, 3, 2)),
            ),
            (br#"{"prompt_tokens":1,"cached_tokens":1}, "x": 1"#, Some((1, 0, 1))),
            (b"null", None),
            (br#"{"prompt_tokens":null}"#, None),
            (br#"{"prompt_tokens":1.5}"#, None),
            (br#"{"prompt_tokens":2e3}"#, None),
            (br#"{"prompt_tokens":01}"#, None),
            (br#"{"prompt_tokens":-1}"#, None),
            (br#"{"prompt_tokens_details":{"cached_tokens":2,"cached_tokens":2}}"#, None),
            (br#"{"prompt_tokens":1,"prompt_tokens":2}"#, None),
            (br#"{"prompt_tokens":18446744073709551616}"#, None),
            (br#"{"prompt_tokens":3"#, None),
            (b"5", None),
        ] {
            let read = read(value).map(|usage| {
                (
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.cached_tokens(),
                )
            });
            assert_eq!(read, expected, "{}", String::from_utf8_lossy(value));
            assert_eq!(read, by_serde(value).map(|usage| (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens())));
        }
    }

    /// A JSON value of the kinds upstreams put in `usage`, and some they do not.
    fn any_value() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(vec![
            "0",
            "7",
            "-0",
            "-3",
            "1.5",
            "2e3",
            "01",
            "18446744073709551615",
            "18446744073709551616",
            "null",
            "true",
            "false",
            "\"x\"",
            "\"a\\\"b\"",
            "nul",
            "",
        ])
        .prop_map(str::to_owned);
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((key(), inner), 0..4).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\": {v}"))
                        .collect();
                    format!("{{{}}}", members.join(" ,"))
                }),
            ]
        })
    }

    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "prompt_tokens_details",
            "cached_tokens",
            "prompt_cache_hit_tokens",
            "other",
        ])
    }

    /// Whether `value` has an array where `serde_json` would read one as a usage object.
    fn arrays_as_objects(value: &str) -> bool {
        value.starts_with('[')
            || value.contains("\"prompt_tokens_details\":[")
            || value.contains("\"prompt_tokens_details\": [")
    }

    proptest! {
        #[test]
        fn reads_the_plain_layout_as_serde_does(
            numbers in prop::collection::vec(
                prop::sample::select(vec!["0", "9", "15", "01", "1.5", "2e3", "-3", "null", "18446744073709551616"]),
                3,
            ),
            end in prop::sample::select(vec!["}", "}\n", "  }", ",\"x\":1}", ""]),
        ) {
            let value = format!(
                "{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}{end}",
                numbers[0], numbers[1], numbers[2]
            );
            prop_assert_eq!(read(value.as_bytes()), by_serde(value.as_bytes()), "{}", value);
        }

        #[test]
        fn reads_as_serde_does(
            members in prop::collection::vec((key(), any_value()), 0..6),
            trailing in prop::sample::select(vec!["", "}", ",\"choices\":[]}", " x"]),
        ) {
            let members: Vec<String> =
                members.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let value = format!("{{{}}}{trailing}", members.join(","));
            prop_assume!(!arrays_as_objects(&value));
            prop_assert_eq!(read(value.as_bytes()), by_serde(value.as_bytes()), "{}", value);
        }

        #[test]
        fn reads_any_value_as_serde_does(
            value in any_value().prop_filter("serde_json reads such arrays", |value| !arrays_as_objects(value)),
        ) {
            prop_assert_eq!(read(value.as_bytes()), by_serde(value.as_bytes()), "{}", value);
        }
    }
}
