"""The operator's command line: python -m app <command> (or the nicepay-cvs script)."""

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.config import Settings
from app.console.cli import add_operators_command

if TYPE_CHECKING:
    import httpx

    from app.runtime import Runtime


def load_settings() -> Settings:
    """Settings, or a clear exit that names the problem without echoing any value."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            print(f"configuration error: {where}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic import command

    from app.health import alembic_config

    settings = load_settings()
    config = alembic_config()
    config.attributes["database_url"] = settings.database_url
    if args.revision.startswith("-") or args.downgrade:
        command.downgrade(config, args.revision)
    else:
        command.upgrade(config, args.revision)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    load_settings()  # fail fast, readably, before uvicorn starts
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        # The service resolves client IPs itself (TRUSTED_PROXIES); uvicorn must not
        # rewrite the peer from X-Forwarded-For, and its access log would show query strings.
        proxy_headers=False,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from app.errors import AppError
    from app.runtime import open_runtime
    from app.webhooks import dispatcher
    from app.webhooks.router import WebhookEventDetail, WebhookEventRead

    settings = load_settings()

    async def run() -> None:
        async with open_runtime(settings) as runtime:
            if args.action == "list":
                views = await dispatcher.list_events(
                    runtime, status=args.status, reference_no=args.reference_no, limit=args.limit
                )
                columns = ("event_id", "type", "reference_no", "status", "attempts", "created_at")
                print("\t".join((*columns, "last_error")))
                for view in views:
                    row = WebhookEventRead.of(view).model_dump(mode="json")
                    cells = [str(row[c]) for c in columns] + [row["last_error"] or ""]
                    print("\t".join(cells))
            elif args.action == "show":
                view = await dispatcher.get_event(runtime, args.event_id)
                print(WebhookEventDetail.of(view).model_dump_json(indent=2))
            else:
                await dispatcher.resend(runtime, args.event_id)
                print(f"{args.event_id} queued; the service's dispatcher sends it again")

    try:
        run_async(run())
    except AppError as exc:
        print(f"webhooks {args.action}: {exc.detail}", file=sys.stderr)
        return 1
    return 0


# --- reconcile, simulate, replay, doctor ---------------------------------------------------


def cmd_reconcile(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.logs import configure_logging
    from app.reconcile import sweep
    from app.runtime import open_runtime

    settings = load_settings()
    configure_logging(settings)

    async def run() -> dict[str, int]:
        async with open_runtime(settings) as runtime:
            return (await sweep(runtime)).as_dict()

    try:
        report = run_async(run())
    except (SQLAlchemyError, OSError) as exc:
        print(f"reconcile: the database is unavailable ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 1 if report["failed"] else 0


SIM_ACTIONS = {
    "pay": "customer pays at the till; NICEPAY pushes the deposit (status 0)",
    "duplicate": "like pay, but NICEPAY sends the deposit twice at once (--copies, at least 2)",
    "reverse": "the deposit is reversed; NICEPAY pushes status 1",
    "settle": "customer pays but the push is lost (only the reconciler can find out)",
    "expire": "NICEPAY marks the code expired (inquiry status 4); nothing is pushed",
}


def cmd_simulate(args: argparse.Namespace) -> int:
    import httpx

    settings = load_settings()
    base = (args.simulator_url or settings.nicepay_base_url).rstrip("/")
    txid = run_async(_find_txid(settings.database_url, args.payment))
    try:
        with httpx.Client(base_url=base, timeout=30) as sim:
            if txid is None:  # not in this database: the simulator may still know the reference
                found = sim.get("/sim/transactions", params={"reference_no": args.payment})
                txids = [tx["tXid"] for tx in found.json()] if found.is_success else []
                txid = txids[0] if len(txids) == 1 else args.payment
            action, copies = args.action, args.copies
            if action == "duplicate":
                action, copies = "pay", max(2, copies)
            params = {"copies": copies} if action in ("pay", "reverse") else {}
            response = sim.post(f"/sim/transactions/{txid}/{action}", params=params)
    except httpx.HTTPError as exc:
        print(f"simulate: the simulator at {base} did not answer ({exc!r})", file=sys.stderr)
        return 1
    if response.status_code == 404:
        print(f"simulate: no payment or tXid {args.payment!r} known", file=sys.stderr)
        return 1
    if not response.is_success:
        print(f"simulate: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
        return 1
    answer = response.json()
    print(json.dumps(answer, indent=2))
    pushes = answer.get("pushes", []) if isinstance(answer, dict) else []
    return 0 if all(p["status_code"] == 200 for p in pushes) else 1


async def _find_txid(database_url: str, payment: str) -> str | None:
    """The tXid of a payment named by reference_no or tXid in the service database."""
    from sqlalchemy import or_, select
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import create_engine
    from app.models import Payment

    if await asyncio.to_thread(_sqlite_file_missing, database_url):
        return None
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            txid: str | None = await connection.scalar(
                select(Payment.txid).where(
                    or_(Payment.reference_no == payment, Payment.txid == payment)
                )
            )
            return txid
    except (SQLAlchemyError, OSError):
        return None
    finally:
        await engine.dispose()


def _sqlite_file_missing(database_url: str) -> bool:
    """A SQLite URL whose file does not exist (connecting would create it, empty)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    file = url.database if url.get_backend_name() == "sqlite" else None
    return bool(file) and file != ":memory:" and not Path(str(file)).exists()


