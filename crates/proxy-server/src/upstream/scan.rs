//! Reads the two things metering needs from an upstream's JSON without parsing all of it: the
//! `usage` object, and the characters of text in a stream chunk's `content` and
//! `reasoning_content`. A full parse of every answer and every chunk cost more than the rest
//! of metering together; these scans look only at the keys they need.
//!
//! A key counts only where JSON puts keys: after `{` or `,` (whitespace between allowed).
//! Inside a string every quote is escaped, so `"usage"` in a model's text never matches.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::meter::Usage;

/// The `usage` key. Searched forwards (memchr's vectorised path) even though the last one
/// wins: a reverse search of a short chunk cost more than the rest of its metering.
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
/// The tail both text keys share: `"content"` and `"reasoning_content"` in one search.
static CONTENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"content\""));

/// How far from its end an answer's usage is looked for first: upstreams put it last, and a
/// long answer's text need not be searched.
const USAGE_TAIL: usize = 512;

/// The `usage` object of a chat-completions answer or chunk: the last `"usage"` key's value,
/// when it is an object of the expected shape.
pub(crate) fn usage(json: &[u8]) -> Option<Usage> {
    // A usage found in the tail is the last one: every later key is in the tail too.
    let tail = json.len().saturating_sub(USAGE_TAIL);
    if tail > 0
        && let Some(usage) = last_usage_from(json, tail)
    {
        return Some(usage);
    }
    last_usage_from(json, 0)
}

/// The usage of a whole answer, as [`usage`] reads it, but looked for from the end: upstreams
/// put `usage` last, after which an answer has no `g` (its counts' keys have none), so the
/// last `g` is usually the key's, and the first usage found backwards in the tail is the last
/// one. (A chunk keeps the forward search: most have no usage at all.)
pub(crate) fn answer_usage(json: &[u8]) -> Option<Usage> {
    let tail = json.len().saturating_sub(USAGE_TAIL);
    last_usage_backwards(json, tail).or_else(|| {
        // None in the tail: the last one is before it, if any.
        (tail > 0).then(|| last_usage_from(json, 0)).flatten()
    })
}

/// The last usage whose key starts at `from` or after, found from the end: each `g` that could
/// be the one in a `"usage"` key, last first. An occurrence that overlaps the next one (the
/// forward search skips it) starts right after that one's `e`, where no key can start.
fn last_usage_backwards(json: &[u8], from: usize) -> Option<Usage> {
    /// Where the `g` is in `"usage"`.
    const G_AT: usize = 4;
    let key = USAGE.needle();
    for g in memchr::memrchr_iter(b'g', &json[from..]) {
        let Some(start) = (from + g).checked_sub(G_AT) else {
            break;
        };
        if start < from {
            break;
        }
        if json.get(start..start + key.len()) != Some(key) {
            continue;
        }
        let Some(value) = value_after_key(json, start, key.len()) else {
            continue;
        };
        if let Some(usage) = super::usage_json::read(value) {
            return Some(usage);
        }
    }
    None
}

/// The last usage whose key starts at `from` or after.
fn last_usage_from(json: &[u8], from: usize) -> Option<Usage> {
    let mut found = None;
    for at in USAGE.find_iter(&json[from..]) {
        let Some(value) = value_after_key(json, from + at, USAGE.needle().len()) else {
            continue;
        };
        if let Some(usage) = super::usage_json::read(value) {
            found = Some(usage);
        }
    }
    found
}

/// A `content` or `reasoning_content` string in a chunk: where its opening quote is, its
/// length with both quotes, and its characters as the client will see them (an escape counts
/// as one character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Text {
    at: usize,
    len: usize,
    chars: u64,
}

/// Characters of text in one chunk, scanned in full: what [`ChunkScanner::scan`] agrees with.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn text_chars(json: &[u8]) -> u64 {
    texts(json).map(|text| text.chars).sum()
}

/// The `content` and `reasoning_content` strings of a chunk.
fn texts(json: &[u8]) -> impl Iterator<Item = Text> + '_ {
    CONTENT.find_iter(json).filter_map(|at| {
        let key_start = if json[..at].ends_with(b"\"") {
            at - 1
        } else if json[..at].ends_with(b"\"reasoning_") {
            at - b"\"reasoning_".len()
        } else {
            return None;
        };
        let value = value_after_key(json, key_start, at + CONTENT.needle().len() - key_start)?;
        let (len, chars) = string_extent(value)?;
        Some(Text {
            at: json.len() - value.len(),
            len,
            chars,
        })
    })
}

/// Usage and text of the chunks of one stream.
///
/// A stream's chunks mostly share one shape: the same bytes before their text and after it
/// (`{"id":"c1","choices":[{"index":0,"delta":{"content":"` and `"},"finish_reason":null}]}`).
/// The last chunk scanned in full that had one text string and no usage is kept as the shape;
/// a chunk that is its head, then a string that ends exactly where its tail begins, then its
/// tail, reads like that chunk (JSON reads a prefix the same way whatever follows it, and the
/// tail then follows the same prefix), so it has no usage and that string's text. Any other
/// chunk is scanned in full. A chunk then costs two comparisons and its text instead of two
/// searches.
#[derive(Debug, Default)]
pub(crate) struct ChunkScanner {
    /// The shape's bytes up to and with its text's opening quote; empty when there is none.
    head: Vec<u8>,
    /// The shape's bytes from its text's closing quote.
    tail: Vec<u8>,
}

