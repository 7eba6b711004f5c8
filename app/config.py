"""Settings, from the environment and a `.env` file (names as in API.md)."""

from collections.abc import Iterator
from datetime import timedelta
from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.nicepay.codes import Store
from app.schedule import Schedule, parse_offsets

# Published by NICEPAY in every sample and SDK; sandbox only (REFERENCE.md §0).
SANDBOX_IMID = "IONPAYTEST"
SANDBOX_MERCHANT_KEY = (
    "33F49GnCMS1mFYlGXisbUDzVf2ATWCl9k3R++d5hDd3Frmuos/XLx8XhXpe+LDYAbpGKZYSwtlyyLOtS/8aD7A=="
)
# The shipped BILLING_DEFAULT_* values: a central Jakarta address. `doctor` says when a
# deployment still uses them instead of the merchant's own city, province and postal code.
SHIPPED_BILLING = {
    "city": "Jakarta",
    "state": "DKI Jakarta",
    "postal_code": "10110",
    "country": "Indonesia",
}
PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "example", "dev-storefront-key")
# Production minimums. A key this long is not guessed, and is long enough for the log filter
# to mask (app/logs.py); NICEPAY's merchant keys are 88 characters.
MIN_KEY_LENGTH = 32
# The widest network production accepts in each list, by IP version (prefix length). NICEPAY
# publishes /24s; a proxy tier may be a whole private /8 (or a CDN's IPv6 /29), never more.
WIDEST_ALLOWED = {4: 16, 6: 32}
WIDEST_PROXIES = {4: 8, 6: 16}

Network = IPv4Network | IPv6Network
T = TypeVar("T")


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
    return value


def _networks(value: object, info: ValidationInfo) -> object:
    """CIDRs as written; host bits set (`103.20.51.34/8`) are a mistake, not 103.0.0.0/8."""
    value = _split(value)
    if not isinstance(value, list):
        return value
    networks = []
    for network in value:
        try:
            networks.append(ip_network(str(network).strip()))
        except ValueError as exc:
            setting = str(info.field_name).upper()
            raise ValueError(f"{setting}: {network!s} is not a network ({exc})") from None
    return networks


# Environment values are comma (or space) separated lists, not JSON.
CommaList = Annotated[list[T], NoDecode, BeforeValidator(_split)]
NetworkList = Annotated[list[Network], NoDecode, BeforeValidator(_networks)]


# Relative to the working directory, like the default SQLite file: the service, scripts/dev.sh
# and every `python -m app` command run from the repository root share one .env.
ENV_FILE = ".env"


