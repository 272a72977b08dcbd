#!/usr/bin/env python3
"""End-to-end client check: the official `anthropic` Python SDK against claudegate.

Usage: anthropic_sdk.py BASE_URL [API_KEY] [MODEL]
       (or E2E_BASE_URL / E2E_API_KEY / E2E_MODEL in the environment)

Prints the SDK version, runs two steps, and prints one JSON object per line on stdout, so a
test can parse them:
  {"step": "version", "anthropic": "X.Y.Z"}
  {"step": "stream", "text": ..., "deltas": N, "stop_reason": ..., "model": ..., "id": ...}
  {"step": "count_tokens", "input_tokens": N}
The streamed text itself goes to stderr as it arrives. With E2E_NO_COUNT_TOKENS=1 the
count_tokens step is left out (the claude-cli backend answers it 501 on purpose). Any SDK error is printed as
{"step": ..., "error": ..., "status": ...} and the script exits 1. Retries are off so a test
sees the first failure rather than a retry.
"""

import json
import os
import sys

import anthropic


def main() -> int:
    args = sys.argv[1:]
    base_url = args[0] if len(args) > 0 else os.environ.get("E2E_BASE_URL")
    api_key = args[1] if len(args) > 1 else os.environ.get("E2E_API_KEY")
    model = args[2] if len(args) > 2 else os.environ.get("E2E_MODEL", "claude-sonnet-4-6")
    if not base_url or not api_key:
        print(__doc__, file=sys.stderr)
        return 2

    emit(step="version", anthropic=anthropic.__version__)
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=60.0)
    messages = [{"role": "user", "content": "Say hello in five words."}]

    step = "stream"
    try:
        parts = []
        with client.messages.stream(model=model, max_tokens=256, messages=messages) as stream:
            for text in stream.text_stream:
                parts.append(text)
                print(text, end="", file=sys.stderr, flush=True)
            final = stream.get_final_message()
        print(file=sys.stderr)
        emit(
            step=step,
            text="".join(parts),
            deltas=len(parts),
            stop_reason=final.stop_reason,
            model=final.model,
            id=final.id,
            final_text="".join(b.text for b in final.content if b.type == "text"),
        )

        if os.environ.get("E2E_NO_COUNT_TOKENS") == "1":
            return 0
        step = "count_tokens"
        counted = client.messages.count_tokens(model=model, messages=messages)
        emit(step=step, input_tokens=counted.input_tokens)
    except anthropic.APIStatusError as e:
        emit(step=step, error=type(e).__name__, status=e.status_code, body=e.body)
        return 1
    except anthropic.APIError as e:
        emit(step=step, error=type(e).__name__, message=str(e))
        return 1
    return 0


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


if __name__ == "__main__":
    sys.exit(main())
