"""`python -m app operators add|list|remove`: the console's accounts.

`add NAME` reads the password from standard input (asked twice on a terminal, the first
line otherwise, so `printf '%s\\n' "$PW" | python -m app operators add alice` works) and
stores only its argon2 hash. Removing an account ends its sessions at once.
"""

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli.common import load_settings
from app.config import Settings
from app.console.auth import hash_password, name_problem, password_problem
from app.db import create_engine, create_sessionmaker
from app.models import Operator
from app.nicepay.wib import WIB, now_utc


def cmd_operators(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "add":
        # The password is asked for only once the name is known to be good.
        problem = name_problem(args.name) or password_problem(password := read_password())
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        return asyncio.run(_add(settings, args.name, hash_password(password)))
    if args.action == "list":
        return asyncio.run(_list(settings))
    return asyncio.run(_remove(settings, args.name))


def read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            print("error: the two passwords differ", file=sys.stderr)
            raise SystemExit(2)
        return first
    return sys.stdin.readline().rstrip("\r\n")


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


async def _add(settings: Settings, name: str, password_hash: str) -> int:
    async with _session(settings) as session:
        session.add(Operator(name=name, password_hash=password_hash, created_at=now_utc()))
        try:
            await session.commit()
        except IntegrityError:
            print(f"error: operator {name!r} exists (remove it first)", file=sys.stderr)
            return 1
    print(f"operator {name} added")
    return 0


async def _list(settings: Settings) -> int:
    async with _session(settings) as session:
        rows = list(await session.scalars(select(Operator).order_by(Operator.id)))
        await session.commit()
    for row in rows:
        locked = ""
        if row.locked_until and row.locked_until > now_utc():
            locked = f"  locked until {row.locked_until.astimezone(WIB):%Y-%m-%d %H:%M:%S} WIB"
        print(f"{row.name}\tsince {row.created_at.astimezone(WIB):%Y-%m-%d %H:%M} WIB{locked}")
    if not rows:
        print("no operators: add one with `python -m app operators add NAME`", file=sys.stderr)
    return 0


async def _remove(settings: Settings, name: str) -> int:
    async with _session(settings) as session:
        result = await session.execute(delete(Operator).where(Operator.name == name))
        await session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        print(f"error: no operator {name!r}", file=sys.stderr)
        return 1
    print(f"operator {name} removed")
    return 0
