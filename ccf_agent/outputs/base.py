"""The one small interface every output implements, and the front of the delivery layer.

An output takes fragments (the part of one read batch routed to it), delivers them, and
calls `token.done()` once every record of the fragment was delivered or dead-lettered.
It knows nothing of files or offsets. `Output` holds the queue in front of the delivery and
the records waiting to be sent again (`retries`), both bounded by bytes, the counters and the
health every output reports, and the request loop that request/response outputs share
(`serve_requests`: a batch per free request slot, refused records back to `retries`);
`delivery/` holds the rest of the layer.

Room: an output has room while its queue holds less than `max_queued_bytes` and the batches it
holds unacknowledged were less than `budget` bytes as read (the agent's `max_inflight_bytes`).
The agent pauses reading a file only while an output that file's records go to has no room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccf_agent.acks import AckToken
from ccf_agent.batch import Events
from ccf_agent.config import OutputConfig
from ccf_agent.credentials import Scrubber, output_secrets
from ccf_agent.outputs.delivery.batch import Batch, Piece, RetryQueue
from ccf_agent.outputs.delivery.health import Health
from ccf_agent.outputs.delivery.linger import Linger
from ccf_agent.outputs.delivery.retry import backoff_delay

log = logging.getLogger("ccf_agent.outputs")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


@dataclass(eq=False, slots=True)
class Fragment:
    body: bytes  # the encoded records, in the output's wire format
    count: int
    token: AckToken | None
    # Records not yet settled: a fragment whose records settle in parts (event by event, item by
    # item, across requests) is acknowledged when the last of them is (see `Output.credit`).
    remaining: int = 0


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


class Slots(Protocol):
    """Request slots: asyncio.Semaphore, or delivery.slots.AdaptiveSlots."""

    async def acquire(self) -> Any: ...

    def release(self) -> None: ...


class Output(ABC):
    """Queue, bounded by bytes, in front of a delivery loop."""

    # Lines per record in this output's wire format: what Batch.records() splits a body into.
    record_lines = 1

    def __init__(self, cfg: OutputConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.queue: deque[Fragment] = deque()
        # Batching by time (delivery.linger), for the types that close batches on age too: told of
        # every fragment queued and every take, here, so no type repeats the hooks.
        self.linger: Linger | None = None
        self.retries = RetryQueue()  # refused records waiting for their own backoff (in queued_*)
        self.queued_bytes = 0
        self.queued_docs = 0
        self.in_flight = 0
        self.held_bytes = 0  # read bytes of the batches this output holds a share of, unacknowledged
        self.budget = 1 << 62  # the agent sets its max_inflight_bytes
        self.room_listeners: list[Callable[[], None]] = []  # told when the output has room again
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

    def record_fields(self) -> set[str]:
        """The top-level record fields this output reads (a pipeline's projection keeps them)."""
        return set()

    def submit(self, events: Events, indices: Sequence[int], token: AckToken | None) -> None:
        self.enqueue(self.encode(events, indices), len(indices), token)

    def enqueue(self, body: bytes, n: int, token: AckToken | None) -> None:
        """`n` encoded records into the queue, the fragment holding a share of `token`."""
        if token is not None:
            token.hold()
            self.held_bytes += token.nbytes
        was_empty = not self.queue
        self.queue.append(Fragment(body, n, token, n))
        self.queued_bytes += len(body)
        self.queued_docs += n
        self.stats.docs_in += n
        self._idle.clear()
        self._wake.set()
        if self.queued_bytes >= self.cfg.max_queued_bytes or self.held_bytes >= self.budget:
            self._room.clear()
        if self.linger is not None:
            self.linger.submitted(was_empty)

    @property
    def has_room(self) -> bool:
        return self.queued_bytes < self.cfg.max_queued_bytes and self.held_bytes < self.budget

    def _room_check(self) -> None:
        """After records left the queue or were acknowledged: room again tells those waiting."""
        if not self._room.is_set() and self.has_room:
            self._room.set()
            for tell in self.room_listeners:
                tell()

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
        self._room_check()
        if self.linger is not None:
            self.linger.taken()
        return taken

    def take_batch(self, max_docs: int, max_bytes: int) -> Batch:
        """The records of one request: refused ones whose backoff is over first, then fragments from
        the queue, up to the limits (at least one piece when any is due or queued)."""
        pieces = self.retries.take(asyncio.get_running_loop().time(), max_docs, max_bytes) if self.retries else []
        if pieces:
            docs = sum(p.count for p in pieces)
            nbytes = sum(len(p.body) for p in pieces)
            self.queued_docs -= docs
            self.queued_bytes -= nbytes
            if docs < max_docs and nbytes < max_bytes and self.queue:
                pieces += self._pieces(self.take(max_docs - docs, max_bytes - nbytes))
            else:
                self._room_check()
        else:
            pieces = self._pieces(self.take(max_docs, max_bytes))
        return Batch(self, pieces, self.record_lines)

    @staticmethod
    def _pieces(fragments: list[Fragment]) -> list[Piece]:
        pieces = [Piece(f.body, f.count, f) for f in fragments]
        for f in fragments:
            f.body = b""  # the pieces hold it now: records refused again are held once, as their own piece
        return pieces

    def retry_later(self, pieces: Sequence[Piece]) -> None:
        """Records to send again once their own backoff is over (see RetryQueue)."""
        for p in pieces:
            self.retries.add(p)
            self.queued_docs += p.count
            self.queued_bytes += len(p.body)
            self.stats.docs_retried += p.count
        if pieces:
            self._idle.clear()
            self._wake.set()
            if not self.has_room:
                self._room.clear()

    def acked(self, fragments: Sequence[Fragment]) -> None:
        n = sum(f.count for f in fragments)
        now = time.time()
        self.stats.docs_acked += n
        self.stats.last_ok_at = now
        self.stats.acked_times.append((now, n))
        for f in fragments:
            if f.token is not None:
                self.held_bytes -= f.token.nbytes
                f.token.done()
        self._room_check()

    def credit(self, fragment: Fragment, n: int) -> bool:
        """`n` more records of `fragment` are settled (delivered or dead-lettered); it is
        acknowledged with its last one (True then)."""
        fragment.remaining -= n
        if fragment.remaining == 0:
            self.acked([fragment])
            return True
        if fragment.remaining < 0:
            raise RuntimeError(f"output {self.name}: a fragment's records were settled twice")
        return False

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
        """Until something is queued or due again; meanwhile the output counts as idle when nothing
        waits at all (what `drain` waits for)."""
        loop = asyncio.get_running_loop()
        while not self.queue:
            due = self.retries.next_due()
            if due is not None and due <= loop.time():
                return
            self._update_idle()
            self._wake.clear()
            if due is None:
                await self._wake.wait()
                continue
            try:
                async with asyncio.timeout_at(due):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def batch_docs(self) -> int:
        """Records a request may carry now (an output adapting it to pushback overrides this)."""
        return self.cfg.batch_max_docs

    async def next_request(self, slots: Slots, linger: Callable[[], Awaitable[None]] | None = None) -> Batch:
        """Wait for work and a free request slot, then take a batch. The caller owns the slot (and has
        counted the request in `in_flight`) until it releases it; `linger` may let the batch grow."""
        while True:
            await self.wait_for_work()
            await slots.acquire()
            if linger is not None:
                await linger()
            batch = self.take_batch(self.batch_docs(), self.cfg.batch_max_bytes)
            if batch.pieces:
                self.in_flight += 1
                return batch
            slots.release()

    async def serve_requests(self, deliver: Callable[[Batch], Awaitable[list[Piece]]], slots: Slots,
                             linger: Callable[[], Awaitable[None]] | None = None) -> None:
        """The request loop of request/response outputs: a batch is taken when a request slot is free
        and delivered by a task of its own, which settles every record of it and returns the pieces
        to send again; those wait for their own backoff in `retries`, not in the slot, so new
        records keep flowing meanwhile."""
        async with asyncio.TaskGroup() as tg:
            while True:
                # No name for the batch here: it would keep the last request's body alive while
                # the loop waits for the next (a few MiB of peak RSS per output).
                tg.create_task(self._request(deliver, await self.next_request(slots, linger), slots))

    async def _request(self, deliver: Callable[[Batch], Awaitable[list[Piece]]], batch: Batch,
                       slots: Slots) -> None:
        try:
            self.retry_later(await self.settled(deliver, batch))
        finally:
            self.in_flight -= 1
            slots.release()
            self._update_idle()  # (records to send again woke the request loop in retry_later)

    async def settled(self, deliver: Callable[[Batch], Awaitable[list[Piece]]], batch: Batch) -> list[Piece]:
        """`deliver(batch)`, and if it fails unexpectedly (a bug), every record it had not settled
        back for another try: a bug must not stop shipping or lose records."""
        try:
            return await deliver(batch)
        except Exception as e:  # noqa: BLE001
            log.exception("output %s: unexpected error while delivering; sending the records again", self.name)
            self.health.report("internal", f"unexpected {type(e).__name__} while delivering: {e}; resending")
            if batch.settled:
                return []
            cfg = self.cfg
            return batch.retry_all(lambda attempt: backoff_delay(attempt - 1, cfg.backoff_initial, cfg.backoff_max),
                                   asyncio.get_running_loop().time())

    def _update_idle(self) -> None:
        if not self.queue and not self.retries and self.in_flight == 0:
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