impl ChunkScanner {
    /// The usage (when the chunk reports one) and characters of text of the chunk `json`.
    pub(crate) fn scan(&mut self, json: &[u8]) -> (Option<Usage>, u64) {
        if let Some(chars) = self.text_of_same_shape(json) {
            return (None, chars);
        }
        let usage = usage(json);
        let (mut chars, mut count, mut last) = (0, 0, None);
        for text in texts(json) {
            chars += text.chars;
            count += 1;
            last = Some(text);
        }
        if let (None, 1, Some(text)) = (usage, count, last) {
            self.head.clear();
            self.head.extend_from_slice(&json[..=text.at]);
            self.tail.clear();
            self.tail.extend_from_slice(&json[text.at + text.len - 1..]);
        }
        (usage, chars)
    }

    /// The characters of the text of `json` when it has the kept shape.
    fn text_of_same_shape(&self, json: &[u8]) -> Option<u64> {
        let (head, tail) = (self.head.len(), self.tail.len());
        if head == 0
            || json.len() < head + tail
            || !json.starts_with(&self.head)
            || !json.ends_with(&self.tail)
        {
            return None;
        }
        let (len, chars) = string_extent(&json[head - 1..])?;
        // The string's closing quote must be the tail's first byte.
        (head - 1 + len - 1 == json.len() - tail).then_some(chars)
    }
}

/// The bytes from the value of the key whose opening quote is at `at` (`len` bytes long), when
/// it stands where a key can stand.
fn value_after_key(json: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    let before = json[..at].trim_ascii_end();
    if !matches!(before.last(), Some(b'{' | b',')) {
        return None;
    }
    let after = json[at + len..].trim_ascii_start();
    let value = after.strip_prefix(b":")?.trim_ascii_start();
    Some(value)
}

