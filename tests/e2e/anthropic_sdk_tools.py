#!/usr/bin/env python3
"""End-to-end client check: a tool round trip with the official `anthropic` Python SDK.

Usage: anthropic_sdk_tools.py BASE_URL API_KEY MODEL

Declares one tool (`get_weather`), asks (whole answer), runs the tool here when the answer ends
in its `tool_use`, and sends the result back (streamed answer). Prints one JSON object per line:
  {"step": "call", "stop_reason": ..., "name": ..., "id": ..., "input": {...}}
  {"step": "answer", "text": ..., "stop_reason": ...}
Any SDK error is printed as {"step": ..., "error": ..., "status": ...} and the script exits 1.
Retries are off.
"""

import json
import sys

import anthropic

TOOLS = [{
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]},
}]


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main() -> int:
    base_url, api_key, model = sys.argv[1:4]
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=60.0)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    step = "call"
    try:
        first = client.messages.create(model=model, max_tokens=256, tools=TOOLS,
                                       messages=messages)
        call = next(b for b in first.content if b.type == "tool_use")
        emit(step=step, stop_reason=first.stop_reason, name=call.name, id=call.id,
             input=call.input)
        messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
        messages.append({"role": "user", "content": [{
            "type": "tool_result", "tool_use_id": call.id,
            "content": f"sunny in {call.input.get('city')}"}]})
        step = "answer"
        with client.messages.stream(model=model, max_tokens=256, tools=TOOLS,
                                    messages=messages) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        emit(step=step, text=text, stop_reason=final.stop_reason)
    except anthropic.APIStatusError as e:
        emit(step=step, error=str(e), status=e.status_code)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
