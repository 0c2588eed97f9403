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

/// The `usage` object of a chat-completions answer or chunk: the last `"usage"` key's value,
/// when it is an object of the expected shape.
pub(crate) fn usage(json: &[u8]) -> Option<Usage> {
    let mut found = None;
    for at in USAGE.find_iter(json) {
        let Some(value) = value_after_key(json, at, USAGE.needle().len()) else {
            continue;
        };
        if let Some(Ok(Some(usage))) = serde_json::Deserializer::from_slice(value)
            .into_iter::<Option<Usage>>()
            .next()
        {
            found = Some(usage);
        }
    }
    found
}

/// Characters of text in a chunk's `content` and `reasoning_content` strings, as the client
/// will see them (an escape counts as one character).
pub(crate) fn text_chars(json: &[u8]) -> u64 {
    CONTENT
        .find_iter(json)
        .filter_map(|at| {
            let key_start = if json[..at].ends_with(b"\"") {
                at - 1
            } else if json[..at].ends_with(b"\"reasoning_") {
                at - b"\"reasoning_".len()
            } else {
                return None;
            };
            value_after_key(json, key_start, at + CONTENT.needle().len() - key_start)
        })
        .filter_map(string_chars)
        .sum()
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

/// Characters of the JSON string `value` starts with; `None` when it is not a string.
fn string_chars(value: &[u8]) -> Option<u64> {
    let mut bytes = value.strip_prefix(b"\"")?.iter();
    let mut chars = 0;
    while let Some(&byte) = bytes.next() {
        match byte {
            b'"' => return Some(chars),
            b'\\' => {
                if bytes.next() == Some(&b'u') {
                    bytes.nth(3);
                }
                chars += 1;
            }
            // UTF-8 continuation bytes belong to the character before them.
            byte if byte & 0xC0 == 0x80 => {}
            _ => chars += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
