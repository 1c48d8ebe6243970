"""Multiline: join continuation lines into one event, the way Filebeat does, with exact offsets.

A pure state machine: no I/O and no clock of its own (the caller passes `now`). The reader
pushes the complete lines it cut from a chunk; `push` returns the events that are now
complete and how many input lines they used. Lines of an event still open stay inside until
a later line completes it, the event reaches a limit, or the caller flushes it (timeout, file
end, rotation). Events are their lines joined with b"\\n", so the bytes an event covers in
the file are `len(event) + 1` when every line of it ended with a newline: the reader commits
offsets only through the end of the last complete event.

Which line continues which (`continues = pattern.search(line) matches, unless negate`):
- match "after":  a continuing line is appended to the event before it; any other line
  starts a new event (stack traces: indented "at ..." lines continue the error line).
- match "before": a continuing line starts or extends an event that the next
  non-continuing line ends (lines ending in a backslash continue onto the next one).

Limits never drop a line: an event that reaches `max_lines` or `max_bytes` is emitted as it
is and the rest of it becomes the next event (counted in `splits`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Continuation lines of Node.js and Java stack traces: indented frames ("    at f (x.js:1:2)",
# "\tat a.B.c(B.java:10)", "\t... 3 more"), Node's indented "[cause]:" and error property blocks
# ("  code: 'ECONNREFUSED'" ... "}"), and Java's "Caused by:"/"Suppressed:" at any indent.
STACK_TRACE = rb"^(?:[ \t]+\S|[ \t]*(?:Caused by|Suppressed): |\}\s*$)"

PRESETS: dict[str, tuple[bytes, bool, str]] = {
    "stack_trace": (STACK_TRACE, False, "after"),
    "java": (STACK_TRACE, False, "after"),
    "nodejs": (STACK_TRACE, False, "after"),
}

MATCH_MODES = ("after", "before")


@dataclass(frozen=True)
class MultilineConfig:
    pattern: re.Pattern[bytes]
    negate: bool = False
    match: str = "after"
    max_lines: int = 500
    max_bytes: int = 10 << 20
    timeout: float = 5.0  # seconds without a new line before an open event is flushed


class Multiline:
    """Joins lines into events for one file; one instance per open file."""

    def __init__(self, cfg: MultilineConfig) -> None:
        if cfg.match not in MATCH_MODES:
            raise ValueError(f"match must be one of {MATCH_MODES}, not {cfg.match!r}")
        self.cfg = cfg
        self._search = cfg.pattern.search
        self._negate = cfg.negate
        self._after = cfg.match == "after"
        self._lines: list[bytes] = []  # the open event
        self._covered = 0  # its bytes in the file: each line plus its newline
        self._last: float | None = None  # when its last line arrived
        self.splits = 0  # events cut at max_lines/max_bytes

    @property
    def pending_lines(self) -> int:
        """Lines held in the open event (pushed, not yet part of a returned event)."""
        return len(self._lines)

    @property
    def pending_bytes(self) -> int:
        """File bytes of the held lines, newlines included."""
        return self._covered

    @property
    def deadline(self) -> float | None:
        """When the open event times out (same clock as `now`), or None when nothing is held."""
        if not self._lines or self._last is None:
            return None
        return self._last + self.cfg.timeout

    def expired(self, now: float) -> bool:
        deadline = self.deadline
        return deadline is not None and now >= deadline

    def push(self, lines: list[bytes], now: float = 0.0) -> tuple[list[bytes], int]:
        """Feed complete lines (without their newline); returns (complete events, lines they used).

        The lines used count from the oldest line held before this call, so after any sequence
        of pushes and flushes, lines used + `pending_lines` == lines pushed.
        """
        events: list[bytes] = []
        used = 0
        held = self._lines
        search, negate, after = self._search, self._negate, self._after
        max_lines, max_bytes = self.cfg.max_lines, self.cfg.max_bytes
        for line in lines:
            continues = (search(line) is not None) is not negate
            # An open event ends before this line when the line does not continue it ("after"),
            # or when adding the line would pass a limit (either mode: split, nothing dropped).
            if held and (len(held) >= max_lines or self._covered + len(line) > max_bytes
                         or (after and not continues)):
                if continues or not after:
                    self.splits += 1
                used += self._emit(events)
            held.append(line)
            self._covered += len(line) + 1
            if not after and not continues:
                used += self._emit(events)  # "before": a non-continuing line closes the event
        if lines:
            self._last = now
        return events, used

    def flush(self) -> tuple[bytes | None, int]:
        """The open event as it is (timeout, end of file, shutdown) and the lines it used."""
        if not self._lines:
            return None, 0
        events: list[bytes] = []
        n = self._emit(events)
        self._last = None
        return events[0], n

    def _emit(self, events: list[bytes]) -> int:
        n = len(self._lines)
        events.append(b"\n".join(self._lines))
        self._lines.clear()
        self._covered = 0
        return n
