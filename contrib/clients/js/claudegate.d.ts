// Types for claudegate.mjs, the client for claudegate's /v1/complete and /v1/fetch.
// Hand-written; keep in step with claudegate.mjs.

export declare const VERSION: string;
/** `http://127.0.0.1:8317`, used when neither `url` nor `CLAUDEGATE_URL` is set. */
export declare const DEFAULT_URL: string;
/** 120 000 ms for one HTTP exchange. */
export declare const DEFAULT_TIMEOUT_MS: number;
/** 3 retries of a 429 or 503 that carries `Retry-After`. */
export declare const DEFAULT_MAX_RETRIES: number;
/** 60 000 ms: the longest `Retry-After` waited out; a longer one fails at once. */
export declare const DEFAULT_MAX_RETRY_WAIT_MS: number;

export interface ClientOptions {
  /** The server's base URL; default `CLAUDEGATE_URL`, else `http://127.0.0.1:8317`. */
  url?: string;
  /** The API key (`cgk_…`); default `CLAUDEGATE_KEY`. Sent only in `Authorization`. */
  key?: string;
  /** Deadline of one HTTP exchange, connect to last byte (default 120 000). */
  timeoutMs?: number;
  /** How often a 429/503 with `Retry-After` is retried (default 3). */
  maxRetries?: number;
  /** Longest `Retry-After` waited out, in ms (default 60 000); a longer one fails at once. */
  maxRetryWaitMs?: number;
}

export interface CallOptions {
  /** This call's deadline per HTTP exchange, overriding the client's. */
  timeoutMs?: number;
  /** Cancels the call (and any wait before a retry). */
  signal?: AbortSignal;
}

export interface CompleteRequest extends CallOptions {
  prompt: string;
  system?: string;
  /** An id or an alias (`opus`, `sonnet`, `haiku`); default the server's (`sonnet`). */
  model?: string;
  /** `"json"` adds token counts (`usage`); default `"text"`. */
  outputFormat?: "text" | "json";
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
}

export interface Completion {
  text: string;
  /** The model id actually used upstream. */
  model: string;
  durationMs: number;
  /** Set for `outputFormat: "json"`, else null. */
  usage: Usage | null;
  /** The server's answer as it came. */
  raw: Record<string, unknown>;
}

export interface FetchRequest extends CallOptions {
  url: string;
  /** Cap on the page's size (default the server's `fetch.max_bytes`, at most 2 MB). */
  maxBytes?: number;
  /** Drop scripts, styles, SVG and comments (default true). */
  strip?: boolean;
}

export interface Page {
  /** The remote site's HTTP status. */
  status: number;
  finalUrl: string;
  contentType: string;
  truncated: boolean;
  html: string;
  raw: Record<string, unknown>;
}

export type ErrorKind =
  | "error"
  | "config"
  | "bad_request"
  | "auth"
  | "forbidden"
  | "not_found"
  | "rate_limit"
  | "unavailable"
  | "upstream"
  | "server"
  | "timeout"
  | "connect";

/** A call that did not succeed; `message` is the server's own when it gave one. */
export declare class ClaudegateError extends Error {
  static readonly kind: ErrorKind;
  readonly kind: ErrorKind;
  /** The HTTP status; null when no answer came (timeout, connection failure, config). */
  readonly status: number | null;
  /** The server's error type, else the type the status stands for (`"authentication_error"`, …). */
  readonly errorType: string | null;
  /** `request-id` / `x-request-id` of the answer, when the server or a proxy sent one. */
  readonly requestId: string | null;
  /** Seconds from `Retry-After`, when the answer carried it. */
  readonly retryAfter: number | null;
  constructor(
    message: string,
    details?: { status?: number | null; errorType?: string | null; requestId?: string | null; retryAfter?: number | null },
  );
}
/** No key, or a URL that is not http(s); nothing was sent. */
export declare class ConfigError extends ClaudegateError {}
/** 400, 408, 413, 415. */
export declare class BadRequestError extends ClaudegateError {}
/** 401: the key is missing, wrong or revoked. */
export declare class AuthError extends ClaudegateError {}
/** 403: the key lacks the scope the route needs. */
export declare class ForbiddenError extends ClaudegateError {}
/** 404: no such route, or /v1/fetch is disabled. */
export declare class NotFoundError extends ClaudegateError {}
/** 429; see `retryAfter`. */
export declare class RateLimitError extends ClaudegateError {}
/** 503: busy, or no usable Claude login on the server. */
export declare class UnavailableError extends ClaudegateError {}
/** 502 or 504: Anthropic or the fetched site failed or timed out. */
export declare class UpstreamError extends ClaudegateError {}
/** Any other failure, or an answer the client cannot read. */
export declare class ServerError extends ClaudegateError {}
/** The client's own deadline passed. */
export declare class ClientTimeoutError extends ClaudegateError {}
/** The server could not be reached, or the connection broke. */
export declare class ConnectError extends ClaudegateError {}

export declare class Claudegate {
  /** The base URL in use (without the key, which is never exposed). */
  readonly url: string;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly maxRetryWaitMs: number;
  /** @throws {ConfigError} when there is no key or the URL is not http(s). */
  constructor(options?: ClientOptions);
  /** `POST /v1/complete`; a string is the prompt. */
  complete(request: CompleteRequest | string): Promise<Completion>;
  /** `POST /v1/fetch`; a string is the URL. */
  fetchPage(request: FetchRequest | string): Promise<Page>;
}

/** `new Claudegate().complete(request)`, configured from the environment. */
export declare function complete(request: CompleteRequest | string): Promise<Completion>;
/** `new Claudegate().fetchPage(request)`, configured from the environment. */
export declare function fetchPage(request: FetchRequest | string): Promise<Page>;