def env_file_in_use() -> Path | None:
    """The .env file the settings are read from, if there is one."""
    path = Path.cwd() / ENV_FILE
    return path if path.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore")

    app_env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./nicepay_cvs.db"
    # Per pool; a process has two on PostgreSQL. Why 8: docs/BENCHMARKS.md, "With the release
    # fixed, fewer connections do better".
    database_pool_size: int = 8
    # The longest any one database wait may take (a pooled connection, a lock, a statement):
    # past it the request is answered 503 and nothing is acknowledged.
    database_timeout_seconds: float = Field(default=5.0, gt=0)

    nicepay_base_url: str = "https://dev.nicepay.co.id"
    nicepay_imid: str = SANDBOX_IMID
    nicepay_merchant_key: SecretStr = SecretStr(SANDBOX_MERCHANT_KEY)
    nicepay_previous_merchant_key: SecretStr = SecretStr("")
    nicepay_connect_timeout_seconds: float = 5.0
    nicepay_read_timeout_seconds: float = 15.0
    nicepay_allowed_ips: NetworkList = Field(
        default_factory=lambda: [ip_network("103.20.51.0/24"), ip_network("103.117.8.0/24")]
    )
    trusted_proxies: NetworkList = Field(default_factory=list)
    nicepay_verify_with_inquiry: bool = True
    notification_max_body_bytes: int = 16_384

    public_base_url: str = "http://localhost:8000"
    storefront_api_keys: CommaList[SecretStr] = Field(default_factory=list)
    cvs_default_expiry_minutes: int = Field(default=1440, gt=0)
    cvs_enabled_stores: CommaList[Store] = Field(default_factory=lambda: list(Store))
    # NICEPAY refuses a registration without these (9025-9028); sent when the storefront
    # gives no such customer field. Sizes and types as NICEPAY's (REFERENCE.md §1.2).
    billing_default_city: str = Field(SHIPPED_BILLING["city"], min_length=1, max_length=50)
    billing_default_state: str = Field(SHIPPED_BILLING["state"], min_length=1, max_length=50)
    billing_default_postal_code: str = Field(
        SHIPPED_BILLING["postal_code"], pattern=r"^[0-9]{1,10}$"
    )
    billing_default_country: str = Field(SHIPPED_BILLING["country"], min_length=1, max_length=10)

    merchant_webhook_url: str = ""
    merchant_webhook_secret: SecretStr = SecretStr("")
    webhook_max_attempts: int = Field(default=12, gt=0)
    webhook_backoff_base_seconds: float = 5.0
    webhook_backoff_cap_seconds: float = 3600.0
    webhook_timeout_seconds: float = 10.0

    reconcile_interval_seconds: float = Field(default=300, ge=0)
    reconcile_batch_size: int = 100
    # The inquiry budget of an unpaid code (app/schedule.py): checks after registration, one
    # after the expiry (+ margin), late re-checks while still unpaid; at most BUDGET in all.
    reconcile_schedule: CommaList[str] = Field(default_factory=lambda: ["10m", "1h", "6h"])
    reconcile_expiry_margin_seconds: float = Field(default=120, ge=0)
    reconcile_late_checks: CommaList[str] = Field(default_factory=lambda: ["30m", "2h"])
    reconcile_budget: int = Field(default=4, ge=1)
    # Sweep inquiries per second, all replicas together (0: no cap).
    reconcile_max_inquiries_per_second: int = Field(default=10, ge=0)
    # POST .../refresh: at most one inquiry per payment this often.
    refresh_min_interval_seconds: float = Field(default=30, ge=0)

    # The HTTP server's guards (app/server.py): a client must send a request's headers within
    # the first deadline and its body within the second; connections beyond the bound are
    # closed at once.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    http_max_connections: int = Field(default=1000, gt=0)
    # The longest query string any route accepts (a NICEPAY push may carry its fields there).
    http_max_query_bytes: int = Field(default=4096, gt=0)
    # Signs the operator console's session cookies; empty: a random key per process.
    console_session_secret: SecretStr = SecretStr("")

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("reconcile_schedule", "reconcile_late_checks")
    @classmethod
    def _offsets(cls, value: list[str]) -> list[str]:
        parse_offsets(value)  # a clear error at start-up, not at the first sweep
        return value

    @model_validator(mode="after")
    def _production_is_safe(self) -> "Settings":
        problems = list(self._production_problems()) if self.app_env == "production" else []
        if problems:
            raise ValueError("APP_ENV=production refuses to start: " + "; ".join(problems))
        return self

    def _production_problems(self) -> Iterator[str]:
        key = self.nicepay_merchant_key.get_secret_value()
        previous = self.nicepay_previous_merchant_key.get_secret_value()
        storefront_keys = [k.get_secret_value() for k in self.storefront_api_keys]
        if self.nicepay_imid == SANDBOX_IMID or key == SANDBOX_MERCHANT_KEY:
            yield "NICEPAY_IMID/NICEPAY_MERCHANT_KEY are NICEPAY's public sandbox credentials"
        if not key or _is_placeholder(key):
            yield "NICEPAY_MERCHANT_KEY is empty or a placeholder"
        if not storefront_keys:
            yield "STOREFRONT_API_KEYS is empty: the storefront API would refuse every call"
        if any(_is_placeholder(k) for k in storefront_keys):
            yield "STOREFRONT_API_KEYS holds a placeholder key"
        secret = self.merchant_webhook_secret.get_secret_value()
        if self.merchant_webhook_url and (not secret or _is_placeholder(secret)):
            yield "MERCHANT_WEBHOOK_SECRET is empty or a placeholder"
        if "dev.nicepay.co.id" in self.nicepay_base_url:
            yield "NICEPAY_BASE_URL points at NICEPAY's development host"
        if key and len(key) < MIN_KEY_LENGTH:
            yield f"NICEPAY_MERCHANT_KEY is shorter than {MIN_KEY_LENGTH} characters"
        if previous and len(previous) < MIN_KEY_LENGTH:
            yield f"NICEPAY_PREVIOUS_MERCHANT_KEY is shorter than {MIN_KEY_LENGTH} characters"
        if any(len(k) < MIN_KEY_LENGTH for k in storefront_keys):
            yield f"STOREFRONT_API_KEYS holds a key shorter than {MIN_KEY_LENGTH} characters"
        yield from _too_wide("NICEPAY_ALLOWED_IPS", self.nicepay_allowed_ips, WIDEST_ALLOWED)
        yield from _too_wide("TRUSTED_PROXIES", self.trusted_proxies, WIDEST_PROXIES)
        if not self.public_base_url.lower().startswith("https://"):
            yield (
                "PUBLIC_BASE_URL is not https://: NICEPAY's pushes and the console's cookies "
                "would cross the network in clear"
            )

    @property
    def db_process_url(self) -> str:
        return self.public_base_url.rstrip("/") + "/api/v1/nicepay/notifications"

    @property
    def merchant_keys(self) -> list[str]:
        """The keys a notification token may be made with: current first, then previous."""
        keys = [self.nicepay_merchant_key.get_secret_value()]
        previous = self.nicepay_previous_merchant_key.get_secret_value()
        return [*keys, previous] if previous else keys

    @property
    def nicepay_deadline_seconds(self) -> float:
        """The longest one NICEPAY call may take: the client enforces it as a deadline."""
        return self.nicepay_connect_timeout_seconds + self.nicepay_read_timeout_seconds

    @property
    def request_deadline_seconds(self) -> float:
        """The longest a whole request may take: a NICEPAY call and a few database waits."""
        return self.nicepay_deadline_seconds + 3 * self.database_timeout_seconds

    @cached_property
    def check_schedule(self) -> Schedule:
        return Schedule(
            parse_offsets(self.reconcile_schedule),
            timedelta(seconds=self.reconcile_expiry_margin_seconds),
            parse_offsets(self.reconcile_late_checks),
            self.reconcile_budget,
        )

    @property
    def registration_surely_over(self) -> timedelta:
        """After this long, a registration call still marked in flight has surely ended
        (answered, timed out, or died with its process)."""
        return timedelta(seconds=self.nicepay_deadline_seconds + 5)

    @property
    def billing_defaults(self) -> dict[str, str]:
        """The BILLING_DEFAULT_* settings, keyed like the storefront's customer fields."""
        return {name: getattr(self, f"billing_default_{name}") for name in SHIPPED_BILLING}


def _too_wide(setting: str, networks: list[Network], widest: dict[int, int]) -> list[str]:
    return [
        f"{setting} holds {network}, wider than /{widest[network.version]}: "
        "it opens the door to too many addresses"
        for network in networks
        if network.prefixlen < widest[network.version]
    ]


def _is_placeholder(value: str) -> bool:
    return any(marker in value.lower() for marker in PLACEHOLDER_MARKERS)


@lru_cache
def get_settings() -> Settings:
    return Settings()
