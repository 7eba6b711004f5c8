"""`python -m app operators add|list|remove`: the console's accounts.

`add NAME` reads the password from standard input (asked twice on a terminal, the first
line otherwise, so `printf '%s\\n' "$PW" | python -m app operators add alice` works) and
stores only its argon2 hash. Removing an account ends its sessions at once.
"""

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.console.auth import hash_password, name_problem, password_problem
from app.db import create_engine, create_sessionmaker
from app.models import Operator
from app.nicepay.wib import WIB, now_utc


def add_operators_command(
    subparsers: Any, load_settings: Callable[[], Settings]
) -> argparse.ArgumentParser:
    """The `operators` command on an argparse subparsers object."""
    help_ = "Console accounts: add (password from stdin), list, remove."
    p: argparse.ArgumentParser = subparsers.add_parser("operators", help=help_, description=help_)
    p.set_defaults(func=lambda args: run(args, load_settings()))
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("add", help="a new account; the password is read from standard input")
    q.add_argument("name")
    actions.add_parser("list", help="the accounts, oldest first")
    q = actions.add_parser("remove", help="delete an account (its sessions end at once)")
    q.add_argument("name")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "add":
        problem = name_problem(args.name)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        password = read_password()
        problem = password_problem(password)
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


async def _add(settings: Settings, name: str, password_hash: str) -> int:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            session.add(Operator(name=name, password_hash=password_hash, created_at=now_utc()))
            try:
                await session.commit()
            except IntegrityError:
                print(f"error: operator {name!r} exists (remove it first)", file=sys.stderr)
                return 1
    finally:
        await engine.dispose()
    print(f"operator {name} added")
    return 0


async def _list(settings: Settings) -> int:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = list(await session.scalars(select(Operator).order_by(Operator.id)))
            await session.commit()
    finally:
        await engine.dispose()
    for row in rows:
        locked = ""
        if row.locked_until and row.locked_until > now_utc():
            locked = f"  locked until {row.locked_until.astimezone(WIB):%Y-%m-%d %H:%M:%S} WIB"
        print(f"{row.name}\tsince {row.created_at.astimezone(WIB):%Y-%m-%d %H:%M} WIB{locked}")
    if not rows:
        print("no operators: add one with `python -m app operators add NAME`", file=sys.stderr)
    return 0


async def _remove(settings: Settings, name: str) -> int:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            result = await session.execute(delete(Operator).where(Operator.name == name))
            await session.commit()
    finally:
        await engine.dispose()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        print(f"error: no operator {name!r}", file=sys.stderr)
        return 1
    print(f"operator {name} removed")
    return 0
