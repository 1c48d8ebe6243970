"""Rule state machines: pure, clock passed in, no I/O.

Every rule measures one number over event time and a boolean "the condition holds"; the shared
lifecycle turns that into inactive -> pending -> firing -> (resolved) inactive, holding `for:`
before firing, exactly as Prometheus does. Windows are per-second buckets with a running total,
so feeding a batch costs a Counter update and evaluating costs O(seconds that slid out).

A window at time T covers the buckets of the seconds (floor(T) - window, floor(T)]: a record
stamped t counts while floor(T) - floor(t) < window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ccf_agent.config.alerts import RuleConfig

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"


class Window:
    """Counts per event-time second over a sliding window, with a running total."""

    __slots__ = ("span", "buckets", "total", "hi")

    def __init__(self, span: float) -> None:
        self.span = max(1, int(span))
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.hi: int | None = None  # floor(T) at the last advance

    def add(self, times: list[float], now: float) -> None:
        """Count `times` (already known to be matches); `now` is the engine clock after the batch."""
        self.advance(now)
        hi = self.hi
        assert hi is not None
        lo = hi - self.span
        b = self.buckets
        # Counter's C loop does the per-record work; the Python loop runs once per distinct second.
        for sec, n in Counter(map(int, times)).items():
            if sec > hi:
                sec = hi  # stamped in the future (clock skew): count it as now
            elif sec <= lo:
                continue  # older than the window: nothing it could change
            b[sec] = b.get(sec, 0) + n
            self.total += n

    def advance(self, now: float) -> None:
        hi = int(now)
        if self.hi is not None and hi <= self.hi:
            return
        old_lo = (self.hi - self.span) if self.hi is not None else hi - self.span
        self.hi = hi
        lo = hi - self.span
        b = self.buckets
        if lo - old_lo > len(b):  # a long jump: cheaper to rebuild than to walk every second
            for sec in [s for s in b if s <= lo]:
                self.total -= b.pop(sec)
        else:
            for sec in range(old_lo + 1, lo + 1):
                n = b.pop(sec, 0)
                if n:
                    self.total -= n

    def to_json(self) -> dict[str, Any]:
        return {"hi": self.hi, "buckets": {str(k): v for k, v in self.buckets.items()}}

    def load(self, data: Mapping[str, Any]) -> None:
        self.hi = data.get("hi")
        self.buckets = {int(k): int(v) for k, v in data.get("buckets", {}).items()}
        if self.hi is not None:
            lo = self.hi - self.span  # the window may have been shortened by a config change
            self.buckets = {k: v for k, v in self.buckets.items() if k > lo}
        self.total = sum(self.buckets.values())


class Rule:
    """Lifecycle shared by every kind, plus what the engine needs to decide on notifications."""

    def __init__(self, cfg: RuleConfig) -> None:
        self.cfg = cfg
        self.state = INACTIVE
        self.value = 0.0
        self.since: float | None = None      # event time the current state began
        self.active_at: float | None = None  # event time the condition began to hold (startsAt)
        self.count = 0                       # matching records since the condition began to hold
        # The last matching record, or its document (bytes, decoded when a notice needs it).
        self.sample: Mapping[str, Any] | bytes | None = None
        # Notification bookkeeping (decided by the engine, persisted with the rule):
        self.notified = False                # a firing notification was enqueued for this episode
        self.notify_due: float | None = None  # wall time the firing notification may go (group_wait)
        self.last_sent: dict[str, float] = {}  # notifier -> wall time of the last enqueued notice
        self.delivered: dict[str, dict[str, Any]] = {}  # notifier -> last delivery outcome

    # -- fed by the engine --------------------------------------------------------------------

    def feed(self, when_times: list[float], of_times: list[float] | None, now: float) -> None:
        raise NotImplementedError

    def measure(self, now: float) -> tuple[bool, float, float]:
        """(holds, value, onset): onset is the event time the condition began to hold."""
        raise NotImplementedError

    def window_count(self) -> int:
        return 0

    def variables(self) -> dict[str, Any]:
        return {"value": self.value, "count": self.count, "threshold": self.cfg.threshold,
                "rule": self.cfg.name, "severity": self.cfg.severity}

    # -- lifecycle ----------------------------------------------------------------------------

    def evaluate(self, now: float) -> str | None:
        """Advance the lifecycle to event time `now`; returns "firing" or "resolved" on those edges."""
        holds, self.value, onset = self.measure(now)
        if holds:
            if self.state == INACTIVE:
                self.state, self.since, self.active_at = PENDING, now, min(onset, now)
                self.count = self.window_count()
            if self.state == PENDING and self.active_at is not None and now - self.active_at >= self.cfg.for_:
                self.state, self.since = FIRING, now
                return FIRING
            return None
        if self.state == INACTIVE:
            return None
        was = self.state
        self.state, self.since = INACTIVE, now
        # A pending condition that breaks before `for:` is over never existed for the receivers.
        return "resolved" if was == FIRING else None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "value": self.value, "since": self.since, "active_at": self.active_at,
                "count": self.count, "notified": self.notified, "notify_due": self.notify_due,
                "last_sent": self.last_sent, "delivered": self.delivered}

    def load(self, data: Mapping[str, Any]) -> None:
        self.state = data.get("state", INACTIVE)
        if self.state not in (INACTIVE, PENDING, FIRING):
            self.state = INACTIVE
        self.value = float(data.get("value", 0.0))
        self.since, self.active_at = data.get("since"), data.get("active_at")
        self.count = int(data.get("count", 0))
        self.notified = bool(data.get("notified", False))
        self.notify_due = data.get("notify_due")
        self.last_sent = dict(data.get("last_sent", {}))
        self.delivered = dict(data.get("delivered", {}))


class CountRule(Rule):
    """Matching records in the window at or above `threshold` (a match rule is threshold 1)."""

    def __init__(self, cfg: RuleConfig) -> None:
        super().__init__(cfg)
        self.window = Window(cfg.window)

    def feed(self, when_times: list[float], of_times: list[float] | None, now: float) -> None:
        self.window.add(when_times, now)
        if self.state != INACTIVE:
            self.count += len(when_times)

    def window_count(self) -> int:
        return self.window.total

    def measure(self, now: float) -> tuple[bool, float, float]:
        self.window.advance(now)
        n = self.window.total
        return n >= self.cfg.threshold, float(n), now

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "window": self.window.to_json()}

    def load(self, data: Mapping[str, Any]) -> None:
        super().load(data)
        self.window.load(data.get("window", {}))


class RatioRule(Rule):
    """Records matching `when` over records matching `of`, above `threshold`, once `of` >= min_count."""

    def __init__(self, cfg: RuleConfig) -> None:
        super().__init__(cfg)
        self.num = Window(cfg.window)
        self.den = Window(cfg.window)

    def feed(self, when_times: list[float], of_times: list[float] | None, now: float) -> None:
        self.num.add(when_times, now)
        self.den.add(of_times or [], now)
        if self.state != INACTIVE:
            self.count += len(when_times)

    def window_count(self) -> int:
        return self.num.total

    def measure(self, now: float) -> tuple[bool, float, float]:
        self.num.advance(now)
        self.den.advance(now)
        den = self.den.total
        ratio = self.num.total / den if den else 0.0
        return den >= self.cfg.min_count and ratio > self.cfg.threshold, ratio, now

    def variables(self) -> dict[str, Any]:
        return {**super().variables(), "percent": self.value * 100, "total": self.den.total,
                "matched": self.num.total}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "num": self.num.to_json(), "den": self.den.to_json()}

    def load(self, data: Mapping[str, Any]) -> None:
        super().load(data)
        self.num.load(data.get("num", {}))
        self.den.load(data.get("den", {}))


class AbsenceRule(Rule):
    """No matching record for `window` of event time; the clock starts when the engine first runs."""

    def __init__(self, cfg: RuleConfig) -> None:
        super().__init__(cfg)
        self.last_seen: float | None = None

    def feed(self, when_times: list[float], of_times: list[float] | None, now: float) -> None:
        if when_times:
            # Clamp to the engine clock: one record stamped next year must not silence the rule.
            latest = min(max(when_times), now)
            if self.last_seen is None or latest > self.last_seen:
                self.last_seen = latest

    def measure(self, now: float) -> tuple[bool, float, float]:
        if self.last_seen is None:
            self.last_seen = now
        silent = now - self.last_seen
        return silent >= self.cfg.window, silent, self.last_seen + self.cfg.window

    def variables(self) -> dict[str, Any]:
        seen = self.last_seen
        stamp = datetime.fromtimestamp(seen, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if seen is not None else None
        return {**super().variables(), "last_seen": stamp}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "last_seen": self.last_seen}

    def load(self, data: Mapping[str, Any]) -> None:
        super().load(data)
        self.last_seen = data.get("last_seen")


def make_rule(cfg: RuleConfig) -> Rule:
    kind = {"ratio": RatioRule, "count": CountRule, "match": CountRule, "absence": AbsenceRule}[cfg.kind]
    return kind(cfg)
