"""Logging: JSON lines in production, readable text in development; a request id on every
line; and a last line of defence that masks configured secrets if one ever reaches a message.
"""

import contextlib
import contextvars
import json
import logging
import sys
import time
from random import getrandbits
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("app.http")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class _Masked(logging.Formatter):
    """Masks configured secrets in the finished line: message, extras and tracebacks alike."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]) -> None:
        super().__init__()
        self._inner = inner
        # Also as they look inside a JSON string, where quotes and backslashes are escaped.
        forms = {form for s in secrets if len(s) >= 8 for form in (s, json.dumps(s)[1:-1])}
        self._secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self._inner.format(record)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line


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
    handler = logging.StreamHandler(sys.stderr)
    formatter = (
        JsonFormatter()
        if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")
    )
    handler.setFormatter(_Masked(formatter, secrets_of(settings)))
    handler.addFilter(_Context())
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
    """Every configured secret value: merchant keys, storefront keys, webhook secrets, DB password."""
    secrets = settings.merchant_keys + [k.get_secret_value() for k in settings.storefront_api_keys]
    secrets += settings.merchant_webhook_secret.get_secret_value().split()
    secrets.append(settings.console_session_secret.get_secret_value())
    with contextlib.suppress(ArgumentError, ValueError):
        password = make_url(settings.database_url).password
        if password:
            secrets.append(str(password))
    return [s for s in secrets if s]


class RequestContext:
    """Pure ASGI: a request id per request (X-Request-ID honoured) and one access line,
    logged without the query string (a NICEPAY push may carry its token there)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        incoming_id = incoming.decode("latin-1")[:64]
        # An id to correlate log lines, not a secret: no system call for randomness.
        rid = (
            incoming_id if incoming_id.isprintable() and incoming_id else f"{getrandbits(128):032x}"
        )
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )
            request_id.reset(token)
