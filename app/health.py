"""Probes and metrics: /healthz (alive), /readyz (database answers, migrations at head),
/metrics, and /whoami (the client IP the service sees)."""

import asyncio
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.client_ip import in_networks, parse_ip, resolve_client_ip
from app.deps import SettingsDep, storefront_key_problem
from app.errors import DATABASE_ERRORS, Unauthorized

router = APIRouter(tags=["operator"])
ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 5.0


def alembic_config() -> Config:
    """alembic.ini beside the source tree, else in the working directory (the container
    installs the package into a venv and keeps alembic.ini and migrations/ in /app)."""
    for base in (ROOT, Path.cwd()):
        if (base / "alembic.ini").is_file():
            return Config(str(base / "alembic.ini"))
    raise RuntimeError("alembic.ini not found beside the code or in the working directory")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@router.get("/healthz", name="healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", name="readyz", responses={503: {"description": "Not ready"}})
async def readyz(request: Request) -> JSONResponse:
    services = request.app.state.services
    head = services.migration_head
    try:
        # Bounded: a probe must answer even when the database host drops packets.
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            current = await current_revision(services.engine)
    except DATABASE_ERRORS as exc:
        return JSONResponse(
            {"status": "unavailable", "database": f"unreachable ({type(exc).__name__})"}, 503
        )
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "migration": current, "head": head}, 503
        )
    return JSONResponse({"status": "ok", "database": "ok", "migration": current})


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's alembic revision; None when it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


@router.get("/whoami", name="whoami")
async def whoami(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """The client IP this request resolves to through TRUSTED_PROXIES, as the dbProcessUrl
    resolves NICEPAY's pushes: for checking a proxy chain (`python -m app doctor` calls it).
    In production only for a holder of a storefront key (doctor sends one): to anyone else it
    would say whether a forged X-Forwarded-For gets past the allowlist."""
    if settings.app_env == "production":
        problem = storefront_key_problem(settings, request.headers.get("authorization"))
        if problem:
            raise Unauthorized(problem)
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    client = resolve_client_ip(peer, forwarded, settings.trusted_proxies)
    return {
        "client_ip": str(client) if client else None,
        "peer_ip": peer,
        "peer_is_trusted_proxy": in_networks(parse_ip(peer), settings.trusted_proxies),
        "x_forwarded_for": forwarded,
        "nicepay_allowed": in_networks(client, settings.nicepay_allowed_ips),
    }


@router.get("/metrics", name="metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
