"""Event time: Winston's `timestamp` field to `@timestamp` in ISO 8601 UTC.

Timestamps repeat every second in a busy log, so conversions are cached: the common case
per record is one dict lookup.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

_CACHE_MAX = 8192


def format_iso(dt: datetime) -> bytes:
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z".encode()


def now_stamp(now: float) -> tuple[bytes, float]:
    return format_iso(datetime.fromtimestamp(now, UTC)), now


class TimestampParser:
    """Converts the app's timestamp strings; `parse` returns None for what it cannot read."""

    def __init__(self, timezone: str = "UTC") -> None:
        self.tz: tzinfo = UTC if timezone == "UTC" else ZoneInfo(timezone)
        self.cache: dict[str, tuple[bytes, float]] = {}

    def parse(self, value: str) -> tuple[bytes, float] | None:
        hit = self.cache.get(value)
        if hit is not None:
            return hit
        dt = self._parse(value)
        if dt is None:
            return None
        result = (format_iso(dt), dt.timestamp())
        if len(self.cache) >= _CACHE_MAX:
            self.cache.clear()
        self.cache[value] = result
        return result

    def _parse(self, value: str) -> datetime | None:
        v = value.strip()
        try:
            # Winston's 'YYYY-MM-DD HH:mm:ss' (local time of the app's host), or ISO 8601.
            dt = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.tz)
        return dt
