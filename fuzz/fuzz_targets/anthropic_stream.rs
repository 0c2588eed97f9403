//! Any bytes as an upstream's chat-completions event stream, translated into Anthropic
//! Messages events whole and in pieces: the stream invariants of `api_translate::invariants`
//! hold, and chunk boundaries do not change the output.
//!
//! A first line `: stop_sequences ["...", ...]` (an SSE comment, so the upstream body stays
//! valid) gives the request's stop sequences; without it, every other input length runs with
//! `END` and `\n\nHuman:`, the others with none. Odd lengths end normally, even ones break off.
#![no_main]

use api_translate::anthropic::{MessageStream, StopSequences};
use api_translate::invariants::{Api, End};
use cliproxy_fuzz::translated;
use libfuzzer_sys::fuzz_target;

fn stop_sequences(body: &[u8]) -> StopSequences {
    let first_line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let sequences = match first_line.strip_prefix(b": stop_sequences ") {
        Some(json) => serde_json::from_slice::<Vec<String>>(json).unwrap_or_default(),
        None if body.len() / 2 % 2 == 0 => vec!["END".to_owned(), "\n\nHuman:".to_owned()],
        None => Vec::new(),
    };
    StopSequences::new(sequences)
}

fuzz_target!(|body: &[u8]| {
    let stops = stop_sequences(body);
    let end = if body.len() % 2 == 1 {
        End::Finish
    } else {
        End::Fail
    };
    let outputs = translated(Api::Anthropic, body, end, || {
        let translator = MessageStream::new("claude-fuzz".to_owned(), stops.clone(), 7);
        (translator, Vec::new())
    });
    // A message id made locally (no upstream id) differs from run to run.
    if !outputs[0]
        .windows(13)
        .any(|window| window == b"msg_cliproxy_")
    {
        assert_eq!(
            outputs[0], outputs[1],
            "chunk boundaries changed the output"
        );
    }
});
