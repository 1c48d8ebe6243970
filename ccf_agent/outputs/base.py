"""The one small interface every output implements, and the front of the delivery layer.

An output takes fragments (the part of one read batch routed to it), delivers them, and
calls `token.done()` once every record of the fragment was delivered or dead-lettered.
It knows nothing of files or offsets. `Output` holds the queue in front of the delivery (bounded
by bytes), the counters and the health every output reports, and the request loop that
request/response outputs share (`serve_requests`); `delivery/` holds the rest of the layer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccf_agent.acks import AckToken
from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.credentials import Scrubber, output_secrets
from ccf_agent.outputs.delivery.health import Health

log = logging.getLogger("ccf_agent.outputs")


@dataclass(slots=True)
class Fragment:
    body: bytes  # the encoded records, in the output's wire format
    count: int
    token: AckToken | None


@dataclass(eq=False, slots=True)
class Held:
    """A fragment taken from the queue whose records settle in parts (event by event, item by item,
    across requests): acknowledged when the last of them is (see `Output.credit`)."""

    fragment: Fragment
    remaining: int


@dataclass
class OutputStats:
    docs_in: int = 0
    docs_acked: int = 0
    docs_retried: int = 0
    docs_dead: int = 0
    duplicates: int = 0  # sent again and found already stored (409), or resent in an unacked window
    requests: int = 0
    request_errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    acked_times: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=120))

    def observe_latency(self, seconds: float) -> None:
        self.latency_sum += seconds
        for i, b in enumerate(LATENCY_BUCKETS):
            if seconds <= b:
                self.latency_buckets[i] += 1

    def docs_per_second(self, now: float, window: float = 60.0) -> float:
        recent = [(t, n) for t, n in self.acked_times if now - t <= window]
        return sum(n for _, n in recent) / window if recent else 0.0


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


class Output(ABC):
    """Queue, bounded by bytes, in front of a delivery loop."""

    def __init__(self, cfg: OutputConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.queue: deque[Fragment] = deque()
        self.queued_bytes = 0
        self.queued_docs = 0
        self.in_flight = 0
        self.stats = OutputStats()
        # Error texts reach the log, /status, /health and `ccf-agent status`: never with a credential.
        self.scrub = Scrubber(output_secrets(cfg))
        self.health = Health(cfg.name, logging.getLogger(f"ccf_agent.outputs.{cfg.type}"), self.scrub, self.stats)
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ producer side (sync, hot)

    @abstractmethod
    def encode(self, events: Events, indices: Sequence[int]) -> bytes:
        """The records at `indices`, in this output's wire format."""

    def submit(self, events: Events, indices: Sequence[int], token: AckToken | None) -> None:
        body = self.encode(events, indices)
        if token is not None:
            token.hold()
        self.queue.append(Fragment(body, len(indices), token))
        self.queued_bytes += len(body)
        self.queued_docs += len(indices)
        self.stats.docs_in += len(indices)
        self._idle.clear()
        self._wake.set()
        if self.queued_bytes >= self.cfg.max_queued_bytes:
            self._room.clear()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    # ------------------------------------------------------------------ consumer side

    def take(self, max_docs: int, max_bytes: int) -> list[Fragment]:
        """Whole fragments up to the limits (at least one)."""
        taken: list[Fragment] = []
        docs = nbytes = 0
        while self.queue:
            f = self.queue[0]
            if taken and (docs + f.count > max_docs or nbytes + len(f.body) > max_bytes):
                break
            self.queue.popleft()
            taken.append(f)
            docs += f.count
            nbytes += len(f.body)
        self.queued_bytes -= nbytes
        self.queued_docs -= docs
        if self.queued_bytes < self.cfg.max_queued_bytes:
            self._room.set()
        return taken

    def acked(self, fragments: Sequence[Fragment]) -> None:
        n = sum(f.count for f in fragments)
        now = time.time()
        self.stats.docs_acked += n
        self.stats.last_ok_at = now
        self.stats.acked_times.append((now, n))
        for f in fragments:
            if f.token is not None:
                f.token.done()

    def credit(self, held: Held, n: int) -> None:
        """`n` more records of `held` are settled (delivered or dead-lettered); the fragment is
        acknowledged, and leaves `in_flight`, with its last one."""
        held.remaining -= n
        if held.remaining == 0:
            self.in_flight -= 1
            self.acked([held.fragment])

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    @property
    def problem(self) -> str | None:
        """The kind of the current trouble (auth, tls, throttled, ...), None while delivering fine."""
        return self.health.problem

    def note_error(self, message: str) -> str:
        """Remember the latest error; returns it with the output's credentials hidden, for the log."""
        return self.health.note(message)

    async def wait_for_work(self) -> None:
        """Until something is queued; meanwhile the output counts as idle (what `drain` waits for)."""
        while not self.queue:
            self._update_idle()
            self._wake.clear()
            await self._wake.wait()

    async def next_request(self, slots: asyncio.Semaphore,
                           linger: Callable[[], Awaitable[None]] | None = None) -> list[Fragment]:
        """Wait for work and a free request slot, then take a batch. The caller owns the slot (and has
        counted the request in `in_flight`) until it releases it; `linger` may let the batch grow."""
        while True:
            await self.wait_for_work()
            await slots.acquire()
            if linger is not None:
                await linger()
            fragments = self.take(self.cfg.batch_max_docs, self.cfg.batch_max_bytes)
            if fragments:
                self.in_flight += 1
                return fragments
            slots.release()

    async def serve_requests(self, deliver: Callable[[list[Fragment]], Awaitable[None]], slots: asyncio.Semaphore,
                             linger: Callable[[], Awaitable[None]] | None = None) -> None:
        """The request loop of request/response outputs: a batch is taken when a request slot is free
        and delivered by a task of its own; the slot is free again when `deliver` returns, which it
        does once every record of the batch is settled (delivered or dead-lettered)."""
        async with asyncio.TaskGroup() as tg:
            while True:
                fragments = await self.next_request(slots, linger)
                tg.create_task(self._request(deliver, fragments, slots))

    async def _request(self, deliver: Callable[[list[Fragment]], Awaitable[None]], fragments: list[Fragment],
                       slots: asyncio.Semaphore) -> None:
        try:
            await deliver(fragments)
        finally:
            self.in_flight -= 1
            slots.release()
            self._update_idle()
            self._wake.set()

    def _update_idle(self) -> None:
        if not self.queue and self.in_flight == 0:
            self._idle.set()

    async def drain(self, deadline: float) -> bool:
        """Wait until everything queued was delivered; False if the loop-time deadline came first."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    @abstractmethod
    async def run(self) -> None:
        """Deliver until cancelled."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def status(self) -> dict[str, Any]:
        now = time.time()
        s = self.stats
        return {
            "name": self.name, "type": self.cfg.type, "healthy": self.healthy, "problem": self.problem,
            "queued_docs": self.queued_docs, "queued_bytes": self.queued_bytes, "in_flight": self.in_flight,
            "docs_acked": s.docs_acked, "docs_retried": s.docs_retried, "docs_dead_lettered": s.docs_dead,
            "duplicates": s.duplicates, "requests": s.requests, "request_errors": s.request_errors,
            "docs_per_second_1m": round(s.docs_per_second(now), 1),
            "last_error": s.last_error, "last_error_at": s.last_error_at, "last_ok_at": s.last_ok_at,
        }
