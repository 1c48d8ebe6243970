"""Dead letters: records an output rejected for good, kept with the reason.

One NDJSON file per output under `state_dir/dead_letter/`, rotated when it passes its
size cap (a few old files kept), so a flood of bad records cannot fill the disk. A line:

    {"time": 1700000000.0, "output": "logs", "status": 400,
     "error": {"type": "mapper_parsing_exception", "reason": "..."},
     "action": {"create": {"_index": "...", "_id": "..."}}, "document": "<the record as shipped>"}

Writes are fsynced before they return: the output acknowledges the records (and their
offsets advance) right after, so the file is the only copy left.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ccf_agent.fsutil import ensure_dir, open_plain, write_all

log = logging.getLogger("ccf_agent.outputs.deadletter")


class DeadItem(NamedTuple):
    status: int
    error: Any
    action: bytes  # the bulk action line, as sent
    doc: bytes  # the document line, as sent


class DeadLetters:
    def __init__(self, state_dir: str | os.PathLike[str], max_bytes: int = 64 << 20, keep: int = 3) -> None:
        self.dir = Path(state_dir) / "dead_letter"
        self.max_bytes = max_bytes
        self.keep = keep
        self.count = 0  # every dead letter, wherever it is kept
        self.write_errors = 0

    def path_for(self, output: str) -> Path:
        return self.dir / f"{output}.ndjson"

    def count_elsewhere(self, n: int) -> None:
        """Dead letters an output kept somewhere else (a dead-letter index)."""
        self.count += n

    def write_many(self, output: str, items: Sequence[DeadItem]) -> None:
        """Append and fsync; raises OSError so the caller can keep the records instead of losing them."""
        now = time.time()
        data = b"".join(orjson.dumps({
            "time": now, "output": output, "status": it.status, "error": it.error,
            "action": _json_or_text(it.action), "document": it.doc.decode("utf-8", "replace"),
        }) + b"\n" for it in items)
        path = self.path_for(output)
        try:
            ensure_dir(self.dir)
            if path.exists() and path.stat().st_size + len(data) > self.max_bytes:
                self._rotate(path)
            fd = open_plain(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as e:
            self.write_errors += 1
            log.error("cannot write %d dead letters of output %s to %s: %s", len(items), output, path,
                      e.strerror or e)
            raise
        self.count += len(items)

    def write(self, output: str, status: int, error: Any, action: bytes, doc: bytes) -> bool:
        """One dead letter; False (and logged) when it could not be written."""
        try:
            self.write_many(output, [DeadItem(status, error, action, doc)])
        except OSError:
            return False
        return True

    def _rotate(self, path: Path) -> None:
        for i in range(self.keep - 1, 0, -1):
            older = path.with_suffix(f".ndjson.{i}")
            if older.exists():
                os.replace(older, path.with_suffix(f".ndjson.{i + 1}"))
        os.replace(path, path.with_suffix(".ndjson.1"))
        stale = path.with_suffix(f".ndjson.{self.keep + 1}")
        if stale.exists():
            stale.unlink()


def _json_or_text(raw: bytes) -> Any:
    try:
        return orjson.Fragment(raw) if raw and orjson.loads(raw) is not None else None
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")
