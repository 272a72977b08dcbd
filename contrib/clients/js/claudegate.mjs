// A small client for claudegate's script endpoints, /v1/complete and /v1/fetch.
//
// One file, no dependencies: Node 18 or later (the global fetch), Deno, Bun. Server-side only:
// never ship the key to a browser. Types: claudegate.d.ts beside this file.
//
//   import { complete, fetchPage, Claudegate, RateLimitError } from "./claudegate.mjs";
//   const { text } = await complete({ system: "You are terse.", prompt: "3 primary colors" });
//   const client = new Claudegate({ timeoutMs: 30_000 });      // or url, key
//
// Configuration comes from CLAUDEGATE_URL (default http://127.0.0.1:8317) and CLAUDEGATE_KEY;
// constructor options override both. The key is sent only in the Authorization header: it is
// kept in a private field, so it is never part of a message, an error, console.log(client) or
// JSON.stringify(client).
//
// Every call has a deadline (timeoutMs for the whole HTTP exchange, default 120 s). A 429 or 503
// that carries Retry-After is retried after that many seconds, at most maxRetries times
// (default 3), and only when the wait is at most maxRetryWaitMs (default 60 s); a longer wait
// fails at once, with the wait in the error's retryAfter (seconds). A 429 or 503 without
// Retry-After (claudegate has no login, for one) fails at once: waiting would not help.
// Nothing else is retried: a completion spends tokens, so a call that may have reached the
// model is never sent twice.
//
// /v1/complete answers in one piece (the server has no streaming form of it), so there is no
// streaming call; use /v1/messages with an Anthropic SDK for streaming.

export const VERSION = "1.0.0";
export const DEFAULT_URL = "http://127.0.0.1:8317";
/** Milliseconds for one HTTP exchange. A long answer from the model can take a minute or two. */
export const DEFAULT_TIMEOUT_MS = 120_000;
export const DEFAULT_MAX_RETRIES = 3;
/** The longest Retry-After the client waits out on its own, in milliseconds. */
export const DEFAULT_MAX_RETRY_WAIT_MS = 60_000;

// ---- errors -------------------------------------------------------------------------------

/**
 * A call that did not succeed. `kind` names the class of failure ("auth", "rate_limit", …);
 * `status` is the HTTP status (null when no answer came); `errorType` is the server's error
 * type when it gave one, else the type its status stands for ("authentication_error", …).
 */
export class ClaudegateError extends Error {
  constructor(message, { status = null, errorType = null, requestId = null, retryAfter = null } = {}) {
    super(message);
    this.name = new.target.name;
    this.kind = new.target.kind;
    this.status = status;
    this.errorType = errorType;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }

  static kind = "error";

  toString() {
    const facts = [];
    if (this.status !== null) facts.push(`HTTP ${this.status}`);
    if (this.errorType) facts.push(this.errorType);
    if (this.retryAfter !== null) facts.push(`retry after ${this.retryAfter}s`);
    if (this.requestId) facts.push(`request id ${this.requestId}`);
    return `${this.name}: ${this.message}${facts.length ? ` (${facts.join(", ")})` : ""}`;
  }
}

/** The client is not set up right (no key, a URL that is not http(s)); nothing was sent. */
export class ConfigError extends ClaudegateError { static kind = "config"; }
/** 400, 408, 413, 415: the request (or the fetched page's type) was refused as sent. */
export class BadRequestError extends ClaudegateError { static kind = "bad_request"; }
/** 401: the key is missing, wrong or revoked. */
export class AuthError extends ClaudegateError { static kind = "auth"; }
/** 403: the key lacks the scope the route needs. */
export class ForbiddenError extends ClaudegateError { static kind = "forbidden"; }
/** 404: no such route, or /v1/fetch is disabled on the server. */
export class NotFoundError extends ClaudegateError { static kind = "not_found"; }
/** 429: a limit of the key, the server or the Claude account; see retryAfter. */
export class RateLimitError extends ClaudegateError { static kind = "rate_limit"; }
/** 503: the server is busy, or cannot serve (no Claude login, or it needs renewing). */
export class UnavailableError extends ClaudegateError { static kind = "unavailable"; }
/** 502 or 504: Anthropic (or the fetched site) failed or timed out. */
export class UpstreamError extends ClaudegateError { static kind = "upstream"; }
/** Any other failure of the server, or an answer this client cannot read. */
export class ServerError extends ClaudegateError { static kind = "server"; }
/** The call's own deadline (timeoutMs) passed before the answer was complete. */
export class ClientTimeoutError extends ClaudegateError { static kind = "timeout"; }
/** The server could not be reached, or the connection broke. */
export class ConnectError extends ClaudegateError { static kind = "connect"; }

