"""python -m app webhooks list|show|resend: the outbound payment events."""

import argparse
import asyncio
import sys

from app.cli.common import load_settings

COLUMNS = ("event_id", "type", "reference_no", "status", "attempts", "created_at", "last_error")


def cmd_webhooks(args: argparse.Namespace) -> int:
    from app.errors import AppError
    from app.main import open_services
    from app.webhooks import service
    from app.webhooks.schemas import WebhookEventDetail, WebhookEventRead

    settings = load_settings()

    async def run() -> None:
        async with open_services(settings) as services:
            if args.action == "list":
                views = await service.list_events(
                    services.sessions,
                    status=args.status,
                    reference_no=args.reference_no,
                    limit=args.limit,
                )
                print("\t".join(COLUMNS))
                for view in views:
                    row = WebhookEventRead.of(view).model_dump(mode="json")
                    print("\t".join("" if row[c] is None else str(row[c]) for c in COLUMNS))
            elif args.action == "show":
                view = await service.get_event(services.sessions, args.event_id)
                print(WebhookEventDetail.of(view).model_dump_json(indent=2))
            else:
                await service.resend(services.sessions, args.event_id)
                print(f"{args.event_id} queued; the service's dispatcher sends it again")

    try:
        asyncio.run(run())
    except AppError as exc:
        print(f"webhooks {args.action}: {exc.detail}", file=sys.stderr)
        return 1
    return 0
