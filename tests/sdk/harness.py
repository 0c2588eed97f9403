"""A tiny test runner shared by the SDK scripts in this folder.

Each script drives one API of a *running* cliproxy with a real client SDK. Settings come from
the environment:

  CLIPROXY_BASE_URL   http://127.0.0.1:PORT, without /v1 (required)
  CLIPROXY_API_KEY    a key from the server's api-keys (required)
  CLIPROXY_MODEL      the model to ask for (default: coder-model)
  CLIPROXY_THINKING_MODEL
                      a model the server asks to think when the client wants reasoning
                      (default: CLIPROXY_MODEL, where thinking is not checked)
  CLIPROXY_SDK_CLAUDE_MODEL, CLIPROXY_SDK_CODEX_MODEL
                      model ids as Claude Code and Codex send them, which the server's
                      [models.aliases] maps to a served model (their tests skip when unset)
  CLIPROXY_SDK_BROKEN_MODEL, CLIPROXY_SDK_ERRORING_MODEL, CLIPROXY_SDK_OVERLOADED_MODEL,
  CLIPROXY_SDK_TRUNCATED_MODEL
                      models whose upstream breaks its stream off mid-answer, sends an error
                      chunk mid-answer, sends one saying it is overloaded, or stops at the
                      output-token limit (their tests skip when unset)
  CLIPROXY_SDK_FAKE_UPSTREAM=1
                      the server talks to fake_qwen, so the exact texts the fake answers
                      ("You said: ...", "The tool returned: ...") are checked too
  CLIPROXY_SDK_TOOL_CALLS=N
                      how many tool calls the model makes per turn (checked when set)
  CLIPROXY_SDK_LEADING_TEXT=1
                      the model says something before its tool calls (checked when set)
  CLIPROXY_SDK_ONLY=WORD
                      run only the tests whose name contains WORD

A script prints one line per test, the traceback of each failure, and closes with
"N passed, M failed, K skipped"; it exits 1 when a test failed (or none passed).
"""

import json
import os
import sys
import time
import traceback

BASE_URL = os.environ["CLIPROXY_BASE_URL"].rstrip("/")
API_KEY = os.environ["CLIPROXY_API_KEY"]
MODEL = os.environ.get("CLIPROXY_MODEL", "coder-model")
THINKING_MODEL = os.environ.get("CLIPROXY_THINKING_MODEL", "")
CLAUDE_MODEL = os.environ.get("CLIPROXY_SDK_CLAUDE_MODEL", "")
CODEX_MODEL = os.environ.get("CLIPROXY_SDK_CODEX_MODEL", "")
BROKEN_MODEL = os.environ.get("CLIPROXY_SDK_BROKEN_MODEL", "")
ERRORING_MODEL = os.environ.get("CLIPROXY_SDK_ERRORING_MODEL", "")
OVERLOADED_MODEL = os.environ.get("CLIPROXY_SDK_OVERLOADED_MODEL", "")
TRUNCATED_MODEL = os.environ.get("CLIPROXY_SDK_TRUNCATED_MODEL", "")
FAKE = os.environ.get("CLIPROXY_SDK_FAKE_UPSTREAM") == "1"
EXPECT_CALLS = int(os.environ["CLIPROXY_SDK_TOOL_CALLS"]) if os.environ.get("CLIPROXY_SDK_TOOL_CALLS") else None
LEADING_TEXT = os.environ.get("CLIPROXY_SDK_LEADING_TEXT") == "1"
ONLY = os.environ.get("CLIPROXY_SDK_ONLY", "")

# Seconds before a request is given up; the fake answers in milliseconds.
TIMEOUT = 30.0

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
TIME_SCHEMA = {
    "type": "object",
    "properties": {"zone": {"type": "string", "description": "IANA time zone"}},
    "required": ["zone"],
}
# What each tool "returns" in the round trips, by tool name.
TOOL_RESULTS = {"get_weather": "22 degrees and sunny", "get_time": "12:00 noon"}


# The requests the SDK sent during the current test, shown when it fails.
SENT = []


def _record(request):
    body = request.content.decode("utf-8", "replace") if request.content else ""
    SENT.append(f"{request.method} {request.url}\n    {body}")


def http_client(sdk):
    """The SDK's own HTTP client class (openai.DefaultHttpxClient, ...), remembering what it
    sends so a failure can show it."""
    return sdk.DefaultHttpxClient(timeout=TIMEOUT, event_hooks={"request": [_record]})


class Skip(Exception):
    """Raised by a test that cannot run with these settings."""


def model_or_skip(model, variable):
    """`model`, or Skip when the variable that names it is unset."""
    if not model:
        raise Skip(f"{variable} is not set")
    return model


def check(condition, message="check failed"):
    """assert that survives python -O, with the message shown on failure."""
    if not condition:
        raise AssertionError(message)


def eq(actual, expected, what="value"):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def parse_arguments(text, what="tool arguments"):
    """Tool-call arguments must be a JSON object."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"{what} are not JSON: {text!r} ({error})") from None
    check(isinstance(value, dict), f"{what} are not a JSON object: {text!r}")
    return value


def check_call_count(count, what="tool calls"):
    check(count >= 1, f"expected at least one of the {what}, got none")
    if EXPECT_CALLS is not None:
        eq(count, EXPECT_CALLS, f"number of {what}")


def check_fake_arguments(name, arguments):
    """The fake fills the first required property: city for get_weather, zone for get_time."""
    key = {"get_weather": "city", "get_time": "zone"}[name]
    check(isinstance(arguments.get(key), str) and arguments[key], f"{name} arguments lack {key}: {arguments!r}")


def run(tests):
    """Runs `tests` (name, function) in order and exits with the result."""
    print(f"{os.path.basename(sys.argv[0])}: {BASE_URL} model={MODEL}", flush=True)
    passed = failed = skipped = 0
    for name, test in tests:
        if ONLY and ONLY not in name:
            continue
        started = time.monotonic()
        SENT.clear()
        try:
            test()
        except Skip as why:
            skipped += 1
            print(f"skip {name}: {why}", flush=True)
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the next test runs
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - started:.2f}s)", flush=True)
            # Our frames only: the SDK's internals say nothing about what went wrong.
            here = os.path.dirname(os.path.abspath(__file__))
            frames = [
                frame
                for frame in traceback.extract_tb(error.__traceback__)
                if frame.filename.startswith(here) and not frame.filename.endswith("harness.py")
            ]
            print("".join(traceback.format_list(frames)), end="")
            print("".join(traceback.format_exception_only(type(error), error)), end="")
            for sent in SENT:
                print(f"  sent: {sent}")
            sys.stdout.flush()
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - started:.2f}s)", flush=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    sys.exit(1 if failed or not passed else 0)


def tests_of(namespace):
    """The test_* functions of a module, in definition order."""
    return [(name, value) for name, value in namespace.items() if name.startswith("test_") and callable(value)]
