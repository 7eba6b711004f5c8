"""The console over plain HTTP (in-process, SQLite and PostgreSQL): sessions, CSRF, the
brake on failed sign-ins, the separation from the storefront API, and each action's effect
on the payment's history. The browser tests (test_browser.py) drive the same pages in
Chromium against a real server process."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.console import queries
from app.console.auth import LOCK_CAP
from app.models import Notification, Operator, Payment, PaymentEvent
from app.nicepay.wib import now_utc
from tests.conftest import STOREFRONT_KEY, Stack
from tests.console.helpers import PASSWORD, add_operator, new_name, post_form, sign_in

PAGES = [
    "/console/",
    "/console/payments",
    "/console/payments?q=budi@example.co.id",
    "/console/payments/{ref}",
    "/console/quarantine",
    "/console/quarantine?reviewed=true",
    "/console/webhooks",
    "/console/webhooks?kind=retrying",
]


def browser(stack: Stack, base_url: str = "http://service") -> httpx.AsyncClient:
    """A client without the storefront's key, as a support agent's browser would be."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack.app, client=("198.51.100.30", 5000)),
        base_url=base_url,
    )


@pytest.fixture
async def operator(stack: Stack, clean_db: str) -> str:
    name = new_name()
    await add_operator(clean_db, name)
    return name


