"""cliproxy's /v1/responses through the OpenAI Python SDK (client.responses.create and .stream).

Run against a running server; see harness.py for the environment it reads.
"""

import openai

from harness import (
    API_KEY,
    BASE_URL,
    BROKEN_MODEL,
    CODEX_MODEL,
    ERRORING_MODEL,
    FAKE,
    LEADING_TEXT,
    MODEL,
    TIME_SCHEMA,
    THINKING_MODEL,
    TOOL_RESULTS,
    TRUNCATED_MODEL,
    WEATHER_SCHEMA,
    Skip,
    check,
    check_call_count,
    check_fake_arguments,
    eq,
    http_client,
    model_or_skip,
    parse_arguments,
    run,
    tests_of,
)

client = openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key=API_KEY, max_retries=0, http_client=http_client(openai))

# Responses tools are flat, as Codex sends them.
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER_SCHEMA,
        "strict": False,
    },
    {
        "type": "function",
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": TIME_SCHEMA,
        "strict": False,
    },
]
QUESTION = "What is the weather in Paris, and what time is it there?"

# The events of a streamed text answer, in order (runs of deltas counted once).
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def check_usage(usage, what="usage"):
    check(usage is not None, f"{what} is missing")
    check(usage.input_tokens > 0, f"{what}.input_tokens: {usage}")
    check(usage.output_tokens > 0, f"{what}.output_tokens: {usage}")
    eq(usage.total_tokens, usage.input_tokens + usage.output_tokens, f"{what}.total_tokens")
    if FAKE:
        # The fake reports half of each prompt as read from its cache.
        check(usage.input_tokens_details.cached_tokens > 0, f"{what}.input_tokens_details: {usage}")


def test_chat():
    response = client.responses.create(model=MODEL, instructions="You are terse.", input="Say hello")
    eq(response.object, "response", "object")
    check(response.id, "an id")
    eq(response.status, "completed", "status")
    messages = [item for item in response.output if item.type == "message"]
    eq(len(messages), 1, f"message items in {response.output}")
    eq(messages[0].role, "assistant", "role")
    eq([part.type for part in messages[0].content], ["output_text"], "content part types")
    check(response.output_text, f"no text: {response}")
    if FAKE:
        eq(response.output_text, "You said: Say hello", "output_text")
    check_usage(response.usage)


def test_chat_with_message_list():
    response = client.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "You are terse."},
            {"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]},
        ],
    )
    eq(response.status, "completed", "status")
    if FAKE:
        eq(response.output_text, "You said: Say hello", "output_text")


def collapse(types):
    """Event types with runs of the same delta type counted once, response.in_progress optional."""
    out = []
    for kind in types:
        if out and kind == out[-1] and kind.endswith(".delta"):
            continue
        out.append(kind)
    return out


def test_stream():
    events = list(client.responses.create(model=MODEL, input="Count to three", stream=True))
    types = [event.type for event in events]
    expected = TEXT_EVENTS if "response.in_progress" in types else [t for t in TEXT_EVENTS if t != "response.in_progress"]
    eq(collapse(types), expected, "event types in order")
    numbers = [event.sequence_number for event in events]
    eq(numbers, sorted(set(numbers)), "sequence_number strictly increasing")

    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    check(len(deltas) >= 2, f"streamed in pieces: {deltas!r}")
    done = next(event for event in events if event.type == "response.output_text.done")
    eq(done.text, "".join(deltas), "output_text.done text")
    if FAKE:
        eq(done.text, "part0 part1 part2 ", "streamed text")
    item_done = next(event for event in events if event.type == "response.output_item.done")
    eq(item_done.item.content[0].text, done.text, "output_item.done text")

    created, completed = events[0], events[-1]
    eq(created.response.status, "in_progress", "status at response.created")
    eq(completed.response.id, created.response.id, "one response id")
    eq(completed.response.status, "completed", "status at response.completed")
    eq(completed.response.output_text, done.text, "completed output_text")
    check_usage(completed.response.usage, "response.completed usage")


