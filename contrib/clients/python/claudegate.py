"""A small client for claudegate's script endpoints, `/v1/complete` and `/v1/fetch`.

One file, standard library only, Python 3.8 or later: copy it next to your script.

    import claudegate
    print(claudegate.complete("Name 3 primary colors as a JSON array.", system="You are terse.").text)
    page = claudegate.fetch_page("https://example.com/")

    client = claudegate.Claudegate(timeout=30)      # or url=..., key=...
    try:
        answer = client.complete("hi", model="haiku")
    except claudegate.RateLimitError as e:
        print("over the limit:", e.message, "retry in", e.retry_after, "s")

Configuration comes from ``CLAUDEGATE_URL`` (default ``http://127.0.0.1:8317``) and
``CLAUDEGATE_KEY``; constructor arguments override both. The key is sent only in the
``Authorization`` header: it is never part of a message, an error or ``repr()``.

Every call has a deadline (``timeout`` seconds for the whole HTTP exchange, connect to last
byte, default 120). A 429 or 503 that carries ``Retry-After`` is retried after that many
seconds, at most ``max_retries`` times (default 3), and only when the wait is at most
``max_retry_wait`` seconds (default 60); a longer wait fails at once, with the wait in the
error's ``retry_after``. A 429 or 503 without ``Retry-After`` (claudegate has no login, for
one) fails at once: waiting would not help. Nothing else is retried: a completion spends
tokens, so a call that may have reached the model is never sent twice.

Errors are :class:`ClaudegateError` subclasses carrying the server's ``message``, the HTTP
``status``, an ``error_type``, the ``request_id`` (when the server or a proxy sent one) and
``retry_after``. `/v1/complete` answers in one piece (the server has no streaming form of it),
so there is no streaming call; use `/v1/messages` with an Anthropic SDK for streaming.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

__all__ = [
    "Claudegate",
    "Completion",
    "Page",
    "complete",
    "fetch_page",
    "ClaudegateError",
    "ConfigError",
    "BadRequestError",
    "AuthError",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitError",
    "UnavailableError",
    "UpstreamError",
    "ServerError",
    "ClientTimeoutError",
    "ConnectError",
]

__version__ = "1.0.0"

DEFAULT_URL = "http://127.0.0.1:8317"
#: Seconds for one HTTP exchange. A long answer from the model can take a minute or two.
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 3
#: The longest ``Retry-After`` the client waits out on its own, in seconds.
DEFAULT_MAX_RETRY_WAIT = 60.0

# ---- errors ---------------------------------------------------------------------------------


class ClaudegateError(Exception):
    """A call that did not succeed.

    ``kind`` names the class of failure (``"auth"``, ``"rate_limit"``, ...); ``status`` is the
    HTTP status (``None`` when no answer came); ``error_type`` is the server's error type when
    it gave one, else the type its status stands for (``"authentication_error"``, ...).
    """

    kind = "error"

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        error_type: Optional[str] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        facts = []
        if self.status is not None:
            facts.append("HTTP %d" % self.status)
        if self.error_type:
            facts.append(self.error_type)
        if self.retry_after is not None:
            facts.append("retry after %gs" % self.retry_after)
        if self.request_id:
            facts.append("request id %s" % self.request_id)
        return "%s (%s)" % (self.message, ", ".join(facts)) if facts else self.message

    def __repr__(self) -> str:
        return "%s(%r, status=%r, error_type=%r, request_id=%r, retry_after=%r)" % (
            type(self).__name__,
            self.message,
            self.status,
            self.error_type,
            self.request_id,
            self.retry_after,
        )


class ConfigError(ClaudegateError):
    """The client is not set up right (no key, a URL that is not http(s)); nothing was sent."""

    kind = "config"


class BadRequestError(ClaudegateError):
    """400, 408, 413, 415: the request (or the fetched page's type) was refused as sent."""

    kind = "bad_request"


class AuthError(ClaudegateError):
    """401: the key is missing, wrong or revoked."""

    kind = "auth"


class ForbiddenError(ClaudegateError):
    """403: the key lacks the scope the route needs."""

    kind = "forbidden"


class NotFoundError(ClaudegateError):
    """404: no such route, or `/v1/fetch` is disabled on the server."""

    kind = "not_found"


class RateLimitError(ClaudegateError):
    """429: a limit of the key, the server or the Claude account; see ``retry_after``."""

    kind = "rate_limit"


class UnavailableError(ClaudegateError):
    """503: the server is busy, or cannot serve (no Claude login, or it needs renewing)."""

    kind = "unavailable"


class UpstreamError(ClaudegateError):
    """502 or 504: Anthropic (or the fetched site) failed or timed out."""

    kind = "upstream"


class ServerError(ClaudegateError):
    """Any other failure of the server, or an answer this client cannot read."""

    kind = "server"


class ClientTimeoutError(ClaudegateError, TimeoutError):
    """The call's own deadline (``timeout``) passed before the answer was complete."""

    kind = "timeout"


class ConnectError(ClaudegateError, ConnectionError):
    """The server could not be reached, or the connection broke."""

    kind = "connect"


# The class and error type each status stands for (the relay answers carry only a message).
_BY_STATUS = {
    400: (BadRequestError, "invalid_request_error"),
    401: (AuthError, "authentication_error"),
    403: (ForbiddenError, "permission_error"),
    404: (NotFoundError, "not_found_error"),
    408: (BadRequestError, "timeout_error"),
    413: (BadRequestError, "request_too_large"),
    415: (BadRequestError, "unsupported_media_type"),
    429: (RateLimitError, "rate_limit_error"),
    502: (UpstreamError, "upstream_error"),
    503: (UnavailableError, "unavailable"),
    504: (UpstreamError, "upstream_timeout"),
}

# ---- results --------------------------------------------------------------------------------


@dataclass
class Completion:
    """The answer of `/v1/complete`. ``usage`` (token counts) is set for ``output_format="json"``."""

    text: str
    model: str
    duration_ms: int
    usage: Optional[Dict[str, int]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.text


@dataclass
class Page:
    """The answer of `/v1/fetch`. ``status`` is the remote site's status (the call itself succeeded)."""

    status: int
    final_url: str
    content_type: str
    truncated: bool
    html: str
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


# ---- the client -----------------------------------------------------------------------------


class Claudegate:
    """A client for one claudegate server; safe to share between threads."""

    def __init__(
        self,
        url: Optional[str] = None,
        key: Optional[str] = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
    ) -> None:
        url = url or os.environ.get("CLAUDEGATE_URL") or DEFAULT_URL
        key = key if key is not None else os.environ.get("CLAUDEGATE_KEY", "")
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "the claudegate URL must look like http://HOST:PORT or https://HOST, not %r "
                "(set CLAUDEGATE_URL or pass url=)" % url
            )
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigError(
                "the claudegate URL must not carry a user name, a query or a fragment; "
                "the key goes in CLAUDEGATE_KEY"
            )
        key = key.strip()
        if not key:
            raise ConfigError("no claudegate key: set CLAUDEGATE_KEY or pass key=")
        # Checked here so that a bad key never reaches http.client, whose error would quote it.
        if any(not ("!" <= c <= "~") for c in key):
            raise ConfigError(
                "the claudegate key holds spaces or characters a header cannot carry; "
                "copy it again from `claudegate keys add`"
            )
        if not timeout > 0:
            raise ConfigError("timeout must be a positive number of seconds")
        if max_retries < 0 or not max_retry_wait >= 0:
            raise ConfigError("max_retries and max_retry_wait must not be negative")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._key = key
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, self._prefix, "", ""))
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_retry_wait = float(max_retry_wait)

    def __repr__(self) -> str:
        # The key is deliberately left out.
        return "Claudegate(url=%r, timeout=%r, max_retries=%r, max_retry_wait=%r)" % (
            self.url,
            self.timeout,
            self.max_retries,
            self.max_retry_wait,
        )

    def complete(
        self,
        prompt: str,
        *,
        system: Optional[str] = None,
        model: Optional[str] = None,
        output_format: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Completion:
        """A prompt in, text out. ``model`` defaults to the server's (``sonnet``);
        ``output_format="json"`` adds token counts (``usage``)."""
        body: Dict[str, Any] = {"prompt": prompt}
        for name, value in (("system", system), ("model", model), ("output_format", output_format)):
            if value is not None:
                body[name] = value
        v = self._call("/v1/complete", body, timeout)
        text = v.get("text", v.get("result"))
        if not isinstance(text, str):
            raise ServerError("the /v1/complete answer holds no text: %.200s" % json.dumps(v))
        return Completion(
            text=text,
            model=str(v.get("model", "")),
            duration_ms=int(v.get("duration_ms") or 0),
            usage=v.get("usage"),
            raw=v,
        )

    def fetch_page(
        self,
        url: str,
        *,
        max_bytes: Optional[int] = None,
        strip: Optional[bool] = None,
        timeout: Optional[float] = None,
    ) -> Page:
        """Fetches a public page through the server (`/v1/fetch`)."""
        body: Dict[str, Any] = {"url": url}
        if max_bytes is not None:
            body["max_bytes"] = max_bytes
        if strip is not None:
            body["strip"] = strip
        v = self._call("/v1/fetch", body, timeout)
        try:
            return Page(
                status=int(v["status"]),
                final_url=str(v["final_url"]),
                content_type=str(v.get("content_type") or ""),
                truncated=bool(v.get("truncated")),
                html=str(v["html"]),
                raw=v,
            )
        except (KeyError, TypeError, ValueError):
            raise ServerError("the /v1/fetch answer is incomplete: %.200s" % json.dumps(v)) from None

    # -- one call, with retries --

    def _call(self, path: str, body: Dict[str, Any], timeout: Optional[float]) -> Dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        deadline = self.timeout if timeout is None else float(timeout)
        attempt = 0
        while True:
            status, headers, raw = self._exchange(path, data, deadline)
            if 200 <= status < 300:
                return _parse_success(status, headers, raw)
            err = _error_from(status, headers, raw)
            wait = err.retry_after
            retryable = status in (429, 503) and wait is not None
            if not retryable or attempt >= self.max_retries or wait > self.max_retry_wait:
                raise err
            attempt += 1
            time.sleep(wait)

    def _exchange(self, path: str, data: bytes, timeout: float) -> Tuple[int, Dict[str, str], bytes]:
        """One HTTP exchange, all of it within ``timeout`` seconds: the socket's own timeout
        bounds each read, and a timer shuts the socket down when the whole deadline passes (so
        a server that sends a byte at a time cannot stretch the call)."""
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            conn.connect()
            if expired.is_set():
                raise socket.timeout("connect took the whole deadline")
            conn.request(
                "POST",
                self._prefix + path,
                body=data,
                headers={
                    "Authorization": "Bearer " + self._key,
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "User-Agent": "claudegate-python/" + __version__,
                },
            )
            resp = conn.getresponse()
            raw = resp.read()
            if expired.is_set():
                raise socket.timeout("deadline passed while reading")
            headers = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, headers, raw
        except (OSError, http.client.HTTPException) as e:
            if expired.is_set() or isinstance(e, socket.timeout):
                raise ClientTimeoutError(
                    "no complete answer from %s%s within %gs (the client's timeout)"
                    % (self.url, path, timeout)
                ) from None
            raise ConnectError("could not talk to claudegate at %s: %s" % (self.url, e)) from None
        finally:
            timer.cancel()
            conn.close()


def _parse_success(status: int, headers: Dict[str, str], raw: bytes) -> Dict[str, Any]:
    try:
        v = json.loads(raw.decode("utf-8"))
    except ValueError:
        v = None
    if not isinstance(v, dict) or v.get("ok") is not True:
        raise ServerError(
            "the server answered %d with a body this client cannot read: %.200r" % (status, raw),
            status=status,
            request_id=_request_id(headers),
        )
    return v


def _error_from(status: int, headers: Dict[str, str], raw: bytes) -> ClaudegateError:
    """The error for a non-2xx answer: the server's message (``{"ok":false,"error":"…"}``, or
    the Anthropic/OpenAI shapes a proxy or another route may give), typed by status."""
    cls, error_type = _BY_STATUS.get(status, (ServerError, "server_error" if status >= 500 else "error"))
    text = raw.decode("utf-8", "replace")
    message = None
    try:
        v = json.loads(text)
    except ValueError:
        v = None
    if isinstance(v, dict):
        e = v.get("error")
        if isinstance(e, str):
            message = e
        elif isinstance(e, dict):
            if isinstance(e.get("message"), str):
                message = e["message"]
            if isinstance(e.get("type"), str):
                error_type = e["type"]
    if message is None:
        message = "claudegate answered HTTP %d: %s" % (status, text.strip()[:300] or "(no body)")
    return cls(
        message,
        status=status,
        error_type=error_type,
        request_id=_request_id(headers),
        retry_after=_retry_after(headers.get("retry-after")),
    )


def _request_id(headers: Dict[str, str]) -> Optional[str]:
    return headers.get("request-id") or headers.get("x-request-id")


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header: a number of seconds, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - time.time()
    if secs != secs:  # NaN
        return None
    return max(0.0, secs)


# ---- drop-in functions ----------------------------------------------------------------------


def complete(prompt: str, **kwargs: Any) -> Completion:
    """`Claudegate().complete(...)`, configured from the environment."""
    return Claudegate().complete(prompt, **kwargs)


def fetch_page(url: str, **kwargs: Any) -> Page:
    """`Claudegate().fetch_page(...)`, configured from the environment."""
    return Claudegate().fetch_page(url, **kwargs)
