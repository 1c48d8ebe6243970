"""Request slots whose number, and the size of whose batches, adapt to what the destination takes
(AIMD, after Vector's adaptive request concurrency).

Both start at the output's own limits (`max_in_flight`, `batch_max_docs`) and never go above them.
Over each window (about one round trip, measured) the controller counts the records sent and those
refused with 429 (`observe`). At the window's end:
- pushback (a request refused whole, 429 or 503, or no answer in time; or at least DEC_SHARE of
  the window's records refused): the number of slots halves and so does the batch size (never
  below one slot, or a sixteenth of `batch_max_docs`). A cluster that cannot keep up gets fewer
  and smaller requests at once, instead of the same number of large ones refused whole.
- a clean window (at most INC_SHARE refused): the batch size doubles back, and once it is whole,
  one more slot (when every slot was in use); up to one below the number of slots that met
  pushback at once, that number itself only after PROBE_EVERY clean windows, so the probing that
  finds a cluster's capacity does not cost refused requests every other round trip.
- in between: as they are. A cluster refusing a steady share whatever the load (a hot shard) does
  not get starved by it.
- Requests sent before the latest decrease answer for the old limit: their refusals are not
  counted again (TCP's one decrease per round trip), and a window with no answer to a request
  sent since is no evidence either way.

Unlike Vector, a longer round trip alone is not read as pushback: a batch's size (from a handful of
records to `batch_max_docs`) moves the round trip far more than the cluster's load does.

Tuned against a node with `thread_pool.write.queue_size: 1` and 8 requests allowed
(tests/outputs_es/test_pushback.py; 100,000 records a run, measured in turns with its twin on the
default queue, 2 shared cores): with every rule above it took 84-102% of its twin's rate in three
runs; counting stale refusals again kept it at 1-2 requests for most of a run (58-61%), probing the
old limit at every clean window refused a third of the records (60-79%).
"""

from __future__ import annotations

import asyncio
import time

DECREASE = 0.5  # TCP's halving: from 8 requests to 2 in two windows
DEC_SHARE = 0.5  # a window with at least this share of its records refused is pushback
INC_SHARE = 0.1  # ...with at most this share, a clean one
PROBE_EVERY = 3  # clean windows before the limit tries again the number of slots that met pushback
EWMA = 0.4  # weight of the latest window's mean round trip
MIN_WINDOW = 0.05  # seconds: a window is at least this long, whatever the round trips


class AdaptiveSlots:
    def __init__(self, maximum: int, batch_docs: int = 1 << 30) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.max_batch = max(1, batch_docs)
        self.min_batch = max(1, batch_docs // 16)
        self.batch_docs = self.max_batch  # records a request may carry now
        self.in_use = 0
        self._free = asyncio.Event()
        self._free.set()
        self._window_end = 0.0
        self._rtt: float | None = None  # moving average of round trips, seconds
        self._sum = 0.0
        self._n = 0
        self._pushback = False
        self._sent = 0
        self._refused = 0
        self._reached = False
        self._ceiling: int | None = None  # the limit when pushback last came
        self._clean = 0  # clean windows since the limit last changed
        self._decreased_at = 0.0  # monotonic time of the latest decrease

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

    def observe(self, sent_at: float, rtt: float | None, pushback: bool, sent: int = 0, refused: int = 0) -> None:
        """One request's outcome: when it was sent (time.monotonic()), its round trip (None when it
        had no usable answer), whether it was refused whole, and how many of its records it carried
        and had refused. A request sent before the latest decrease tells of the old limit: its
        pushback is not counted again (TCP's one decrease per round trip)."""
        if sent_at >= self._decreased_at:
            self._pushback = self._pushback or pushback
            self._sent += sent
            self._refused += refused
        if rtt is not None and not pushback:
            self._sum += rtt
            self._n += 1
        now = time.monotonic()
        if now < self._window_end:
            return
        if self._n:
            mean = self._sum / self._n
            self._rtt = mean if self._rtt is None else EWMA * mean + (1 - EWMA) * self._rtt
        share = self._refused / self._sent if self._sent else 0.0
        if self._pushback or share >= DEC_SHARE:
            self._ceiling, self._clean, self._decreased_at = self.limit, 0, now
            self.limit = max(1, min(self.limit - 1, int(self.limit * DECREASE)))
            self.batch_docs = max(self.min_batch, self.batch_docs // 2)
        elif self._sent and share <= INC_SHARE:  # (no answer to a request sent since: no evidence yet)
            self._clean += 1
            if self.batch_docs < self.max_batch:
                self.batch_docs = min(self.max_batch, self.batch_docs * 2)
            elif self._reached and self.limit < self.maximum and self._may_grow():
                self.limit += 1
                self._clean = 0
                self._free.set()
        self._window_end = now + max(MIN_WINDOW, self._rtt or 0.0)
        self._sum, self._n, self._pushback = 0.0, 0, False
        self._sent = self._refused = 0
        self._reached = self.in_use >= self.limit

    def _may_grow(self) -> bool:
        """Up to one below the limit that met pushback, at once; to it (and past it, once it held
        there), only after PROBE_EVERY clean windows: each try costs refused requests."""
        if self._ceiling is None or self.limit + 1 < self._ceiling:
            return True
        if self._clean < PROBE_EVERY:
            return False
        if self.limit >= self._ceiling:
            self._ceiling = None  # it held at the old ceiling: the cluster takes more now
        return True
