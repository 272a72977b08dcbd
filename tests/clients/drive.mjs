// Drives contrib/clients/js/claudegate.mjs for tests/it/clients.rs: one call, one JSON line, in
// the same shape as drive.py prints (see there), so the test checks both clients alike.

import { inspect } from "node:util";
import * as claudegate from "../../contrib/clients/js/claudegate.mjs";

const spec = JSON.parse(process.argv[2]);
const args = spec.args ?? {};
const out = { client: null };
const started = performance.now();
// The spec's snake_case names, as the JS client spells them.
const jsArgs = {
  prompt: args.prompt,
  system: args.system,
  model: args.model,
  outputFormat: args.output_format,
  url: args.url,
  maxBytes: args.max_bytes,
  strip: args.strip,
};
try {
  let target = null;
  if (spec.client !== null && spec.client !== undefined) {
    const c = spec.client;
    const opts = { url: c.url, key: c.key };
    if (c.timeout_s !== undefined) opts.timeoutMs = c.timeout_s * 1000;
    if (c.max_retries !== undefined) opts.maxRetries = c.max_retries;
    if (c.max_retry_wait_s !== undefined) opts.maxRetryWaitMs = c.max_retry_wait_s * 1000;
    target = new claudegate.Claudegate(opts);
    out.client = `${inspect(target)} ${JSON.stringify(target)}`;
  }
  if (spec.call === "complete") {
    const r = target ? await target.complete(jsArgs) : await claudegate.complete(jsArgs);
    out.result = { text: r.text, model: r.model, duration_ms: r.durationMs, usage: r.usage };
  } else {
    const r = target ? await target.fetchPage(jsArgs) : await claudegate.fetchPage(jsArgs);
    out.result = {
      status: r.status, final_url: r.finalUrl, content_type: r.contentType,
      truncated: r.truncated, html: r.html,
    };
  }
} catch (e) {
  if (!(e instanceof claudegate.ClaudegateError)) throw e;
  out.error = {
    class: e.constructor.name, kind: e.kind, status: e.status, error_type: e.errorType,
    message: e.message, retry_after: e.retryAfter, request_id: e.requestId,
    str: String(e), repr: inspect(e),
  };
}
out.elapsed_ms = Math.round(performance.now() - started);
console.log(JSON.stringify(out));
