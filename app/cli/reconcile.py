"""python -m app reconcile: one sweep against NICEPAY's status inquiry (for cron)."""

import argparse
import asyncio
import json
import sys
from dataclasses import asdict

from app.cli.common import load_settings


def cmd_reconcile(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.logs import configure_logging
    from app.main import open_services
    from app.payments.store import StoreUnavailable

    settings = load_settings()
    configure_logging(settings)

    async def run() -> dict[str, int]:
        async with open_services(settings) as services:
            return asdict(await services.reconciler.sweep())

    try:
        report = asyncio.run(run())
    except (SQLAlchemyError, StoreUnavailable, OSError) as exc:
        print(f"reconcile: the database is unavailable ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 1 if report["failed"] else 0
