"""cliproxy's /v1/messages through the Anthropic Python SDK (client.messages.create and .stream).

Run against a running server; see harness.py for the environment it reads. The SDK is pointed
at the server's root (no /v1), as Claude Code is.
"""

import anthropic

from harness import (
    API_KEY,
    BASE_URL,
    BROKEN_MODEL,
    CLAUDE_MODEL,
    ERRORING_MODEL,
    FAKE,
    LEADING_TEXT,
    MODEL,
    OVERLOADED_MODEL,
    TIME_SCHEMA,
    THINKING_MODEL,
    TOOL_RESULTS,
    WEATHER_SCHEMA,
    Skip,
    check,
    check_call_count,
    check_fake_arguments,
    eq,
    http_client,
    model_or_skip,
    run,
    tests_of,
)

client = anthropic.Anthropic(base_url=BASE_URL, api_key=API_KEY, max_retries=0, http_client=http_client(anthropic))

TOOLS = [
    {"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER_SCHEMA},
    {"name": "get_time", "description": "Current time in a time zone", "input_schema": TIME_SCHEMA},
]
QUESTION = "What is the weather in Paris, and what time is it there?"
MAX_TOKENS = 1024


def check_usage(usage, what="usage"):
    check(usage is not None, f"{what} is missing")
    check(usage.input_tokens > 0, f"{what}.input_tokens: {usage}")
    check(usage.output_tokens > 0, f"{what}.output_tokens: {usage}")
    if FAKE:
        # The fake reports half of each prompt as read from its cache.
        check(
            (usage.cache_read_input_tokens or 0) > 0,
            f"{what}.cache_read_input_tokens (the upstream reported cached tokens): {usage}",
        )


def text_of(message):
    return "".join(block.text for block in message.content if block.type == "text")


def test_chat():
    message = client.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    eq(message.type, "message", "type")
    eq(message.role, "assistant", "role")
    check(message.id, "an id")
    eq([block.type for block in message.content], ["text"], "content block types")
    check(message.content[0].text, f"no text: {message}")
    if FAKE:
        eq(message.content[0].text, "You said: Say hello", "text")
    eq(message.stop_reason, "end_turn", "stop_reason")
    check_usage(message.usage)


def test_chat_with_content_blocks():
    """As Claude Code sends it: system and user content as lists of blocks, with cache_control."""
    message = client.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Say "},
                    {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
    )
    eq(message.stop_reason, "end_turn", "stop_reason")
    check(text_of(message), "a text answer")
    if FAKE:
        check(text_of(message).startswith("You said: Say "), f"text: {text_of(message)!r}")


def test_auth_token():
    """ANTHROPIC_AUTH_TOKEN, as Claude Code is set up: the key goes as Authorization: Bearer."""
    bearer = anthropic.Anthropic(
        base_url=BASE_URL, api_key=None, auth_token=API_KEY, max_retries=0, http_client=http_client(anthropic)
    )
    message = bearer.messages.create(
        model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "Say hello"}]
    )
    eq(message.stop_reason, "end_turn", "stop_reason")