def cmd_replay(args: argparse.Namespace) -> int:
    from app.errors import AppError
    from app.logs import configure_logging
    from app.notifications.replay import replay
    from app.runtime import open_runtime

    settings = load_settings()
    configure_logging(settings)

    async def run() -> tuple[int, dict[str, Any] | None]:
        async with open_runtime(settings) as runtime:
            reply, verdict = await replay(runtime, args.notification_id)
            return reply.http_status, verdict

    try:
        http_status, verdict = run_async(run())
    except AppError as exc:
        print(f"replay: {exc.detail}", file=sys.stderr)
        return 1
    if verdict is None:
        print(f"replay: not recorded (HTTP {http_status}): the database refused", file=sys.stderr)
        return 1
    print(json.dumps(verdict, indent=2))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from app.logs import secrets_of

    settings = load_settings()
    checks = [*_settings_checks(settings), *run_async(_live_checks(settings, args))]
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
    from app.config import SANDBOX_MERCHANT_KEY

    dev = settings.app_env != "production"
    key = settings.nicepay_merchant_key.get_secret_value()
    checks: list[Check] = [("ok", "settings", f"APP_ENV={settings.app_env}, loaded")]
    if key == SANDBOX_MERCHANT_KEY:
        checks.append(("warn", "merchant key", "NICEPAY's public sandbox key (development only)"))
    else:
        checks.append(("ok", "merchant key", f"set for iMid {settings.nicepay_imid}"))
    if settings.storefront_api_keys:
        count = len(settings.storefront_api_keys)
        checks.append(("ok", "storefront keys", f"{count} set"))
    else:
        checks.append(("warn", "storefront keys", "none: the storefront API refuses every call"))
    secret = settings.merchant_webhook_secret.get_secret_value()
    if not settings.merchant_webhook_url:
        checks.append(("ok", "webhooks", "off (MERCHANT_WEBHOOK_URL empty)"))
    elif not secret or not all(s.startswith("whsec_") for s in secret.split()):
        checks.append(("fail", "webhooks", "MERCHANT_WEBHOOK_SECRET missing or not whsec_..."))
    else:
        checks.append(("ok", "webhooks", f"to {settings.merchant_webhook_url}, secret set"))
    if any(network.prefixlen == 0 for network in settings.trusted_proxies):
        checks.append(("fail", "trusted proxies", "a /0 is trusted: any client picks its own IP"))
    else:
        proxies = (
            ", ".join(map(str, settings.trusted_proxies)) or "none (the TCP peer is the client)"
        )
        checks.append(("ok", "trusted proxies", proxies))
    allowed = ", ".join(map(str, settings.nicepay_allowed_ips))
    local = [n for n in settings.nicepay_allowed_ips if n.is_private or n.is_loopback]
    checks.append(("warn" if local and not dev else "ok", "NICEPAY allowed IPs", allowed))
    if _is_local(settings.public_base_url) and not _is_local(settings.nicepay_base_url):
        why = ": NICEPAY cannot push to a local address (set PUBLIC_BASE_URL)"
        checks.append(("warn", "dbProcessUrl", settings.db_process_url + why))
    else:
        checks.append(("ok", "dbProcessUrl", settings.db_process_url))
    if settings.reconcile_interval_seconds:
        checks.append(("ok", "reconciler", f"every {settings.reconcile_interval_seconds:g} s"))
    else:
        checks.append(("warn", "reconciler", "off: run `python -m app reconcile` from cron"))
    if not settings.nicepay_verify_with_inquiry:
        checks.append(("warn", "inquiry check", "off: deposits are applied without asking NICEPAY"))
    return checks


