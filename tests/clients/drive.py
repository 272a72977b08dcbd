"""Drives contrib/clients/python/claudegate.py for tests/it/clients.rs: one call, one JSON line.

argv[1] is the call, as JSON: {"client": {...} | null, "call": "complete" | "fetch", "args": {...}}.
"client" holds constructor options (url, key, timeout_s, max_retries, max_retry_wait_s); null
uses the drop-in function, configured from the environment only. The line printed holds the
client's repr, the elapsed time and either "result" or "error" (every field the error carries,
its str() and repr()), in the same shape as drive.mjs prints, so the test checks both alike.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "clients", "python"))
import claudegate  # noqa: E402

# Everything __all__ promises exists.
missing = [name for name in claudegate.__all__ if not hasattr(claudegate, name)]
assert not missing, "claudegate.__all__ names what the module lacks: %s" % missing

spec = json.loads(sys.argv[1])
args = spec.get("args", {})
out = {"client": None}
started = time.monotonic()
try:
    if spec.get("client") is None:
        call = claudegate.complete if spec["call"] == "complete" else claudegate.fetch_page
        target = None
    else:
        c = spec["client"]
        opts = {}
        for ours, theirs in (("timeout_s", "timeout"), ("max_retries", "max_retries"),
                             ("max_retry_wait_s", "max_retry_wait")):
            if ours in c:
                opts[theirs] = c[ours]
        target = claudegate.Claudegate(c.get("url"), c.get("key"), **opts)
        out["client"] = repr(target)
        call = target.complete if spec["call"] == "complete" else target.fetch_page
    if spec["call"] == "complete":
        r = call(args["prompt"], **{k: v for k, v in args.items() if k != "prompt"})
        out["result"] = {"text": r.text, "model": r.model, "duration_ms": r.duration_ms, "usage": r.usage}
    else:
        r = call(args["url"], **{k: v for k, v in args.items() if k != "url"})
        out["result"] = {"status": r.status, "final_url": r.final_url, "content_type": r.content_type,
                         "truncated": r.truncated, "html": r.html}
except claudegate.ClaudegateError as e:
    out["error"] = {
        "class": type(e).__name__, "kind": e.kind, "status": e.status, "error_type": e.error_type,
        "message": e.message, "retry_after": e.retry_after, "request_id": e.request_id,
        "str": str(e), "repr": repr(e),
    }
out["elapsed_ms"] = int((time.monotonic() - started) * 1000)
print(json.dumps(out))
