#!/usr/bin/env python3
"""End-to-end client check: the official `openai` Python SDK against claudegate's OpenAI routes.

Usage: openai_sdk.py MODE BASE_URL API_KEY [MODEL]
       BASE_URL is the API root the SDK gets, e.g. http://127.0.0.1:8317/v1

Prints one JSON object per line on stdout, so a test can parse them; the first is always
  {"step": "version", "openai": "X.Y.Z"}
then the mode's steps (a step is named after its mode; a second request adds "_final"):
  chat, chat_stream, chat_usage (stream_options.include_usage), chat_tools / chat_tools_stream
  (two parallel get_weather calls answered with two role "tool" messages), chat_image (a PNG
  data URL), responses, responses_stream, responses_tools (function_call round trip),
  responses_reasoning (reasoning item replayed with store=False), chat_stream_error /
  responses_stream_error (a stream that breaks), error_400 / error_429 (expected SDK errors,
  reported as steps with "error", "status", "message", "body", "retry_after").
An unexpected SDK error is printed as
  {"step": ..., "error": "<exception class>", "status": N, "body": ..., "message": ...}
and the script exits 1. Retries are off (max_retries=0), so a test sees the first failure.

The test scripts the upstream (a mock Anthropic server behind claudegate); this script only
drives the client, reports what the SDK parsed, and sends back what a real app would.
"""

import json
import os
import sys

import openai

# A 1x1 red PNG.
TINY_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)

WEATHER_TOOL_CHAT = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

WEATHER_TOOL_RESPONSES = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": False,
}


def weather(city: str) -> str:
    """The fake tool: a fixed answer per city, so the test can find it upstream."""
    return f"weather-in-{city}: sunny, 21C"


def emit(**fields) -> None:
    print(json.dumps(fields, default=str), flush=True)


