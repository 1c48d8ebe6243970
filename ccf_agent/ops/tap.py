"""`ccf-agent tap`'s daemon side: a sample of the events as they leave the pipeline and router.

The dispatcher offers each batch's documents (already redacted: what the outputs get, never more)
to `Taps` only while someone taps: `if taps.clients:` is the whole cost of the feature otherwise,
one attribute check per batch. When tapped, the filters apply per batch (the input is the batch's,
a route or an output picks whole index lists of the router's buckets) and each client is handed at
most `TAP_RATE` events a second and holds at most `TAP_BUFFER`: what does not fit is counted as
dropped, never waited for. The status
endpoint drains a client's buffer into its stream (server.py); a client that reads slowly loses
events, the outputs nothing.

The stream is NDJSON: one line per event, `{"input":..,"route":..,"outputs":[..],"event":<doc>}`
with the document spliced in as shipped, and once a second (and at the end) `{"dropped": N}`, the
events this client lost so far, which also tells the client the daemon is alive.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

TAP_BUFFER = 1000  # events a client may hold unsent: ~1 MB at most for the app's records
# Events a client is handed per second (a sample, as the name says): what the daemon does for a tap
# is bounded by this, not by how fast the client reads; the rest are dropped and counted like a slow
# reader's.
TAP_RATE = 1000
MAX_TAPS = 4  # clients at once: the endpoint's other uses (status, scrapes, health) keep their share

# (route, outputs) of each of the router's buckets, in its order: the default route last.
Targets = Sequence[tuple[str, tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class TapFilter:
    """What a client asked for; None: any."""

    input: str | None = None
    route: str | None = None
    output: str | None = None
    limit: int | None = None  # events in all; the client stops there, the daemon stops taking


class TapClient:
    """One tap connection: its filter, the events waiting to be sent, and what it lost."""

    def __init__(self, want: TapFilter, capacity: int = TAP_BUFFER, rate: int = TAP_RATE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.want = want
        self.capacity = capacity
        self.rate, self.clock = rate, clock
        self.allowed = float(rate)  # a token bucket: a second's worth at once, refilled at `rate`
        self.refilled = clock()
        self.left = want.limit  # events still wanted (None: no limit)
        self.held = 0  # events in `chunks`
        self.dropped = 0
        self.chunks: deque[tuple[bytes, list[bytes]]] = deque()  # (line prefix, documents)
        self.ready = asyncio.Event()

    def offer(self, input_id: str, docs: Sequence[bytes], buckets: Sequence[Sequence[int]], targets: Targets) -> None:
        want = self.want
        if want.input is not None and want.input != input_id:
            return
        now = self.clock()  # once per batch
        self.allowed = min(float(self.rate), self.allowed + (now - self.refilled) * self.rate)
        self.refilled = now
        for k, indices in enumerate(buckets):
            if not indices:
                continue
            route, outputs = targets[k]
            if (want.route is not None and want.route != route) or (want.output is not None
                                                                   and want.output not in outputs):
                continue
            wanted = len(indices) if self.left is None else min(len(indices), self.left)
            n = min(wanted, self.capacity - self.held, int(self.allowed))
            self.allowed -= n
            self.dropped += wanted - n
            if n:
                if self.left is not None:
                    self.left -= n
                prefix = orjson.dumps({"input": input_id, "route": route, "outputs": outputs})[:-1] + b',"event":'
                self.chunks.append((prefix, [docs[i] for i in indices[:n]]))
                self.held += n
                self.ready.set()

    def take(self) -> tuple[bytes, int]:
        """The lines of every event held (and how many), emptying the buffer."""
        out = bytearray()
        n = 0
        while self.chunks:
            prefix, docs = self.chunks.popleft()
            for doc in docs:
                out += prefix
                out += doc
                out += b"}\n"
            n += len(docs)
        self.held = 0
        self.ready.clear()
        return bytes(out), n

    @property
    def finished(self) -> bool:
        """Its limit is reached and every event it took is handed over."""
        return self.left == 0 and not self.chunks


class Taps:
    """The clients tapping now (the dispatcher's one check per batch), and the totals for /metrics."""

    def __init__(self) -> None:
        self.clients: list[TapClient] = []  # empty (falsy) when nobody taps
        self.sent = 0  # events written to tap clients, all clients since start
        self.dropped = 0  # events a tap client had no room for
        self.names: dict[str, tuple[str, ...]] = {}  # "input"/"route"/"output" -> the running config's names
        self.closed = False  # the daemon stops: every stream ends with what it holds

    def offer(self, input_id: str, docs: Sequence[bytes], buckets: Sequence[Sequence[int]], targets: Targets) -> None:
        for client in self.clients:
            client.offer(input_id, docs, buckets, targets)

    def attach(self, want: TapFilter) -> TapClient | None:
        """A new client, or None when MAX_TAPS are attached."""
        if len(self.clients) >= MAX_TAPS:
            return None
        client = TapClient(want)
        self.clients = [*self.clients, client]  # a new list: the dispatcher may be iterating the old one
        return client

    def close(self) -> None:
        self.closed = True
        for client in self.clients:
            client.ready.set()

    def detach(self, client: TapClient) -> None:
        self.clients = [c for c in self.clients if c is not client]
        self.dropped += client.dropped

    def unknown(self, want: TapFilter) -> str | None:
        """What in a filter names nothing of the running config (a typo would tap nothing, silently)."""
        for kind, name in (("input", want.input), ("route", want.route), ("output", want.output)):
            known = self.names.get(kind)
            if name is not None and known is not None and name not in known:
                return f"no {kind} named '{name}' ({kind}s: {', '.join(known)})"
        return None

    def total_dropped(self) -> int:
        return self.dropped + sum(c.dropped for c in self.clients)


def parse_filter(query: dict[str, str]) -> TapFilter | str:
    """The filter of a `/tap?input=&route=&output=&limit=` request, or what is wrong with it."""
    unknown = set(query) - {"input", "route", "output", "limit"}
    if unknown:
        return f"unknown parameter(s): {', '.join(sorted(unknown))}"
    limit = query.get("limit")
    if limit is not None and not (limit.isdigit() and int(limit) > 0):
        return f"limit must be a whole number greater than 0, not {limit!r}"
    return TapFilter(query.get("input") or None, query.get("route") or None, query.get("output") or None,
                     int(limit) if limit is not None else None)


def dropped_line(n: int) -> bytes:
    return b'{"dropped":%d}\n' % n
