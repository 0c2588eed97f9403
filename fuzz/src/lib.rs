//! What the fuzz targets share: how an input is cut into the chunks an upstream body arrives
//! in, a translator run and checked over each cutting, the checks every translated chat message
//! passes, and how a secret is looked for in `Debug` output.

use api_translate::StreamTranslator;
use api_translate::invariants::{Api, End, check_stream, drive};
use serde_json::Value;

/// The ways `body` is fed: whole, and in pieces of a length taken from the input (1 to 16
/// bytes), so that chunk boundaries fall everywhere, CRLF pairs and UTF-8 sequences included.
pub fn chunkings(body: &[u8]) -> [Vec<&[u8]>; 2] {
    let piece = 1 + body.len() % 16;
    [vec![body], body.chunks(piece).collect()]
}

/// Whether `shown` (a `Debug` text) reveals `secret`: long enough to mean something, and
/// absent once the secret is replaced by a value nobody writes (`shown_without`), so that
/// text another field shows does not count.
pub fn reveals(shown: &str, secret: &str, shown_without: impl FnOnce() -> String) -> bool {
    secret.chars().count() >= 6 && shown.contains(secret) && !shown_without().contains(secret)
}

/// For each of [`chunkings`] of `body`, a new translator from `start` (with the bytes it opens
/// the stream with) run over it as the proxy runs it, ending as `end` says, and its output,
/// which passes the stream invariants of `api`. Panics on a violation.
pub fn translated<T: StreamTranslator>(
    api: Api,
    body: &[u8],
    end: End,
    start: impl Fn() -> (T, Vec<u8>),
) -> Vec<Vec<u8>> {
    chunkings(body)
        .iter()
        .map(|chunks| {
            let (mut translator, opening) = start();
            let out = drive(&mut translator, &opening, chunks, end)
                .unwrap_or_else(|violation| panic!("{violation}"));
            check_stream(api, &out).unwrap_or_else(|violation| {
                panic!("{violation}\n{}", String::from_utf8_lossy(&out))
            });
            out
        })
        .collect()
}

/// Checks what every message of a translated chat request has: a chat role, the call id of a
/// `tool` message, and a function name and string arguments in each tool call. Panics if not.
pub fn check_chat_message(message: &Value) {
    let role = message["role"].as_str().unwrap_or_default();
    assert!(
        matches!(role, "system" | "user" | "assistant" | "tool"),
        "{message}"
    );
    if role == "tool" {
        assert!(message["tool_call_id"].is_string(), "{message}");
    }
    for call in message["tool_calls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        assert!(call["function"]["name"].is_string(), "{call}");
        assert!(call["function"]["arguments"].is_string(), "{call}");
    }
}