@pytest.fixture
async def console(stack: Stack, operator: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(stack) as client:
        answer = await sign_in(client, operator)
        assert answer.status_code == 303, answer.text
        yield client


async def events_of(stack: Stack, reference_no: str) -> list[PaymentEvent]:
    async with stack.services.sessions() as session:
        rows = await session.scalars(
            select(PaymentEvent)
            .join(Payment, Payment.id == PaymentEvent.payment_id)
            .where(Payment.reference_no == reference_no)
            .order_by(PaymentEvent.id)
        )
        return list(rows)


async def test_no_page_shows_data_without_a_session(stack: Stack) -> None:
    paid = await stack.register()
    async with browser(stack) as client:
        for page in PAGES:
            answer = await client.get(page.format(ref=paid["reference_no"]))
            assert answer.status_code == 303, page
            assert answer.headers["location"].startswith("/console/login"), page
            assert paid["reference_no"] not in answer.text


async def test_a_storefront_key_does_not_open_the_console(stack: Stack) -> None:
    paid = await stack.register()
    for page in PAGES:  # stack.client carries a valid storefront key
        answer = await stack.client.get(page.format(ref=paid["reference_no"]))
        assert answer.status_code == 303, page
        assert paid["reference_no"] not in answer.text


async def test_a_console_session_does_not_open_the_storefront_api(
    stack: Stack, console: httpx.AsyncClient
) -> None:
    paid = await stack.register()
    cookie = console.cookies.get("console_session", path="/console")
    assert cookie
    async with browser(stack) as other:
        answer = await other.get(
            f"/api/v1/cvs/payments/{paid['reference_no']}",
            headers={"Cookie": f"console_session={cookie}"},
        )
    assert answer.status_code == 401
    assert paid["reference_no"] not in answer.text


async def test_sign_in_with_a_wrong_password_is_refused(stack: Stack, operator: str) -> None:
    async with browser(stack) as client:
        answer = await sign_in(client, operator, "not the password")
        assert answer.status_code == 401
        assert "wrong name or password" in answer.text
        assert "console_session" not in client.cookies
        assert (await client.get("/console/")).status_code == 303
        unknown = await sign_in(client, "nobody-here", PASSWORD)
        assert unknown.status_code == 401


async def test_the_session_cookie_is_httponly_samesite_and_scoped(
    stack: Stack, operator: str
) -> None:
    async with browser(stack) as client:
        answer = await sign_in(client, operator)
    assert answer.status_code == 303
    cookie = next(
        v for k, v in answer.headers.multi_items() if k == "set-cookie" and "console_session=" in v
    )
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/console" in lowered
    assert "secure" not in lowered  # PUBLIC_BASE_URL is http here


async def test_the_session_cookie_is_secure_behind_https(stack_factory, clean_db: str) -> None:
    name = new_name()
    await add_operator(clean_db, name)
    async with (
        stack_factory(public_base_url="https://pay.example.co.id") as stack,
        browser(stack, "https://service") as client,
    ):
        answer = await sign_in(client, name)
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


async def test_repeated_failures_lock_the_account(stack: Stack, operator: str) -> None:
    async with browser(stack) as client:
        for _ in range(5):
            assert (await sign_in(client, operator, "wrong password!")).status_code == 401
        locked = await sign_in(client, operator)  # even the right password, for now
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert "console_session" not in client.cookies


async def test_a_long_run_of_failures_still_gets_a_capped_lock(stack: Stack, operator: str) -> None:
    """Hours of guessing (each lock waited out) leave a count whose doubling would overflow a
    timedelta: the next wrong password is still a 401 with a lock of at most LOCK_CAP."""
    async with stack.services.sessions() as session:
        await session.execute(
            update(Operator).where(Operator.name == operator).values(failed_logins=1_000)
        )
        await session.commit()
    before = now_utc()
    async with browser(stack) as client:
        assert (await sign_in(client, operator, "wrong password!")).status_code == 401
    async with stack.services.sessions() as session:
        row = await session.scalar(select(Operator).where(Operator.name == operator))
    assert row is not None and row.failed_logins == 1_001
    assert row.locked_until is not None
    assert row.locked_until <= now_utc() + LOCK_CAP
    assert row.locked_until >= before + LOCK_CAP - timedelta(seconds=5)


async def test_a_forged_or_missing_csrf_token_is_refused(
    stack: Stack, console: httpx.AsyncClient
) -> None:
    created = await stack.register()
    ref = created["reference_no"]
    for data in ({}, {"csrf_token": "forged"}):
        answer = await console.post(f"/console/payments/{ref}/cancel", data=data)
        assert answer.status_code == 403
    assert (await stack.payment(ref))["status"] == "pending"
    # the sign-in form has one too
    async with browser(stack) as client:
        answer = await client.post(
            "/console/login", data={"username": "x", "password": PASSWORD, "csrf_token": "no"}
        )
        assert answer.status_code == 403


async def test_a_post_without_a_session_is_refused(stack: Stack) -> None:
    created = await stack.register()
    async with browser(stack) as client:
        answer = await client.post(
            f"/console/payments/{created['reference_no']}/cancel", data={"csrf_token": "x"}
        )
    assert answer.status_code == 403
    assert (await stack.payment(created["reference_no"]))["status"] == "pending"


async def test_sign_out_ends_the_session(stack: Stack, console: httpx.AsyncClient) -> None:
    stolen = console.cookies.get("console_session", path="/console")
    answer = await post_form(console, "/console/", "/console/logout")
    assert answer.status_code == 303
    assert (await console.get("/console/")).status_code == 303
    async with browser(stack) as other:  # a copy of the cookie is void too
        other.cookies.set("console_session", stolen or "", path="/console")
        assert (await other.get("/console/")).status_code == 303


async def test_search_finds_by_each_field(stack: Stack, console: httpx.AsyncClient) -> None:
    created = await stack.register(
        customer={"name": "Siti", "phone": "081299990000", "email": "Siti@Example.co.id"}
    )
    other = await stack.register()
    for q in (
        created["reference_no"],
        created["txid"],
        created["pay_no"],
        "siti@example.co.id",
        "081299990000",
    ):
        page = await console.get("/console/payments", params={"q": q})
        assert page.status_code == 200
        assert created["reference_no"] in page.text, q
        assert other["reference_no"] not in page.text, q


async def test_payment_page_shows_the_ledger_verdicts(
    stack: Stack, console: httpx.AsyncClient
) -> None:
    created = await stack.register()
    await stack.sim.pay(created["txid"])
    page = await console.get(f"/console/payments/{created['reference_no']}")
    assert page.status_code == 200
    assert 'data-check="token"' in page.text
    assert "token: pass" in page.text
    assert "applied" in page.text


async def test_cancel_from_the_console(stack: Stack, console: httpx.AsyncClient, operator: str):
    created = await stack.register()
    ref = created["reference_no"]
    answer = await post_form(console, f"/console/payments/{ref}", f"/console/payments/{ref}/cancel")
    assert answer.status_code == 303
    assert (await stack.payment(ref))["status"] == "cancelled"
    events = await events_of(stack, ref)
    cancelled = next(e for e in events if e.type == "cancelled")
    assert (cancelled.source, cancelled.actor) == ("operator", operator)
    audit = events[-1]
    assert (audit.type, audit.source, audit.actor) == ("operator", "operator", operator)
    assert audit.detail == {"action": "cancel", "outcome": "cancelled"}
    page = await console.get(answer.headers["location"])
    assert "cancelled at NICEPAY" in page.text


async def _quarantined_deposit(stack: Stack) -> tuple[dict[str, Any], int]:
    """A deposit pushed while NICEPAY still says unpaid: the inquiry disagrees, quarantined."""
    from app.nicepay.codes import NotificationStatus

    created = await stack.register()
    form = stack.sim.notification_form(
        stack.sim.transactions[created["txid"]], NotificationStatus.DEPOSIT
    )
    async with stack.nicepay() as nicepay:
        answer = await nicepay.post("/api/v1/nicepay/notifications", data=form)
    assert answer.text == "OK"
    async with stack.services.sessions() as session:
        row_id = await session.scalar(
            select(Notification.id).where(Notification.txid == created["txid"])
        )
    assert row_id is not None
    return created, row_id


async def test_replay_from_the_quarantine(stack: Stack, console: httpx.AsyncClient, operator):
    created, row_id = await _quarantined_deposit(stack)
    queue = await console.get("/console/quarantine")
    assert f'id="q-{row_id}"' in queue.text
    await stack.sim.settle_silently(created["txid"])  # NICEPAY now says paid
    answer = await post_form(console, "/console/quarantine", f"/console/quarantine/{row_id}/replay")
    assert answer.status_code == 303
    assert (await stack.payment(created["reference_no"]))["status"] == "paid"
    async with stack.services.sessions() as session:
        original = await session.get(Notification, row_id)
        assert original is not None
        assert original.outcome == "quarantined"  # the verdict stays; the review is added
        assert original.reviewed_by == operator
        assert original.review_note and "applied" in original.review_note
    queue = await console.get("/console/quarantine")
    assert f'id="q-{row_id}"' not in queue.text
    audit = (await events_of(stack, created["reference_no"]))[-1]
    assert audit.detail is not None
    assert (audit.type, audit.actor, audit.detail["action"]) == ("operator", operator, "replay")


async def test_mark_reviewed_with_a_note(stack: Stack, console: httpx.AsyncClient, operator):
    created, row_id = await _quarantined_deposit(stack)
    empty = await post_form(
        console, "/console/quarantine", f"/console/quarantine/{row_id}/review", note=" "
    )
    assert empty.status_code == 303
    assert f'id="q-{row_id}"' in (await console.get("/console/quarantine")).text
    answer = await post_form(
        console,
        "/console/quarantine",
        f"/console/quarantine/{row_id}/review",
        note="shopper paid twice; refunded by hand",
    )
    assert answer.status_code == 303
    assert f'id="q-{row_id}"' not in (await console.get("/console/quarantine")).text
    reviewed = await console.get("/console/quarantine?reviewed=true")
    assert "shopper paid twice; refunded by hand" in reviewed.text
    assert (await stack.payment(created["reference_no"]))["status"] == "pending"
    audit = (await events_of(stack, created["reference_no"]))[-1]
    assert (audit.actor, audit.detail) == (
        operator,
        {"action": "review", "notification_id": row_id},
    )


async def test_ask_nicepay_now_heals_a_lost_push(
    stack: Stack, console: httpx.AsyncClient, operator: str
) -> None:
    created = await stack.register()
    ref = created["reference_no"]
    unchanged = await post_form(
        console, f"/console/payments/{ref}", f"/console/payments/{ref}/refresh"
    )
    assert unchanged.status_code == 303
    assert (await stack.payment(ref))["status"] == "pending"
    await stack.sim.settle_silently(created["txid"])
    answer = await post_form(
        console, f"/console/payments/{ref}", f"/console/payments/{ref}/refresh"
    )
    assert answer.status_code == 303
    assert "NICEPAY says paid" in (await console.get(answer.headers["location"])).text
    assert (await stack.payment(ref))["status"] == "paid"
    events = await events_of(stack, ref)
    paid = next(e for e in events if e.type == "paid")
    assert (paid.source, paid.actor) == ("operator", operator)
    asked = [e.detail for e in events if e.type == "operator"]
    assert [d["outcome"] for d in asked] == ["left", "healed"]  # type: ignore[index]


async def test_resend_a_webhook(stack_factory, clean_db: str) -> None:
    from sqlalchemy import update

    from app.models import WebhookEvent

    name = new_name()
    await add_operator(clean_db, name)
    async with stack_factory(merchant_webhook_url="http://hooks.invalid/in") as stack:
        created = await stack.register()
        async with stack.services.sessions() as session:
            await session.execute(update(WebhookEvent).values(status="given_up", attempts=12))
            event_id = await session.scalar(select(WebhookEvent.event_id))
            await session.commit()
        async with browser(stack) as client:
            await sign_in(client, name)
            listed = await client.get("/console/webhooks")
            assert event_id in listed.text and created["reference_no"] in listed.text
            answer = await post_form(
                client, "/console/webhooks", f"/console/webhooks/{event_id}/resend"
            )
            assert answer.status_code == 303
            listed = await client.get("/console/webhooks")
            assert f'<td class="mono">{event_id}</td>' not in listed.text
            assert "queued for delivery again" in listed.text
        async with stack.services.sessions() as session:
            event = await session.scalar(select(WebhookEvent))
            assert event is not None and (event.status, event.attempts) == ("pending", 0)
        audit = (await events_of(stack, created["reference_no"]))[-1]
        assert (audit.actor, audit.detail) == (name, {"action": "resend", "event_id": event_id})


async def test_overview_counts_today(stack: Stack, console: httpx.AsyncClient) -> None:
    created = await stack.register(amount=25000, store="indomaret")
    await stack.sim.pay(created["txid"])
    page = await console.get("/console/")
    assert page.status_code == 200
    assert "Rp 25.000" in page.text
    assert "indomaret" in page.text
    assert "<svg" in page.text
    assert "onePass" in page.text or "NICEPAY calls" in page.text
    assert STOREFRONT_KEY not in page.text


async def test_backlog_counts_due_checks_as_the_sweep_claims_them(stack: Stack) -> None:
    """Due means what the reconciler claims: a pending code whose next check has come. A
    pending code with no check left (next_check_at NULL: its budget spent) is not due."""
    due, spent, later = [await stack.register() for _ in range(3)]
    now = now_utc()
    values = {
        due["reference_no"]: now - timedelta(minutes=1),
        spent["reference_no"]: None,
        later["reference_no"]: now + timedelta(hours=1),
    }
    async with stack.services.sessions() as session:
        for reference_no, next_check_at in values.items():
            await session.execute(
                update(Payment)
                .where(Payment.reference_no == reference_no)
                .values(next_check_at=next_check_at)
            )
        await session.commit()
        backlog = await queries.backlog(session, now)
    claimed = await stack.services.reconciler.backlog(now)
    assert backlog.reconcile_due == 1
    assert claimed.due == 1
