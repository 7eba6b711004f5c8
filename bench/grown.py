"""A database that has grown: payments and ledger rows loaded in bulk (not through the API),
the query plans of the hot statements on it, and pushes for the loaded payments.

PostgreSQL: one INSERT ... SELECT FROM generate_series per table (server-side, no rows cross
the wire). SQLite: executemany in transactions of `BATCH` rows. The first `pending` payments
are pending (a push for them is a first deposit: the memory run uses them); the rest are
paid, each with its `paid` event and ledger rows (the applied push, its duplicates).
"""

import asyncio
import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg  # type: ignore[import-untyped]

from bench import pushes
from bench.procs import plain_dsn

BATCH = 50_000
TXID_PREFIX = "IONPAYTEST03GROWN"  # + 13 digits = 30 characters (payments.txid)
REFERENCE_PREFIX = "GROWN-"


@dataclass
class Load:
    database: str
    payments: int
    ledger: int
    pending: int
    seconds: float
    plans: dict[str, str] = field(default_factory=dict)  # hot statement -> EXPLAIN text

    @property
    def unindexed(self) -> list[str]:
        return [name for name, plan in self.plans.items() if "Seq Scan" in plan or "SCAN " in plan]


def txid(i: int) -> str:
    return f"{TXID_PREFIX}{i:013d}"


def pay_no(i: int) -> str:
    return f"{i:012d}"


def amount(i: int) -> int:
    return 10_000 + i % 5_000


def registered(i: int, created_at: datetime, expires_at: datetime) -> pushes.Registered:
    return pushes.Registered(
        f"{REFERENCE_PREFIX}{i}", txid(i), amount(i), "ALMA", pay_no(i), expires_at, created_at
    )


def deposit_forms(first: int, count: int, created_at: datetime, expires_at: datetime) -> list[str]:
    """Valid first-deposit pushes for loaded pending payments first .. first + count - 1."""
    return [
        pushes.deposit_form(registered(i, created_at, expires_at))
        for i in range(first, first + count)
    ]


# The hot statements of a push and a registration, each with a value the loaded data holds.
def _hot_statements(placeholder: str) -> dict[str, str]:
    p = placeholder
    return {
        "payment by tXid (every push)": f"SELECT * FROM payments WHERE txid = {p}",
        "payment by referenceNo (registration, storefront)": (
            f"SELECT * FROM payments WHERE reference_no = {p}"
        ),
        "compare-and-set by id (every change)": (
            f"UPDATE payments SET updated_at = updated_at WHERE id = {p} AND status = 'paid'"
        ),
        "compare-and-set as read (a first deposit without a read)": (
            "UPDATE payments SET updated_at = updated_at "
            f"WHERE txid = {p} AND reference_no = 'x' AND amount = 1 AND status = 'pending'"
        ),
        "events of a payment (resource, replay)": (
            f"SELECT * FROM payment_events WHERE payment_id = {p}"
        ),
        "ledger rows of a tXid (operator, replay)": f"SELECT * FROM notifications WHERE txid = {p}",
        "ledger rows of a payment": f"SELECT * FROM notifications WHERE payment_id = {p}",
    }


def _values(pending: int) -> list[object]:
    i = pending + 7  # a paid payment in the loaded range
    return [txid(i), f"{REFERENCE_PREFIX}{i}", i, txid(i), i, txid(i), i]


