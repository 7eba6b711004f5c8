"""What the commands share: settings with a readable failure, and whether a SQLite URL names
a file that does not exist."""

import sys
from pathlib import Path

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


def sqlite_file_missing(database_url: str) -> bool:
    """A SQLite URL whose file does not exist (connecting would create it, empty)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    file = url.database if url.get_backend_name() == "sqlite" else None
    return bool(file) and file != ":memory:" and not Path(str(file)).exists()
