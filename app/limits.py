"""Pure ASGI guards that hold for every route: a cap on the query string, and a client that
goes away mid-request is an ordinary event (one log line), not an application error."""

import logging

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("app.http")


class RequestLimits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limit: int = scope["app"].state.settings.http_max_query_bytes
            if len(scope["query_string"]) > limit:
                # Before any route runs: a push's query string is never parsed, stored or logged.
                body = {"error": "query_too_long", "detail": f"query string over {limit} bytes"}
                await JSONResponse(body, status_code=414)(scope, receive, send)
                return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:  # only an HTTP request's body can be cut short
            log.info("client went away before its request was whole; nothing was done")