async def load_postgres(url: str, payments: int, ledger: int, pending: int) -> Load:
    started = time.monotonic()
    db = await asyncpg.connect(plain_dsn(url))
    try:
        await db.execute(
            """
            INSERT INTO payments (reference_no, request_hash, txid, store, mitra_cd, pay_no,
                amount, currency, status, expires_at, paid_at, paid_late, created_at, updated_at)
            SELECT $1 || i, md5(i::text) || md5((-i)::text), $2 || lpad(i::text, 13, '0'),
                'alfamart', 'ALMA', lpad(i::text, 12, '0'), 10000 + i % 5000, 'IDR',
                CASE WHEN i <= $3 THEN 'pending' ELSE 'paid' END,
                now() + interval '1 day',
                CASE WHEN i <= $3 THEN NULL ELSE now() - interval '1 hour' END,
                false, now() - interval '2 hours', now() - interval '1 hour'
            FROM generate_series(1, $4::int) AS i
            """,
            REFERENCE_PREFIX,
            TXID_PREFIX,
            pending,
            payments,
        )
        # Ledger rows for paid payments, round-robin (the applied push and its copies).
        await db.execute(
            """
            INSERT INTO notifications (received_at, peer_ip, client_ip, user_agent, txid,
                reference_no, amt, status, fields, token_sha256, checks, outcome, reason,
                http_status, payment_id)
            SELECT now() - interval '1 hour', '127.0.0.1', '127.0.0.1', 'bench',
                $1 || lpad(p::text, 13, '0'), $2 || p, (10000 + p % 5000)::text, '0',
                $3::json, md5(n::text) || md5((-n)::text), $4::json,
                CASE WHEN n <= $6 THEN 'applied' ELSE 'duplicate' END, NULL, 200, p
            FROM (SELECT n, $5::int + (n - 1) % ($6::int) + 1 AS p
                  FROM generate_series(1, $7::int) AS n) AS s
            """,
            TXID_PREFIX,
            REFERENCE_PREFIX,
            json.dumps({"status": "0", "bench": "grown"}),
            json.dumps({"token": "ok"}),
            pending,
            max(1, payments - pending),
            ledger,
        )
        await db.execute(
            """
            INSERT INTO payment_events (payment_id, type, source, at)
            SELECT id, 'paid', 'notification', now() - interval '1 hour'
            FROM payments WHERE status = 'paid'
            """
        )
        # Hint bits and the visibility map set now, not by the first windows' reads.
        await db.execute("VACUUM ANALYZE")
        load = Load("PostgreSQL", payments, ledger, pending, time.monotonic() - started)
        values = _values(pending)
        for (name, sql), value in zip(_hot_statements("$1").items(), values, strict=True):
            transaction = db.transaction()  # EXPLAIN ANALYZE runs the UPDATE: rolled back
            await transaction.start()
            try:
                rows = await db.fetch(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", value)
            finally:
                await transaction.rollback()
            load.plans[name] = "\n".join(r[0] for r in rows)
        return load
    finally:
        await db.close()


def load_sqlite(url: str, payments: int, ledger: int, pending: int) -> Load:
    started = time.monotonic()
    path = url.split("///", 1)[1]
    now = datetime.now(UTC)

    def moment(at: datetime) -> str:
        return at.strftime("%Y-%m-%d %H:%M:%S.%f")

    with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        expires, created, paid = (
            moment(now + timedelta(days=1)),
            moment(now - timedelta(hours=2)),
            moment(now - timedelta(hours=1)),
        )
        for start in range(1, payments + 1, BATCH):
            rows = [
                (
                    f"{REFERENCE_PREFIX}{i}",
                    f"{i:064d}",
                    txid(i),
                    "alfamart",
                    "ALMA",
                    pay_no(i),
                    amount(i),
                    "IDR",
                    "pending" if i <= pending else "paid",
                    expires,
                    None if i <= pending else paid,
                    0,
                    created,
                    paid,
                )
                for i in range(start, min(payments, start + BATCH - 1) + 1)
            ]
            with db:
                db.executemany(
                    "INSERT INTO payments (reference_no, request_hash, txid, store, mitra_cd, "
                    "pay_no, amount, currency, status, expires_at, paid_at, paid_late, "
                    "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
        fields, checks = json.dumps({"status": "0", "bench": "grown"}), json.dumps({"token": "ok"})
        paid_count = max(1, payments - pending)
        for start in range(1, ledger + 1, BATCH):
            batch = []
            for n in range(start, min(ledger, start + BATCH - 1) + 1):
                p = pending + (n - 1) % paid_count + 1
                batch.append(
                    (
                        paid,
                        "127.0.0.1",
                        "127.0.0.1",
                        "bench",
                        txid(p),
                        f"{REFERENCE_PREFIX}{p}",
                        str(amount(p)),
                        "0",
                        fields,
                        f"{n:064d}",
                        checks,
                        "applied" if n <= paid_count else "duplicate",
                        200,
                        p,
                    )
                )
            with db:
                db.executemany(
                    "INSERT INTO notifications (received_at, peer_ip, client_ip, user_agent, "
                    "txid, reference_no, amt, status, fields, token_sha256, checks, outcome, "
                    "http_status, payment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    batch,
                )
        with db:
            db.execute(
                "INSERT INTO payment_events (payment_id, type, source, at) "
                "SELECT id, 'paid', 'notification', ? FROM payments WHERE status = 'paid'",
                (paid,),
            )
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # not left to the first windows
        load = Load("SQLite", payments, ledger, pending, time.monotonic() - started)
        for (name, sql), value in zip(_hot_statements("?").items(), _values(pending), strict=True):
            plan = db.execute(f"EXPLAIN QUERY PLAN {sql}", (value,)).fetchall()
            load.plans[name] = "\n".join(str(row[-1]) for row in plan)
    return load


async def load(url: str, payments: int, ledger: int, pending: int) -> Load:
    if url.startswith("postgresql"):
        return await load_postgres(url, payments, ledger, pending)
    return await asyncio.to_thread(load_sqlite, url, payments, ledger, pending)
