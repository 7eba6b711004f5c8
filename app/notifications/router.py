"""POST /api/v1/nicepay/notifications: NICEPAY's dbProcessUrl."""

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from app.nicepay.codes import is_numeric
from app.notifications import service
from app.notifications.client_ip import resolve_client_ip
from app.runtime import Runtime

router = APIRouter(tags=["nicepay"])

FORM = "application/x-www-form-urlencoded"
_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}
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


@router.post(
    "/api/v1/nicepay/notifications",
    name="nicepay_notification",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "Recorded and applied, duplicate, or quarantined: body `OK`", **_TEXT},
        400: {"description": "Malformed", **_TEXT},
        403: {"description": "Source IP not allowed or merchantToken invalid", **_TEXT},
        413: {"description": "Body over the limit", **_TEXT},
        503: {"description": "Database could not commit: nothing acknowledged", **_TEXT},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FORM: {"schema": {"type": "object", "properties": _FIELDS}}},
        }
    },
)
async def nicepay_notification(request: Request) -> PlainTextResponse:
    # The hot path: no dependency injection (FastAPI solves a dependency per request).
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    body = await _read_capped(request, settings.notification_max_body_bytes)
    query = request.scope["query_string"]
    fields = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and content_type in (FORM, ""):
        fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
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
    reply = await service.receive(runtime, inbound)
    return PlainTextResponse(reply.body, status_code=reply.http_status)