def test_stream():
    with client.messages.stream(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": "Count to three"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    check(len(pieces) >= 2, f"streamed in pieces: {pieces!r}")
    text = "".join(pieces)
    if FAKE:
        eq(text, "part0 part1 part2 ", "streamed text")
    eq([block.type for block in final.content], ["text"], "final content block types")
    eq(final.content[0].text, text, "final text")
    eq(final.stop_reason, "end_turn", "stop_reason")
    check_usage(final.usage, "final usage")


def test_stream_events():
    events = list(
        client.messages.create(
            model=MODEL,
            max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": "Count to three"}],
            stream=True,
        )
    )
    types = [event.type for event in events if event.type != "ping"]
    collapsed = [kind for i, kind in enumerate(types) if i == 0 or kind != types[i - 1] or kind != "content_block_delta"]
    eq(
        collapsed,
        ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"],
        "event types in order",
    )
    start = events[0].message
    eq(start.role, "assistant", "message_start role")
    eq(start.content, [], "message_start content")
    # Before the upstream counts, message_start carries cliproxy's estimate of the prompt.
    check(start.usage.input_tokens > 0, f"message_start usage: {start.usage}")
    block = next(e for e in events if e.type == "content_block_start")
    eq((block.index, block.content_block.type), (0, "text"), "content_block_start")
    for event in events:
        if event.type == "content_block_delta":
            eq(event.delta.type, "text_delta", "delta type")
    delta = next(e for e in events if e.type == "message_delta")
    eq(delta.delta.stop_reason, "end_turn", "message_delta stop_reason")
    check(delta.usage.output_tokens > 0, f"message_delta usage: {delta.usage}")
    if FAKE:
        # The upstream's counts, which replace message_start's estimate: input, cache reads.
        check(delta.usage.input_tokens and delta.usage.input_tokens > 0, f"message_delta usage: {delta.usage}")
        check((delta.usage.cache_read_input_tokens or 0) > 0, f"message_delta usage: {delta.usage}")


def test_thinking():
    """thinking enabled on a model that thinks: the model's reasoning (the fake's upstream has the
    default `reasoning = "effort"`, so it gets reasoning_effort and answers in `reasoning`)
    becomes a thinking block before the text, whole and streamed (thinking_delta events, then
    the text block)."""
    model = THINKING_MODEL or MODEL
    thinking = {"type": "enabled", "budget_tokens": 1024}
    question = [{"role": "user", "content": "Say hello"}]
    message = client.messages.create(model=model, max_tokens=4096, thinking=thinking, messages=question)
    check_thinking(message, "You said: Say hello")

    with client.messages.stream(model=model, max_tokens=4096, thinking=thinking, messages=question) as stream:
        events = list(stream)
        final = stream.get_final_message()
    check_thinking(final, "part0 part1 part2 ")
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    eq(text_of(final), text, "streamed text")
    if THINKING_MODEL and FAKE:
        starts = [(e.index, e.content_block.type) for e in events if e.type == "content_block_start"]
        eq(starts, [(0, "thinking"), (1, "text")], "content blocks started")
        thinking_deltas = [e for e in events if e.type == "content_block_delta" and e.delta.type == "thinking_delta"]
        check(thinking_deltas, "thinking_delta events")
        check(all(e.index == 0 for e in thinking_deltas), "thinking deltas belong to block 0")


def check_thinking(message, fake_text):
    eq(message.stop_reason, "end_turn", "stop_reason")
    types = [block.type for block in message.content]
    if THINKING_MODEL and FAKE:
        eq(types, ["thinking", "text"], "content block types")
    else:
        eq(types[-1:], ["text"], f"content ends with the answer: {types}")
        check(all(kind in ("thinking", "redacted_thinking") for kind in types[:-1]), f"content block types: {types}")
    for block in message.content[:-1]:
        if block.type == "thinking":
            check(block.thinking, f"thinking text: {block}")
    if FAKE:
        eq(text_of(message), fake_text, "text")


def check_tool_uses(message):
    eq(message.stop_reason, "tool_use", "stop_reason")
    uses = [block for block in message.content if block.type == "tool_use"]
    check_call_count(len(uses), "tool_use blocks")
    # Thinking, when there is any, comes before everything else.
    content = [block for block in message.content if block.type != "thinking"]
    check(message.content[: len(message.content) - len(content)] == [b for b in message.content if b.type == "thinking"],
          f"thinking first: {[block.type for block in message.content]}")
    if LEADING_TEXT:
        eq(content[0].type, "text", "the text comes first")
        check(content[0].text, "text before the tool_use blocks")
    else:
        check(all(block.type == "tool_use" for block in content), f"only tool_use blocks: {message.content}")
    for use in uses:
        check(use.id, f"tool_use id: {use}")
        check(use.name in TOOL_RESULTS, f"used an offered tool: {use}")
        check(isinstance(use.input, dict), f"input is an object: {use.input!r}")
        if FAKE:
            check_fake_arguments(use.name, use.input)
    eq(len({use.id for use in uses}), len(uses), "distinct tool_use ids")
    return uses


def follow_up(message, uses):
    return [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": message.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULTS[use.name]} for use in uses
            ],
        },
    ]


def check_final_answer(message, uses, failed=()):
    """The answer to the tool results; the fake repeats them, so the results of the uses in
    `failed` (sent with is_error) show that they reached the model marked as errors."""
    eq(message.stop_reason, "end_turn", "stop_reason after the results")
    eq([block.type for block in message.content], ["text"], "content after the results")
    if FAKE:
        expected = " | ".join(
            f"Error: {TOOL_RESULTS[use.name]}" if use.id in failed else TOOL_RESULTS[use.name] for use in uses
        )
        eq(text_of(message), f"The tool returned: {expected}", "answer")


