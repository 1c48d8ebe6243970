"""The outbox: notifications waiting for delivery, one FIFO per notifier, and atomic state files.

A notice leaves the outbox only when its notifier acknowledged it (2xx) or refused it for good
(4xx other than 408/429), so a receiver that is down keeps every notice until it is back. Each
notifier's queue is independent: a dead Slack never holds back Alertmanager. Repeats of a still
firing alert supersede an undelivered older repeat for the same rule (a refresh, not news), so a
long outage cannot pile them up; firing and resolved notices are never superseded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

Notice = dict[str, Any]  # JSON-ready: id, notifier, rule, status, repeat, created, ... (see engine)


class Outbox:
    def __init__(self, notifiers: Iterable[str], limits: Mapping[str, int] | None = None) -> None:
        self.queues: dict[str, deque[Notice]] = {n: deque() for n in notifiers}
        self.limits = dict(limits or {})
        self.wakeups: dict[str, asyncio.Event] = {n: asyncio.Event() for n in self.queues}
        self.dropped: dict[str, int] = dict.fromkeys(self.queues, 0)

    def put(self, notice: Notice) -> Notice | None:
        """Queue `notice`; returns a notice dropped to make room, if any (the caller logs it)."""
        q = self.queues[notice["notifier"]]
        if notice.get("repeat"):
            for old in [o for o in q if o.get("repeat") and o["rule"] == notice["rule"]]:
                q.remove(old)
        dropped = None
        limit = self.limits.get(notice["notifier"])
        if limit and len(q) >= limit:
            dropped = q.popleft()
            self.dropped[notice["notifier"]] += 1
        q.append(notice)
        self.wakeups[notice["notifier"]].set()
        return dropped

    def peek(self, notifier: str) -> Notice | None:
        q = self.queues[notifier]
        return q[0] if q else None

    def done(self, notifier: str, notice_id: str) -> None:
        q = self.queues[notifier]
        if q and q[0]["id"] == notice_id:
            q.popleft()

    def depth(self, notifier: str | None = None) -> int:
        if notifier is not None:
            return len(self.queues.get(notifier, ()))
        return sum(len(q) for q in self.queues.values())

    def to_json(self) -> dict[str, list[Notice]]:
        return {n: list(q) for n, q in self.queues.items()}

    def load(self, data: Mapping[str, list[Notice]]) -> list[Notice]:
        """Restore queues; returns notices for notifiers that no longer exist (dropped)."""
        orphans = []
        for n, items in data.items():
            if n in self.queues:
                self.queues[n].extend(items)
                if items:
                    self.wakeups[n].set()
            else:
                orphans.extend(items)
        return orphans