def test_stream_helper():
    with client.responses.stream(model=MODEL, input="Say hello") as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    eq(final.status, "completed", "status")
    eq(final.output_text, text, "final text")
    check_usage(final.usage)


def reasoning_text(item):
    """The text of a reasoning item: its summary, else its content."""
    parts = list(item.summary or []) + list(getattr(item, "content", None) or [])
    return "".join(part.text for part in parts)


def test_reasoning_effort():
    """reasoning asked of a model that thinks (as reasoning_effort: the fake's upstream has the
    default style): the model's reasoning becomes a reasoning item before the message, whole and
    streamed, and the answer text survives it."""
    model = THINKING_MODEL or MODEL
    strict = bool(THINKING_MODEL and FAKE)
    response = client.responses.create(model=model, input="Say hello", reasoning={"effort": "medium"})
    eq(response.status, "completed", "status")
    if FAKE:
        eq(response.output_text, "You said: Say hello", "output_text")
    if strict:
        eq([item.type for item in response.output], ["reasoning", "message"], "output item types")
        check(reasoning_text(response.output[0]), f"reasoning text: {response.output[0]}")

    events = list(client.responses.create(model=model, input="Say hello", reasoning={"effort": "medium"}, stream=True))
    eq(events[0].type, "response.created", "first event")
    eq(events[-1].type, "response.completed", "last event")
    numbers = [event.sequence_number for event in events]
    eq(numbers, sorted(set(numbers)), "sequence_number strictly increasing")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    check(text, "streamed text")
    final = events[-1].response
    eq(final.output_text, text, "completed output_text")
    if strict:
        added = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.added"]
        eq(added, [(0, "reasoning"), (1, "message")], "items added")
        done = [e.item for e in events if e.type == "response.output_item.done"]
        eq([item.type for item in done], ["reasoning", "message"], "items done")
        streamed = "".join(
            e.delta for e in events if e.type in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")
        )
        check(streamed, "reasoning text deltas")
        eq(reasoning_text(done[0]), streamed, "reasoning item text")
        eq([item.type for item in final.output], ["reasoning", "message"], "completed output")


def check_calls(calls):
    check_call_count(len(calls), "function_call items")
    for call in calls:
        eq(call.type, "function_call", "item type")
        check(call.call_id, f"call_id: {call}")
        check(call.name in TOOL_RESULTS, f"called an offered tool: {call}")
        arguments = parse_arguments(call.arguments)
        if FAKE:
            check_fake_arguments(call.name, arguments)
    eq(len({call.call_id for call in calls}), len(calls), "distinct call ids")


