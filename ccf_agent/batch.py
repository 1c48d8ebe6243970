"""The two shapes data takes on the hot path: a batch of raw lines, and its events.

Both are column-oriented (parallel lists), so per-record work is a few list appends
rather than an object per line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccf_agent.acks import AckToken
from ccf_agent.registry import Entry


@dataclass(slots=True)
class Batch:
    """Complete lines read from one stream: bytes [start, end) of the file."""

    entry: Entry
    path: str
    start: int  # offset of the first line
    end: int  # offset just past the last byte consumed (acknowledging the batch commits it)
    lines: list[bytes]
    token: AckToken | None = None
    truncated: bool = False  # its lines were cut at max_line_bytes (a batch of one such line)


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
