"""POST /api/v1/nicepay/notifications: NICEPAY's dbProcessUrl."""

from typing import Any
from urllib.parse import unquote_plus

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.client_ip import resolve_client_ip
from app.nicepay.codes import is_numeric
from app.notifications import service

PATH = "/api/v1/nicepay/notifications"
FORM = "application/x-www-form-urlencoded"
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
_FIELDS = {
    name: {"type": "string"}
    for name in [
        "tXid",
        "referenceNo",
        "amt",
        "merchantToken",
        "status",
        "payMethod",
        "currency",
        "matchCl",
        "mitraCd",
        "payNo",
        "payValidDt",
        "payValidTm",
        "transDt",
        "transTm",
        "depositDt",
        "depositTm",
        "goodsNm",
        "billingNm",
        "iMid",
    ]
}


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (whatever Content-Length claims)."""
    declared = request.headers.get("content-length", "")
    if is_numeric(declared) and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def nicepay_notification(request: Request) -> Response:
    notifications: service.NotificationService = request.app.state.notifications
    settings = notifications.settings
    body = await _read_capped(request, settings.notification_max_body_bytes)
    query = request.scope["query_string"]
    fields = parse_form(query.decode("latin-1")) if query else {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and content_type in (FORM, ""):
        fields.update(parse_form(body.decode("utf-8", "replace")))
    kept, digest = service.split_token(fields)
    peer = request.client.host if request.client else None
    inbound = service.Inbound(
        peer_ip=peer,
        client_ip=resolve_client_ip(
            peer, request.headers.getlist("x-forwarded-for"), settings.trusted_proxies
        ),
        user_agent=request.headers.get("user-agent"),
        fields=kept,
        token_digest=digest,
        too_large=body is None,
    )
    reply = await notifications.receive(inbound)
    if reply.http_status == 200:
        return PlainTextResponse(reply.body)
    # NICEPAY reads only the status; people and scripts get the service's one error shape.
    error = {"error": ERROR_CODES.get(reply.http_status, "error"), "detail": reply.body}
    return JSONResponse(error, status_code=reply.http_status)


ERROR_CODES = {
    400: "invalid_notification",
    403: "forbidden",
    413: "body_too_large",
    503: "database_unavailable",
}


def parse_form(text: str) -> dict[str, str]:
    """A form-urlencoded string as a dict (the last of repeated names wins): what
    `dict(parse_qsl(text, keep_blank_values=True))` gives (tests/notifications hold it to
    that), at a third of its cost, which the dbProcessUrl pays on every push."""
    fields = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            if "%" in pair or "+" in pair:
                name, value = unquote_plus(name), unquote_plus(value)
            fields[name] = value
    return fields


class PushLane:
    """Pure ASGI, inside the service's own middleware (request id, deadline, access line,
    query cap): a POST to the dbProcessUrl goes straight to its endpoint, past the router and
    the per-route layers (exception middleware, exit stack, route matching), 9% of a first
    deposit's CPU and 12% of a duplicate's (docs/BENCHMARKS.md). Everything else takes the
    app's usual way."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST":
            response = await nicepay_notification(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def mount(app: FastAPI) -> None:
    """The push lane, and a plain Starlette route behind it: the path in the router, so that
    another method is answered 405, and its OpenAPI entry (added to the generated schema by
    hand)."""
    app.add_middleware(PushLane)  # innermost of the middleware, whenever the others are added
    app.router.add_route(PATH, nicepay_notification, methods=["POST"], name="nicepay_notification")
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's own, made once and kept
        schema["paths"].update(OPENAPI)  # the same entry again on later calls: no change
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


OPENAPI = {
    PATH: {
        "post": {
            "tags": ["nicepay"],
            "summary": "NICEPAY's dbProcessUrl: a CVS payment notification",
            "operationId": "nicepay_notification",
            "requestBody": {
                "required": True,
                "content": {FORM: {"schema": {"type": "object", "properties": _FIELDS}}},
            },
            "responses": {
                "200": {
                    "description": "Recorded and applied, duplicate, or quarantined: body `OK`",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **{
                    str(status): {"description": f"{what} (`{ERROR_CODES[status]}`)", **_ERROR}
                    for status, what in {
                        400: "Malformed",
                        403: "Source IP not allowed or merchantToken invalid",
                        413: "Body over the limit",
                        503: "Database could not commit: nothing acknowledged",
                    }.items()
                },
            },
        }
    }
}