def follow_up(output, calls):
    """The next turn's input, as Codex builds it (stateless): the question, the model's items
    as it sent them and a function_call_output per call."""
    items = [{"role": "user", "content": QUESTION}]
    for item in output:
        if item.type == "reasoning":
            items.append(
                {
                    "type": "reasoning",
                    "id": item.id,
                    "summary": [{"type": "summary_text", "text": part.text} for part in item.summary or []],
                    "encrypted_content": getattr(item, "encrypted_content", None),
                }
            )
        elif item.type == "message":
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": part.text} for part in item.content],
                }
            )
        elif item.type == "function_call":
            items.append(
                {"type": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments}
            )
    for call in calls:
        items.append({"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULTS[call.name]})
    return items


def check_final_answer(response, calls):
    eq(response.status, "completed", "status after the results")
    eq([item.type for item in response.output if item.type == "function_call"], [], "no further calls")
    check(response.output_text, "a text answer after the tool results")
    if FAKE:
        expected = " | ".join(TOOL_RESULTS[call.name] for call in calls)
        eq(response.output_text, f"The tool returned: {expected}", "answer")


def test_tool_round_trip():
    response = client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS)
    eq(response.status, "completed", "status")
    calls = [item for item in response.output if item.type == "function_call"]
    check_calls(calls)
    if LEADING_TEXT:
        check(response.output_text, "text before the calls")
        eq([item.type for item in response.output][0], "message", "the text comes first")

    answer = client.responses.create(model=MODEL, input=follow_up(response.output, calls), tools=TOOLS)
    check_final_answer(answer, calls)


def test_tool_round_trip_reasoning():
    """As Codex with a thinking model: the reasoning item goes back with the calls."""
    model = THINKING_MODEL or MODEL
    response = client.responses.create(model=model, input=QUESTION, tools=TOOLS, reasoning={"effort": "high"})
    calls = [item for item in response.output if item.type == "function_call"]
    check_calls(calls)
    if THINKING_MODEL and FAKE:
        eq(response.output[0].type, "reasoning", "the reasoning comes first")
    with client.responses.stream(
        model=model, input=follow_up(response.output, calls), tools=TOOLS, reasoning={"effort": "high"}
    ) as stream:
        answer = stream.get_final_response()
    eq(answer.status, "completed", "status after the results")
    if FAKE:
        expected = " | ".join(TOOL_RESULTS[call.name] for call in calls)
        eq(answer.output_text, f"The tool returned: {expected}", "answer")


def test_tool_round_trip_streamed():
    events = list(client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS, stream=True))
    types = [event.type for event in events]
    eq(types[0], "response.created", "first event")
    eq(types[-1], "response.completed", "last event")
    numbers = [event.sequence_number for event in events]
    eq(numbers, sorted(set(numbers)), "sequence_number strictly increasing")

    # Each function_call item: added (empty arguments), argument deltas, arguments done, item done.
    added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
    check_call_count(len(added), "function_call items added")
    for event in added:
        mine = [e for e in events if getattr(e, "output_index", None) == event.output_index]
        for other in mine:
            item_id = getattr(other, "item_id", None) or getattr(getattr(other, "item", None), "id", None)
            eq(item_id, event.item.id, f"item id of {other.type}")
        eq(
            collapse([e.type for e in mine]),
            [
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ],
            f"events of {event.item.name}",
        )
        arguments = "".join(e.delta for e in mine if e.type == "response.function_call_arguments.delta")
        done = next(e for e in mine if e.type == "response.function_call_arguments.done")
        eq(done.arguments, arguments, "arguments.done")
        eq(mine[-1].item.arguments, arguments, "output_item.done arguments")
        eq(mine[-1].item.call_id, event.item.call_id, "call_id stays")
        parse_arguments(arguments)

    final = events[-1].response
    eq(final.status, "completed", "status")
    calls = [item for item in final.output if item.type == "function_call"]
    check_calls(calls)
    eq([call.call_id for call in calls], [e.item.call_id for e in added], "completed output lists the calls")
    check_usage(final.usage, "response.completed usage")

    # The helper accumulates the next turn too.
    with client.responses.stream(model=MODEL, input=follow_up(final.output, calls), tools=TOOLS) as stream:
        answer = stream.get_final_response()
    check_final_answer(answer, calls)


def test_tool_choice():
    """tool_choice reaches the model: a named function is the one called; none means text."""
    response = client.responses.create(
        model=MODEL, input=QUESTION, tools=TOOLS, tool_choice={"type": "function", "name": "get_time"}
    )
    eq({item.name for item in response.output if item.type == "function_call"}, {"get_time"}, "functions called")
    response = client.responses.create(model=MODEL, input=QUESTION, tools=TOOLS, tool_choice="none")
    eq([item.type for item in response.output], ["message"], "output with tool_choice none")


def test_codex_model_id_by_alias():
    """Codex's own model id, mapped by [models.aliases], streamed as Codex asks."""
    if not CODEX_MODEL:
        raise Skip("CLIPROXY_SDK_CODEX_MODEL is not set")
    events = list(client.responses.create(model=CODEX_MODEL, input="Say hello", stream=True))
    eq(events[-1].type, "response.completed", "last event")
    if FAKE:
        eq(events[-1].response.output_text, "part0 part1 part2 ", "text")


