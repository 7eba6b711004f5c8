"""create_app(): the FastAPI application, its lifespan and its background loops."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
from fastapi import FastAPI

from app.config import Settings, get_settings
from app.console.router import mount as mount_console
from app.deps import StorefrontGate
from app.errors import install_error_handler
from app.health import head_revision
from app.health import router as health_router
from app.logs import RequestContext, configure_logging
from app.notifications import router as notifications
from app.payments.router import router as payments_router
from app.runtime import Runtime, open_runtime
from app.webhooks.router import router as webhooks_router

BackgroundLoop = Callable[[Runtime], Coroutine[Any, Any, None]]


def background_loops(settings: Settings) -> list[BackgroundLoop]:
    """The loops the service runs beside the API (reconciler, webhook dispatcher)."""
    loops: list[BackgroundLoop] = []
    if settings.reconcile_interval_seconds > 0:
        from app.reconcile import run_forever as reconcile_forever

        loops.append(reconcile_forever)
    if settings.merchant_webhook_url:
        from app.webhooks.dispatcher import run_forever as dispatch_forever

        loops.append(dispatch_forever)
    return loops


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
        async with open_runtime(
            settings, nicepay_transport=nicepay_transport, webhook_transport=webhook_transport
        ) as runtime:
            runtime.migration_head = head_revision()
            app.state.runtime = runtime
            loops = background_loops(settings) if run_background else []
            tasks = [asyncio.create_task(loop(runtime)) for loop in loops]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    docs = settings.app_env != "production"
    app = FastAPI(
        title="NICEPAY CVS payments",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        # The service has its own logs and Prometheus metrics; FastAPI's built-in
        # OpenTelemetry would add per-request work (and could export exception text).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handler(app)
    notifications.mount(app)  # first: routes are matched in order
    app.include_router(payments_router)
    app.include_router(webhooks_router)
    app.include_router(health_router)
    mount_console(app, settings)
    app.add_middleware(StorefrontGate)
    app.add_middleware(RequestContext)
    return app