def test_tool_round_trip():
    message = client.messages.create(
        model=MODEL, max_tokens=MAX_TOKENS, tools=TOOLS, messages=[{"role": "user", "content": QUESTION}]
    )
    uses = check_tool_uses(message)
    answer = client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, tools=TOOLS, messages=follow_up(message, uses))
    check_final_answer(answer, uses)


def test_tool_round_trip_thinking():
    """As Claude Code with interleaved thinking: the thinking block goes back with the tool_use
    blocks, and the conversation goes on."""
    model = THINKING_MODEL or MODEL
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(
        model=model, max_tokens=4096, thinking=thinking, tools=TOOLS, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        message = stream.get_final_message()
    uses = check_tool_uses(message)
    if THINKING_MODEL and FAKE:
        eq(message.content[0].type, "thinking", "the thinking comes first")
    answer = client.messages.create(
        model=model, max_tokens=4096, thinking=thinking, tools=TOOLS, messages=follow_up(message, uses)
    )
    eq(answer.stop_reason, "end_turn", "stop_reason after the results")
    if FAKE:
        expected = " | ".join(TOOL_RESULTS[use.name] for use in uses)
        eq(text_of(answer), f"The tool returned: {expected}", "answer")


def test_tool_round_trip_streamed():
    with client.messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, tools=TOOLS, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        events = list(stream)
        message = stream.get_final_message()
    uses = check_tool_uses(message)
    json_deltas = [e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    check(len(json_deltas) >= len(uses), f"input_json_delta events: {len(json_deltas)}")
    starts = [e for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"]
    for start in starts:
        eq(start.content_block.input, {}, "tool_use starts with empty input")

    with client.messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, tools=TOOLS, messages=follow_up(message, uses)
    ) as stream:
        text = "".join(stream.text_stream)
        answer = stream.get_final_message()
    eq(text_of(answer), text, "streamed text")
    check_final_answer(answer, uses)


def test_tool_result_blocks_and_text():
    """As Claude Code sends results: tool_result content as a list of blocks, an error result,
    and text after the results in the same user message."""
    message = client.messages.create(
        model=MODEL, max_tokens=MAX_TOKENS, tools=TOOLS, messages=[{"role": "user", "content": QUESTION}]
    )
    uses = check_tool_uses(message)
    results = [
        {
            "type": "tool_result",
            "tool_use_id": use.id,
            "content": [{"type": "text", "text": TOOL_RESULTS[use.name]}],
        }
        for use in uses
    ]
    results[-1]["is_error"] = True
    answer = client.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": results},
        ],
    )
    check_final_answer(answer, uses, failed={uses[-1].id})

    # Text after the results is a new user turn for the model: it answers that.
    answer = client.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        tools=TOOLS,
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": results + [{"type": "text", "text": "Thanks, now summarise"}]},
        ],
    )
    eq(answer.stop_reason, "end_turn", "stop_reason")
    if FAKE:
        eq(text_of(answer), "You said: Thanks, now summarise", "answer")


def test_tool_choice():
    """tool_choice reaches the model: a named tool is the one called; none means text."""
    message = client.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": QUESTION}],
    )
    eq(message.stop_reason, "tool_use", "stop_reason")
    eq({block.name for block in message.content if block.type == "tool_use"}, {"get_time"}, "tools used")

    message = client.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        tools=TOOLS,
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": QUESTION}],
    )
    eq(message.stop_reason, "end_turn", "stop_reason with tool_choice none")
    eq([block.type for block in message.content], ["text"], "content with tool_choice none")


def test_beta_messages_as_claude_code():
    """Claude Code uses the beta client: POST /v1/messages?beta=true with anthropic-beta."""
    message = client.beta.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        betas=["interleaved-thinking-2025-05-14", "claude-code-20250219"],
        messages=[{"role": "user", "content": "Say hello"}],
    )
    eq(message.stop_reason, "end_turn", "stop_reason")
    if FAKE:
        eq(text_of(message), "You said: Say hello", "text")
    with client.beta.messages.stream(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        betas=["interleaved-thinking-2025-05-14"],
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:
        text = "".join(stream.text_stream)
    check(text, "streamed text")


def test_claude_model_id_by_alias():
    """Claude Code's own model id, mapped by [models.aliases], whole and streamed."""
    if not CLAUDE_MODEL:
        raise Skip("CLIPROXY_SDK_CLAUDE_MODEL is not set")
    question = [{"role": "user", "content": "Say hello"}]
    message = client.messages.create(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=question)
    eq(message.stop_reason, "end_turn", "stop_reason")
    if FAKE:
        eq(text_of(message), "You said: Say hello", "text")
    with client.messages.stream(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=question) as stream:
        text = "".join(stream.text_stream)
    check(text, "streamed text")


def test_count_tokens():
    counted = client.messages.count_tokens(
        model=MODEL, tools=TOOLS, messages=[{"role": "user", "content": QUESTION}]
    )
    check(counted.input_tokens > 0, f"input_tokens: {counted}")


def test_unknown_key_is_refused():
    stranger = anthropic.Anthropic(base_url=BASE_URL, api_key="not-a-key", max_retries=0, http_client=http_client(anthropic))
    try:
        stranger.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "hi"}])
    except anthropic.AuthenticationError as error:
        eq(error.status_code, 401, "status")
        check_error_shape(error, "authentication_error")
    else:
        raise AssertionError("an unknown key was accepted")


