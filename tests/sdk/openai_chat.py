"""cliproxy's /v1/chat/completions through the OpenAI Python SDK (client.chat.completions.create).

Run against a running server; see harness.py for the environment it reads.
"""

import openai

from harness import (
    API_KEY,
    BASE_URL,
    FAKE,
    LEADING_TEXT,
    MODEL,
    TIME_SCHEMA,
    TOOL_RESULTS,
    WEATHER_SCHEMA,
    check,
    check_call_count,
    check_fake_arguments,
    eq,
    http_client,
    parse_arguments,
    run,
    tests_of,
)

client = openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key=API_KEY, max_retries=0, http_client=http_client(openai))

TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_SCHEMA},
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "Current time in a time zone", "parameters": TIME_SCHEMA},
    },
]
QUESTION = "What is the weather in Paris, and what time is it there?"


def test_chat():
    response = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ],
    )
    eq(response.object, "chat.completion", "object")
    check(response.id, "an id")
    eq(len(response.choices), 1, "number of choices")
    choice = response.choices[0]
    eq(choice.finish_reason, "stop", "finish_reason")
    eq(choice.message.role, "assistant", "role")
    check(choice.message.content, f"no content: {response}")
    if FAKE:
        eq(choice.message.content, "You said: Say hello", "content")
    check(response.usage is not None, "usage")
    check(response.usage.prompt_tokens > 0, f"prompt_tokens: {response.usage}")
    check(response.usage.completion_tokens > 0, f"completion_tokens: {response.usage}")
    eq(response.usage.total_tokens, response.usage.prompt_tokens + response.usage.completion_tokens, "total_tokens")


def test_stream():
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish_reasons, usage, roles = [], [], None, []
    for chunk in stream:
        eq(chunk.object, "chat.completion.chunk", "chunk object")
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    eq(roles, ["assistant"], "roles announced")
    eq(finish_reasons, ["stop"], "finish reasons")
    check(len(text) >= 2, f"streamed in pieces: {text!r}")
    if FAKE:
        eq("".join(text), "part0 part1 part2 ", "streamed text")
    check(usage is not None and usage.completion_tokens > 0, f"usage chunk: {usage}")


def test_thinking():
    """Qwen's thinking models stream reasoning_content (with content null) before the answer."""
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], extra_body={"enable_thinking": True}
    )
    message = response.choices[0].message
    check(message.content, f"no content: {response}")
    if FAKE:
        eq(message.content, "You said: Say hello", "content")
        check((message.model_extra or {}).get("reasoning_content"), f"reasoning_content: {message}")

    reasoning, text = [], []
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        extra_body={"enable_thinking": True},
    ):
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            if extra.get("reasoning_content"):
                check(not text, "reasoning comes before the answer")
                reasoning.append(extra["reasoning_content"])
            if choice.delta.content:
                text.append(choice.delta.content)
    check(text, "streamed an answer")
    if FAKE:
        check(reasoning, "streamed reasoning_content")


def tool_round_trip(stream):
    messages = [{"role": "user", "content": QUESTION}]
    calls, content, finish_reason = ask_with_tools(messages, stream)
    eq(finish_reason, "tool_calls", "finish_reason")
    check_call_count(len(calls))
    if LEADING_TEXT:
        check(content, "text before the tool calls")
    for call in calls:
        check(call["id"], f"call id: {call}")
        check(call["name"] in TOOL_RESULTS, f"called an offered tool: {call}")
        arguments = parse_arguments(call["arguments"])
        if FAKE:
            check_fake_arguments(call["name"], arguments)
    eq(len({call["id"] for call in calls}), len(calls), "distinct call ids")

    messages.append(
        {
            "role": "assistant",
            "content": content or None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in calls
            ],
        }
    )
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULTS[call["name"]]})
    calls, content, finish_reason = ask_with_tools(messages, stream)
    eq(finish_reason, "stop", "finish_reason after the results")
    eq(calls, [], "no further calls")
    check(content, "a text answer after the tool results")
    if FAKE:
        expected = " | ".join(TOOL_RESULTS[call["function"]["name"]] for call in messages[1]["tool_calls"])
        eq(content, f"The tool returned: {expected}", "answer")


def ask_with_tools(messages, stream):
    """(calls as dicts id/name/arguments, content, finish_reason) of one turn."""
    if not stream:
        response = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
        choice = response.choices[0]
        calls = [
            {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
            for call in choice.message.tool_calls or []
        ]
        for call in choice.message.tool_calls or []:
            eq(call.type, "function", "tool call type")
        return calls, choice.message.content, choice.finish_reason

    chunks = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True)
    calls, content, finish_reason = {}, [], None
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                check(not calls, f"text after a tool call began: {delta.content!r}")
                content.append(delta.content)
            for call in delta.tool_calls or []:
                if call.index not in calls:
                    # The first delta of a call names it.
                    check(call.id and call.function and call.function.name, f"first delta of a call: {call}")
                    calls[call.index] = {"id": call.id, "name": call.function.name, "arguments": ""}
                else:
                    check(not call.id, f"a later delta repeats the id: {call}")
                if call.function and call.function.arguments:
                    calls[call.index]["arguments"] += call.function.arguments
            if choice.finish_reason:
                check(finish_reason is None, "one finish_reason")
                finish_reason = choice.finish_reason
    eq(sorted(calls), list(range(len(calls))), "call indexes")
    return [calls[index] for index in sorted(calls)], "".join(content) or None, finish_reason


def test_tool_round_trip():
    tool_round_trip(stream=False)


def test_tool_round_trip_streamed():
    tool_round_trip(stream=True)


def test_tool_choice():
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = response.choices[0].message.tool_calls or []
    eq({call.function.name for call in calls}, {"get_time"}, "functions called")


def test_unknown_model_is_an_openai_error():
    """A model no credential serves: 404 model_not_found in OpenAI's shape, naming the model and
    the models that exist."""
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError as error:
        eq(error.status_code, 404, "status")
        check(isinstance(error.body, dict) and error.body.get("code") == "model_not_found", f"error body: {error.body!r}")
        message = error.body.get("message", "")
        check("no-such-model" in message and MODEL in message, f"names the model and the known ones: {message!r}")
    else:
        raise AssertionError("an unknown model was served")


def test_unknown_key_is_refused():
    stranger = openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key="not-a-key", max_retries=0, http_client=http_client(openai))
    try:
        stranger.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError as error:
        eq(error.status_code, 401, "status")
    else:
        raise AssertionError("an unknown key was accepted")


if __name__ == "__main__":
    run(tests_of(globals()))
