"""What every entry point (the web app, the command line, background loops) runs on."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import metrics
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.nicepay.client import NicepayClient
from app.notifications.store import NotificationStore, open_store
from app.webhooks.outbox import WEBHOOKS_ENABLED


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    nicepay: NicepayClient
    webhook_http: httpx.AsyncClient
    store: NotificationStore  # the notification path's statements, on the driver
    migration_head: str | None = None


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    nicepay_transport: httpx.AsyncBaseTransport | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Runtime]:
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    timeout = httpx.Timeout(
        settings.nicepay_read_timeout_seconds, connect=settings.nicepay_connect_timeout_seconds
    )
    nicepay_http = httpx.AsyncClient(
        base_url=settings.nicepay_base_url, timeout=timeout, transport=nicepay_transport
    )
    webhook_http = httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds, transport=webhook_transport
    )
    nicepay = NicepayClient(
        nicepay_http,
        imid=settings.nicepay_imid,
        merchant_key=settings.nicepay_merchant_key.get_secret_value(),
        observe=metrics.observe_nicepay_call,
        deadline_seconds=settings.nicepay_deadline_seconds,
    )
    try:
        sessions = create_sessionmaker(
            engine, info={WEBHOOKS_ENABLED: bool(settings.merchant_webhook_url)}
        )
        store = open_store(engine, settings.database_pool_size)
        try:
            yield Runtime(settings, engine, sessions, nicepay, webhook_http, store)
        finally:
            await store.close()
    finally:
        await nicepay_http.aclose()
        await webhook_http.aclose()
        await engine.dispose()
