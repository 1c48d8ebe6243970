"""What a JSON line's raw bytes say that its parsed record cannot: how deep it nests, and how
many members it writes.

- Depth. orjson reads 1,024 levels but writes only 254, and the redactor's walk recurses once
  per level: a record nested deeper than MAX_DEPTH is not taken apart (the pipeline ships the
  line as text, tagged `too_deep`). No Winston record comes near it; the search engines refuse
  objects past 20 levels by default anyway.
- Members. A key written twice parses to one entry (orjson keeps the last copy), so a line
  holds more than its record when its members (a colon outside every string) outnumber the
  record's keys: redaction judged the record, so such a line must not ship as it is.

Both scan the bytes as a JSON lexer would (a string runs from a quote to the next quote not
escaped by a backslash), also on lines that are not valid JSON, with the same answers as their
C twins (`_fast.too_deep`, `_fast.members`) that the C loop uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import accumulate

from ccf_agent.pipeline.native import fast as _fast

MAX_DEPTH = 200  # objects and arrays; _native/scan.h: CCF_RECORD_DEPTH_MAX

# A string, closed or running to the end of the line (a lone backslash may end it).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"{}[]")
_STEP = [0] * 256
_STEP[ord("{")] = _STEP[ord("[")] = 1
_STEP[ord("}")] = _STEP[ord("]")] = -1


def _too_deep(line: bytes) -> bool:
    """Nested deeper than MAX_DEPTH. Only a line of more than 2 x MAX_DEPTH bytes with more
    than MAX_DEPTH opening brackets can be, so the common line costs a length test."""
    if len(line) <= 2 * MAX_DEPTH or line.count(b"{") + line.count(b"[") <= MAX_DEPTH:
        return False
    brackets = _STRING.sub(b"", line).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def _members(line: bytes) -> int:
    """The members the line writes, at every depth: its colons outside strings."""
    return _STRING.sub(b"", line).count(b":")


too_deep: Callable[[bytes], bool] = _fast.too_deep if _fast is not None else _too_deep
members: Callable[[bytes], int] = _fast.members if _fast is not None else _members