def test_unknown_model_has_anthropic_shape():
    """A model no credential serves: 404 not_found_error in Anthropic's shape, naming the model
    and the models that exist."""
    try:
        client.messages.create(
            model="no-such-model", max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "hi"}]
        )
    except anthropic.NotFoundError as error:
        eq(error.status_code, 404, "status")
        check_error_shape(error, "not_found_error")
        message = error.body["error"]["message"]
        check("no-such-model" in message and MODEL in message, f"names the model and the known ones: {message!r}")
    else:
        raise AssertionError("an unknown model was served")


def check_error_shape(error, kind=None):
    body = error.body
    check(isinstance(body, dict) and body.get("type") == "error", f"Anthropic error body: {body!r}")
    check(isinstance(body.get("error"), dict) and body["error"].get("message"), f"error.message: {body!r}")
    if kind:
        eq(body["error"].get("type"), kind, "error.type")


def failed_stream(model, what):
    """Streams a message from `model`, whose upstream fails mid-answer: the events that came
    before the SDK raised, and its error. The SDK must raise its own APIStatusError for the
    stream's error event, not a connection error."""
    events = []
    try:
        for event in client.messages.create(
            model=model,
            max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": "Count to three"}],
            stream=True,
        ):
            events.append(event)
    except anthropic.APIStatusError as error:
        return events, error
    raise AssertionError(f"{what}: the stream ended without an error: {[e.type for e in events]}")


def check_failed_stream(model, error_type, words, what):
    events, error = failed_stream(model, what)
    types = [event.type for event in events]
    check("message_start" in types, f"{what}: the answer had started: {types}")
    check("message_stop" not in types, f"{what}: a message_stop: {types}")
    check(isinstance(error.body, dict), f"{what}: error body {error.body!r}")
    eq(error.body.get("type"), "error", f"{what}: body type")
    eq(error.body["error"]["type"], error_type, f"{what}: error type")
    message = error.body["error"]["message"]
    check(words in message and "incomplete" in message, f"{what}: message {message!r}")

    # The stream helper raises it too.
    try:
        with client.messages.stream(
            model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "Count to three"}]
        ) as stream:
            stream.get_final_message()
    except anthropic.APIStatusError as error:
        eq(error.body["error"]["type"], error_type, f"{what}: error type through messages.stream")
    else:
        raise AssertionError(f"{what}: messages.stream returned a final message")


def test_stream_broken_mid_answer_raises_the_sdks_error():
    """The upstream breaks its stream off mid-answer: an error event (api_error) ends it."""
    model = model_or_skip(BROKEN_MODEL, "CLIPROXY_SDK_BROKEN_MODEL")
    check_failed_stream(model, "api_error", "broke off", "a broken stream")


def test_stream_with_an_upstream_error_raises_the_sdks_error():
    """The upstream sends an error chunk mid-answer: an error event with its message."""
    model = model_or_skip(ERRORING_MODEL, "CLIPROXY_SDK_ERRORING_MODEL")
    check_failed_stream(model, "api_error", "inappropriate content", "an upstream error mid-answer")


def test_stream_with_an_upstream_overload_raises_an_overloaded_error():
    """The upstream says mid-answer that it is overloaded: Anthropic's overloaded_error."""
    model = model_or_skip(OVERLOADED_MODEL, "CLIPROXY_SDK_OVERLOADED_MODEL")
    check_failed_stream(model, "overloaded_error", "overloaded", "an overloaded upstream")


if __name__ == "__main__":
    run(tests_of(globals()))
