#!/usr/bin/env python3
"""Seeds the fuzz corpora (tests/fuzz/corpus/<target>/, not in git) from the golden files, so
that fuzzing starts from realistic requests and upstream streams.

- chat_request, responses_request: each golden `request`, compact.
- chat_stream: a flags byte (include_usage) + each chat golden stream as SSE text.
- responses_stream: a flags byte + the golden request on one line + the stream as SSE text.
- sse_reader, sse_relay: every golden stream as SSE, behind a few flags bytes (read sizes,
  injected I/O errors; see tests/fuzz/src/lib.rs), with LF and CRLF line ends.
- cloak_body: each translated Anthropic body (`expected`), behind every flags byte 0..7.

Idempotent: files are named by content hash, so rerunning adds nothing new. Usage:
    python3 tests/fuzz/seed.py            (from anywhere)
"""
import glob
import hashlib
import json
import os

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GOLDEN = os.path.join(ROOT, "tests", "golden")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def compact(v):
    # No whitespace, and no raw newline anywhere (JSON escapes them inside strings), so a
    # request fits on one line.
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def sse(events, crlf=False):
    nl = "\r\n" if crlf else "\n"
    return "".join(f"event: {name}{nl}data: {compact(data)}{nl}{nl}" for name, data in events)


counts = {}


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16])
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    counts[target] = counts.get(target, 0) + 1


def golden(door):
    for path in sorted(glob.glob(os.path.join(GOLDEN, door, "*.json"))):
        with open(path, encoding="utf-8") as f:
            yield json.load(f)


for door in ("chat", "responses"):
    for case in golden(door):
        if "request" in case:
            put(f"{door}_request", compact(case["request"]))
        if isinstance(case.get("expected"), dict):
            for flags in range(8):
                put("cloak_body", bytes([flags]) + compact(case["expected"]).encode())
        events = case.get("events")
        if not events:
            continue
        text = sse(events)
        if door == "chat":
            put("chat_stream", bytes([1 if case.get("include_usage") else 0]) + text.encode())
        else:
            line = compact(case.get("request", {})) + "\n"
            put("responses_stream", b"\x00" + (line + text).encode())
        for flags in (0x00, 0x03, 0x08, 0x81, 0xC2):
            for crlf in (False, True):
                data = bytes([flags]) + sse(events, crlf).encode()
                put("sse_reader", data)
                put("sse_relay", data)

for target, n in sorted(counts.items()):
    print(f"seeded {target}: {n} inputs")