def test_unknown_model_is_an_openai_error():
    """A model no credential serves: 404 model_not_found in OpenAI's shape, naming the model and
    the models that exist."""
    try:
        client.responses.create(model="no-such-model", input="hi")
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
        stranger.responses.create(model=MODEL, input="hi")
    except openai.AuthenticationError as error:
        eq(error.status_code, 401, "status")
    else:
        raise AssertionError("an unknown key was accepted")


def failed_stream(model, what):
    """Streams a response from `model`, whose upstream fails mid-answer: the events that came
    before the SDK raised, and its error. The SDK must raise its own APIError for the stream's
    error event, not a connection error."""
    events = []
    try:
        for event in client.responses.create(model=model, input="Count to three", stream=True):
            events.append(event)
    except openai.APIConnectionError as error:
        raise AssertionError(f"{what}: the connection broke instead of the stream failing: {error!r}") from error
    except openai.APIError as error:
        return events, error
    raise AssertionError(f"{what}: the stream ended without an error: {[e.type for e in events]}")


def check_failed_stream(model, words, what):
    events, error = failed_stream(model, what)
    types = [event.type for event in events]
    check("response.created" in types, f"{what}: the response had started: {types}")
    check("response.completed" not in types, f"{what}: response.completed: {types}")
    check(words in error.message and "incomplete" in error.message, f"{what}: message {error.message!r}")
    check(isinstance(error.body, dict), f"{what}: error body {error.body!r}")
    eq(error.body.get("code"), "server_error", f"{what}: error code")

    # The stream helper raises it too.
    try:
        with client.responses.stream(model=model, input="Count to three") as stream:
            for _ in stream:
                pass
    except openai.APIConnectionError as error:
        raise AssertionError(f"{what}: responses.stream saw a broken connection: {error!r}") from error
    except openai.APIError as error:
        check(words in error.message, f"{what}: message through responses.stream {error.message!r}")
    else:
        raise AssertionError(f"{what}: responses.stream ended without an error")


def test_stream_broken_mid_answer_raises_the_sdks_error():
    """The upstream breaks its stream off mid-answer: an error event and response.failed."""
    model = model_or_skip(BROKEN_MODEL, "CLIPROXY_SDK_BROKEN_MODEL")
    check_failed_stream(model, "broke off", "a broken stream")


def test_stream_with_an_upstream_error_raises_the_sdks_error():
    """The upstream sends an error chunk mid-answer: an error event with its message."""
    model = model_or_skip(ERRORING_MODEL, "CLIPROXY_SDK_ERRORING_MODEL")
    check_failed_stream(model, "inappropriate content", "an upstream error mid-answer")


def test_truncated_answer_marks_its_message_incomplete():
    """An answer cut at max_output_tokens: the response and its message item are incomplete,
    whole and streamed (output_item.done, then response.incomplete)."""
    model = model_or_skip(TRUNCATED_MODEL, "CLIPROXY_SDK_TRUNCATED_MODEL")
    response = client.responses.create(model=model, input="Write a long story", max_output_tokens=16)
    eq(response.status, "incomplete", "status")
    eq(response.incomplete_details.reason, "max_output_tokens", "incomplete_details.reason")
    messages = [item for item in response.output if item.type == "message"]
    eq([item.status for item in messages], ["incomplete"], "message item status")

    events = list(client.responses.create(model=model, input="Write a long story", max_output_tokens=16, stream=True))
    eq(events[-1].type, "response.incomplete", "last event")
    done = [event.item for event in events if event.type == "response.output_item.done"]
    eq([item.status for item in done], ["incomplete"], "output_item.done status")
    eq([item.status for item in events[-1].response.output], ["incomplete"], "final output status")


if __name__ == "__main__":
    run(tests_of(globals()))
