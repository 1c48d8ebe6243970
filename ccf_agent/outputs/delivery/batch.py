"""What one request carries, and how each of its records is settled (libbeat's Batch, for asyncio).

A `Piece` is records of one fragment on their way: the whole fragment when it leaves the queue, or
the records of it a destination refused and that wait to be sent again. A `Batch` is the pieces of
one request. Every record of it is settled once:

    ack()                 delivered (or found already stored)
    settle(retry, dead)   per record: the `retry` positions come back as new pieces, each with the
                          piece's attempt count + 1 and its own due time; the rest (the `dead`
                          ones dead-lettered by the caller first) are done
    retry_all()           the whole request failed: every piece comes back
    split()               the request is refused as a whole (too large, one bad record): halves,
                          sent on their own by the caller

A fragment is acknowledged (`Output.credit`) when the last of its records is settled, whichever
request carried it. The pieces to send again go to the output's `RetryQueue`, which the next
requests take from first, once due: refused records wait on their own backoff while new records
keep flowing in other requests.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccf_agent.outputs.base import Fragment, Output


@dataclass(eq=False, slots=True)
class Piece:
    body: bytes  # whole records in the output's wire framing (`Batch.record_lines` lines each)
    count: int
    fragment: Fragment | None  # whose records these are (None: records of no queued fragment)
    attempt: int = 0  # how often these records were sent and not taken
    due: float = 0.0  # loop time before which they are not sent again


class Batch:
    __slots__ = ("output", "pieces", "count", "record_lines", "settled", "_records")

    def __init__(self, output: Output | None, pieces: list[Piece], record_lines: int) -> None:
        self.output = output  # None: nobody to credit (a request of the output's own, e.g. dead letters)
        self.pieces = pieces
        self.count = sum(p.count for p in pieces)
        self.record_lines = record_lines  # lines per record: 2 for a bulk action and its document
        self.settled = False
        self._records: list[bytes] | None = None

    @property
    def nbytes(self) -> int:
        return sum(len(p.body) for p in self.pieces)

    def parts(self) -> list[bytes]:
        return [p.body for p in self.pieces]

    def body(self) -> bytes:
        return self.pieces[0].body if len(self.pieces) == 1 else b"".join(self.parts())

    def records(self) -> list[bytes]:
        """Each record's bytes (its lines, each ending in a newline), in request order."""
        if self._records is None:
            k = self.record_lines
            lines = self.body().split(b"\n")
            lines.pop()  # after the last newline
            if k == 1:
                self._records = [line + b"\n" for line in lines]
            else:
                self._records = [b"\n".join(lines[i:i + k]) + b"\n" for i in range(0, len(lines), k)]
        return self._records

    # ------------------------------------------------------------------ settlement

    def ack(self) -> None:
        """Every record was delivered."""
        self._done()
        out = self.output
        if out is None:
            return
        whole: list[Fragment] = []
        for p in self.pieces:
            f = p.fragment
            if f is None:
                continue
            if p.count == f.remaining:  # the usual case: a fragment in one request, taken whole
                f.remaining = 0
                whole.append(f)
            else:
                out.credit(f, p.count)
        if whole:
            out.acked(whole)

    def _due(self, delay: Callable[[int], float], now: float) -> float:
        # One due time for the whole request's records: they go out again together, in one request.
        return now + delay(max(p.attempt for p in self.pieces) + 1)

    def settle(self, retry: Sequence[int], delay: Callable[[int], float], now: float) -> list[Piece]:
        """Every record but those at the `retry` positions is done (delivered, or dead-lettered by the
        caller); returns the pieces to send again, due `delay(attempt)` seconds after `now`."""
        if not retry:
            self.ack()
            return []
        due = self._due(delay, now)
        again: list[Piece] = []
        done: list[tuple[Fragment, int]] = []
        positions = iter(sorted(retry))
        pos = next(positions, None)
        offset = 0
        for p in self.pieces:
            end = offset + p.count
            mine: list[int] = []
            while pos is not None and pos < end:
                mine.append(pos)
                pos = next(positions, None)
            if len(mine) == p.count:  # refused whole (a shard's queue full): sent again as it is
                again.append(Piece(p.body, p.count, p.fragment, p.attempt + 1, due))
            elif mine:
                records = self.records()
                again.append(Piece(b"".join(records[i] for i in mine), len(mine), p.fragment, p.attempt + 1, due))
            if p.fragment is not None and p.count > len(mine):
                done.append((p.fragment, p.count - len(mine)))
            offset = end
        self._done()
        if self.output is not None:
            for f, n in done:
                self.output.credit(f, n)
        return again

    def retry_all(self, delay: Callable[[int], float], now: float) -> list[Piece]:
        """The request failed as a whole: every piece comes back (its attempt count + 1)."""
        due = self._due(delay, now)
        self._done()
        return [Piece(p.body, p.count, p.fragment, p.attempt + 1, due) for p in self.pieces]

    def split(self) -> list[Batch]:
        """Two halves by records (the records of a piece cut in two stay with their fragment)."""
        records = self.records()
        half = len(records) // 2
        halves: list[list[Piece]] = [[], []]
        offset = 0
        for p in self.pieces:
            for side, (lo, hi) in enumerate(((offset, min(offset + p.count, half)),
                                             (max(offset, half), offset + p.count))):
                if lo < hi:
                    halves[side].append(Piece(b"".join(records[lo:hi]), hi - lo, p.fragment, p.attempt, p.due))
            offset += p.count
        self._done()
        return [Batch(self.output, h, self.record_lines) for h in halves]

    def _done(self) -> None:
        if self.settled:
            raise RuntimeError("a batch settled twice")  # would acknowledge records not yet delivered
        self.settled = True


@dataclass
class RetryQueue:
    """Pieces waiting to be sent again, in the order they fall due."""

    _heap: list[tuple[float, int, Piece]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    docs: int = 0
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, piece: Piece) -> None:
        heapq.heappush(self._heap, (piece.due, next(self._seq), piece))
        self.docs += piece.count
        self.nbytes += len(piece.body)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def take(self, now: float, max_docs: int, max_bytes: int) -> list[Piece]:
        """Due pieces, oldest due first, up to the limits (at least one when any is due)."""
        taken: list[Piece] = []
        docs = nbytes = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            p = heap[0][2]
            if taken and (docs + p.count > max_docs or nbytes + len(p.body) > max_bytes):
                break
            heapq.heappop(heap)
            taken.append(p)
            docs += p.count
            nbytes += len(p.body)
        self.docs -= docs
        self.nbytes -= nbytes
        return taken
