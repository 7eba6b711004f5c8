"""python -m app doctor: settings, database, NICEPAY, the clock and the client IP, checked."""

import argparse
import asyncio
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.cli.common import load_settings, sqlite_file_missing
from app.config import SANDBOX_MERCHANT_KEY, SHIPPED_BILLING, Settings, env_file_in_use
from app.logs import redact_url, secrets_of

if TYPE_CHECKING:
    import httpx

    from app.main import Services


def cmd_doctor(args: argparse.Namespace) -> int:

    settings = load_settings()
    checks = [*_settings_checks(settings), *asyncio.run(_live_checks(settings, args))]
    secrets = secrets_of(settings)
    for status, name, detail in checks:
        line = f"{status:<4} {name}: {detail}"
        for secret in secrets:  # belt and braces: no check prints one, but never let one out
            line = line.replace(secret, "***")
        print(line)
    failed = sum(status == "fail" for status, _, _ in checks)
    print(f"{len(checks)} checks, {failed} failed")
    return 1 if failed else 0


Check = tuple[str, str, str]  # (ok | warn | fail, what, detail)


def _settings_checks(settings: Settings) -> list[Check]:
    """What the settings say, without any secret value (only whether each is set)."""

    dev = settings.app_env != "production"
    env_file = env_file_in_use()
    source = f"the environment and {env_file}" if env_file else "the environment (no .env here)"
    checks: list[Check] = [("ok", "settings", f"APP_ENV={settings.app_env}, from {source}")]
    if settings.nicepay_merchant_key.get_secret_value() == SANDBOX_MERCHANT_KEY:
        checks.append(("warn", "merchant key", "NICEPAY's public sandbox key (development only)"))
    else:
        checks.append(("ok", "merchant key", f"set for iMid {settings.nicepay_imid}"))
    if settings.storefront_api_keys:
        checks.append(("ok", "storefront keys", f"{len(settings.storefront_api_keys)} set"))
    else:
        checks.append(("warn", "storefront keys", "none: the storefront API refuses every call"))
    secret = settings.merchant_webhook_secret.get_secret_value()
    if not settings.merchant_webhook_url:
        checks.append(("ok", "webhooks", "off (MERCHANT_WEBHOOK_URL empty)"))
    elif not secret or not all(s.startswith("whsec_") for s in secret.split()):
        checks.append(("fail", "webhooks", "MERCHANT_WEBHOOK_SECRET missing or not whsec_..."))
    else:
        where = redact_url(settings.merchant_webhook_url)
        checks.append(("ok", "webhooks", f"to {where}, secret set"))
    if any(network.prefixlen == 0 for network in settings.trusted_proxies):
        checks.append(("fail", "trusted proxies", "a /0 is trusted: any client picks its own IP"))
    else:
        proxies = ", ".join(map(str, settings.trusted_proxies))
        checks.append(("ok", "trusted proxies", proxies or "none (the TCP peer is the client)"))
    allowed = ", ".join(map(str, settings.nicepay_allowed_ips))
    local = [n for n in settings.nicepay_allowed_ips if n.is_private or n.is_loopback]
    checks.append(("warn" if local and not dev else "ok", "NICEPAY allowed IPs", allowed))
    if _is_local(settings.public_base_url) and not _is_local(settings.nicepay_base_url):
        why = ": NICEPAY cannot push to a local address (set PUBLIC_BASE_URL)"
        checks.append(("warn", "dbProcessUrl", redact_url(settings.db_process_url) + why))
    else:
        checks.append(("ok", "dbProcessUrl", redact_url(settings.db_process_url)))
    if settings.reconcile_interval_seconds:
        checks.append(("ok", "reconciler", f"every {settings.reconcile_interval_seconds:g} s"))
    else:
        checks.append(("warn", "reconciler", "off: run `python -m app reconcile` from cron"))
    if not settings.nicepay_verify_with_inquiry:
        checks.append(("warn", "inquiry check", "off: deposits are applied without asking NICEPAY"))
    checks.append(_billing_check(settings))
    return checks


def _billing_check(settings: Settings) -> Check:
    """Whether BILLING_DEFAULT_* (sent when the storefront gives no address) are still the
    shipped ones: NICEPAY would then see a central Jakarta address for every such buyer."""

    defaults = settings.billing_defaults
    shown = ", ".join(defaults.values())
    shipped = [name for name, value in defaults.items() if value == SHIPPED_BILLING[name]]
    if not shipped:
        return "ok", "billing defaults", shown
    names = ", ".join(f"BILLING_DEFAULT_{name.upper()}" for name in shipped)
    detail = f"{shown}: {names} still the shipped value; set the merchant's own address"
    return ("ok" if settings.app_env != "production" else "warn"), "billing defaults", detail


def _is_local(url: str) -> bool:

    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


async def _live_checks(settings: Settings, args: argparse.Namespace) -> list[Check]:
    """The database, NICEPAY, the clock and the service's view of this host, live."""
    import httpx

    from app.main import open_services

    async with open_services(settings) as services, httpx.AsyncClient(timeout=10) as http:
        return [
            await _database_check(services),
            await _backlog_check(services),
            *await _nicepay_checks(services, http),
            await _client_ip_check(settings, http, args.service_url),
        ]


