"""The yardsticks: FastAPI endpoints served exactly as the service is (one uvicorn worker,
uvloop, httptools, no access log), each adding one layer of the notification path's work.

- POST /trivial: answers "OK" (the baseline every ratio in the report is taken against);
- POST /form: parses the form and checks the merchantToken (SHA-256, constant-time compare);
- POST /asyncpg: /form plus one INSERT through a raw asyncpg pool (BENCH_DSN);
- POST /sqlalchemy: /form plus the same INSERT through SQLAlchemy async (ORM add + commit);
- POST /sqlalchemy-preping: the same with pool_pre_ping=True (a round trip per checkout).

`python -m bench.baseline --port N`; the database endpoints exist only when BENCH_DSN is set
(the driver points it at the bench's throwaway PostgreSQL database).
"""

import argparse
import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import JSON, BigInteger, String, Text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.nicepay.tokens import txid_token

TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_ledger ("
    "id bigserial PRIMARY KEY, txid varchar(64), amt varchar(32), token_sha256 varchar(64), "
    "fields json NOT NULL)"
)


class _Base(DeclarativeBase):
    pass


class Ledger(_Base):
    __tablename__ = "bench_ledger"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    txid: Mapped[str | None] = mapped_column(String(64))
    amt: Mapped[str | None] = mapped_column(String(32))
    token_sha256: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)


async def _checked_form(request: Request) -> tuple[dict[str, str], str] | None:
    """The form without its token, and the token's digest; None when the token is wrong."""
    fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    token = fields.pop("merchantToken", "")
    expected = txid_token(
        SANDBOX_IMID, fields.get("tXid", ""), fields.get("amt", ""), SANDBOX_MERCHANT_KEY
    )
    if not hmac.compare_digest(expected.encode(), token.encode()):
        return None
    return fields, hashlib.sha256(token.encode()).hexdigest()


def create_baseline(dsn: str | None = None) -> FastAPI:
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not dsn:
            yield
            return
        import asyncpg  # type: ignore[import-untyped]

        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        async with pool.acquire() as connection:
            await connection.execute(TABLE_DDL)
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        engine = create_async_engine(url, pool_size=10, max_overflow=10)
        pinging = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        state.update(
            pool=pool,
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            pinging=async_sessionmaker(pinging, expire_on_commit=False),
        )
        try:
            yield
        finally:
            await pool.close()
            await engine.dispose()
            await pinging.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("OK")

    @app.post("/trivial")
    async def trivial() -> PlainTextResponse:
        return PlainTextResponse("OK")

    @app.post("/form")
    async def form(request: Request) -> PlainTextResponse:
        if await _checked_form(request) is None:
            return PlainTextResponse("merchantToken invalid", 403)
        return PlainTextResponse("OK")

    @app.post("/asyncpg")
    async def raw_insert(request: Request) -> PlainTextResponse:
        checked = await _checked_form(request)
        if checked is None:
            return PlainTextResponse("merchantToken invalid", 403)
        fields, digest = checked
        await state["pool"].execute(
            "INSERT INTO bench_ledger (txid, amt, token_sha256, fields) VALUES ($1, $2, $3, $4)",
            fields.get("tXid"),
            fields.get("amt"),
            digest,
            json.dumps(fields),
        )
        return PlainTextResponse("OK")

    async def orm_insert(
        request: Request, sessions: async_sessionmaker[AsyncSession]
    ) -> PlainTextResponse:
        checked = await _checked_form(request)
        if checked is None:
            return PlainTextResponse("merchantToken invalid", 403)
        fields, digest = checked
        async with sessions() as session:
            session.add(
                Ledger(
                    txid=fields.get("tXid"),
                    amt=fields.get("amt"),
                    token_sha256=digest,
                    fields=fields,
                )
            )
            await session.commit()
        return PlainTextResponse("OK")

    @app.post("/sqlalchemy")
    async def orm(request: Request) -> PlainTextResponse:
        return await orm_insert(request, state["sessions"])

    @app.post("/sqlalchemy-preping")
    async def orm_preping(request: Request) -> PlainTextResponse:
        return await orm_insert(request, state["pinging"])

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_baseline(os.environ.get("BENCH_DSN"))
    # The service's own uvicorn options (app/cli/serve.py cmd_serve), so only the app differs.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        proxy_headers=False,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
