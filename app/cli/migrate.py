"""python -m app migrate: alembic upgrade (or downgrade) of the configured database."""

import argparse

from app.cli.common import load_settings


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
