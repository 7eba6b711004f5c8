"""`python -m bench.day [--codes 100000] [--sqlite]`: a simulated day of the reconciler.

The clock is moved, not waited for. `--codes` payment codes (24 h each) are registered over
one day, more by day than by night (bulk-inserted, with the simulator holding the same
codes); a share is paid at the till, mostly within hours, and some of those pushes are lost.
From the first registration until every code's budget is over, `Reconciler.sweep(now=)`
runs every RECONCILE_INTERVAL_SECONDS of simulated time against the real simulator app
in-process (ASGI transport). The rate cap runs on a simulated clock too: a second passes
when the cap makes a sweeper wait, so a sweep that the cap binds takes simulated time, and
the next sweep starts when it has ended (or at its tick, whichever is later).

Delivered pushes are applied as the notification path would (through the payments store,
source `notification`), and counted as the one status inquiry that path asks
(NICEPAY_VERIFY_WITH_INQUIRY); their HTTP round trip is not what this measures.

Reported: NICEPAY inquiries per code (mean, max, per kind of code), the peak inquiries in
one second against the cap, the time to record each expiry, the time to heal each lost
push, and the largest backlog.
"""

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
from sqlalchemy import insert, select

from app import metrics, reconcile
from app.config import Settings
from app.main import open_services
from app.models import EventSource, Payment, PaymentEvent, PaymentStatus
from app.nicepay.wib import to_wib_fields
from app.ratelimit import InquiryCap
from bench.procs import migrate, postgres_database, sqlite_database
from simulator.app import Lifecycle, SimTransaction, create_simulator

JSON_HEADERS = {"content-type": "application/json"}

START = datetime(2026, 11, 23, 0, tzinfo=UTC)  # midnight UTC = 07:00 WIB
LIFETIME = timedelta(hours=24)
PAID_SHARE = 0.45  # cash-at-the-till codes: most are never paid
LOST_SHARE = 0.05  # of the paid: pushes that never arrive
MEAN_TIME_TO_PAY = timedelta(hours=2)


@dataclass
class Code:
    reference_no: str
    txid: str
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None = None  # at the till
    push_lost: bool = False


@dataclass
class Day:
    codes: list[Code]
    pays: list[Code]  # paid codes, by time paid
    inquiries: Counter[str] = field(default_factory=Counter)  # per txid, from the simulator
    push_confirmations: int = 0
    backlog_max: int = 0
    oldest_overdue_max: float = 0.0
    longest_sweep: float = 0.0  # simulated seconds
    sweeps: int = 0


def plan(count: int, seed: int) -> Day:
    """When each code is registered (by day more than by night) and when it is paid."""
    rng = random.Random(seed)
    codes = []
    for i in range(count):
        # Registrations follow the shop's day: a smooth peak in the (WIB) afternoon.
        while True:
            offset = rng.uniform(0, 86400)
            if rng.random() < 0.25 + 0.75 * math.sin(math.pi * offset / 86400) ** 2:
                break
        created = START + timedelta(seconds=offset)
        code = Code(
            f"DAY-{i:07d}",
            f"IONPAYTEST03{i:018d}",
            created,
            created + LIFETIME,
        )
        if rng.random() < PAID_SHARE:
            wait = timedelta(seconds=rng.expovariate(1 / MEAN_TIME_TO_PAY.total_seconds()))
            if wait < LIFETIME:
                code.paid_at = created + wait
                code.push_lost = rng.random() < LOST_SHARE
        codes.append(code)
    pays = sorted((c for c in codes if c.paid_at), key=lambda c: c.paid_at or START)
    return Day(codes, pays)


def sim_transaction(code: Code) -> SimTransaction:
    req_dt, req_tm = to_wib_fields(code.created_at)
    return SimTransaction(
        txid=code.txid,
        reference_no=code.reference_no,
        amt="10000",
        mitra_cd="ALMA",
        pay_no=code.txid[-12:],
        goods_nm="Kopi",
        billing_nm="Budi",
        description="",
        callback_url="",
        db_process_url="",
        registered_at=code.created_at,
        req_dt=req_dt,
        req_tm=req_tm,
        valid_until=code.expires_at,
    )


