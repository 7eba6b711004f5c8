"""Replay: run a recorded notification through today's checks, as a new ledger row.

The ledger never holds the raw merchantToken, only its SHA-256, and `receive` checks the
token by digest, so a push rebuilt from its ledger row verifies exactly as the original did
(against today's keys, allowlist and payment state). The original row is left as it was;
the new one points back to it with `replay_of`.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.client_ip import parse_ip
from app.errors import NotFound
from app.models import Notification
from app.notifications.service import Inbound, NotificationService, Reply, ledger_view


def inbound_from_ledger(row: Notification) -> Inbound:
    """The push as it reached the service, rebuilt from its ledger row."""
    return Inbound(
        peer_ip=row.peer_ip,
        client_ip=parse_ip(row.client_ip),
        user_agent=row.user_agent,
        fields=dict(row.fields),
        token_digest=row.token_sha256,
        # The body itself is not kept; an oversized one is refused again for the same reason.
        too_large=row.checks.get("size") == "fail",
        replay_of=row.id,
    )


async def replay(
    sessions: async_sessionmaker[AsyncSession],
    notifications: NotificationService,
    notification_id: int,
) -> tuple[Reply, dict[str, Any] | None]:
    """Re-run ledger row `notification_id`; the reply and the new row's verdict (None: 503)."""
    async with sessions() as session:
        original = await session.get(Notification, notification_id)
    if original is None:
        raise NotFound(f"no notification {notification_id} in the ledger")
    reply = await notifications.receive(inbound_from_ledger(original))
    if reply.notification_id is None:
        return reply, None
    async with sessions() as session:
        row = await session.get(Notification, reply.notification_id)
    assert row is not None
    return reply, {**ledger_view(row), "replay_of": row.replay_of}