async def _database_check(services: "Services") -> Check:
    from app.errors import DATABASE_ERRORS
    from app.health import current_revision, head_revision

    where = redact_url(services.settings.database_url)
    if await asyncio.to_thread(sqlite_file_missing, services.settings.database_url):
        return "fail", "database", f"{where}: no such file: run `python -m app migrate`"
    try:
        async with asyncio.timeout(10):
            current = await current_revision(services.engine)
    except DATABASE_ERRORS as exc:
        return "fail", "database", f"{where} unreachable ({type(exc).__name__})"
    head = head_revision()
    if current != head:
        state = f"at {current}" if current else "not migrated"
        return "fail", "database", f"{where}: {state}, head is {head}: run `python -m app migrate`"
    return "ok", "database", f"{where}, migrations at head ({head})"


async def _backlog_check(services: "Services") -> Check:
    """Scheduled status checks due and not yet done, and the most overdue one's wait."""
    from app.errors import DATABASE_ERRORS

    settings = services.settings
    try:
        async with asyncio.timeout(10):
            backlog = await services.reconciler.backlog()
    except DATABASE_ERRORS as exc:
        return "warn", "reconcile backlog", f"not known ({type(exc).__name__})"
    cap = settings.reconcile_max_inquiries_per_second
    detail = (
        f"{backlog.due} checks due, the oldest {backlog.oldest_overdue_seconds:.0f} s overdue; "
        f"budget {settings.reconcile_budget} inquiries per unpaid code, cap "
        + (f"{cap}/s" if cap else "off")
    )
    # Late by more than a sweep (plus a minute of slack): the sweeper is behind or not running.
    late = backlog.oldest_overdue_seconds > settings.reconcile_interval_seconds + 60
    return ("warn" if late else "ok"), "reconcile backlog", detail


async def _nicepay_checks(services: "Services", http: "httpx.AsyncClient") -> list[Check]:
    """One status inquiry for a transaction that does not exist: reachable, iMid and key sane."""
    import time

    from app.nicepay.client import NicepayError, NicepayUnavailable
    from app.nicepay.wib import WIB, now_utc

    base = redact_url(services.settings.nicepay_base_url)
    started = time.perf_counter()
    try:
        await services.nicepay.inquire("DOCTOR0000000000000000000000", "doctor-check", 1)
        nicepay: Check = ("ok", "NICEPAY", f"{base} answered")
    except NicepayUnavailable as exc:
        nicepay = ("fail", "NICEPAY", f"{base} unreachable ({exc.reason})")
    except NicepayError as exc:
        refused = exc.result_cd in ("9010", "9011", "9525")  # iMid or merchantToken refused
        nicepay = (
            "fail" if refused else "ok",
            "NICEPAY",
            f"{base} answered resultCd {exc.result_cd} ({exc.result_msg}) in "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
            + (": check NICEPAY_IMID / NICEPAY_MERCHANT_KEY" if refused else ""),
        )

    now = now_utc()
    clock = f"now {now:%Y-%m-%d %H:%M:%S} UTC = {now.astimezone(WIB):%Y-%m-%d %H:%M:%S} WIB"
    try:
        # NICEPAY's own clock, from its Date header, is what payValidDt is judged against.
        answer = await http.get(services.settings.nicepay_base_url)
        theirs = parsedate_to_datetime(answer.headers["date"])
        skew = (now - theirs).total_seconds()
        status = "ok" if abs(skew) < 30 else "warn" if abs(skew) < 300 else "fail"
        clock += f"; {skew:+.0f} s against NICEPAY"
    except Exception as exc:  # any failure here only means no comparison is possible
        status, clock = "warn", clock + f"; NICEPAY's clock unknown ({type(exc).__name__})"
    return [nicepay, (status, "clock", clock)]


async def _client_ip_check(
    settings: Settings, http: "httpx.AsyncClient", service_url: str | None
) -> Check:
    """Ask the running service which IP it resolves for this host (GET /whoami; production
    answers it only with a storefront key)."""
    import httpx

    url = (service_url or settings.public_base_url).rstrip("/") + "/whoami"
    keys = settings.storefront_api_keys
    headers = {"Authorization": f"Bearer {keys[0].get_secret_value()}"} if keys else {}
    try:
        answer = (await http.get(url, headers=headers)).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        why = f"not reachable ({type(exc).__name__}); start the service or pass --service-url"
        return "warn", "client IP", f"{redact_url(url)} {why}"
    proxy = "through a trusted proxy" if answer["peer_is_trusted_proxy"] else "direct"
    verdict = "allowed" if answer["nicepay_allowed"] else "refused"
    detail = (
        f"the service sees this host as {answer['client_ip']} (peer {answer['peer_ip']}, "
        f"{proxy}); a push from here would be {verdict} by NICEPAY_ALLOWED_IPS"
    )
    return "ok", "client IP", detail
