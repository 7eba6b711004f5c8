"""`python -m bench.explain [--rows 1000000]`: the sweep's claim query and the backlog count
on PostgreSQL with a million pending codes, with their plans (EXPLAIN ANALYZE).

The rows are loaded in bulk with generate_series into a throwaway database migrated with
the real migrations; a tenth of them are due, the rest due over the next day, and as many
again are settled (paid, expired) so the partial index has something to leave out.
"""

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.dialects import postgresql

from app.reconcile import due_checks
from bench.procs import migrate, plain_dsn, postgres_database

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)

LOAD = """
INSERT INTO payments (reference_no, request_hash, txid, store, mitra_cd, pay_no, amount,
                      currency, status, expires_at, paid_late, next_check_at, sweep_inquiries,
                      created_at, updated_at)
SELECT 'EXPLAIN-' || i, repeat('0', 64), 'IONPAYTEST03' || lpad(i::text, 18, '0'), 'alfamart',
       'ALMA', lpad(i::text, 12, '0'), 10000, 'IDR',
       CASE WHEN i % 2 = 0 THEN 'pending' WHEN i % 4 = 1 THEN 'paid' ELSE 'expired' END,
       $1::timestamptz + interval '1 day', false,
       CASE WHEN i % 2 = 0 THEN $1::timestamptz + (((i::bigint * 7919) % 86400) - 8640) * interval '1 second'
            ELSE NULL END,
       0, $1::timestamptz - interval '1 hour', $1::timestamptz - interval '1 hour'
FROM generate_series(1, $2) AS i
"""

BACKLOG = (
    "SELECT count(*), min(next_check_at) FROM payments "
    "WHERE status = 'pending' AND next_check_at <= $1"
)


def claim_sql(batch: int) -> str:
    query = due_checks(NOW).limit(batch)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    compiled = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


async def run(rows: int, batch: int) -> str:
    lines: list[str] = []
    async with postgres_database() as url:
        with tempfile.TemporaryDirectory() as logs:
            await asyncio.to_thread(migrate, url, Path(logs))
        connection = await asyncpg.connect(plain_dsn(url))
        try:
            await connection.execute(LOAD, NOW, rows * 2)
            await connection.execute("VACUUM ANALYZE payments")
            pending = await connection.fetchval(
                "SELECT count(*) FROM payments WHERE status = 'pending'"
            )
            due = await connection.fetchval(
                BACKLOG.replace("count(*), min(next_check_at)", "count(*)"), NOW
            )
            version = await connection.fetchval("SHOW server_version")
            lines.append(
                f"PostgreSQL {version}; {rows * 2:,} payments, {pending:,} pending, "
                f"{due:,} of them due (a backlog); now = {NOW.isoformat()}."
            )
            for title, sql, args in (
                (f"The sweep's claim query (a batch of {batch})", claim_sql(batch), ()),
                ("The backlog (doctor, /metrics)", BACKLOG, (NOW,)),
            ):
                plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args)
                lines += ["", f"{title}:", "", "```", sql.strip(), "", *(r[0] for r in plan), "```"]
        finally:
            await connection.close()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="pending codes")
    parser.add_argument("--batch", type=int, default=100, help="RECONCILE_BATCH_SIZE")
    args = parser.parse_args()
    print(asyncio.run(run(args.rows, args.batch)))


if __name__ == "__main__":
    main()
