"""Batching by time: how long a partial batch waits for more records before its request leaves.

A partial batch leaves `flush_interval` after its oldest record unless records arrive fast enough
to fill half a batch within LINGER_FACTOR x `flush_interval`; then it waits for that. A backlog
ships in few large requests, a trickle still leaves within `flush_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccf_agent.config import OutputConfig
    from ccf_agent.outputs.base import Output

# How much longer than flush_interval a fast-growing batch may wait to fill: bench/run.py's default
# scenario sent 3,255 requests of ~300 documents without it, at ~0.6 ms of agent CPU per request.
LINGER_FACTOR = 20


def half_full_in(age: float, span: float, later_docs: int, later_bytes: int, docs: int, size: int,
                 cfg: OutputConfig) -> float | None:
    """How long a partial batch whose oldest record came `age` s ago should wait for half a batch,
    given that `later_docs` (`later_bytes`) arrived over the last `span` s; None: send it now.

    The rate leaves out the burst the span starts with: records come in bursts (one read, one
    writer's flush), and counting it would see a steady 10,000 lines/s written 100 per 10 ms as
    twice that. The wait is worth it only if the batch is half full within LINGER_FACTOR x
    `flush_interval` of its oldest record."""
    if later_docs <= 0 or span <= 0:
        return None
    need_docs = cfg.batch_max_docs / 2 - docs
    need_bytes = cfg.batch_max_bytes / 2 - size
    if need_docs <= 0 or need_bytes <= 0:
        return None
    wait = need_docs * span / later_docs
    if later_bytes > 0:
        wait = min(wait, need_bytes * span / later_bytes)
    return wait if age + wait <= cfg.flush_interval * LINGER_FACTOR else None


class Linger:
    """An output's batching by time: told of each submit and take, waited on before a take."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.oldest_at: float | None = None  # monotonic time the oldest queued fragment arrived (about)
        # What a waiting batch is woken by: a full batch within `flush_interval`, half of one after
        # it; not every submit or finished request (at 10,000 lines/s those were ~2 wake-ups and
        # timers of the event loop per request for nothing).
        self.full = asyncio.Event()
        self.half_full = asyncio.Event()

    def submitted(self, was_empty: bool) -> None:
        out, cfg = self.output, self.output.cfg
        if was_empty:
            self.oldest_at = time.monotonic()
        if out.queued_docs * 2 >= cfg.batch_max_docs or out.queued_bytes * 2 >= cfg.batch_max_bytes:
            self.half_full.set()
            if out.queued_docs >= cfg.batch_max_docs or out.queued_bytes >= cfg.batch_max_bytes:
                self.full.set()

    def taken(self) -> None:
        self.oldest_at = time.monotonic() if self.output.queue else None

    async def wait(self) -> None:
        """Until the queued batch should leave: `flush_interval` after its oldest record, then
        longer while records keep arriving fast enough to fill half a batch soon. The rate is
        looked at again every `flush_interval`, so a catch-up burst (a read after a stall) that is
        not followed by more records does not hold its batch."""
        out = self.output
        cfg = out.cfg
        seen: tuple[float, int, int] | None = None  # (when, docs, bytes) at the last look at the rate
        while out.queued_docs < cfg.batch_max_docs and out.queued_bytes < cfg.batch_max_bytes:
            if self.oldest_at is None:
                return  # nothing new queued: records due again go at once
            now = time.monotonic()
            oldest = self.oldest_at
            remaining = oldest + cfg.flush_interval - now
            wake = self.full
            if remaining <= 0:
                if seen is None:  # the first look counts what came after the oldest fragment
                    first = out.queue[0] if out.queue else None
                    seen = (oldest, first.count, len(first.body)) if first else (oldest, 0, 0)
                wait = half_full_in(now - oldest, now - seen[0], out.queued_docs - seen[1],
                                    out.queued_bytes - seen[2], out.queued_docs, out.queued_bytes, cfg)
                if wait is None:
                    return
                seen = (now, out.queued_docs, out.queued_bytes)
                remaining, wake = min(wait, cfg.flush_interval), self.half_full
            wake.clear()
            with contextlib.suppress(TimeoutError):  # either way, look again
                async with asyncio.timeout(remaining):
                    await wake.wait()
