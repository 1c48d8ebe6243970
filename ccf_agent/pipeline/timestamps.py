"""Event time: a record's timestamp to `@timestamp` in ISO 8601 UTC.

Timestamps repeat every second in a busy log, so conversions are cached: the common case
per record is one dict lookup. Understood without configuration:

- ISO 8601 / RFC 3339 and Winston's `YYYY-MM-DD HH:mm:ss` (`2024-01-15T10:30:00.123Z`,
  `2024-01-15 10:30:00,123`, `+01:00` offsets, `20240115T103000Z`);
- nginx/Apache `15/Jan/2024:10:30:00 +0100`;
- classic syslog `Jan 15 10:30:00` (no year: the latest one not after the batch's time);
- JavaScript `Date.toString()` as in Winston's exception records
  (`Mon Jan 15 2024 10:30:00 GMT+0100 (Central European Standard Time)`);
- RFC 2822 `Mon, 15 Jan 2024 10:30:00 +0000`;
- epoch seconds or milliseconds (numbers, or strings of 10 or 13 digits).

A time without a zone is in the input's `timezone`. Configured strptime formats are tried first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

_CACHE_MAX = 8192
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"), 1)}
_CLF = re.compile(r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:\s*([+-]\d{4}|Z))?$")
_SYSLOG = re.compile(r"([A-Za-z]{3})\s+(\d{1,2})\s+(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")
_JSDATE = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) (\d\d) (\d{4}) (\d\d):(\d\d):(\d\d) GMT([+-]\d{4})(?: \(.*\))?$")
_EPOCH = re.compile(r"\d{10}(?:\d{3})?(?:\.\d+)?$")


def format_iso(dt: datetime) -> bytes:
    # Not strftime: glibc's stats /etc/localtime on every call when TZ is unset.
    dt = dt.astimezone(UTC)
    return (b"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"
            % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond // 1000))


def now_stamp(now: float) -> tuple[bytes, float]:
    return format_iso(datetime.fromtimestamp(now, UTC)), now


def _offset(text: str | None) -> tzinfo | None:
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[3:5])))


def _micro(frac: str | None) -> int:
    return int((frac or "0").ljust(6, "0")[:6])


class TimestampParser:
    """Converts timestamp strings; `parse` returns None for what it cannot read."""

    def __init__(self, timezone: str = "UTC", formats: tuple[str, ...] = ()) -> None:
        self.tz: tzinfo = UTC if timezone == "UTC" else ZoneInfo(timezone)
        self.formats = formats
        self.cache: dict[str, tuple[bytes, float]] = {}
        # Reference time for formats without a year (syslog); the pipeline sets it once per batch.
        self.now = datetime.now(UTC).timestamp()

    def parse(self, value: str) -> tuple[bytes, float] | None:
        hit = self.cache.get(value)
        if hit is not None:
            return hit
        dt = self._parse(value)
        if dt is None:
            return None
        try:
            result = (format_iso(dt), dt.timestamp())
        except (OverflowError, ValueError, OSError):  # valid but beyond what UTC can represent
            return None
        if len(self.cache) >= _CACHE_MAX:
            self.cache.clear()
        self.cache[value] = result
        return result

    def parse_any(self, value: object) -> tuple[bytes, float] | None:
        """A string, or epoch seconds/milliseconds as a number (bools are not times)."""
        if type(value) is str:
            return self.parse(value)
        if type(value) in (int, float):
            return self._epoch(float(value))  # type: ignore[arg-type]
        return None

    def _epoch(self, n: float) -> tuple[bytes, float] | None:
        if n > 1e11:  # milliseconds: seconds would be past the year 5000
            n /= 1000.0
        try:
            dt = datetime.fromtimestamp(n, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return format_iso(dt), n

    def _parse(self, value: str) -> datetime | None:
        v = value.strip()
        if not v or len(v) > 100:
            return None
        for fmt in self.formats:
            try:
                return self._zoned(datetime.strptime(v, fmt))
            except ValueError:
                continue
        try:
            # Winston's 'YYYY-MM-DD HH:mm:ss' (local time of the app's host), or ISO 8601.
            return self._zoned(datetime.fromisoformat(v[:-1] + "+00:00" if v[-1] in "Zz" else v))
        except ValueError:
            pass
        try:
            return self._other(v)
        except (ValueError, OverflowError, KeyError, IndexError, TypeError):
            return None

    def _other(self, v: str) -> datetime | None:
        m = _CLF.match(v)
        if m:
            d, mon, y, hh, mm, ss, frac, off = m.groups()
            dt = datetime(int(y), _MONTHS[mon.lower()], int(d), int(hh), int(mm), int(ss), _micro(frac))
            return dt.replace(tzinfo=_offset(off)) if off else self._zoned(dt)
        m = _SYSLOG.match(v)
        if m:
            mon, d, hh, mm, ss, frac = m.groups()
            # The most recent such time not in the future (a day of clock skew allowed).
            ref = datetime.fromtimestamp(self.now, self.tz) + timedelta(days=1)
            for year in range(ref.year, ref.year - 8, -1):
                try:
                    cand = datetime(year, _MONTHS[mon.lower()], int(d), int(hh), int(mm), int(ss), _micro(frac),
                                    tzinfo=self.tz)
                except ValueError:  # Feb 29 outside a leap year
                    continue
                if cand <= ref:
                    return cand
            return None
        m = _JSDATE.match(v)
        if m:
            mon, d, y, hh, mm, ss, off = m.groups()
            return datetime(int(y), _MONTHS[mon.lower()], int(d), int(hh), int(mm), int(ss), tzinfo=_offset(off))
        if _EPOCH.match(v):
            n = float(v)
            return datetime.fromtimestamp(n / 1000.0 if n > 1e11 else n, UTC)
        if "," in v[:5] or v[:3].isalpha():
            dt = parsedate_to_datetime(v)  # RFC 2822; raises on garbage
            return dt if dt.tzinfo is not None else self._zoned(dt)
        return None

    def _zoned(self, dt: datetime) -> datetime:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.tz)
        return dt
