"""`python -m app doctor`: a checklist an operator can trust at 3 a.m., which never prints
a secret (merchant keys, storefront keys, webhook secret), whatever goes wrong."""

from typing import Any

import pytest

from tests.cli.runner import Run, run_cli
from tests.procs import free_port, running, start_simulator

pytestmark = pytest.mark.slow

MERCHANT_KEY = "Doctor+Merchant/Key-6a1f0c9e2b7d4e8f=="
PREVIOUS_KEY = "Doctor-Previous-Key-0b8d3e55aa10"
STOREFRONT_KEYS = ["doctor-storefront-one-91c2", "doctor-storefront-two-4e7b"]
WEBHOOK_SECRET = "whsec_ZG9jdG9yLXdlYmhvb2stc2VjcmV0LXZhbHVl"
SECRETS = [MERCHANT_KEY, PREVIOUS_KEY, *STOREFRONT_KEYS, WEBHOOK_SECRET]


def settings(database_url: str, nicepay_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "app_env": "test",
        "database_url": database_url,
        "nicepay_base_url": nicepay_url,
        "nicepay_merchant_key": MERCHANT_KEY,
        "nicepay_previous_merchant_key": PREVIOUS_KEY,
        "storefront_api_keys": " ".join(STOREFRONT_KEYS),
        "merchant_webhook_url": "http://storefront.test/hooks",
        "merchant_webhook_secret": WEBHOOK_SECRET,
        "public_base_url": f"http://127.0.0.1:{free_port()}",  # no service running there
        **overrides,
    }


def checklist(run: Run) -> dict[str, str]:
    """{check name: status} from the printed lines; also: nothing secret anywhere."""
    for secret in SECRETS:
        assert secret not in run.output
    lines = run.stdout.splitlines()
    assert lines[-1].endswith("failed")
    checks = {}
    for line in lines[:-1]:
        status, rest = line.split(maxsplit=1)
        assert status in ("ok", "warn", "fail"), line
        checks[rest.split(":", 1)[0]] = status
    return checks


async def test_doctor_all_good_and_no_secret(process_db: str) -> None:
    simulator = await start_simulator(merchant_key=MERCHANT_KEY)
    async with running(simulator):
        run = await run_cli("doctor", **settings(process_db, simulator.url))
    assert run.returncode == 0, run.output
    checks = checklist(run)
    assert checks["database"] == checks["NICEPAY"] == checks["merchant key"] == "ok"
    assert checks["storefront keys"] == checks["webhooks"] == "ok"
    assert checks["clock"] == "ok"  # the simulator's Date header agrees with this host
    assert checks["client IP"] == "warn"  # no service to ask
    assert "WIB" in run.stdout
    # The shipped buyer address is still in use: said, not failed, outside production.
    assert checks["billing defaults"] == "ok"
    assert "BILLING_DEFAULT_CITY, BILLING_DEFAULT_STATE" in run.stdout


async def test_doctor_fails_on_a_merchant_key_nicepay_refuses(process_db: str) -> None:
    simulator = await start_simulator()  # holds the sandbox key, not ours
    async with running(simulator):
        run = await run_cli("doctor", **settings(process_db, simulator.url))
    assert run.returncode == 1
    assert checklist(run)["NICEPAY"] == "fail"
    assert "resultCd 9010" in run.stdout


async def test_doctor_fails_when_the_database_and_nicepay_are_unreachable() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    database = f"postgresql+asyncpg://svc:Doctor-Db-Passw0rd@127.0.0.1:{free_port()}/cvs"
    run = await run_cli("doctor", **settings(database, nowhere))
    assert run.returncode == 1
    checks = checklist(run)
    assert checks["database"] == checks["NICEPAY"] == "fail"
    assert "Doctor-Db-Passw0rd" not in run.output
    assert "svc:***@127.0.0.1" in run.stdout


async def test_doctor_names_bad_settings_without_echoing_them() -> None:
    run = await run_cli(
        "doctor",
        **settings(
            "sqlite+aiosqlite:///unused.db", "https://dev.nicepay.co.id", app_env="production"
        ),
    )
    assert run.returncode == 2
    assert "NICEPAY_BASE_URL points at NICEPAY's development host" in run.stderr
    for secret in SECRETS:
        assert secret not in run.output
