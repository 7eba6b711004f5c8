"""The console's pages and forms (server-rendered; reading needs no JavaScript).

Every page needs a signed-in operator (else: to the sign-in page); every form carries the
session's CSRF token and a POST without it, or with a wrong one, is refused with 403.
Actions answer with a redirect back to the page (post/redirect/get) and a one-time message.
"""

import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from app.client_ip import resolve_client_ip
from app.config import Settings
from app.console import actions, queries
from app.console.auth import (
    FLASH_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Sessions,
    SignedIn,
    SignInRefused,
    csrf_ok,
)
from app.nicepay.wib import WIB, now_utc

if TYPE_CHECKING:  # the composition root imports this module
    from app.main import Services

HERE = Path(__file__).parent
PREFIX = "/console"
MAX_FORM_BYTES = 16 * 1024

templates = Jinja2Templates(directory=HERE / "templates")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",
}


def _wib(value: Any) -> str:
    return value.astimezone(WIB).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _rupiah(value: int | None) -> str:
    return "" if value is None else "Rp " + f"{value:,}".replace(",", ".")


templates.env.filters.update(wib=_wib, rupiah=_rupiah)


class SignInRequired(Exception):
    """A page was asked for without a good session: to the sign-in page."""


class Forbidden(Exception):
    """A request refused with 403; the message says why."""


def _runtime(request: Request) -> "Services":
    return cast("Services", request.app.state.services)


def _sessions(request: Request) -> Sessions:
    return cast(Sessions, request.app.state.console_sessions)


async def _operator(request: Request) -> SignedIn | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    return await _sessions(request).operator(_runtime(request).sessions, cookie)


async def signed_in(request: Request) -> SignedIn:
    operator = await _operator(request)
    if operator is None:
        raise SignInRequired
    return operator


async def form_of(request: Request) -> dict[str, str]:
    """A urlencoded form body, bounded (the console's forms are a few short fields)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Forbidden("form too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def checked_form(request: Request) -> tuple[SignedIn, dict[str, str]]:
    """A POST's operator and fields, after its CSRF token matched the session's."""
    operator = await _operator(request)
    if operator is None:
        raise Forbidden("sign in first")
    fields = await form_of(request)
    if not csrf_ok(operator.csrf, fields.get("csrf_token")):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and try again")
    return operator, fields


async def page_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A page's reads, committed when the page is rendered (before the response is sent)."""
    async with _runtime(request).sessions() as session:
        yield session
        await session.commit()


OperatorDep = Annotated[SignedIn, Depends(signed_in)]
FormDep = Annotated[tuple[SignedIn, dict[str, str]], Depends(checked_form)]
# Declared after OperatorDep in each page, so a request without a session opens none.
SessionDep = Annotated[AsyncSession, Depends(page_session, scope="function")]

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def render(
    request: Request, name: str, operator: SignedIn | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    flash = _sessions(request).unsign(request.cookies.get(FLASH_COOKIE), max_age=300)
    response = templates.TemplateResponse(
        request,
        name,
        {"operator": operator, "flash": flash, "prefix": PREFIX, **context},
        status_code=status_code,
        headers=PAGE_HEADERS,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def back(request: Request, to: str, done: actions.Done) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303)
    sessions = _sessions(request)
    response.set_cookie(FLASH_COOKIE, sessions.sign(asdict(done)), **sessions.cookie_options(300))
    return response


# --- signing in and out ----------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page, never another site."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_form(request, None, next_page=_safe_next(next))


def _login_form(
    request: Request, error: str | None, status_code: int = 200, *, next_page: str
) -> HTMLResponse:
    sessions = _sessions(request)
    csrf = secrets.token_urlsafe(24)
    response = render(
        request, "login.html", None, status_code, error=error, csrf=csrf, next_page=next_page
    )
    response.set_cookie(LOGIN_COOKIE, sessions.sign(csrf), **sessions.cookie_options(3600))
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    sessions = _sessions(request)
    fields = await form_of(request)
    expected = sessions.unsign(request.cookies.get(LOGIN_COOKIE), max_age=3600)
    if not isinstance(expected, str) or not csrf_ok(expected, fields.get("csrf_token")):
        raise Forbidden("the sign-in form's CSRF token is missing or wrong: reload the page")
    next_page = _safe_next(fields.get("next"))
    runtime = _runtime(request)
    peer = request.client.host if request.client else None
    ip = resolve_client_ip(
        peer, request.headers.getlist("x-forwarded-for"), runtime.settings.trusted_proxies
    )
    try:
        cookie = await sessions.sign_in(
            runtime.sessions,
            fields.get("username", "")[:64],
            fields.get("password", "")[:1024],
            str(ip or peer or "unknown"),
        )
    except SignInRefused as exc:
        status = 429 if exc.retry_after else 401
        refused = _login_form(request, str(exc), status, next_page=next_page)
        if exc.retry_after:
            refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    response = RedirectResponse(next_page, status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, **sessions.cookie_options())
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, form: FormDep) -> Response:
    await _sessions(request).sign_out(_runtime(request).sessions, form[0].name)
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


# --- pages ----------------------------------------------------------------------------------


@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)


