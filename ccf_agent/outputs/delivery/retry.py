"""Backoff: the one retry policy every output uses, and the gate a destination's pushback closes.

`backoff_delay` is exponential with jitter; `Backoff` counts one thing's attempts (a request, a
connection); `Gate` is shared by every request of an output: when the destination pushes back as a
whole (429 to a whole request), it stays closed until a deadline that grows with each pushback, and
while it is backing off one request at a time tests the destination, the others wait for its answer.
"""

from __future__ import annotations

import asyncio
import random


def backoff_delay(attempt: int, initial: float, ceiling: float) -> float:
    """Exponential with jitter in [50%, 100%]: spreads retries without collapsing to zero."""
    base: float = min(ceiling, initial * (2 ** min(attempt, 30)))
    return base * random.uniform(0.5, 1.0)


class Backoff:
    """The attempts of one thing, and how long to wait before the next."""

    def __init__(self, initial: float, ceiling: float) -> None:
        self.initial = initial
        self.ceiling = ceiling
        self.attempt = 0  # failures since the last success

    def next_delay(self, at_least: float | None = None) -> float:
        """The wait before the next attempt (never shorter than the server's `at_least`)."""
        delay = max(backoff_delay(self.attempt, self.initial, self.ceiling), at_least or 0.0)
        self.attempt += 1
        return delay

    async def wait(self, at_least: float | None = None) -> None:
        await asyncio.sleep(self.next_delay(at_least))

    def reset(self) -> None:
        self.attempt = 0


def loop_time() -> float:
    """The event loop's clock (0 outside a loop: status read by a thread)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return 0.0


class Gate:
    def __init__(self, initial: float, ceiling: float) -> None:
        self.backoff = Backoff(initial, ceiling)
        self.until = 0.0  # loop time before which no request leaves
        self._probe_busy = False
        self._probe_free = asyncio.Event()

    @property
    def level(self) -> int:
        """Pushbacks since the destination last took a request: 0 while it takes them."""
        return self.backoff.attempt

    def close(self, retry_after: float | None = None) -> None:
        """The destination pushed back: no request before the backoff (or its Retry-After) is over."""
        delay = self.backoff.next_delay(retry_after)
        self.until = max(self.until, asyncio.get_running_loop().time() + delay)

    def reset(self) -> None:
        """The destination took a request: requests flow freely again."""
        self.backoff.reset()

    def closed_for(self) -> float:
        """Seconds until the gate opens (0 when open), for /status."""
        return max(0.0, self.until - loop_time())

    def passage(self) -> Passage:
        """Around every request (`async with gate.passage():`): wait for the gate to open; while
        backing off, one request at a time."""
        return Passage(self)


class Passage:
    """One request's way through a Gate: a plain object rather than an async generator, since
    every request of every output goes through one."""

    __slots__ = ("gate", "probing")

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.probing = False

    async def __aenter__(self) -> None:
        gate = self.gate
        loop = asyncio.get_running_loop()
        while True:
            wait = gate.until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif gate.level and gate._probe_busy:
                gate._probe_free.clear()
                await gate._probe_free.wait()
            else:
                break
        self.probing = gate._probe_busy = gate.level > 0

    async def __aexit__(self, *exc: object) -> None:
        if self.probing:
            self.gate._probe_busy = False
            self.gate._probe_free.set()


class Refusals:
    """The share of records the destination refused lately: each request's records weigh half as
    much after every later request. One request refused whole among accepted ones (a write queue
    full for a moment) is not a destination refusing most of what it gets; a run of them is."""

    def __init__(self) -> None:
        self.sent = 0.0
        self.refused = 0.0

    def record(self, sent: int, refused: int) -> float:
        """Adds one request's figures; returns the refused share, recent requests weighing most."""
        self.sent = self.sent / 2 + sent
        self.refused = self.refused / 2 + refused
        return self.refused / self.sent if self.sent else 0.0