def row(code: Code, settings: Settings) -> dict[str, Any]:
    return {
        "reference_no": code.reference_no,
        "request_hash": "0" * 64,
        "txid": code.txid,
        "store": "alfamart",
        "mitra_cd": "ALMA",
        "pay_no": code.txid[-12:],
        "amount": 10000,
        "currency": "IDR",
        "status": PaymentStatus.PENDING,
        "expires_at": code.expires_at,
        "paid_late": False,
        "sweep_inquiries": 0,
        "next_check_at": settings.check_schedule.first(code.created_at, code.expires_at),
        "created_at": code.created_at,
        "updated_at": code.created_at,
    }


class SimulatorWire(httpx.AsyncBaseTransport):
    """The simulator's NICEPAY endpoints without its web framework: the same state, the
    same answers, the same JSON on the wire (simulator/app.py `_nicepay_route`, no faults),
    for a fraction of the CPU: a day of 100,000 codes asks it hundreds of thousands of
    times on a shared machine."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]  # onePassStatus.do, ...
        self.sim.calls[endpoint] += 1
        body = (await request.aread()).decode("utf-8", "replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        answer = self.sim.answer(endpoint, form)
        text = json.dumps(answer, separators=(",", ":"))
        return httpx.Response(200, content=text.encode(), headers=JSON_HEADERS)


class SimSeconds:
    """The rate cap's clock: moves on when the cap makes a sweeper wait."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds  # a sleeper asks for the rest of the current second
        await asyncio.sleep(0)


