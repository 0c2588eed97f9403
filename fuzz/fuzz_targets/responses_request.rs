//! Any JSON as an OpenAI Responses request body: translating never panics, a refusal is a
//! one-line message with a code, a translated request is a chat-completions request a chat
//! upstream can take, its reasoning becomes only reasoning fields for every kind of upstream,
//! and the fields the answer echoes make well-formed stream events.
#![no_main]

use api_translate::invariants::{Api, End, check_reasoning, check_stream, drive};
use api_translate::responses::{ResponsesStream, Shell, to_chat};
use cliproxy_fuzz::check_chat_message;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    // The route answers a body that is not JSON itself.
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let translated = match to_chat(&body) {
        Ok(translated) => translated,
        Err(refusal) => {
            assert!(!refusal.code.is_empty() && !refusal.message.is_empty());
            assert!(
                !refusal.message.contains(['\n', '\r']),
                "a refusal of more than one line: {:?}",
                refusal.message
            );
            return;
        }
    };
    let chat = &translated.chat;
    assert_eq!(chat["model"], translated.model.as_str());
    assert_eq!(translated.stream, chat["stream"] == true);
    for message in chat["messages"].as_array().expect("messages") {
        check_chat_message(message);
    }
    for tool in chat["tools"].as_array().map_or(&[][..], Vec::as_slice) {
        assert_eq!(tool["type"], "function", "{tool}");
        assert!(tool["function"]["name"].is_string(), "{tool}");
    }
    let text = serde_json::to_vec(chat).expect("serializable");
    assert_eq!(
        &serde_json::from_slice::<Value>(&text).expect("reparses"),
        chat
    );

    let shell = Shell::new(translated.echo, "fuzz", 0).with_namespaces(translated.namespaces);
    let (mut stream, opening) = ResponsesStream::start(shell);
    let out = drive(&mut stream, &opening, &[b"data: [DONE]\n\n"], End::Finish)
        .unwrap_or_else(|violation| panic!("{violation}"));
    check_stream(Api::Responses, &out).unwrap_or_else(|violation| panic!("{violation}"));
    if let Some(reasoning) = &translated.reasoning {
        check_reasoning(reasoning).unwrap_or_else(|violation| panic!("{violation}"));
    }
});