// The class and error type each status stands for (the relay answers carry only a message).
const BY_STATUS = {
  400: [BadRequestError, "invalid_request_error"],
  401: [AuthError, "authentication_error"],
  403: [ForbiddenError, "permission_error"],
  404: [NotFoundError, "not_found_error"],
  408: [BadRequestError, "timeout_error"],
  413: [BadRequestError, "request_too_large"],
  415: [BadRequestError, "unsupported_media_type"],
  429: [RateLimitError, "rate_limit_error"],
  502: [UpstreamError, "upstream_error"],
  503: [UnavailableError, "unavailable"],
  504: [UpstreamError, "upstream_timeout"],
};

// ---- the client ---------------------------------------------------------------------------

function env(name) {
  // Deno and Bun expose process too; a browser-like runtime without it gets no defaults.
  return typeof process !== "undefined" && process.env ? process.env[name] : undefined;
}

export class Claudegate {
  #key;

  constructor({
    url,
    key,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    maxRetries = DEFAULT_MAX_RETRIES,
    maxRetryWaitMs = DEFAULT_MAX_RETRY_WAIT_MS,
  } = {}) {
    const raw = (url || env("CLAUDEGATE_URL") || DEFAULT_URL).trim();
    let parsed;
    try {
      parsed = new URL(raw);
    } catch {
      parsed = null;
    }
    if (!parsed || !["http:", "https:"].includes(parsed.protocol)) {
      throw new ConfigError(
        `the claudegate URL must look like http://HOST:PORT or https://HOST, not ${JSON.stringify(raw)} (set CLAUDEGATE_URL or pass url)`,
      );
    }
    if (parsed.username || parsed.password || parsed.search || parsed.hash) {
      throw new ConfigError(
        "the claudegate URL must not carry a user name, a query or a fragment; the key goes in CLAUDEGATE_KEY",
      );
    }
    const k = (key ?? env("CLAUDEGATE_KEY") ?? "").trim();
    if (!k) throw new ConfigError("no claudegate key: set CLAUDEGATE_KEY or pass key");
    // Checked here so that a bad key never reaches fetch, whose error might quote it.
    if (!/^[\x21-\x7e]+$/.test(k)) {
      throw new ConfigError(
        "the claudegate key holds spaces or characters a header cannot carry; copy it again from `claudegate keys add`",
      );
    }
    if (!(timeoutMs > 0)) throw new ConfigError("timeoutMs must be a positive number");
    if (!(maxRetries >= 0) || !(maxRetryWaitMs >= 0)) {
      throw new ConfigError("maxRetries and maxRetryWaitMs must not be negative");
    }
    this.#key = k;
    this.url = `${parsed.origin}${parsed.pathname.replace(/\/+$/, "")}`;
    this.timeoutMs = timeoutMs;
    this.maxRetries = maxRetries;
    this.maxRetryWaitMs = maxRetryWaitMs;
  }

  /**
   * A prompt in, text out. `model` defaults to the server's (sonnet); outputFormat "json" adds
   * token counts (usage). A string is taken as the prompt.
   */
  async complete(request) {
    const r = typeof request === "string" ? { prompt: request } : { ...request };
    const body = { prompt: r.prompt };
    if (r.system != null) body.system = r.system;
    if (r.model != null) body.model = r.model;
    const format = r.outputFormat ?? r.output_format;
    if (format != null) body.output_format = format;
    const v = await this.#call("/v1/complete", body, r);
    const text = v.text ?? v.result;
    if (typeof text !== "string") {
      throw new ServerError(`the /v1/complete answer holds no text: ${JSON.stringify(v).slice(0, 200)}`);
    }
    return {
      text,
      model: String(v.model ?? ""),
      durationMs: Number(v.duration_ms ?? 0),
      usage: v.usage ?? null,
      raw: v,
    };
  }

  /** Fetches a public page through the server (/v1/fetch). A string is taken as the URL. */
  async fetchPage(request) {
    const r = typeof request === "string" ? { url: request } : { ...request };
    const body = { url: r.url };
    const maxBytes = r.maxBytes ?? r.max_bytes;
    if (maxBytes != null) body.max_bytes = maxBytes;
    if (r.strip != null) body.strip = r.strip;
    const v = await this.#call("/v1/fetch", body, r);
    if (typeof v.status !== "number" || typeof v.final_url !== "string" || typeof v.html !== "string") {
      throw new ServerError(`the /v1/fetch answer is incomplete: ${JSON.stringify(v).slice(0, 200)}`);
    }
    return {
      status: v.status,
      finalUrl: v.final_url,
      contentType: String(v.content_type ?? ""),
      truncated: Boolean(v.truncated),
      html: v.html,
      raw: v,
    };
  }

