"""/docs (Swagger UI) and /redoc work offline: every script, style sheet and image they load
comes from the service itself (the fastapi-offline package), none from a CDN; production
serves neither."""

import re
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.conftest import make_settings

# Whatever a page loads: src="...", href="...", ReDoc's spec-url="..." and Swagger UI's
# `url: '...'` (the schema).
ASSET = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


def client(**settings: str) -> httpx.AsyncClient:
    app = create_app(make_settings("sqlite+aiosqlite://", **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_load_only_same_origin_assets(page: str) -> None:
    async with client() as service:
        response = await service.get(page)
        assert response.status_code == 200
        html = response.text
        assets = [a or b for a, b in ASSET.findall(html)]
        assert "/openapi.json" in assets, assets
        assert any(asset.endswith(".js") for asset in assets), assets
        for asset in assets:
            # Same origin: a path on this host, not http(s)://... nor //cdn...
            assert asset.startswith("/") and not asset.startswith("//"), asset
            loaded = await service.get(asset)
            assert loaded.status_code == 200, asset
            assert loaded.content, asset
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html


async def test_production_serves_no_docs() -> None:
    production: dict[str, Any] = {
        "nicepay_imid": "MERCHANT001",
        "nicepay_merchant_key": "k" * 64,
        "storefront_api_keys": ["s" * 40],
        "public_base_url": "https://shop.example.co.id",
    }
    async with client(app_env="production", **production) as service:
        for page in ("/docs", "/redoc", "/openapi.json"):
            assert (await service.get(page)).status_code == 404, page
