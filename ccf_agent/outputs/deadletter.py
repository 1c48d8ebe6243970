"""Dead letters: records an output rejected for good, kept with the reason.

One NDJSON file per output under `state_dir/dead_letter/`, rotated when it passes its
size cap (a few old files kept), so a flood of bad records cannot fill the disk.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("ccf_agent.outputs.deadletter")


class DeadLetters:
    def __init__(self, state_dir: str | os.PathLike[str], max_bytes: int = 64 << 20, keep: int = 3) -> None:
        self.dir = Path(state_dir) / "dead_letter"
        self.max_bytes = max_bytes
        self.keep = keep
        self.count = 0
        self.write_errors = 0

    def path_for(self, output: str) -> Path:
        return self.dir / f"{output}.ndjson"

    def write(self, output: str, status: int, error: Any, action: bytes, doc: bytes) -> None:
        self.count += 1
        line = orjson.dumps({
            "time": time.time(), "output": output, "status": status, "error": error,
            "action": orjson.Fragment(action or b"null"), "document": doc.decode("utf-8", "replace"),
        }) + b"\n"
        path = self.path_for(output)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size + len(line) > self.max_bytes:
                self._rotate(path)
            with open(path, "ab") as f:
                f.write(line)
        except OSError as e:
            self.write_errors += 1
            log.error("cannot write dead letter for output %s to %s: %s (record: status %s, %s)",
                      output, path, e.strerror, status, error)

    def _rotate(self, path: Path) -> None:
        for i in range(self.keep - 1, 0, -1):
            older = path.with_suffix(f".ndjson.{i}")
            if older.exists():
                os.replace(older, path.with_suffix(f".ndjson.{i + 1}"))
        os.replace(path, path.with_suffix(".ndjson.1"))
        stale = path.with_suffix(f".ndjson.{self.keep + 1}")
        if stale.exists():
            stale.unlink()
