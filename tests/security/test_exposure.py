"""What the service shows of itself: secrets inside URLs (a webhook URL's user:password@ and
query, the database password) are masked in `doctor` and in every log line; `/whoami`, which
tells whether a forged X-Forwarded-For would pass the allowlist, answers in production only
to a holder of a storefront key. SQLite and PostgreSQL where a database is involved.
"""

import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.logs import configure_logging, redact_url
from app.main import create_app
from tests.cli.runner import run_cli
from tests.conftest import make_settings
from tests.procs import free_port

HOOK_PASSWORD = "Hook-Passw0rd-9f3c2a"
HOOK_TOKEN = "Hook-Query-Token-5d1e7b"
WEBHOOK_URL = f"https://hook-user:{HOOK_PASSWORD}@hooks.shop.test/in?token={HOOK_TOKEN}&v=2"
DB_PASSWORD = "Exposure-Db-Passw0rd-41"
PROD_KEY = "prod-storefront-key-0c7e2b9a4d1f6e83"
URL_SECRETS = [HOOK_PASSWORD, HOOK_TOKEN, DB_PASSWORD]


def test_redact_url_masks_the_password_and_every_query_value() -> None:
    assert redact_url(WEBHOOK_URL) == "https://hook-user:***@hooks.shop.test/in?token=***&v=***"
    assert (
        redact_url("sqlite+aiosqlite:///./nicepay_cvs.db") == "sqlite+aiosqlite:///./nicepay_cvs.db"
    )
    assert redact_url("http://[::1]:8000/x") == "http://[::1]:8000/x"
    assert redact_url("http://a:b@[bad") == "<unparseable URL>"


def test_a_url_secret_never_reaches_a_log_line() -> None:
    settings = make_settings(
        f"postgresql+asyncpg://svc:{DB_PASSWORD}@db.internal:5432/cvs",
        merchant_webhook_url=WEBHOOK_URL,
        merchant_webhook_secret="whsec_ZXhwb3N1cmUtd2ViaG9vay1zZWNyZXQ=",
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for log_format in ("text", "json"):
            configure_logging(settings.model_copy(update={"log_format": log_format}))
            buffer = io.StringIO()
            root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
            careless = logging.getLogger("app.careless")
            careless.error("delivery to %s failed", WEBHOOK_URL, extra={"url": WEBHOOK_URL})
            text = buffer.getvalue()
            assert "hooks.shop.test" in text
            for secret in URL_SECRETS:
                assert secret not in text, (log_format, text)
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])


@pytest.mark.slow
async def test_doctor_prints_no_secret_inside_a_url() -> None:
    run = await run_cli(
        "doctor",
        app_env="test",
        database_url=f"postgresql+asyncpg://svc:{DB_PASSWORD}@127.0.0.1:{free_port()}/cvs",
        nicepay_base_url=f"http://nicepay-user:{HOOK_PASSWORD}@127.0.0.1:{free_port()}/?k={HOOK_TOKEN}",
        merchant_webhook_url=WEBHOOK_URL,
        merchant_webhook_secret="whsec_ZXhwb3N1cmUtd2ViaG9vay1zZWNyZXQ=",
        public_base_url=f"http://127.0.0.1:{free_port()}/?debug={HOOK_TOKEN}",
    )
    for secret in URL_SECRETS:
        assert secret not in run.output
    assert "to https://hook-user:***@hooks.shop.test/in?token=***&v=***" in run.stdout
    assert "svc:***@127.0.0.1" in run.stdout


# --- /whoami ------------------------------------------------------------------------------


def production(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        app_env="production",
        database_url=database_url,
        nicepay_base_url="https://www.nicepay.co.id",
        nicepay_imid="MERCHANT01",
        nicepay_merchant_key="Exposure+Merchant/Key-3b8e1f0c2d7a9e64c5b1==",
        storefront_api_keys=[PROD_KEY],
        public_base_url="https://pay.shop.test",
        trusted_proxies=["10.0.0.0/8"],
        reconcile_interval_seconds=0,
        log_format="text",
    )


@pytest.fixture
async def production_app(clean_db: str) -> AsyncIterator[Any]:
    app = create_app(production(clean_db), run_background=False)
    async with app.router.lifespan_context(app):
        yield app
    configure_logging(make_settings(clean_db))  # back to the suite's own log set-up


def client(app: Any, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 4000))
    return httpx.AsyncClient(transport=transport, base_url="https://pay.shop.test")


@pytest.mark.parametrize("peer", ["198.51.100.7", "10.1.2.3"])
async def test_whoami_tells_nobody_without_a_key_in_production(
    production_app: Any, peer: str
) -> None:
    spoof = {"X-Forwarded-For": "103.20.51.10"}
    async with client(production_app, peer) as anyone:
        for headers in ({}, spoof, {**spoof, "Authorization": "Bearer wrong-key"}):
            response = await anyone.get("/whoami", headers=headers)
            assert response.status_code == 401, response.text
            assert "nicepay_allowed" not in response.text
            assert "103.20.51.10" not in response.text


async def test_whoami_answers_an_operator_with_a_key_in_production(production_app: Any) -> None:
    async with client(production_app, "10.1.2.3") as operator:
        response = await operator.get(
            "/whoami",
            headers={"X-Forwarded-For": "103.20.51.10", "Authorization": f"Bearer {PROD_KEY}"},
        )
    assert response.status_code == 200
    assert response.json()["client_ip"] == "103.20.51.10"
    assert response.json()["nicepay_allowed"] is True
