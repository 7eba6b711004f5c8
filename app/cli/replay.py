"""python -m app replay: re-run a recorded notification through today's checks."""

import argparse
import asyncio
import json
import sys
from typing import Any

from app.cli.common import load_settings


def cmd_replay(args: argparse.Namespace) -> int:
    from app.errors import AppError
    from app.logs import configure_logging
    from app.main import open_services
    from app.notifications.replay import replay

    settings = load_settings()
    configure_logging(settings)

    async def run() -> tuple[int, dict[str, Any] | None]:
        async with open_services(settings) as services:
            reply, verdict = await replay(
                services.sessions, services.notifications, args.notification_id
            )
            return reply.http_status, verdict

    try:
        http_status, verdict = asyncio.run(run())
    except AppError as exc:
        print(f"replay: {exc.detail}", file=sys.stderr)
        return 1
    if verdict is None:
        print(f"replay: not recorded (HTTP {http_status}): the database refused", file=sys.stderr)
        return 1
    print(json.dumps(verdict, indent=2))
    return 0
