"""The composition root: `open_services` wires settings, database, NICEPAY client, the
payments store and the feature services together (for the web app, the command line and
the tests), and `create_app()` builds the FastAPI application and its background loops.
"""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import metrics
from app.config import Settings, get_settings
from app.console.router import mount as mount_console
from app.db import create_engine, create_sessionmaker
from app.deps import StorefrontGate
from app.errors import install_error_handler
from app.health import head_revision
from app.health import router as health_router
from app.limits import RequestLimits
from app.logs import RequestContext, configure_logging
from app.nicepay.client import FormPoster, HttpxPoster, NicepayClient
from app.nicepay.transport import AiohttpPoster
from app.notifications import router as notifications
from app.notifications.service import NotificationService
from app.payments.router import router as payments_router
from app.payments.service import PaymentService
from app.payments.store import PaymentStore, StoreUnavailable, open_store
from app.reconcile import Reconciler
from app.webhooks.router import router as webhooks_router


@dataclass
class Services:
    """Everything the entry points hand out; each service takes only what it needs."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]  # ORM reads and operator queries
    store: PaymentStore  # the only writer of payment changes
    nicepay: NicepayClient
    webhook_http: httpx.AsyncClient
    payments: PaymentService
    notifications: NotificationService
    reconciler: Reconciler
    migration_head: str | None = None


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    nicepay_transport: httpx.AsyncBaseTransport | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Services]:
    pool_size, timeout = settings.database_pool_size, settings.database_timeout_seconds
    async with contextlib.AsyncExitStack() as closing:  # closed in reverse: the store first
        engine = create_engine(settings.database_url, pool_size=pool_size, timeout=timeout)
        closing.push_async_callback(engine.dispose)
        webhook_http = httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds, transport=webhook_transport
        )
        closing.push_async_callback(webhook_http.aclose)
        nicepay = NicepayClient(
            nicepay_poster(settings, nicepay_transport),
            imid=settings.nicepay_imid,
            merchant_key=settings.nicepay_merchant_key.get_secret_value(),
            observe=metrics.observe_nicepay_call,
            deadline_seconds=settings.nicepay_deadline_seconds,
        )
        closing.push_async_callback(nicepay.aclose)
        sessions = create_sessionmaker(engine)
        store = open_store(engine, pool_size, timeout, announce=bool(settings.merchant_webhook_url))
        closing.push_async_callback(store.close)
        yield Services(
            settings,
            engine,
            sessions,
            store,
            nicepay,
            webhook_http,
            payments=PaymentService(settings, store, nicepay),
            notifications=NotificationService(settings, store, nicepay),
            reconciler=Reconciler(settings, store, nicepay, sessions, engine),
        )


def nicepay_poster(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> FormPoster:
    if transport is None:  # the service as it ships: aiohttp (app/nicepay/transport.py)
        return AiohttpPoster(
            settings.nicepay_base_url,
            connect_timeout=settings.nicepay_connect_timeout_seconds,
            read_timeout=settings.nicepay_read_timeout_seconds,
        )
    # The tests' injected transports.
    timeout = httpx.Timeout(
        settings.nicepay_read_timeout_seconds, connect=settings.nicepay_connect_timeout_seconds
    )
    client = httpx.AsyncClient(
        base_url=settings.nicepay_base_url, timeout=timeout, transport=transport
    )
    return HttpxPoster(client)


BackgroundLoop = Callable[[Services], Coroutine[Any, Any, None]]


async def reconcile_loop(services: Services) -> None:
    await services.reconciler.run_forever()


async def dispatch_loop(services: Services) -> None:
    from app.webhooks.loop import run_forever

    await run_forever(services)


def background_loops(settings: Settings) -> list[BackgroundLoop]:
    """The loops the service runs beside the API (reconciler, webhook dispatcher)."""
    loops: list[BackgroundLoop] = []
    if settings.reconcile_interval_seconds > 0:
        loops.append(reconcile_loop)
    if settings.merchant_webhook_url:
        loops.append(dispatch_loop)
    return loops


# Young objects a request leaves behind in reference cycles (uvicorn's, asyncio's) are
# collected every GC_YOUNG_THRESHOLD allocations instead of CPython's 700.
GC_YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def collector_tuned() -> Iterator[None]:
    """While the app serves: the startup heap (about 150,000 objects: SQLAlchemy's metadata,
    FastAPI's and pydantic's models) is frozen out of the cycle collector, and young
    collections are rarer. Without it every full collection walked that heap: 13% of the
    server's CPU under pushes (docs/BENCHMARKS.md). Undone when the app stops, so a process
    that builds many apps (the tests) still collects them."""
    previous = gc.get_threshold()
    # No gc.collect() first: it costs ~0.1 s on a large heap (each app the tests start), and
    # what startup left unreachable is small and stays frozen only while the app serves.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def create_app(
    settings: Settings | None = None,
    *,
    nicepay_transport: httpx.AsyncBaseTransport | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    run_background: bool = True,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(
            settings, nicepay_transport=nicepay_transport, webhook_transport=webhook_transport
        ) as services:
            services.migration_head = head_revision()
            app.state.services = services
            app.state.notifications = services.notifications  # the hot route's one lookup
            loops = background_loops(settings) if run_background else []
            tasks = [asyncio.create_task(loop(services)) for loop in loops]
            try:
                with collector_tuned():
                    yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    options: dict[str, Any] = {
        "title": "NICEPAY CVS payments",
        "version": "0.1.0",
        "lifespan": lifespan,
        # The service has its own logs and Prometheus metrics; FastAPI's built-in
        # OpenTelemetry would add per-request work (and could export exception text).
        "telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    }
    if settings.app_env == "production":
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **options)
    else:
        # /docs (Swagger UI) and /redoc with their scripts and styles served from the
        # fastapi-offline package under /static-offline-docs, not a CDN: they work offline.
        app = FastAPIOffline(docs_url="/docs", redoc_url="/redoc", **options)
    app.state.settings = settings
    install_error_handler(app, (StoreUnavailable,))
    notifications.mount(app)  # first: routes are matched in order
    app.include_router(payments_router)
    app.include_router(webhooks_router)
    app.include_router(health_router)
    mount_console(app, settings)
    app.add_middleware(StorefrontGate)
    app.add_middleware(RequestLimits)
    app.add_middleware(RequestContext, deadline_seconds=settings.request_deadline_seconds)
    return app
