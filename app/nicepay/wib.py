"""NICEPAY date and time fields are Asia/Jakarta (WIB), whatever the host's time zone."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

WIB = ZoneInfo("Asia/Jakarta")


def to_wib_fields(moment: datetime) -> tuple[str, str]:
    """An aware datetime as NICEPAY's (YYYYMMDD, HH24MISS) pair in WIB."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: NICEPAY fields need an aware moment")
    local = moment.astimezone(WIB)
    return local.strftime("%Y%m%d"), local.strftime("%H%M%S")


def from_wib_fields(date: str | None, time: str | None) -> datetime | None:
    """NICEPAY's (YYYYMMDD, HH24MISS) pair as an aware UTC datetime; None when absent."""
    if not date or not time or date == "null" or time == "null":
        return None
    try:
        local = datetime.strptime(date + time, "%Y%m%d%H%M%S").replace(tzinfo=WIB)
    except ValueError:
        return None
    return local.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)
