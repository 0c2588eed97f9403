//! Any bytes as an Anthropic Messages request body: checking and mapping never panic, a
//! refusal is a one-line message with a code, and a mapped request is a chat-completions
//! request a chat upstream can take, whose reasoning (kept beside the body) becomes only
//! reasoning fields for every kind of upstream.
#![no_main]

use api_translate::anthropic::{Endpoint, MessagesRequest, estimate_tokens};
use api_translate::invariants::check_reasoning;
use cliproxy_fuzz::check_chat_message;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    for endpoint in [Endpoint::Create, Endpoint::CountTokens] {
        let chat = match MessagesRequest::parse(body, endpoint).and_then(MessagesRequest::into_chat)
        {
            Ok(chat) => chat,
            Err(error) => {
                let message = error.to_string();
                assert!(!error.code().is_empty() && !message.is_empty());
                assert!(
                    !message.contains(['\n', '\r']),
                    "a refusal of more than one line: {message:?}"
                );
                continue;
            }
        };
        let json = &chat.json;
        assert_eq!(json["model"], chat.model.as_str());
        assert_eq!(chat.stream, json["stream"] == true);
        assert_eq!(chat.stream, json.get("stream_options").is_some());
        let messages = json["messages"].as_array().expect("messages");
        for message in messages {
            check_chat_message(message);
            assert!(
                message.get("content").is_some() || message.get("tool_calls").is_some(),
                "{message}"
            );
            for call in message["tool_calls"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
            {
                let arguments = call["function"]["arguments"].as_str().expect("arguments");
                serde_json::from_str::<Value>(arguments).expect("arguments are JSON text");
                assert!(call["id"].is_string(), "{call}");
            }
        }
        if let Some(reasoning) = &chat.reasoning {
            check_reasoning(reasoning).unwrap_or_else(|violation| panic!("{violation}"));
        }
        let text = serde_json::to_vec(json).expect("serializable");
        assert_eq!(
            &serde_json::from_slice::<Value>(&text).expect("reparses"),
            json
        );
        let _ = estimate_tokens(json);
    }
});
