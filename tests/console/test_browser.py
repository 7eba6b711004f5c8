"""The console in a real browser: Debian's Chromium driven by Playwright, against the service
as a real process (`python -m app serve`) with the NICEPAY simulator as another, on SQLite
and on PostgreSQL. One walk through every page and action, as a support agent would do it.

CONSOLE_SCREENSHOTS=DIR keeps a PNG of each page in DIR (scripts/console-screenshots.sh
refreshes docs/console/ that way).
"""

import asyncio
import base64
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from app.models import WebhookEvent
from tests.procs import (
    ARTIFACTS,
    NOTIFICATIONS,
    Process,
    child_env,
    event_rows,
    nicepay_client,
    payment,
    push_form,
    register,
    running,
    sim_post,
    start_service,
    table_rows,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_FOUND = Path(CHROMIUM).exists()
SECRET = "whsec_" + base64.b64encode(b"console-browser-test-secret-0001").decode()
OPERATOR, PASSWORD = "siti", "a long enough passphrase"


def add_operator_with_the_cli(database_url: str) -> None:
    """`python -m app operators add siti`, the password on standard input."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "operators", "add", OPERATOR],
        input=PASSWORD + "\n",
        cwd=ARTIFACTS,
        env=child_env(database_url=database_url, app_env="test"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr


@pytest.fixture
async def service(process_db: str, simulator: Process) -> AsyncIterator[Process]:
    await asyncio.to_thread(add_operator_with_the_cli, process_db)
    process = await start_service(
        process_db,
        simulator,
        # Nobody listens there: every delivery fails and, with one attempt, gives up.
        merchant_webhook_url="http://127.0.0.1:9/webhooks",
        merchant_webhook_secret=SECRET,
        webhook_max_attempts=1,
    )
    async with running(process):
        yield process


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_FOUND:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Shots:
    def __init__(self, page: Page, database_url: str) -> None:
        self.page = page
        wanted = os.environ.get("CONSOLE_SCREENSHOTS")
        # One set is enough: the SQLite run's.
        self.directory = Path(wanted) if wanted and "sqlite" in database_url else None

    async def take(self, name: str) -> None:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(self.directory / f"{name}.png"), full_page=True)


async def quarantined_deposit(service: Process) -> dict[str, Any]:
    """A deposit pushed while NICEPAY still says unpaid: its inquiry disagrees (quarantined)."""
    created = await register(service)
    async with nicepay_client() as nicepay:
        answer = await nicepay.post(service.url + NOTIFICATIONS, data=push_form(created))
    assert answer.text == "OK"
    return created


async def given_up_webhooks(database_url: str) -> None:
    """Until the dispatcher has tried (and, with one attempt, given up on) the first events."""
    for _ in range(600):
        rows = await table_rows(database_url, WebhookEvent.__table__)
        if any(row["status"] == "given_up" for row in rows):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no delivery gave up")


async def test_a_support_agent_walks_through_the_console(
    service: Process, simulator: Process, browser: Browser, process_db: str
) -> None:
    paid = await register(service, amount=15000, store="indomaret")
    await sim_post(simulator, f"/sim/transactions/{paid['txid']}/pay")
    to_cancel = await register(service)
    lost_push = await register(
        service, customer={"name": "Rina", "phone": "081377778888", "email": "rina@example.co.id"}
    )
    await sim_post(simulator, f"/sim/transactions/{lost_push['txid']}/settle")
    to_replay = await quarantined_deposit(service)
    to_review = await quarantined_deposit(service)

    context = await browser.new_context(
        base_url=service.url, viewport={"width": 1360, "height": 900}
    )
    # Nothing from outside the service: any other host fails the test.
    outside: list[str] = []
    context.on(
        "request",
        lambda request: (
            None if request.url.startswith(service.url) else outside.append(request.url)
        ),
    )
    page = await context.new_page()
    shots = Shots(page, process_db)

    # No session: every page leads to the sign-in form.
    await page.goto("/console/payments")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await shots.take("login")

    # A wrong password, then the right one.
    await page.fill("input[name=username]", OPERATOR)
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator(".flash.bad")).to_contain_text("wrong name or password")
    await page.fill("input[name=username]", OPERATOR)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Payments")  # back where it was going
    await expect(page.locator(".who")).to_have_text(OPERATOR)

    # The overview: today's figures, the chart, NICEPAY calls, the backlog.
    await page.click("nav >> text=Overview")
    await expect(page.locator("h1")).to_have_text("Overview")
    await expect(page.locator("svg.chart rect")).to_have_count(24)
    await expect(page.locator("body")).to_contain_text("Rp 15.000")
    await expect(page.locator("body")).to_contain_text("onePass")
    await shots.take("overview")

    # Search by the customer's phone, then by payNo; open the payment.
    await page.fill("input[name=q]", "081377778888")
    await page.press("input[name=q]", "Enter")
    await expect(page.locator("table.list")).to_contain_text(lost_push["reference_no"])
    await expect(page.locator("table.list")).not_to_contain_text(paid["reference_no"])
    await page.fill("input[name=q]", paid["pay_no"])
    await page.press("input[name=q]", "Enter")
    await shots.take("search")
    await page.click(f"text={paid['reference_no']}")

    # The payment page: resource, events, the ledger with each check's verdict, deliveries.
    await expect(page.locator("h1")).to_contain_text(paid["reference_no"])
    await expect(page.locator("h1 .status")).to_have_text("paid")
    ledger = page.locator("table.ledger")
    await expect(ledger.locator("[data-check=ip]")).to_have_text("ip: pass")
    await expect(ledger.locator("[data-check=token]")).to_have_text("token: pass")
    await expect(ledger.locator(".outcome")).to_have_text("applied")
    await given_up_webhooks(process_db)
    await page.reload()
    await shots.take("payment")

    # Re-send one of its events.
    await page.locator("form[action$='/resend'] button").first.click()
    await expect(page.locator(".flash.ok")).to_contain_text("queued for delivery again")

    # Cancel a pending code.
    await page.goto(f"/console/payments/{to_cancel['reference_no']}")
    await page.click("text=Cancel the code")
    await expect(page.locator(".flash.ok")).to_have_text("cancelled at NICEPAY")
    await expect(page.locator("h1 .status")).to_have_text("cancelled")
    assert (await payment(service, to_cancel["reference_no"]))["status"] == "cancelled"

    # Ask NICEPAY now: the push that never came is healed.
    await page.goto(f"/console/payments/{lost_push['reference_no']}")
    await page.click("text=Ask NICEPAY now")
    await expect(page.locator(".flash.ok")).to_contain_text("NICEPAY says paid")
    await expect(page.locator("h1 .status")).to_have_text("paid")
    assert (await payment(service, lost_push["reference_no"]))["status"] == "paid"
    await shots.take("payment-after-action")

    # The quarantine queue: replay one (NICEPAY says paid by now), review the other.
    await sim_post(simulator, f"/sim/transactions/{to_replay['txid']}/settle")
    await page.click("nav >> text=Quarantine")
    rows = page.locator("table.quarantine tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("inquiry")
    await shots.take("quarantine")
    replay_row = rows.filter(has_text=to_replay["reference_no"])
    await replay_row.locator("text=Replay").click()
    await expect(page.locator(".flash.ok")).to_contain_text("applied")
    assert (await payment(service, to_replay["reference_no"]))["status"] == "paid"
    review_row = page.locator("table.quarantine tbody tr").filter(
        has_text=to_review["reference_no"]
    )
    await review_row.locator("input[name=note]").fill("no money at the till: ignored")
    await review_row.locator("text=Mark reviewed").click()
    await expect(page.locator(".flash.ok")).to_contain_text("marked reviewed")
    await expect(page.locator("table.quarantine")).to_have_count(0)
    await page.click("text=Show reviewed")
    await expect(page.locator("table.quarantine")).to_contain_text("no money at the till: ignored")
    assert (await payment(service, to_review["reference_no"]))["status"] == "pending"

    # Failed webhook deliveries, and a re-send from there.
    await page.click("nav >> text=Webhooks")
    await expect(page.locator("table.list tbody tr").first).to_be_visible()
    await shots.take("webhooks")
    await page.locator("table.list tbody tr button").first.click()
    await expect(page.locator(".flash.ok")).to_contain_text("queued for delivery again")

    # A form whose CSRF token was tampered with is refused.
    await page.goto(f"/console/payments/{paid['reference_no']}")
    await page.eval_on_selector_all(
        "input[name=csrf_token]", "inputs => inputs.forEach(i => i.value = 'forged')"
    )
    await page.click("text=Ask NICEPAY now")
    await expect(page.locator("h1")).to_have_text("Refused")
    assert await page.evaluate("document.readyState") == "complete"

    # Sign out: the pages are closed again.
    await page.goto("/console/")
    await page.click("text=Sign out")
    await expect(page.locator("h1")).to_have_text("Sign in")
    await page.goto(f"/console/payments/{paid['reference_no']}")
    await expect(page.locator("h1")).to_have_text("Sign in")
    await context.close()
    assert outside == []

    # Every action is on the payment's history with source operator and the operator's name.
    events = await event_rows(process_db)
    actions = sorted(e["detail"]["action"] for e in events if e["type"] == "operator")
    assert actions == ["cancel", "refresh", "replay", "resend", "resend", "review"]
    assert {e["actor"] for e in events if e["source"] == "operator"} == {OPERATOR}
    async with httpx.AsyncClient(base_url=service.url) as client:
        assert PASSWORD not in (await client.get("/metrics")).text
    assert PASSWORD not in service.log()
