"""The two shapes data takes on the hot path: a batch of raw lines, and its events.

Both are column-oriented (parallel lists), so per-record work is a few list appends
rather than an object per line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccf_agent.acks import AckToken
from ccf_agent.registry import Entry

if TYPE_CHECKING:
    from ccf_agent.pipeline.native import Scan


class Batch:
    """Complete lines read from one stream: bytes [start, end) of the file.

    Given as a list of lines, or as `data`, the bytes as read (each line ended by a newline),
    which the C loop walks without a bytes object per line; `lines` splits it on first use."""

    __slots__ = ("entry", "path", "start", "end", "_lines", "data", "token", "truncated", "scan")

    def __init__(self, entry: Entry, path: str, start: int, end: int, lines: list[bytes] | None = None,
                 token: AckToken | None = None, truncated: bool = False, data: bytes | None = None) -> None:
        if (lines is None) == (data is None) or (data is not None and data[-1:] != b"\n"):
            raise ValueError("a batch is lines, or data ending with a newline")
        self.entry = entry
        self.path = path
        self.start = start  # offset of the first line
        self.end = end  # offset just past the last byte consumed (acknowledging the batch commits it)
        self._lines = lines
        self.data = data
        self.token = token
        self.truncated = truncated  # its lines were cut at max_line_bytes (a batch of one such line)
        self.scan: Scan | None = None  # what a read-ahead thread found in `data` (see Pipeline.read_ahead)

    @property
    def lines(self) -> list[bytes]:
        if self._lines is None:
            assert self.data is not None
            self._lines = self.data.split(b"\n")
            self._lines.pop()  # (after the last newline: nothing)
        return self._lines


@dataclass(slots=True)
class Events:
    """A batch after the pipeline: one entry per record in every list."""

    batch: Batch
    records: list[dict[str, Any]] = field(default_factory=list)  # parsed fields, for routes and alerts
    docs: list[bytes] = field(default_factory=list)  # the JSON document to ship
    ids: list[bytes] = field(default_factory=list)  # deterministic document ids
    stamps: list[bytes] = field(default_factory=list)  # @timestamp, ISO 8601 UTC
    times: list[float] = field(default_factory=list)  # @timestamp, epoch seconds

    def __len__(self) -> int:
        return len(self.docs)
