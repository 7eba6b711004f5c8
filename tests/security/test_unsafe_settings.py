"""Settings that open the door are refused, with a message naming the setting: in production,
allowlists and proxy lists wider than a network NICEPAY or a proxy tier could be, short keys,
and a plain-http PUBLIC_BASE_URL; everywhere, a CIDR with host bits set (a typo, not a wider
network). Through `Settings` and through the command line."""

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.cli.runner import run_cli

MERCHANT_KEY = "Prod+Merchant/Key-7c0e51d2a9b84f16b3e0c6d7a8f9e0a1=="
STOREFRONT_KEY = "prod-storefront-key-2f9d7c1e5a3b4d6f8e0a"


def production(**overrides: Any) -> dict[str, Any]:
    """Settings production accepts; each test spoils one."""
    return {
        "app_env": "production",
        "database_url": "postgresql+asyncpg://svc@db.internal:5432/cvs",
        "nicepay_base_url": "https://www.nicepay.co.id",
        "nicepay_imid": "MERCHANT01",
        "nicepay_merchant_key": MERCHANT_KEY,
        "storefront_api_keys": STOREFRONT_KEY,
        "public_base_url": "https://pay.example-shop.co.id",
        "trusted_proxies": "10.0.0.0/8",
        **overrides,
    }


def refusal(**values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)
    return str(caught.value)


def test_the_production_baseline_is_accepted() -> None:
    settings = Settings(_env_file=None, **production())
    assert settings.app_env == "production"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("nicepay_allowed_ips", "0.0.0.0/0"),
        ("nicepay_allowed_ips", "::/0"),
        ("nicepay_allowed_ips", "103.20.51.0/24,103.0.0.0/8"),
        ("nicepay_allowed_ips", "2000::/16"),
        ("trusted_proxies", "0.0.0.0/0"),
        ("trusted_proxies", "::/0"),
        ("trusted_proxies", "0.0.0.0/1,128.0.0.0/1"),
        ("trusted_proxies", "10.0.0.0/8,100.0.0.0/6"),
    ],
)
def test_production_refuses_networks_that_open_the_door(setting: str, value: str) -> None:
    message = refusal(**production(**{setting: value}))
    assert setting.upper() in message
    assert "wider than" in message


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("nicepay_merchant_key", "k"),
        ("nicepay_merchant_key", "x" * 31),
        ("nicepay_previous_merchant_key", "short-previous-key"),
        ("storefront_api_keys", "a"),
        ("storefront_api_keys", f"{STOREFRONT_KEY},tiny-but-not-a-placeholder"),
    ],
)
def test_production_refuses_short_keys(setting: str, value: str) -> None:
    message = refusal(**production(**{setting: value}))
    assert setting.upper() in message
    assert "shorter than 32" in message
    offered = value.split(",")[-1]
    if len(offered) > 8:
        assert offered not in message  # named, never echoed


@pytest.mark.parametrize(
    "url", ["http://pay.example-shop.co.id", "HTTP://pay.shop.co.id", "pay.co.id"]
)
def test_production_refuses_a_plain_http_public_base_url(url: str) -> None:
    assert "PUBLIC_BASE_URL" in refusal(**production(public_base_url=url))


def test_development_keeps_its_conveniences() -> None:
    """Short keys, http and a local allowlist stay possible outside production."""
    settings = Settings(
        _env_file=None,
        app_env="development",
        storefront_api_keys="dev",
        nicepay_allowed_ips="0.0.0.0/0",
        public_base_url="http://localhost:8000",
    )
    assert settings.storefront_api_keys[0].get_secret_value() == "dev"


@pytest.mark.parametrize("env", ["development", "test", "production"])
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("nicepay_allowed_ips", "103.20.51.34/8"),
        ("nicepay_allowed_ips", "103.20.51.0/24,103.117.8.1/24"),
        ("trusted_proxies", "10.1.2.3/8"),
        ("trusted_proxies", "2001:db8::1/64"),
        ("trusted_proxies", "not-a-network"),
    ],
)
def test_host_bits_are_an_error_everywhere(env: str, setting: str, value: str) -> None:
    message = refusal(**production(app_env=env, **{setting: value}))
    assert setting.upper() in message
    assert "103.0.0.0" not in message


@pytest.mark.slow
async def test_the_command_line_names_the_setting() -> None:
    run = await run_cli("doctor", **production(nicepay_allowed_ips="103.20.51.34/8"))
    assert run.returncode == 2
    assert "NICEPAY_ALLOWED_IPS: 103.20.51.34/8 is not a network" in run.stderr
    run = await run_cli("doctor", **production(trusted_proxies="0.0.0.0/0"))
    assert run.returncode == 2
    assert "TRUSTED_PROXIES holds 0.0.0.0/0" in run.stderr
    assert MERCHANT_KEY not in run.output and STOREFRONT_KEY not in run.output
