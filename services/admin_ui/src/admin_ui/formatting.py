"""How the console shows money, numbers and times: ₩ with thousands separators, USD, and
dates in the operator's time zone (ADMIN_TZ, Korea by default)."""
from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TZ = "Asia/Seoul"
_KST = timezone(timedelta(hours=9), "KST")
# Every ASCII punctuation a Markdown reader acts on, "." and "@" included: escaping them
# breaks GFM's autolinks ("www.example.com", "user@example.com") as well as emphasis,
# links, HTML and headings.
_MD_SPECIAL = "\\`*_[]()<>#!|~$:.@-+={}&\"'"


def display_tz() -> tzinfo:
    name = os.environ.get("ADMIN_TZ", DEFAULT_TZ) or DEFAULT_TZ
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return _KST if name == DEFAULT_TZ else UTC


def decimal(value: object) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def krw(value: object) -> str:
    """'₩1,234' (whole won; amounts under ₩100 keep two decimals so small costs are visible)."""
    amount = decimal(value)
    if abs(amount) < 100 and amount != amount.to_integral_value():
        return f"₩{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
    return f"₩{amount.quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"


def usd(value: object, places: int | None = None) -> str:
    """'$12.34', or more decimals for sub-cent amounts (a single request often costs < $0.01)."""
    amount = decimal(value)
    if places is None:
        places = 2 if abs(amount) >= 1 or amount == 0 else 6
    q = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"${q:,}"


def money(usd_value: object, krw_value: object, currency: str) -> str:
    return usd(usd_value) if currency == "USD" else krw(krw_value)


def number(value: object) -> str:
    return f"{int(decimal(value)):,}"


def percent(part: float, whole: float) -> str:
    return "0%" if not whole else f"{part / whole:.1%}"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: str | None, *, seconds: bool = False) -> str:
    """An API timestamp (ISO, UTC) in the display time zone: '2026-11-24 18:05 KST'."""
    parsed = parse_time(value)
    if parsed is None:
        return "-"
    local = parsed.astimezone(display_tz())
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def to_api_time(value: datetime) -> str:
    """A local (or aware) datetime as the API's ISO UTC string."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=display_tz())
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def escape_markdown(text: object) -> str:
    """Text that st.markdown/st.caption/st.subheader shows literally, on one line: no links
    (autolinks included), images, HTML, emphasis or a heading broken out by a newline."""
    flat = " ".join(str(text).splitlines())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in flat)