def _is_local(url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


async def _live_checks(settings: Settings, args: argparse.Namespace) -> list[Check]:
    """The database, NICEPAY, the clock and the service's view of this host, live."""
    import httpx

    from app.runtime import open_runtime

    async with open_runtime(settings) as runtime, httpx.AsyncClient(timeout=10) as http:
        return [
            await _database_check(runtime),
            *await _nicepay_checks(runtime, http),
            await _client_ip_check(http, args.service_url or settings.public_base_url),
        ]


async def _database_check(runtime: "Runtime") -> Check:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.health import current_revision, head_revision

    where = make_url(runtime.settings.database_url).render_as_string(hide_password=True)
    if await asyncio.to_thread(_sqlite_file_missing, runtime.settings.database_url):
        return "fail", "database", f"{where}: no such file: run `python -m app migrate`"
    try:
        async with asyncio.timeout(10):
            current = await current_revision(runtime.engine)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return "fail", "database", f"{where} unreachable ({type(exc).__name__})"
    head = head_revision()
    if current != head:
        state = f"at {current}" if current else "not migrated"
        return "fail", "database", f"{where}: {state}, head is {head}: run `python -m app migrate`"
    return "ok", "database", f"{where}, migrations at head ({head})"


async def _nicepay_checks(runtime: "Runtime", http: "httpx.AsyncClient") -> list[Check]:
    """One status inquiry for a transaction that does not exist: reachable, iMid and key sane."""
    import time
    from email.utils import parsedate_to_datetime

    from app.nicepay.client import NicepayError, NicepayUnavailable
    from app.nicepay.wib import WIB, now_utc

    base = runtime.settings.nicepay_base_url
    started = time.perf_counter()
    try:
        await runtime.nicepay.inquire("DOCTOR0000000000000000000000", "doctor-check", 1)
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
    status = "ok"
    try:
        # NICEPAY's own clock, from its Date header, is what payValidDt is judged against.
        answer = await http.get(base)
        theirs = parsedate_to_datetime(answer.headers["date"])
        skew = (now - theirs).total_seconds()
        status = "ok" if abs(skew) < 30 else "warn" if abs(skew) < 300 else "fail"
        clock += f"; {skew:+.0f} s against NICEPAY"
    except Exception as exc:  # any failure here only means no comparison is possible
        status, clock = "warn", clock + f"; NICEPAY's clock unknown ({type(exc).__name__})"
    return [nicepay, (status, "clock", clock)]


async def _client_ip_check(http: "httpx.AsyncClient", service_url: str) -> Check:
    """Ask the running service which IP it resolves for this host (GET /whoami)."""
    import httpx

    url = service_url.rstrip("/") + "/whoami"
    try:
        answer = (await http.get(url)).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        return (
            "warn",
            "client IP",
            f"{url} not reachable ({type(exc).__name__}); start the service or pass --service-url",
        )
    proxy = "through a trusted proxy" if answer["peer_is_trusted_proxy"] else "direct"
    verdict = "allowed" if answer["nicepay_allowed"] else "refused"
    return (
        "ok",
        "client IP",
        f"the service sees this host as {answer['client_ip']} (peer {answer['peer_ip']}, "
        f"{proxy}); a push from here would be {verdict} by NICEPAY_ALLOWED_IPS",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="NICEPAY CVS payments service: operator commands."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("migrate", cmd_migrate, "Upgrade the database schema to head (or to a revision).")
    p.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    p.add_argument("--downgrade", action="store_true", help="downgrade to the revision instead")

    p = add("serve", cmd_serve, "Run the HTTP service under uvicorn (uvloop, httptools).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)

    p = add("webhooks", cmd_webhooks, "Outbound payment events: list, show, re-send.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="events, newest first")
    q.add_argument("--status", choices=["pending", "delivered", "given_up"])
    q.add_argument("--reference-no", help="only this payment's events")
    q.add_argument("--limit", type=int, default=50)
    q = actions.add_parser("show", help="one event: payload and delivery log (JSON)")
    q.add_argument("event_id")
    q = actions.add_parser("resend", help="queue an event again: same webhook-id and body")
    q.add_argument("event_id")

    p = add("reconcile", cmd_reconcile, "One reconcile sweep against NICEPAY's status inquiry.")
    p.epilog = (
        "Prints the sweep's report as JSON (checked, healed, expired, cancelled, confirmed, "
        "quarantined, abandoned, left, failed). Exit status 1 when an inquiry failed. "
        "Safe beside running services and other sweeps: for cron."
    )

    p = add("simulate", cmd_simulate, "Drive the NICEPAY simulator for one payment.")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "actions:\n" + "\n".join(f"  {k:<8} {v}" for k, v in SIM_ACTIONS.items())
    p.add_argument("action", choices=list(SIM_ACTIONS), help="what happens at NICEPAY")
    p.add_argument("payment", help="the payment's reference_no or tXid")
    p.add_argument(
        "--copies", type=int, default=1, help="pushes sent at once (pay, duplicate, reverse)"
    )
    p.add_argument("--simulator-url", help="the simulator (default NICEPAY_BASE_URL)")

    p = add("replay", cmd_replay, "Re-run a recorded notification through today's checks.")
    p.add_argument("notification_id", type=int, help="the ledger row's id")
    p.epilog = "Records a new ledger row (replay_of = the original) and prints its verdict as JSON."

    add_operators_command(sub, load_settings)

    p = add("doctor", cmd_doctor, "Check settings, database, NICEPAY, the clock and the client IP.")
    p.add_argument(
        "--service-url",
        help="the running service, to ask which IP it sees (default PUBLIC_BASE_URL)",
    )
    p.epilog = "Prints one line per check (ok, warn, fail); exit status 1 on any fail. No secret is printed."
    return parser


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    raise SystemExit(args.func(args))
