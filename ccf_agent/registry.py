"""The registry: per file stream, the offset of the last byte every output acknowledged.

A *stream* is one file's content from its first byte: it is identified by the file's
fingerprint (a hash of its first line) together with the device and inode it was first
seen on. Offsets belong to streams, not paths, so a rotated file keeps its offset under
its new name, and a truncated file or a reused inode starts a new stream at 0.

Persistence is crash-safe: write a temp file, fsync it, keep the previous version as
`.prev`, rename, fsync the directory. Each version carries a checksum, so a torn or
corrupt file is detected on load and the newest intact version wins.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from ccf_agent.fsutil import SnapshotOrder, create_fresh, fsync_dir, read_plain, write_all

log = logging.getLogger("ccf_agent.registry")

FORMAT_VERSION = 1


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def stream_id_for(fingerprint: str, dev: int, ino: int) -> str:
    """Deterministic, so a lost registry re-ships under the same document ids (no duplicates)."""
    return hashlib.blake2b(f"{fingerprint}:{dev}:{ino}".encode(), digest_size=8).hexdigest()


@dataclass
class Entry:
    stream_id: str
    fingerprint: str
    input_id: str
    path: str
    dev: int
    ino: int
    offset: int = 0  # committed: every record before it was acknowledged
    tail_len: int = 0  # how many bytes before `offset` tail_hash covers
    tail_hash: str = ""  # hash of those bytes: resume only where the same content still stands
    size: int = 0  # last size seen (for status/lag)
    updated: float = field(default_factory=time.time)
    # live: a reader holds it; closed: read to its end or idle; gone: its file vanished
    state: str = "live"
    # Not persisted: how far the reader has read (ahead of `offset` by what is in flight).
    read_offset: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("read_offset")
        return d


class RegistryError(Exception):
    pass


class Registry:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "registry.json"
        self.entries: dict[str, Entry] = {}
        self.dirty = False
        self.last_error: str | None = None
        self.saves = 0
        self._order = SnapshotOrder()
        # When the previous run last wrote its registry: the last moment someone was watching.
        self.previous_run_at: float | None = None

    # ------------------------------------------------------------------ lookup

    def by_inode(self, dev: int, ino: int) -> list[Entry]:
        return [e for e in self.entries.values() if e.dev == dev and e.ino == ino]

    def by_fingerprint(self, fingerprint: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.fingerprint == fingerprint]

    def add(self, entry: Entry) -> None:
        self.entries[entry.stream_id] = entry
        self.dirty = True

    def commit(self, entry: Entry, offset: int, tail: bytes | None = None) -> None:
        if offset > entry.offset:
            entry.offset = offset
            entry.tail_len, entry.tail_hash = (len(tail), content_hash(tail)) if tail else (0, "")
            entry.updated = time.time()
            self.dirty = True

    def forget_older_than(self, seconds: float, now: float | None = None) -> int:
        """Drop entries of files gone (or closed and fully read) for longer than `seconds`."""
        now = time.time() if now is None else now
        old = [k for k, e in self.entries.items() if e.state == "gone" and now - e.updated > seconds]
        for k in old:
            del self.entries[k]
        if old:
            self.dirty = True
        return len(old)

    # ------------------------------------------------------------------ persistence

    def load(self) -> None:
        self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        candidates = [self.path, self.path.with_suffix(".json.tmp"), self.path.with_suffix(".json.prev")]
        best: tuple[float, list[dict[str, object]]] | None = None
        for p in candidates:
            loaded = _read_version(p)
            if loaded is not None and (best is None or loaded[0] > best[0]):
                best = loaded
            elif loaded is None and p.exists() and p == self.path:
                log.error("registry %s is corrupt; falling back to the newest intact copy", p)
        if best is None:
            return
        self.previous_run_at = best[0]
        for raw in best[1]:
            e = Entry(**raw)  # type: ignore[arg-type]
            e.read_offset = e.offset
            if e.state == "live":
                e.state = "closed"  # nobody holds it yet in this process
            self.entries[e.stream_id] = e

    def save(self) -> bool:
        """Persist atomically, now. Returns False (and keeps the last good file) on any I/O error."""
        return self.write(self.snapshot())

    def snapshot(self) -> tuple[int, bytes]:
        """The registry as it is now, to be written by `write` (which may run in another thread:
        the event loop must not wait for an fsync). Clears `dirty`; a failed write sets it again."""
        entries = [e.to_json() for e in self.entries.values()]
        body = orjson.dumps(entries)
        doc = orjson.dumps({"version": FORMAT_VERSION, "written_at": time.time(),
                            "checksum": hashlib.sha256(body).hexdigest(), "entries": orjson.Fragment(body)})
        self.dirty = False
        return self._order.take(), doc

    def write(self, snapshot: tuple[int, bytes]) -> bool:
        """Write a snapshot (see SnapshotOrder); False, and dirty again, on an I/O error."""
        seq, doc = snapshot
        try:
            if not self._order.write(seq, lambda: self._replace(doc)):
                return True  # a newer snapshot is on disk already
        except OSError as e:
            msg = f"cannot write registry {self.path}: {e.strerror} (offsets kept in memory; will retry)"
            if msg != self.last_error:
                log.error(msg)
            self.last_error = msg
            self.dirty = True
            return False
        if self.last_error:
            log.warning("registry %s writable again", self.path)
        self.last_error = None
        self.saves += 1
        return True

    def _replace(self, doc: bytes) -> None:
        """Temp file, fsync, the previous version kept as .prev, rename, fsync the directory."""
        tmp = self.path.with_suffix(".json.tmp")
        self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = create_fresh(tmp, 0o640)
        try:
            write_all(fd, doc)
        finally:
            os.close(fd)
        if self.path.exists():
            os.replace(self.path, self.path.with_suffix(".json.prev"))  # kept: the fallback
        os.replace(tmp, self.path)
        fsync_dir(self.dir)


def _read_version(path: Path) -> tuple[float, list[dict[str, object]]] | None:
    try:
        raw = read_plain(path)
        doc = orjson.loads(raw)
        entries = doc["entries"]
        body = orjson.dumps(entries)
        if hashlib.sha256(body).hexdigest() != doc["checksum"] or doc.get("version") != FORMAT_VERSION:
            return None
        return float(doc["written_at"]), entries
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_registry(state_dir: str | os.PathLike[str]) -> list[Entry]:
    """Read-only view for `ccf-agent status` when the daemon is not running."""
    reg = Registry(state_dir)
    p = reg.path
    loaded = _read_version(p) or _read_version(p.with_suffix(".json.prev"))
    if loaded is None:
        return []
    return [Entry(**raw) for raw in loaded[1]]  # type: ignore[arg-type]
