"""Console accounts and sessions: argon2 password hashes, signed session cookies, CSRF
tokens, and the brake on failed sign-ins.

The session cookie is signed (itsdangerous), HttpOnly, SameSite=Strict, scoped to
`/console`, Secure when PUBLIC_BASE_URL is https; it carries the operator's name, when it
was issued and the session's CSRF token. It is checked against the operators table on every
request, so `operators remove` and sign-out (which voids every session of that operator
issued before it) take effect at once. Nothing here reads the storefront's bearer keys.
"""

import asyncio
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import Operator
from app.nicepay.wib import now_utc

log = logging.getLogger(__name__)

SESSION_COOKIE = "console_session"
LOGIN_COOKIE = "console_login"  # the sign-in form's CSRF token, before there is a session
FLASH_COOKIE = "console_flash"
COOKIE_PATH = "/console"
SESSION_SECONDS = 12 * 3600
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10

# Consecutive failures before an account (or an address) is locked, and for how long:
# 30 s, doubling with each further failure, at most 15 minutes.
LOCK_AFTER = 5
LOCK_BASE = timedelta(seconds=30)
LOCK_CAP = timedelta(minutes=15)
IP_LOCK_AFTER = 20

hasher = PasswordHasher()
SessionFactory = async_sessionmaker[AsyncSession]


@cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown: a wrong name costs what a wrong password does."""
    return hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return hasher.hash(password)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    return None


def name_problem(name: str) -> str | None:
    if not NAME_PATTERN.match(name):
        return "a name is 1 to 64 of A-Z a-z 0-9 . _ @ -"
    return None


def lock_for(failures: int, after: int) -> timedelta | None:
    """How long to refuse sign-ins after `failures` consecutive failures (None: not locked)."""
    if failures < after:
        return None
    doublings = min(failures - after, 10)  # past the cap long before; unbounded overflows
    lock: timedelta = LOCK_BASE * 2**doublings
    return min(lock, LOCK_CAP)


@dataclass
class SignedIn:
    name: str
    csrf: str


@dataclass
class AddressBrake:
    """Failed sign-ins per client address (in this process): stops password spraying across
    many names, which the per-account lock does not see."""

    failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def locked(self, ip: str) -> float:
        """Seconds left on the lock of `ip` (0: not locked)."""
        _count, until = self.failures.get(ip, (0, 0.0))
        return max(0.0, until - time.monotonic())

    def failed(self, ip: str) -> None:
        count = self.failures.get(ip, (0, 0.0))[0] + 1
        lock = lock_for(count, IP_LOCK_AFTER)
        until = time.monotonic() + lock.total_seconds() if lock else 0.0
        if len(self.failures) > 10_000:  # a flood of addresses must not grow this forever
            self.failures.clear()
        self.failures[ip] = (count, until)

    def succeeded(self, ip: str) -> None:
        self.failures.pop(ip, None)


class SignInRefused(Exception):
    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Sessions:
    """Issue and check console sessions for one application."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.console_session_secret.get_secret_value()
        if not secret:
            # Good for one process: sessions end with it and do not span replicas or workers.
            secret = secrets.token_urlsafe(32)
            if settings.app_env != "test":
                log.warning(
                    "CONSOLE_SESSION_SECRET is not set: console sessions last as long as "
                    "this process and are not shared between workers"
                )
        self._signer = URLSafeTimedSerializer(secret, salt="console-session")
        self.secure = settings.public_base_url.lower().startswith("https://")
        self.brake = AddressBrake()

    def cookie_options(self, max_age: int | None = SESSION_SECONDS) -> dict[str, Any]:
        return {
            "path": COOKIE_PATH,
            "httponly": True,
            "samesite": "strict",
            "secure": self.secure,
            "max_age": max_age,
        }

    def sign(self, value: Any) -> str:
        return self._signer.dumps(value)

    def unsign(self, value: str | None, max_age: int = SESSION_SECONDS) -> Any:
        if not value:
            return None
        try:
            return self._signer.loads(value, max_age=max_age)
        except BadSignature:
            return None

    def new_session(self, name: str) -> str:
        return self.sign({"op": name, "iat": time.time(), "csrf": secrets.token_urlsafe(24)})

    async def operator(self, sessions: SessionFactory, cookie: str | None) -> SignedIn | None:
        """The operator a session cookie belongs to, if it is still good."""
        data = self.unsign(cookie)
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            return None
        row = await _account(sessions, data["op"])
        if row is None:
            return None
        issued = float(data.get("iat", 0))
        if row.sessions_valid_after and issued < row.sessions_valid_after.timestamp():
            return None
        return SignedIn(row.name, str(data.get("csrf", "")))

    async def sign_in(self, sessions: SessionFactory, name: str, password: str, ip: str) -> str:
        """The new session cookie's value, or SignInRefused."""
        wait = self.brake.locked(ip)
        if wait:
            raise SignInRefused("too many failed sign-ins from this address", int(wait) + 1)
        now = now_utc()
        row = await _account(sessions, name)
        if row is not None and row.locked_until and row.locked_until > now:
            wait = (row.locked_until - now).total_seconds()
            raise SignInRefused("too many failed sign-ins for this account", int(wait) + 1)
        # argon2 is slow on purpose: off the event loop.
        good = await asyncio.to_thread(
            _verify, row.password_hash if row else _dummy_hash(), password
        )
        if good and row is not None:
            self.brake.succeeded(ip)
            await _update(sessions, Operator.id == row.id, failed_logins=0, locked_until=None)
            return self.new_session(row.name)
        self.brake.failed(ip)
        if row is not None:
            failures = row.failed_logins + 1
            lock = lock_for(failures, LOCK_AFTER)
            locked_until = now + lock if lock else None
            await _update(
                sessions, Operator.id == row.id, failed_logins=failures, locked_until=locked_until
            )
        log.warning("console sign-in failed", extra={"operator": name[:64], "client_ip": ip})
        raise SignInRefused("wrong name or password")

    async def sign_out(self, sessions: SessionFactory, name: str) -> None:
        await _update(sessions, Operator.name == name, sessions_valid_after=now_utc())


def csrf_ok(expected: str, offered: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), (offered or "").encode())


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def _account(sessions: SessionFactory, name: str) -> Operator | None:
    async with sessions() as session:
        row = await session.scalar(select(Operator).where(Operator.name == name))
        await session.commit()
    return row


async def _update(sessions: SessionFactory, where: Any, **values: Any) -> None:
    async with sessions() as session:
        await session.execute(update(Operator).where(where).values(**values))
        await session.commit()
