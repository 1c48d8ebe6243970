"""Request slots whose number adapts to what the destination takes (AIMD, after Vector's adaptive
request concurrency).

The limit starts at the output's `max_in_flight` and never goes above it. Over each window (about
one round trip, measured), a request answered with pushback (429 or 503 to the request, a timeout,
or most of its records refused) makes the limit shrink at the window's end (x0.9, at least by one,
never below one): a cluster that cannot keep up gets fewer requests at once instead of the same
number refused. A window with every slot used and no pushback lets it grow by one again.

Unlike Vector, a longer round trip alone is not read as pushback: a batch's size (from a handful of
records to `batch_max_docs`) moves the round trip far more than the cluster's load does.
"""

from __future__ import annotations

import asyncio
import time

DECREASE = 0.9
EWMA = 0.4  # weight of the latest window's mean round trip
MIN_WINDOW = 0.05  # seconds: a window is at least this long, whatever the round trips


class AdaptiveSlots:
    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.in_use = 0
        self._free = asyncio.Event()
        self._free.set()
        self._window_end = 0.0
        self._rtt: float | None = None  # moving average of round trips, seconds
        self._sum = 0.0
        self._n = 0
        self._pushback = False
        self._reached = False
        self.decreases = 0  # for /status
        self.increases = 0

    async def acquire(self) -> None:
        while self.in_use >= self.limit:
            self._free.clear()
            await self._free.wait()
        self.in_use += 1
        if self.in_use >= self.limit:
            self._reached = True

    def release(self) -> None:
        self.in_use -= 1
        if self.in_use < self.limit:
            self._free.set()

    def observe(self, rtt: float | None, pushback: bool) -> None:
        """One request's outcome: its round trip (None when it had no answer) and whether the
        destination pushed back."""
        self._pushback = self._pushback or pushback
        if rtt is not None and not pushback:
            self._sum += rtt
            self._n += 1
        now = time.monotonic()
        if now < self._window_end:
            return
        if self._n:
            mean = self._sum / self._n
            self._rtt = mean if self._rtt is None else EWMA * mean + (1 - EWMA) * self._rtt
        if self._pushback and self.limit > 1:
            self.limit = max(1, min(self.limit - 1, int(self.limit * DECREASE)))
            self.decreases += 1
        elif not self._pushback and self._reached and self.limit < self.maximum:
            self.limit += 1
            self.increases += 1
            self._free.set()
        self._window_end = now + max(MIN_WINDOW, self._rtt or 0.0)
        self._sum, self._n, self._pushback = 0.0, 0, False
        self._reached = self.in_use >= self.limit