@router.get("/")
async def overview(request: Request, operator: OperatorDep, session: SessionDep) -> HTMLResponse:
    now = now_utc()
    today, week = queries.period_starts(now)
    return render(
        request,
        "overview.html",
        operator,
        periods=[
            await queries.period(session, "Today", today),
            await queries.period(session, "This week", week),
        ],
        types=queries.OVERVIEW_TYPES,
        chart=_chart(await queries.paid_per_hour(session, now)),
        health=queries.nicepay_health(),
        backlog=await queries.backlog(session, now),
        cap=queries.BACKLOG_CAP,
    )


def _chart(bars: list[queries.HourBar]) -> dict[str, Any]:
    """Geometry of the server-drawn SVG bar chart (no script, no external asset); the
    template labels each bar from its HourBar."""
    width, height, gap = 720, 160, 4
    top = max([b.count for b in bars] + [1])
    slot = width / max(len(bars), 1)
    drawn = []
    for i, bar in enumerate(bars):
        h = round(bar.count / top * (height - 20))
        drawn.append({"bar": bar, "x": round(i * slot + gap / 2, 1), "y": height - h, "h": h})
    return {"bars": drawn, "w": round(slot - gap, 1), "width": width, "height": height, "top": top}


@router.get("/payments")
async def payments(
    request: Request,
    operator: OperatorDep,
    session: SessionDep,
    q: Annotated[str, Query(max_length=254)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    rows = await queries.search(session, q) if q.strip() else await queries.latest(session, before)
    next_before = rows[-1].id if not q.strip() and len(rows) == queries.PAGE else None
    return render(request, "payments.html", operator, q=q, rows=rows, next_before=next_before)


@router.get("/payments/{reference_no}")
async def payment(
    request: Request, operator: OperatorDep, session: SessionDep, reference_no: str
) -> HTMLResponse:
    page = await queries.payment_page(session, reference_no)
    if page is None:
        return render(request, "missing.html", operator, 404, what=f"payment {reference_no}")
    return render(request, "payment.html", operator, page=page, ledger_cap=queries.LEDGER_CAP)


def _payment_url(reference_no: str) -> str:
    return f"{PREFIX}/payments/{quote(reference_no, safe='')}"


@router.post("/payments/{reference_no}/refresh")
async def refresh(request: Request, reference_no: str, form: FormDep) -> Response:
    done = await actions.refresh(_runtime(request), reference_no, form[0].name)
    return back(request, _payment_url(reference_no), done)


@router.post("/payments/{reference_no}/cancel")
async def cancel(request: Request, reference_no: str, form: FormDep) -> Response:
    done = await actions.cancel(_runtime(request), reference_no, form[0].name)
    return back(request, _payment_url(reference_no), done)


@router.post("/payments/{reference_no}/resend")
async def resend_from_payment(request: Request, reference_no: str, form: FormDep) -> Response:
    operator, fields = form
    done = await actions.resend(_runtime(request), fields.get("event_id", ""), operator.name)
    return back(request, _payment_url(reference_no), done)


@router.get("/quarantine")
async def quarantine(
    request: Request,
    operator: OperatorDep,
    session: SessionDep,
    reviewed: bool = False,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    rows = await queries.quarantine(session, reviewed=reviewed, before=before)
    next_before = rows[-1][0].id if len(rows) == queries.PAGE else None
    return render(
        request, "quarantine.html", operator, rows=rows, reviewed=reviewed, next_before=next_before
    )


@router.post("/quarantine/{notification_id}/replay")
async def replay(request: Request, notification_id: int, form: FormDep) -> Response:
    done = await actions.replay(_runtime(request), notification_id, form[0].name)
    return back(request, PREFIX + "/quarantine", done)


@router.post("/quarantine/{notification_id}/review")
async def review(request: Request, notification_id: int, form: FormDep) -> Response:
    operator, fields = form
    done = await actions.review(
        _runtime(request), notification_id, operator.name, fields.get("note", "")
    )
    return back(request, PREFIX + "/quarantine", done)


@router.get("/webhooks")
async def webhooks(
    request: Request,
    operator: OperatorDep,
    session: SessionDep,
    kind: Annotated[str, Query(pattern="^(given_up|retrying)$")] = "given_up",
    page: Annotated[int, Query(ge=0, le=1000)] = 0,
) -> HTMLResponse:
    rows = await queries.failing_webhooks(session, kind, page)
    more = len(rows) == queries.PAGE
    return render(request, "webhooks.html", operator, rows=rows, kind=kind, page=page, more=more)


@router.post("/webhooks/{event_id}/resend")
async def resend(request: Request, event_id: str, form: FormDep) -> Response:
    done = await actions.resend(_runtime(request), event_id, form[0].name)
    return back(request, PREFIX + "/webhooks", done)


# --- wiring ----------------------------------------------------------------------------------


def mount(app: FastAPI, settings: Settings) -> None:
    """The console on `app`: its routes, its static files, its session signer."""
    app.state.console_sessions = Sessions(settings)
    app.include_router(router)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console_static")

    async def to_login(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)

    async def forbidden(request: Request, exc: Exception) -> Response:
        return render(request, "forbidden.html", None, 403, reason=str(exc))

    app.add_exception_handler(SignInRequired, to_login)
    app.add_exception_handler(Forbidden, forbidden)
