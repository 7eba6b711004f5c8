"""`doctor` says when BILLING_DEFAULT_* are still the shipped values (a warning in production:
every buyer without an address would reach NICEPAY as living in central Jakarta)."""

from typing import Any

from app.cli.doctor import _billing_check
from app.config import Settings

PRODUCTION: dict[str, Any] = {
    "app_env": "production",
    "nicepay_imid": "MERCHANT01",
    "nicepay_merchant_key": "a-real-looking-merchant-key-5f1e9c",
    "nicepay_base_url": "https://www.nicepay.co.id",
    "storefront_api_keys": "storefront-key-0c8a1f6e2d-7b3d9e1f4a6c",
    "public_base_url": "https://shop.example.co.id",
}


def check(**values: Any) -> tuple[str, str, str]:
    return _billing_check(Settings(_env_file=None, **values))


def test_shipped_defaults_are_named_and_warned_in_production() -> None:
    status, name, detail = check(**PRODUCTION)
    assert (status, name) == ("warn", "billing defaults")
    assert detail.startswith("Jakarta, DKI Jakarta, 10110, Indonesia: ")
    for setting in ("CITY", "STATE", "POSTAL_CODE", "COUNTRY"):
        assert f"BILLING_DEFAULT_{setting}" in detail


def test_only_the_shipped_ones_are_named() -> None:
    status, _, detail = check(
        **PRODUCTION, billing_default_city="Bandung", billing_default_postal_code="40111"
    )
    assert status == "warn"
    assert "BILLING_DEFAULT_STATE, BILLING_DEFAULT_COUNTRY still the shipped value" in detail
    assert "BILLING_DEFAULT_CITY" not in detail


def test_the_merchants_own_address_is_ok() -> None:
    own = {
        "billing_default_city": "Bandung",
        "billing_default_state": "Jawa Barat",
        "billing_default_postal_code": "40111",
        "billing_default_country": "ID",
    }
    assert check(**PRODUCTION, **own) == (
        "ok",
        "billing defaults",
        "Bandung, Jawa Barat, 40111, ID",
    )


def test_shipped_defaults_in_development_are_said_not_warned() -> None:
    status, _, detail = check(app_env="development")
    assert status == "ok"
    assert "still the shipped value" in detail
