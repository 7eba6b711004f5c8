"""Console test helpers: accounts, signing in over HTTP, reading a form's CSRF token."""

import re
import uuid
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from app.console.auth import hash_password
from app.models import Operator
from app.nicepay.wib import now_utc

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def new_name() -> str:
    return f"op-{uuid.uuid4().hex[:8]}"


async def add_operator(database_url: str, name: str, password: str = PASSWORD) -> None:
    """An account, written as `operators add` writes it."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(Operator).values(
                    name=name, password_hash=hash_password(password), created_at=now_utc()
                )
            )
    finally:
        await engine.dispose()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/console/login")
    assert page.status_code == 200
    return await client.post(
        "/console/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(page.text)},
    )


async def post_form(
    client: httpx.AsyncClient, page_path: str, action: str, **fields: Any
) -> httpx.Response:
    """Submit a form the way the page does: with the CSRF token the page carries."""
    page = await client.get(page_path)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page.text), **fields})