  // What console.log / util.inspect show: the settings, never the key.
  [Symbol.for("nodejs.util.inspect.custom")]() {
    return `Claudegate { url: ${JSON.stringify(this.url)}, timeoutMs: ${this.timeoutMs}, maxRetries: ${this.maxRetries}, maxRetryWaitMs: ${this.maxRetryWaitMs} }`;
  }

  // ---- one call, with retries ----

  async #call(path, body, { timeoutMs, signal } = {}) {
    const data = JSON.stringify(body);
    const deadline = timeoutMs ?? this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const { status, headers, text } = await this.#exchange(path, data, deadline, signal);
      if (status >= 200 && status < 300) return parseSuccess(status, headers, text);
      const err = errorFrom(status, headers, text);
      const wait = err.retryAfter;
      const retryable = (status === 429 || status === 503) && wait !== null;
      if (!retryable || attempt >= this.maxRetries || wait * 1000 > this.maxRetryWaitMs) throw err;
      await sleep(wait * 1000, signal);
    }
  }

  /** One HTTP exchange, the whole of it (headers and body) within `timeoutMs`. */
  async #exchange(path, data, timeoutMs, signal) {
    const ctrl = new AbortController();
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      ctrl.abort();
    }, timeoutMs);
    const onAbort = () => ctrl.abort();
    if (signal) {
      if (signal.aborted) ctrl.abort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
    try {
      const resp = await fetch(this.url + path, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${this.#key}`,
          "Content-Type": "application/json",
          Accept: "application/json",
          "User-Agent": `claudegate-js/${VERSION}`,
        },
        body: data,
        signal: ctrl.signal,
        redirect: "manual",
      });
      const text = await resp.text();
      return { status: resp.status, headers: resp.headers, text };
    } catch (e) {
      if (expired) {
        throw new ClientTimeoutError(
          `no complete answer from ${this.url}${path} within ${timeoutMs} ms (the client's timeout)`,
        );
      }
      if (signal?.aborted) throw e;
      const why = e?.cause?.message || e?.message || String(e);
      throw new ConnectError(`could not talk to claudegate at ${this.url}: ${why}`);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

function parseSuccess(status, headers, text) {
  let v = null;
  try {
    v = JSON.parse(text);
  } catch {
    v = null;
  }
  if (!v || typeof v !== "object" || v.ok !== true) {
    throw new ServerError(
      `the server answered ${status} with a body this client cannot read: ${JSON.stringify(text.slice(0, 200))}`,
      { status, requestId: requestIdOf(headers) },
    );
  }
  return v;
}

/**
 * The error for a non-2xx answer: the server's message ({"ok":false,"error":"…"}, or the
 * Anthropic/OpenAI shapes a proxy or another route may give), typed by status.
 */
function errorFrom(status, headers, text) {
  let [Cls, errorType] = BY_STATUS[status] ?? [ServerError, status >= 500 ? "server_error" : "error"];
  let message = null;
  let v = null;
  try {
    v = JSON.parse(text);
  } catch {
    v = null;
  }
  if (v && typeof v === "object") {
    const e = v.error;
    if (typeof e === "string") message = e;
    else if (e && typeof e === "object") {
      if (typeof e.message === "string") message = e.message;
      if (typeof e.type === "string") errorType = e.type;
    }
  }
  if (message === null) {
    message = `claudegate answered HTTP ${status}: ${text.trim().slice(0, 300) || "(no body)"}`;
  }
  return new Cls(message, {
    status,
    errorType,
    requestId: requestIdOf(headers),
    retryAfter: retryAfterOf(headers.get("retry-after")),
  });
}

function requestIdOf(headers) {
  return headers.get("request-id") || headers.get("x-request-id") || null;
}

/** Seconds from a Retry-After header: a number of seconds, or an HTTP date. */
function retryAfterOf(value) {
  if (value === null || value === undefined) return null;
  const v = value.trim();
  let secs = /^\d+(\.\d+)?$/.test(v) ? Number(v) : (Date.parse(v) - Date.now()) / 1000;
  if (Number.isNaN(secs)) return null;
  return Math.max(0, secs);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", stop);
      resolve();
    }, ms);
    const stop = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal?.addEventListener("abort", stop, { once: true });
  });
}

// ---- drop-in functions ------------------------------------------------------------------

/** `new Claudegate().complete(request)`, configured from the environment. */
export function complete(request) {
  return new Claudegate().complete(request);
}

/** `new Claudegate().fetchPage(request)`, configured from the environment. */
export function fetchPage(request) {
  return new Claudegate().fetchPage(request);
}
