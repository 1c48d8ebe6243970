"""The report's figures: what counts, one window of time, and the model both sources fill.

What counts (the guide's log-analyzer.sh, counted right). Only records from the files that hold
every record once count (`sources`: combined.log and its rotations; Winston writes an error again
to error.log and a payout again to payouts.log). Then, per record:
- an error: `level` is exactly "error" (the guide greps `"level":"error"`);
- a processed payout: a `payoutId` (not null) and the message "Payout processed" in any case;
  a failed payout: the same with "Payout failed" (the guide's `grep -c "payout.*failed"` is
  case-sensitive, so it counts "Payout failed" only when a later field happens to say "failed");
- a high-value failed payout: a failed payout with `amount` (cents) over 10000, as the guide's
  `jq 'select(.amount > 10000)'`;
- processing time: `processingTime` (ms, a number) of processed payouts, floored to the
  millisecond; percentiles are nearest-rank (the smallest value with at least p% at or below it);
- an authentication failure / a rate-limit warning: the alert rules' tests (alerts/example.yaml):
  level warn, warning or error, and a message matching AUTH_WORDS and FAIL_WORDS / RATE_LIMIT.

The search engine source (search.py) asks the same questions as queries; the files source
(files.py) feeds a Tally. Both give the same Figures for the same records.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PROCESSED, FAILED = "payout processed", "payout failed"  # messages, compared in lower case
WARN_LEVELS = ("warn", "warning", "error")
# Python regexes searched in the message; search.py holds the same as Lucene regexps.
AUTH_WORDS = re.compile(r"auth|login", re.I | re.S)
FAIL_WORDS = re.compile(r"fail|invalid|denied|reject", re.I | re.S)
RATE_LIMIT = re.compile(r"rate.?limit", re.I | re.S)
NO_MESSAGE, NO_ERROR = "(no message)", "(none)"
SERIES = ("processed", "failed", "auth_failures", "rate_limited")


# ---------------------------------------------------------------------------------- the window


@dataclass(frozen=True)
class Window:
    """Records stamped in [start, end) (epoch seconds), counted per hour of the time zone `tz`."""

    start: float
    end: float
    tz: str
    label: str  # "2024-01-15", or "2024-01-14 10:00 to 2024-01-15 10:00"
    day: str | None = None  # the date of a --date report

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def hour_of(self, t: float) -> float:
        """The start of the local hour holding `t` (epoch seconds): an hourly series' key."""
        local = datetime.fromtimestamp(t, self.zone())
        return local.replace(minute=0, second=0, microsecond=0).timestamp()

    def hours(self) -> list[float]:
        """Every hour's start from the one holding `start` to the last before `end` (23, 24 or 25
        on a day with a DST change)."""
        out, t = [], self.hour_of(self.start)
        while t < self.end:
            out.append(t)
            t = self.hour_of(t + 3600)
        return out

    def hour_label(self, t: float) -> str:
        """'14:00'; with the UTC offset when the window's hours have more than one (a DST change)."""
        zone = self.zone()
        offsets = {datetime.fromtimestamp(h, zone).utcoffset() for h in self.hours()}
        return datetime.fromtimestamp(t, zone).strftime("%H:%M" if len(offsets) == 1 else "%H:%M %z")

    def local(self, t: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return datetime.fromtimestamp(t, self.zone()).strftime(fmt)


def day_window(day: date, tz: str) -> Window:
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return Window(start.timestamp(), end.timestamp(), tz, day.isoformat(), day.isoformat())


def since_window(now: float, seconds: float, tz: str) -> Window:
    w = Window(now - seconds, now, tz, "")
    return Window(w.start, w.end, tz, f"{w.local(w.start, '%Y-%m-%d %H:%M')} to {w.local(w.end, '%Y-%m-%d %H:%M')}")


def yesterday(now: float, tz: str) -> date:
    return (datetime.fromtimestamp(now, ZoneInfo(tz)) - timedelta(days=1)).date()


# ---------------------------------------------------------------------------------- the model


@dataclass
class HighValue:
    payoutId: str  # noqa: N815 - the app's field names, as the guide's jq shows them
    userId: str  # noqa: N815
    amount: float  # cents
    error: str
    at: float  # epoch seconds


@dataclass
class Percentiles:
    count: int = 0  # processed payouts with a processingTime
    p50: float | None = None  # ms
    p95: float | None = None
    approximate: bool = False  # the engine could only estimate them (too many distinct values)


@dataclass
class Figures:
    window: Window
    source: str  # where the figures come from, for the reader
    records: int = 0  # records in the window (from the counted files)
    errors: int = 0
    processed: int = 0
    failed: int = 0
    top_errors: list[tuple[str, int]] = field(default_factory=list)  # by message, most first
    failure_reasons: list[tuple[str, int]] = field(default_factory=list)  # failed payouts by `error`
    high_value_count: int = 0
    high_value: list[HighValue] = field(default_factory=list)  # the largest first, at most list_max
    hourly: dict[str, list[int]] = field(default_factory=dict)  # SERIES name -> count per window.hours()
    processing_ms: Percentiles = field(default_factory=Percentiles)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # fired in the window (alerts engine history)
    notes: list[str] = field(default_factory=list)  # what the reader should know (approximations, gaps)
    generated_at: float = 0.0
    high_value_cents: int = 10000

    @property
    def failure_rate(self) -> float | None:
        attempts = self.processed + self.failed
        return self.failed / attempts if attempts else None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: `--format json`, and what redaction walks before anything is rendered."""
        out = asdict(self)
        out["failure_rate"] = self.failure_rate
        out["window"]["hours"] = [self.window.local(h, "%Y-%m-%dT%H:%M:%S%z") for h in self.window.hours()]
        out["top_errors"] = [{"message": m, "count": n} for m, n in self.top_errors]
        out["failure_reasons"] = [{"error": e, "count": n} for e, n in self.failure_reasons]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figures:
        w = dict(data["window"])
        w.pop("hours", None)
        return cls(
            window=Window(**w), source=data["source"], records=data["records"], errors=data["errors"],
            processed=data["processed"], failed=data["failed"],
            top_errors=[(d["message"], d["count"]) for d in data["top_errors"]],
            failure_reasons=[(d["error"], d["count"]) for d in data["failure_reasons"]],
            high_value_count=data["high_value_count"], high_value=[HighValue(**h) for h in data["high_value"]],
            hourly={k: list(v) for k, v in data["hourly"].items()},
            processing_ms=Percentiles(**data["processing_ms"]), alerts=list(data["alerts"]),
            notes=list(data["notes"]), generated_at=data["generated_at"], high_value_cents=data["high_value_cents"])


# ---------------------------------------------------------------------------------- rules (pure)


def outcome(rec: Mapping[str, Any]) -> str | None:
    """'processed', 'failed' or None: what a record says of a payout attempt."""
    if rec.get("payoutId") is None:
        return None
    message = rec.get("message")
    if type(message) is not str:
        return None
    low = message.lower()
    return "processed" if low == PROCESSED else "failed" if low == FAILED else None


def is_auth_failure(level: Any, message: str) -> bool:
    return level in WARN_LEVELS and AUTH_WORDS.search(message) is not None and FAIL_WORDS.search(message) is not None


def is_rate_limited(level: Any, message: str) -> bool:
    return level in WARN_LEVELS and RATE_LIMIT.search(message) is not None


def text_of(value: Any, missing: str) -> str:
    """A field as a keyword aggregation buckets it."""
    if value is None:
        return missing
    if type(value) is bool:
        return "true" if value else "false"
    return value if type(value) is str else str(value)


def number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def nearest_rank(counts: list[tuple[float, int]], p: float) -> float | None:
    """The p-th percentile (0 < p <= 100) of values given as sorted (value, count) pairs."""
    total = sum(n for _, n in counts)
    if not total:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value, n in counts:
        seen += n
        if seen >= rank:
            return value
    return counts[-1][0]


def top(counter: Counter[str], n: int) -> list[tuple[str, int]]:
    """Most first; ties by the text, as the engine's terms aggregation orders them."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


class Tally:
    """Counts records one at a time (the files source): `add(rec, t)`, then `figures()`."""

    def __init__(self, window: Window, top_n: int = 5, high_value_cents: int = 10000, list_max: int = 20) -> None:
        self.window = window
        self.top_n, self.high_value_cents, self.list_max = top_n, high_value_cents, list_max
        self.records = self.errors = self.processed = self.failed = 0
        self.messages: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.high_value: list[HighValue] = []
        self.times: Counter[float] = Counter()
        self.hourly: dict[str, Counter[float]] = {s: Counter() for s in SERIES}

    def wants(self, t: float) -> bool:
        return self.window.start <= t < self.window.end

    def add(self, rec: Mapping[str, Any], t: float) -> None:
        """One record stamped `t` inside the window (its shown strings already redacted)."""
        self.records += 1
        level = rec.get("level")
        if level == "error":
            self.errors += 1
            self.messages[text_of(rec.get("message"), NO_MESSAGE)] += 1
        kind = outcome(rec)
        if kind == "processed":
            self.processed += 1
            self.hourly["processed"][self.window.hour_of(t)] += 1
            ms = number(rec.get("processingTime"))
            if ms is not None:
                self.times[float(math.floor(ms))] += 1
        elif kind == "failed":
            self.failed += 1
            self.hourly["failed"][self.window.hour_of(t)] += 1
            reason = text_of(rec.get("error"), NO_ERROR)
            self.reasons[reason] += 1
            amount = number(rec.get("amount"))
            if amount is not None and amount > self.high_value_cents:
                self.high_value.append(HighValue(text_of(rec.get("payoutId"), ""), text_of(rec.get("userId"), ""),
                                                 amount, reason, t))
        message = rec.get("message")
        if level in WARN_LEVELS and type(message) is str:
            if is_auth_failure(level, message):
                self.hourly["auth_failures"][self.window.hour_of(t)] += 1
            if is_rate_limited(level, message):
                self.hourly["rate_limited"][self.window.hour_of(t)] += 1

    def figures(self, source: str) -> Figures:
        hours = self.window.hours()
        ranked = sorted(self.high_value, key=lambda h: (-h.amount, h.at, h.payoutId))
        times = sorted(self.times.items())
        return Figures(
            window=self.window, source=source, records=self.records, errors=self.errors,
            processed=self.processed, failed=self.failed,
            top_errors=top(self.messages, self.top_n), failure_reasons=top(self.reasons, self.top_n),
            high_value_count=len(self.high_value), high_value=ranked[:self.list_max],
            hourly={s: [self.hourly[s].get(h, 0) for h in hours] for s in SERIES},
            processing_ms=Percentiles(sum(self.times.values()), nearest_rank(times, 50), nearest_rank(times, 95)),
            high_value_cents=self.high_value_cents)


def alerts_in(history: list[dict[str, Any]], window: Window) -> list[dict[str, Any]]:
    """The firing episodes (alerts engine history) that began inside the window."""
    out = []
    for h in history:
        at = h.get("at")
        if isinstance(at, int | float) and window.start <= at < window.end:
            out.append({"rule": str(h.get("rule", "")), "severity": str(h.get("severity", "")), "at": float(at),
                        "value": h.get("value"), "paged": bool(h.get("paged")), "resolved_at": h.get("resolved_at")})
    return out
