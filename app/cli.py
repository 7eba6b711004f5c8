"""The operator's command line: python -m app <command> (or the nicepay-cvs script)."""

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from app.config import Settings


def load_settings() -> Settings:
    """Settings, or a clear exit that names the problem without echoing any value."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            print(f"configuration error: {where}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic import command

    from app.health import alembic_config

    settings = load_settings()
    config = alembic_config()
    config.attributes["database_url"] = settings.database_url
    if args.revision.startswith("-") or args.downgrade:
        command.downgrade(config, args.revision)
    else:
        command.upgrade(config, args.revision)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    load_settings()  # fail fast, readably, before uvicorn starts
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        # The service resolves client IPs itself (TRUSTED_PROXIES); uvicorn must not
        # rewrite the peer from X-Forwarded-For, and its access log would show query strings.
        proxy_headers=False,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="NICEPAY CVS payments service: operator commands."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("migrate", cmd_migrate, "Upgrade the database schema to head (or to a revision).")
    p.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    p.add_argument("--downgrade", action="store_true", help="downgrade to the revision instead")

    p = add("serve", cmd_serve, "Run the HTTP service under uvicorn (uvloop, httptools).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    return parser


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    raise SystemExit(args.func(args))
