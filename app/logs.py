"""Logging: JSON lines in production, readable text in development; a request id on every
line; and a last line of defence that masks configured secrets if one ever reaches a message.
"""

import asyncio
import contextlib
import contextvars
import json
import logging
import sys
import time
from random import getrandbits
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("app.http")

MIN_MASKED = 8  # shorter values are not masked: they would garble every line they appear in
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _Masked(logging.Formatter):
    """Stamps each record with its request id, then masks configured secrets in the finished
    line: message, extras and tracebacks alike."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]) -> None:
        super().__init__()
        self._inner = inner
        # Also as they look inside a JSON string, where quotes and backslashes are escaped.
        forms = {form for s in secrets if len(s) >= MIN_MASKED for form in (s, json.dumps(s)[1:-1])}
        self._secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = request_id.get()
        line = self._inner.format(record)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line


# Every C0/C1 control character and Unicode line break, as a visible escape: what a client
# sends (a path, a header) must never start a line of its own in a text log.
_CONTROLS = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}
_CONTROLS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape_controls(text: str) -> str:
    return text.translate(_CONTROLS)


class TextFormatter(logging.Formatter):
    """One line per record: control characters in the message escaped; a traceback follows
    indented, so a line that starts at column 0 is always the start of a real record."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return self.formatStack(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    " + escape_controls(line) for line in stack_info.splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(settings: Settings) -> None:
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and settings.app_env == "production"
    )
    text = TextFormatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Masked(JsonFormatter() if use_json else text, secrets_of(settings)))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn installs its own handlers; send its lines through ours (one format, masked).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value: merchant keys, storefront keys, webhook secrets, DB password,
    and whatever a URL setting carries in its user:password@ or its query string."""
    secrets = settings.merchant_keys + [k.get_secret_value() for k in settings.storefront_api_keys]
    secrets += settings.merchant_webhook_secret.get_secret_value().split()
    secrets.append(settings.console_session_secret.get_secret_value())
    with contextlib.suppress(ArgumentError, ValueError):
        secrets.append(str(make_url(settings.database_url).password or ""))
    for url in (settings.merchant_webhook_url, settings.nicepay_base_url, settings.public_base_url):
        secrets += url_secrets(url)
    return [s for s in secrets if s]


def url_secrets(url: str) -> list[str]:
    """The password and every query value inside a URL (a webhook URL may carry a token), as
    written and decoded; short ones are left out (masking "1" everywhere would garble lines,
    and redact_url hides them where the URL itself is printed)."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        found = [parts.password or "", unquote(parts.password or "")]
        found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
        found += [part.split("=", 1)[1] for part in parts.query.split("&") if "=" in part]
        return [value for value in found if len(value) >= MIN_MASKED]
    return []


def redact_url(url: str) -> str:
    """`url` fit to print: its password and its query values replaced by ***."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None:
        netloc = f"{parts.username}{':***' if parts.password is not None else ''}@{netloc}"
    query = "&".join(f"{part.split('=', 1)[0]}=***" for part in parts.query.split("&") if part)
    head = f"{parts.scheme}://{netloc}" if parts.scheme or netloc else ""
    return head + parts.path + (f"?{query}" if query else "")


class RequestContext:
    """Pure ASGI, per request: an id (X-Request-ID honoured), one access line without the
    query string (a NICEPAY push may carry its token there), and a deadline for the whole
    request, the backstop behind every database and NICEPAY wait's own: a request still
    unanswered when it passes is answered 503, which acknowledges nothing (a push's OK, a
    registration's 201 are only sent after their commit)."""

    def __init__(self, app: ASGIApp, deadline_seconds: float = 30.0) -> None:
        self.app = app
        self.deadline_seconds = deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        rid = incoming.decode("latin-1")[:64]
        if not (rid and rid.isprintable()):
            # An id to correlate log lines, not a secret: no system call for randomness.
            rid = f"{getrandbits(128):032x}"
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0  # until a response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            async with asyncio.timeout(self.deadline_seconds):
                await self.app(scope, receive, send_with_id)
            # Returned without answering: the client went away first (nginx's 499).
            status = status or 499
        except TimeoutError:
            log.error("request deadline (%.0f s) passed: answered 503", self.deadline_seconds)
            if not status:  # no response started: answer it
                body = b'{"error":"deadline_exceeded","detail":"the request took too long; retry"}'
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope["path"],
                    status or 500,  # an exception: the error middleware answers 500
                    (time.perf_counter() - started) * 1000,
                )
            request_id.reset(token)
