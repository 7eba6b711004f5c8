"""FastAPI dependencies (one narrow piece each) and the storefront gate."""

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import AppError, BodyTooLarge, Unauthorized
from app.nicepay.codes import is_numeric


# Dependencies are `async def` although they do no I/O: a plain `def` runs on the thread
# pool, one thread hop per dependency per request.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def service(name: str) -> Any:
    """A dependency that hands out one service the lifespan built (app.state.services)."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state.services, name)

    return Depends(get)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], service("sessions")]

# Declares the bearer scheme in OpenAPI; the key itself is checked once, by StorefrontGate,
# before FastAPI reads a body.
storefront_key = Depends(HTTPBearer(auto_error=False, description="One of STOREFRONT_API_KEYS"))


def storefront_key_problem(settings: Settings, authorization: str | None) -> str | None:
    """Why an Authorization header does not carry a storefront key, or None when it does."""
    scheme, _, offered = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not offered.strip():
        return "missing bearer key (Authorization: Bearer <key>)"
    # Compare against every key, so timing does not tell which (or whether one) matched.
    matched = False
    for key in settings.storefront_api_keys:
        matched |= hmac.compare_digest(offered.strip().encode(), key.get_secret_value().encode())
    return None if matched else "wrong bearer key"


class StorefrontGate:
    """Pure ASGI, before FastAPI reads a body: the storefront API answers 401 without a key
    and 413 for a body over the cap, so nobody unauthenticated makes it parse JSON. The cap
    counts the bytes actually received (a chunked body declares no length): the gate reads
    the body itself, up to the cap, and hands it on whole."""

    PREFIX = "/api/v1/cvs/"
    MAX_BODY_BYTES = 64 * 1024

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        settings: Settings = scope["app"].state.settings
        problem = storefront_key_problem(settings, headers.get("authorization"))
        declared = headers.get("content-length", "")
        if problem:
            error: AppError = Unauthorized(problem)
        elif is_numeric(declared) and int(declared) > self.MAX_BODY_BYTES:
            error = BodyTooLarge(f"body over {self.MAX_BODY_BYTES} bytes")
        else:
            body = await _read_body(receive, self.MAX_BODY_BYTES)
            if body is None:
                return  # the client went away: nobody to answer
            if len(body) <= self.MAX_BODY_BYTES:
                await self.app(scope, _replay(body, receive), send)
                return
            error = BodyTooLarge(f"body over {self.MAX_BODY_BYTES} bytes")
        await error.response()(scope, receive, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or its first chunks once they are over `limit` bytes; None if the
    client went away first."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit or not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives `body` once, then whatever the client does next (a disconnect)."""
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def replay() -> Message:
        return next(messages, None) or await receive()

    return replay