async def simulate(url: str, day: Day, settings: Settings, wire: bool) -> dict[str, Any]:
    sim_app = create_simulator(merchant_key=settings.nicepay_merchant_key.get_secret_value())
    sim = sim_app.state.sim
    now = START
    sim.clock = lambda: now
    answer = sim.inquire

    def counting(form: dict[str, str]) -> dict[str, Any]:
        day.inquiries[form.get("tXid", "")] += 1
        result: dict[str, Any] = answer(form)
        return result

    sim.inquire = counting
    by_txid = {code.txid: code for code in day.codes}
    for code in day.codes:
        sim.transactions[code.txid] = sim_transaction(code)

    transport = SimulatorWire(sim) if wire else httpx.ASGITransport(app=sim_app)
    async with open_services(settings, nicepay_transport=transport) as s:
        started = time.perf_counter()
        for i in range(0, len(day.codes), 5000):
            async with s.engine.begin() as connection:
                await connection.execute(
                    insert(Payment), [row(c, settings) for c in day.codes[i : i + 5000]]
                )
        loaded = time.perf_counter() - started
        seconds = SimSeconds(START)
        s.reconciler.cap = InquiryCap(
            s.engine,
            settings.reconcile_max_inquiries_per_second,
            clock=seconds.clock,
            sleep=seconds.sleep,
        )
        interval = timedelta(seconds=settings.reconcile_interval_seconds)
        late = max(settings.check_schedule.late, default=timedelta(0))
        end = max(c.expires_at for c in day.codes) + settings.check_schedule.expiry_margin + late
        pays = iter(day.pays)
        upcoming = next(pays, None)
        started = time.perf_counter()
        tick = START
        while tick <= end + interval:
            now = tick
            # The till: what was paid since the last sweep, its push applied unless lost.
            while upcoming is not None and upcoming.paid_at is not None and upcoming.paid_at <= now:
                sim.transactions[upcoming.txid].lifecycle = Lifecycle.PAID
                sim.transactions[upcoming.txid].deposited_at = upcoming.paid_at
                if not upcoming.push_lost:
                    day.push_confirmations += 1
                    payment = await s.store.payment_by_txid(upcoming.txid)
                    if payment is not None and payment["status"] == PaymentStatus.PENDING:
                        await s.store.transition(
                            payment, PaymentStatus.PAID, EventSource.NOTIFICATION, upcoming.paid_at
                        )
                upcoming = next(pays, None)
            seconds.now = max(seconds.now, now.timestamp())
            await s.reconciler.sweep(now=now)  # it measures the backlog as it starts
            day.backlog_max = max(day.backlog_max, int(gauge(metrics.RECONCILE_BACKLOG)))
            overdue = gauge(metrics.RECONCILE_OLDEST_OVERDUE)
            day.oldest_overdue_max = max(day.oldest_overdue_max, overdue)
            day.sweeps += 1
            if day.sweeps % 24 == 0:
                print(
                    f"  {now - START} simulated, {sum(day.inquiries.values()):,} sweep "
                    f"inquiries, {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            took = seconds.now - now.timestamp()
            day.longest_sweep = max(day.longest_sweep, took)
            tick = max(tick + interval, datetime.fromtimestamp(math.ceil(seconds.now), UTC))
        swept = time.perf_counter() - started

        async with s.sessions() as session:
            events = (
                await session.execute(
                    select(Payment.txid, PaymentEvent.type, PaymentEvent.source, PaymentEvent.at)
                    .join(PaymentEvent, PaymentEvent.payment_id == Payment.id)
                    .where(PaymentEvent.source == EventSource.RECONCILE)
                )
            ).all()
            statuses = Counter((await session.execute(select(Payment.status))).scalars().all())
        per_second = seconds_taken(s.reconciler.cap)

    recorded = [(by_txid[str(t)], ty, at) for t, ty, _, at in events]
    to_expire = [(at - c.expires_at).total_seconds() for c, ty, at in recorded if ty == "expired"]
    to_heal = [
        (at - (c.paid_at or at)).total_seconds()
        for c, ty, at in recorded
        if ty == "paid" and c.push_lost
    ]
    lost = sum(1 for c in day.codes if c.push_lost)
    unpaid = [c for c in day.codes if c.paid_at is None]
    calls = {
        c.txid: day.inquiries[c.txid] + (1 if c.paid_at and not c.push_lost else 0)
        for c in day.codes
    }
    kinds = {
        "unpaid": [calls[c.txid] for c in unpaid],
        "paid, push delivered": [calls[c.txid] for c in day.codes if c.paid_at and not c.push_lost],
        "paid, push lost": [calls[c.txid] for c in day.codes if c.push_lost],
    }
    return {
        "codes": len(day.codes),
        "paid": len(day.pays),
        "lost": lost,
        "unpaid": len(unpaid),
        "statuses": dict(statuses),
        "calls": list(calls.values()),
        "kinds": kinds,
        "push_confirmations": day.push_confirmations,
        "sweep_inquiries": sum(day.inquiries.values()),
        "per_second": per_second,
        "to_expire": to_expire,
        "to_heal": to_heal,
        "backlog_max": day.backlog_max,
        "oldest_overdue_max": day.oldest_overdue_max,
        "longest_sweep": day.longest_sweep,
        "sweeps": day.sweeps,
        "loaded_seconds": loaded,
        "swept_seconds": swept,
    }


def gauge(metric: Any) -> float:
    value: float = metric._value.get()  # this process's own gauge
    return value


def seconds_taken(cap: InquiryCap) -> dict[int, int]:
    return dict(cap.taken)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def span(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def report(r: dict[str, Any], settings: Settings, database: str) -> str:
    calls: list[int] = r["calls"]
    per_second: dict[int, int] = r["per_second"]
    cap = settings.reconcile_max_inquiries_per_second
    busy = [v for v in per_second.values() if v]
    lines = [
        f"{r['codes']:,} codes of 24 h registered over one day on {database}; "
        f"{r['paid']:,} paid at the till ({r['lost']:,} of their pushes lost), "
        f"{r['unpaid']:,} never paid. Sweeps every {settings.reconcile_interval_seconds:g} s "
        f"of simulated time ({r['sweeps']:,} sweeps); schedule "
        f"`{','.join(settings.reconcile_schedule)}` + expiry check "
        f"(+{settings.reconcile_expiry_margin_seconds:g} s) + late "
        f"`{','.join(settings.reconcile_late_checks)}`, budget {settings.reconcile_budget}, "
        f"cap {cap}/s. End state: "
        + ", ".join(f"{n:,} {s}" for s, n in sorted(r["statuses"].items()))
        + ".",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| NICEPAY status inquiries per code, mean | {sum(calls) / len(calls):.2f} |",
        f"| NICEPAY status inquiries per code, max | {max(calls)} |",
    ]
    for kind, values in r["kinds"].items():
        if values:
            lines.append(
                f"| — {kind} ({len(values):,} codes): mean, max | "
                f"{sum(values) / len(values):.2f}, {max(values)} |"
            )
    lines += [
        f"| Inquiries in all: by sweeps, confirming pushes | "
        f"{r['sweep_inquiries']:,}, {r['push_confirmations']:,} |",
        f"| Peak sweep inquiries in one second (cap {cap}) | {max(busy, default=0)} |",
        f"| Seconds with sweep inquiries; mean inquiries in those seconds | "
        f"{len(busy):,}; {sum(busy) / max(len(busy), 1):.1f} |",
        f"| Longest sweep (simulated, cap-bound) | {span(r['longest_sweep'])} |",
        f"| Time to record each expiry (after `expires_at`): p50, p99, max | "
        f"{span(pct(r['to_expire'], 50))}, {span(pct(r['to_expire'], 99))}, "
        f"{span(max(r['to_expire'], default=float('nan')))} ({len(r['to_expire']):,} expiries) |",
        f"| Time to heal each lost push (after the deposit): p50, p99, max | "
        f"{span(pct(r['to_heal'], 50))}, {span(pct(r['to_heal'], 99))}, "
        f"{span(max(r['to_heal'], default=float('nan')))} ({len(r['to_heal']):,} of {r['lost']:,}) |",
        f"| Largest backlog at a sweep's start; oldest overdue check | "
        f"{r['backlog_max']:,}; {span(r['oldest_overdue_max'])} |",
        f"| Wall time: bulk load, the simulated days | {r['loaded_seconds']:.0f} s, "
        f"{r['swept_seconds']:.0f} s |",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    day = plan(args.codes, args.seed)
    # More checks in flight than a service's sweeper (4): the simulated day is about what
    # is asked and when, and this gets it done in less wall time; the cap still binds.
    reconcile.CONCURRENCY = args.concurrency
    overrides: dict[str, Any] = {"app_env": "test", "log_level": "WARNING", "log_format": "text"}
    if args.cap is not None:
        overrides["reconcile_max_inquiries_per_second"] = args.cap
    with tempfile.TemporaryDirectory() as tmp:
        if args.sqlite:
            with sqlite_database(Path(tmp)) as url:
                await asyncio.to_thread(migrate, url, Path(tmp))
                settings = Settings(_env_file=None, database_url=url, **overrides)
                return report(await simulate(url, day, settings, args.wire), settings, "SQLite")
        async with postgres_database() as url:
            await asyncio.to_thread(migrate, url, Path(tmp))
            settings = Settings(_env_file=None, database_url=url, **overrides)
            return report(await simulate(url, day, settings, args.wire), settings, "PostgreSQL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--cap", type=int, default=None, help="RECONCILE_MAX_INQUIRIES_PER_SECOND")
    parser.add_argument("--concurrency", type=int, default=16, help="checks in flight")
    parser.add_argument(
        "--wire",
        action="store_true",
        help="the simulator's answers without its ASGI app (SimulatorWire): less CPU",
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    print(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
