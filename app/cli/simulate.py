"""python -m app simulate: drive the NICEPAY simulator for one payment."""

import argparse
import asyncio
import json
import sys

from app.cli.common import load_settings, sqlite_file_missing

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
    txid = asyncio.run(_find_txid(settings.database_url, args.payment))
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

    if await asyncio.to_thread(sqlite_file_missing, database_url):
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
