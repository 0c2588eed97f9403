//! Any bytes as an upstream's chat-completions event stream, translated into OpenAI Responses
//! events whole and in pieces: the stream invariants of `api_translate::invariants` hold, and
//! chunk boundaries do not change the output. Odd lengths end normally, even ones break off.
//! The request has a namespace tool, so calls of `tools__run` are named apart.
#![no_main]

use std::sync::LazyLock;

use api_translate::invariants::{Api, End};
use api_translate::responses::{ResponsesStream, Shell, to_chat};
use cliproxy_fuzz::translated;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

static SHELL: LazyLock<Shell> = LazyLock::new(|| {
    let request = json!({
        "model": "gpt-fuzz",
        "input": "hi",
        "tools": [
            { "type": "function", "name": "read", "parameters": { "type": "object" } },
            { "type": "namespace", "name": "tools", "description": "Tools.",
              "tools": [{ "type": "function", "name": "run", "parameters": { "type": "object" } }] },
        ],
    });
    let translated = to_chat(&request).expect("a translatable request");
    Shell::new(translated.echo, "fuzz", 1_750_000_000).with_namespaces(translated.namespaces)
});

fuzz_target!(|body: &[u8]| {
    let end = if body.len() % 2 == 1 {
        End::Finish
    } else {
        End::Fail
    };
    let outputs = translated(Api::Responses, body, end, || {
        let (translator, opening) = ResponsesStream::start(SHELL.clone());
        (translator, opening.to_vec())
    });
    assert_eq!(
        outputs[0], outputs[1],
        "chunk boundaries changed the output"
    );
});