def dump(obj):
    """An SDK object as plain JSON (what it parsed from the wire)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", exclude_none=True)
    return obj


# --- Chat Completions -------------------------------------------------------------------------


def chat(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello in five words."},
        ],
        max_tokens=256,
    )
    c = r.choices[0]
    emit(
        step="chat",
        id=r.id,
        object=r.object,
        model=r.model,
        text=c.message.content,
        role=c.message.role,
        finish_reason=c.finish_reason,
        choices=len(r.choices),
        usage=dump(r.usage),
    )


def chat_stream(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello in five words."}],
        max_tokens=256,
        stream=True,
    )
    parts, finish, ids, roles, objects, usage_chunks = [], None, set(), [], set(), 0
    for chunk in stream:
        ids.add(chunk.id)
        objects.add(chunk.object)
        if chunk.usage is not None:
            usage_chunks += 1
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            if ch.delta.content:
                parts.append(ch.delta.content)
            if ch.finish_reason:
                finish = ch.finish_reason
    emit(
        step="chat_stream",
        text="".join(parts),
        deltas=len(parts),
        finish_reason=finish,
        ids=len(ids),
        roles=roles,
        objects=sorted(objects),
        usage_chunks=usage_chunks,
    )


def chat_usage(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count my tokens."}],
        max_tokens=256,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [dump(c) for c in stream]
    last = chunks[-1] if chunks else {}
    text = "".join(
        (ch.get("delta") or {}).get("content") or "" for c in chunks for ch in c.get("choices", [])
    )
    emit(
        step="chat_usage",
        text=text,
        chunks=len(chunks),
        last_choices=last.get("choices"),
        last_usage=last.get("usage"),
        # Chunks before the last one that carried a usage object (should be none or null).
        earlier_usage=[c.get("usage") for c in chunks[:-1] if c.get("usage") is not None],
    )


def _accumulate_tool_calls(stream):
    """Builds the assistant message from a streamed chat completion, as apps do."""
    text, calls, finish, indexes = [], {}, None, []
    for chunk in stream:
        for ch in chunk.choices:
            d = ch.delta
            if d.content:
                text.append(d.content)
            for tc in d.tool_calls or []:
                if tc.index not in indexes:
                    indexes.append(tc.index)
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            if ch.finish_reason:
                finish = ch.finish_reason
    tool_calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": c["arguments"]},
        }
        for _, c in sorted(calls.items())
    ]
    return "".join(text) or None, tool_calls, finish, indexes


def chat_tools(client, model, streamed):
    """Parallel tool calls: the model asks for two, the app answers both, the model answers."""
    messages = [{"role": "user", "content": "What's the weather in Paris and in Tokyo?"}]
    step = "chat_tools_stream" if streamed else "chat_tools"
    indexes = None
    if streamed:
        text, tool_calls, finish, indexes = _accumulate_tool_calls(
            client.chat.completions.create(
                model=model,
                messages=messages,
                tools=[WEATHER_TOOL_CHAT],
                max_tokens=512,
                stream=True,
            )
        )
    else:
        r = client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER_TOOL_CHAT], max_tokens=512
        )
        m = r.choices[0].message
        text, finish = m.content, r.choices[0].finish_reason
        tool_calls = [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.function.name, "arguments": tc.function.arguments},
            }
            for tc in m.tool_calls or []
        ]
    calls = []
    for tc in tool_calls:
        args = json.loads(tc["function"]["arguments"] or "{}")
        calls.append({"id": tc["id"], "name": tc["function"]["name"], "arguments": args})
    # indexes: the tool call indexes the stream used, in order of first appearance.
    emit(step=step, first_text=text, finish_reason=finish, tool_calls=calls, indexes=indexes)
    if not tool_calls:
        return
    messages.append({"role": "assistant", "content": text, "tool_calls": tool_calls})
    for c in calls:
        messages.append(
            {"role": "tool", "tool_call_id": c["id"], "content": weather(c["arguments"].get("city", "?"))}
        )
    r = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER_TOOL_CHAT], max_tokens=512
    )
    emit(
        step=step + "_final",
        text=r.choices[0].message.content,
        finish_reason=r.choices[0].finish_reason,
    )


def chat_image(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour is this pixel?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{TINY_PNG_B64}"},
                    },
                ],
            }
        ],
        max_tokens=128,
    )
    emit(step="chat_image", text=r.choices[0].message.content, png_b64=TINY_PNG_B64)


# --- Responses --------------------------------------------------------------------------------


def responses(client, model):
    r = client.responses.create(
        model=model,
        instructions="You are terse.",
        input="Say hello in five words.",
        max_output_tokens=256,
    )
    emit(
        step="responses",
        id=r.id,
        object=r.object,
        status=r.status,
        model=r.model,
        text=r.output_text,
        output_types=[o.type for o in r.output],
        usage=dump(r.usage),
    )


def responses_stream(client, model):
    types, deltas = [], []
    with client.responses.stream(
        model=model, input="Say hello in five words.", max_output_tokens=256
    ) as stream:
        for ev in stream:
            types.append(ev.type)
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
        final = stream.get_final_response()
    emit(
        step="responses_stream",
        text="".join(deltas),
        deltas=len(deltas),
        event_types=types,
        final_text=final.output_text,
        status=final.status,
        usage=dump(final.usage),
    )


def responses_tools(client, model):
    """A function-call round trip: streamed first turn, then the output goes back."""
    user = {"role": "user", "content": "What's the weather in Paris?"}
    with client.responses.stream(
        model=model, input=[user], tools=[WEATHER_TOOL_RESPONSES], max_output_tokens=512
    ) as stream:
        types = [ev.type for ev in stream]
        first = stream.get_final_response()
    calls = [o for o in first.output if o.type == "function_call"]
    emit(
        step="responses_tools",
        event_types=types,
        output_types=[o.type for o in first.output],
        calls=[
            {"call_id": c.call_id, "name": c.name, "arguments": json.loads(c.arguments or "{}")}
            for c in calls
        ],
    )
    if not calls:
        return
    follow = [user] + [dump(o) for o in first.output]
    for c in calls:
        city = json.loads(c.arguments or "{}").get("city", "?")
        follow.append({"type": "function_call_output", "call_id": c.call_id, "output": weather(city)})
    r = client.responses.create(
        model=model, input=follow, tools=[WEATHER_TOOL_RESPONSES], max_output_tokens=512
    )
    emit(step="responses_tools_final", text=r.output_text, status=r.status)


def responses_reasoning(client, model):
    """Stateless reasoning replay, as Codex does: the reasoning item goes back in the input."""
    user = {"role": "user", "content": "Think, then say hi."}
    first = client.responses.create(
        model=model,
        input=[user],
        reasoning={"effort": "medium"},
        include=["reasoning.encrypted_content"],
        store=False,
        max_output_tokens=2048,
    )
    items = [dump(o) for o in first.output]
    emit(step="responses_reasoning", output=items, text=first.output_text)
    follow = [user] + items + [{"role": "user", "content": "And again."}]
    parts = []
    with client.responses.stream(
        model=model,
        input=follow,
        reasoning={"effort": "medium"},
        include=["reasoning.encrypted_content"],
        store=False,
        max_output_tokens=2048,
    ) as stream:
        for ev in stream:
            if ev.type == "response.output_text.delta":
                parts.append(ev.delta)
        final = stream.get_final_response()
    emit(step="responses_reasoning_final", text="".join(parts), final_text=final.output_text)


# --- Errors -----------------------------------------------------------------------------------


def expect_error(step, call):
    try:
        r = call()
    except openai.APIStatusError as e:
        emit(
            step=step,
            error=type(e).__name__,
            status=e.status_code,
            message=str(e),
            body=e.body,
            retry_after=e.response.headers.get("retry-after"),
            content_type=e.response.headers.get("content-type"),
        )
        return
    emit(step=step, error=None, unexpected_success=dump(r))


def error_400(client, model):
    expect_error(
        "error_400",
        lambda: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=16
        ),
    )
    expect_error(
        "error_400_responses",
        lambda: client.responses.create(model=model, input="hi", max_output_tokens=16),
    )


def error_429(client, model):
    expect_error(
        "error_429",
        lambda: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=16
        ),
    )


def chat_stream_error(client, model):
    """A stream that breaks after some text: the SDK must raise, not end quietly."""
    parts = []
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello in five words."}],
            max_tokens=256,
            stream=True,
        )
        finish = None
        for chunk in stream:
            for ch in chunk.choices:
                if ch.delta.content:
                    parts.append(ch.delta.content)
                if ch.finish_reason:
                    finish = ch.finish_reason
    except openai.APIError as e:
        emit(step="chat_stream_error", text="".join(parts), error=type(e).__name__, message=str(e))
        return
    emit(step="chat_stream_error", text="".join(parts), error=None, finish_reason=finish)


def responses_stream_error(client, model):
    """A Responses stream that breaks after some text: a `response.failed` or `error` event."""
    types, deltas, failure = [], [], None
    try:
        with client.responses.stream(
            model=model, input="Say hello in five words.", max_output_tokens=256
        ) as stream:
            for ev in stream:
                types.append(ev.type)
                if ev.type == "response.output_text.delta":
                    deltas.append(ev.delta)
                if ev.type == "response.failed":
                    failure = dump(ev.response.error)
                if ev.type == "error":
                    failure = {"code": ev.code, "message": ev.message}
    except openai.APIError as e:
        emit(
            step="responses_stream_error",
            text="".join(deltas),
            event_types=types,
            failure=failure,
            error=type(e).__name__,
            message=str(e),
        )
        return
    emit(step="responses_stream_error", text="".join(deltas), event_types=types, failure=failure, error=None)


MODES = {
    "chat": chat,
    "chat_stream": chat_stream,
    "chat_usage": chat_usage,
    "chat_tools": lambda c, m: chat_tools(c, m, streamed=False),
    "chat_tools_stream": lambda c, m: chat_tools(c, m, streamed=True),
    "chat_image": chat_image,
    "responses": responses,
    "responses_stream": responses_stream,
    "responses_tools": responses_tools,
    "responses_reasoning": responses_reasoning,
    "chat_stream_error": chat_stream_error,
    "responses_stream_error": responses_stream_error,
    "error_400": error_400,
    "error_429": error_429,
}


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 3 or args[0] not in MODES:
        print(__doc__ + "\nMODES: " + " ".join(MODES), file=sys.stderr)
        return 2
    mode, base_url, api_key = args[0], args[1], args[2]
    model = args[3] if len(args) > 3 else os.environ.get("E2E_MODEL", "claude-sonnet-4-6")
    emit(step="version", openai=openai.__version__)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60.0)
    try:
        MODES[mode](client, model)
    except openai.APIStatusError as e:
        emit(
            step=mode,
            error=type(e).__name__,
            status=e.status_code,
            body=e.body,
            message=str(e),
        )
        return 1
    except openai.APIError as e:
        emit(step=mode, error=type(e).__name__, message=str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