/// The JSON string `value` starts with: its length with both quotes, and its characters;
/// `None` when it is not a string or does not end.
fn string_extent(value: &[u8]) -> Option<(usize, u64)> {
    if value.first() != Some(&b'"') {
        return None;
    }
    let mut at = 1;
    let mut chars = 0;
    while let Some(&byte) = value.get(at) {
        match byte {
            b'"' => return Some((at + 1, chars)),
            b'\\' => {
                at += if value.get(at + 1) == Some(&b'u') {
                    6
                } else {
                    2
                };
                chars += 1;
                continue;
            }
            // UTF-8 continuation bytes belong to the character before them.
            byte if byte & 0xC0 == 0x80 => {}
            _ => chars += 1,
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_the_usage_of_a_whole_answer() {
        let answer = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"\"usage\":{\"prompt_tokens\":99}"},"finish_reason":"stop"}],"usage": {"prompt_tokens":9,"completion_tokens":6,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let usage = usage(answer).expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 6));
        assert_eq!(usage.cached_tokens(), 4);
    }

    #[test]
    fn the_last_usage_wins() {
        let chunk = br#"{"usage":{"prompt_tokens":1},"choices":[],"usage":{"prompt_tokens":2}}"#;
        assert_eq!(usage(chunk).map(|usage| usage.prompt_tokens), Some(2));
        let nested = br#"{"choices":[],"usage":{"prompt_tokens":3},"x":{"usage":null}}"#;
        assert_eq!(usage(nested).map(|usage| usage.prompt_tokens), Some(3));
    }

    #[test]
    fn a_long_answers_usage_is_found_at_its_end_or_anywhere() {
        let text = "x".repeat(4 * USAGE_TAIL);
        let at_end = format!(
            r#"{{"choices":[{{"message":{{"content":"{text}"}}}}],"usage":{{"prompt_tokens":3}}}}"#
        );
        assert_eq!(
            usage(at_end.as_bytes()).map(|usage| usage.prompt_tokens),
            Some(3)
        );
        let first = format!(
            r#"{{"usage":{{"prompt_tokens":4}},"choices":[{{"message":{{"content":"{text}"}}}}]}}"#
        );
        assert_eq!(
            usage(first.as_bytes()).map(|usage| usage.prompt_tokens),
            Some(4)
        );
        let both = format!(
            r#"{{"usage":{{"prompt_tokens":4}},"choices":[{{"message":{{"content":"{text}"}}}}],"usage":null}}"#
        );
        assert_eq!(
            usage(both.as_bytes()).map(|usage| usage.prompt_tokens),
            Some(4),
            "a null at the end is no usage: the earlier one stands"
        );
    }

    #[test]
    fn usage_in_text_or_null_is_not_usage() {
        assert_eq!(
            usage(
                br#"{"choices":[{"delta":{"content":"say \"usage\": {\"prompt_tokens\": 5}"}}]}"#
            ),
            None
        );
        assert_eq!(usage(br#"{"choices":[],"usage":null}"#), None);
        assert_eq!(usage(br#"{"usage":"#), None);
        assert_eq!(usage(b"not json"), None);
    }

    #[test]
    fn agrees_with_a_full_parse_on_the_answers_upstreams_send() {
        #[derive(serde::Deserialize)]
        struct Whole {
            usage: Option<Usage>,
        }
        for answer in [
            &br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_cache_hit_tokens":2}}"#[..],
            br#"{ "usage" : { "prompt_tokens" : 1 , "completion_tokens" : 2, "cached_tokens": 1 } , "choices" : [ ] }"#,
            br#"{"id":"x","choices":[{"delta":{"content":"hi"}}]}"#,
        ] {
            let whole: Whole = serde_json::from_slice(answer).expect("json");
            assert_eq!(usage(answer), whole.usage);
        }
    }

    #[test]
    fn counts_characters_of_content_and_reasoning() {
        let chunk = r#"{"choices":[{"index":0,"delta":{"reasoning_content":"ab\n","content":"héllo \"w\" \u00e9 😀"},"finish_reason":null}]}"#;
        // "ab\n" is 3; "héllo \"w\" \u00e9 😀" is h é l l o ␠ " w " ␠ é ␠ 😀 = 13.
        assert_eq!(text_chars(chunk.as_bytes()), 16);
    }

    #[test]
    fn other_keys_and_missing_text_count_nothing() {
        assert_eq!(
            text_chars(br#"{"choices":[{"delta":{"role":"assistant","content":null}}]}"#),
            0
        );
        assert_eq!(
            text_chars(br#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"content\":\"x\"}"}}]}}]}"#),
            0
        );
        assert_eq!(text_chars(br#"{"choices":[{"delta":{"content":"cut"#), 0);
        assert_eq!(
            text_chars(br#"{"choices":[{"delta":{"text_content":"x","content":"ab"}}]}"#),
            2
        );
    }

    #[test]
    fn chunks_of_one_shape_read_as_a_full_scan_does() {
        let stream = [
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"lo \"wörld\"\n\u00e9"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"a","usage":{"prompt_tokens":5},"x":"b"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"ends in \\"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"\"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"hm"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#,
        ];
        let mut scanner = ChunkScanner::default();
        let mut shaped = 0;
        for chunk in stream {
            let json = chunk.as_bytes();
            shaped += u32::from(scanner.text_of_same_shape(json).is_some());
            assert_eq!(
                scanner.scan(json),
                (usage(json), text_chars(json)),
                "{chunk}"
            );
        }
        assert_eq!(
            shaped, 3,
            "the chunks after \"Hel\" share its shape, up to the one with usage, and the one ending in an escaped backslash"
        );
    }

    /// Pieces of chunks: heads that open a text string, bodies (some not a string's body at
    /// all), tails that close it.
    fn chunk() -> impl Strategy<Value = String> {
        let head = prop::sample::select(vec![
            r#"{"choices":[{"delta":{"content":""#,
            r#"{"choices":[{"delta":{"reasoning_content":""#,
            r#"{"usage":null,"choices":[{"delta":{"content":""#,
            r#"{"choices":[],"usage":{"prompt_tokens":4},"x":""#,
        ]);
        let body = prop::collection::vec(
            prop::sample::select(vec![
                "a",
                "é",
                "\\\"",
                "\\\\",
                "\\",
                "\"",
                "\\u00e9",
                "usage",
                "\"usage\":{\"prompt_tokens\":2},\"y\":\"",
                "content",
                "\",\"content\":\"zz",
            ]),
            0..6,
        )
        .prop_map(|pieces| pieces.concat());
        let tail = prop::sample::select(vec![
            r#""}}]}"#,
            r#""},"finish_reason":null}]}"#,
            r#""}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}"#,
            r#""}}],"usage":null}"#,
        ]);
        (head, body, tail).prop_map(|(head, body, tail)| format!("{head}{body}{tail}"))
    }

    /// Answers made of pieces around and inside usage objects: keys where keys stand and
    /// inside strings, nulls, escapes, and text long enough to push a usage out of the tail.
    fn answer() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "{",
                "}",
                ",",
                ":",
                "\"usage\"",
                "\"usage\":",
                "\"usage\":{\"prompt_tokens\":3}",
                "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}",
                "\"usage\":null",
                "\"usage\"usage\"",
                "{\"usage\":{\"prompt_tokens\":7}}",
                "\"content\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":9}\"",
                "\"x\":\"",
                "\"",
                "\\",
                " ",
                "usage",
                "{\"prompt_tokens\":1}",
                "\"long\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
            ]),
            0..24,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn an_answer_s_usage_reads_the_same_from_the_end(json in answer()) {
            prop_assert_eq!(answer_usage(json.as_bytes()), usage(json.as_bytes()), "{}", json);
        }

        #[test]
        fn a_stream_of_chunks_reads_as_full_scans_do(chunks in prop::collection::vec(chunk(), 1..12)) {
            let mut scanner = ChunkScanner::default();
            for chunk in &chunks {
                let json = chunk.as_bytes();
                prop_assert_eq!(scanner.scan(json), (usage(json), text_chars(json)), "{}", chunk);
            }
        }
    }
}
