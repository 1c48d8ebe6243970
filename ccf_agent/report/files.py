"""Figures from the local log files: every generation of the counted files, compressed or not.

The files are those of the config's JSON inputs whose name matches `report.sources` (combined.log
by default): the current file and what logrotate and Winston made of it (`combined.log.1`,
`combined.log.2.gz`, `combined.log-20240115.gz`, `combined1.log`), read whole, gzip, bzip2 and xz
alike (by their magic bytes, not their names). A file last modified before the window began cannot
hold a record of it and is not opened. A record's time is read as the agent reads it (the input's
`timezone`, `timestamp_field` and `timestamp_formats`); a record without a readable time cannot be
placed in a day and is left out (counted in a note).

Redaction is the agent's: the strings a report shows (message, error, payoutId, userId) are redacted
before they are counted, so two messages differing only by a card number are one line, as they are
in the search engine.
"""

from __future__ import annotations

import bz2
import fnmatch
import glob
import gzip
import lzma
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from ccf_agent.config import Config, InputConfig
from ccf_agent.pipeline.redact import Redactor
from ccf_agent.pipeline.timestamps import TimestampParser
from ccf_agent.report.figures import Figures, Tally

CHUNK_LINES = 4096  # lines per redaction prefilter call
SHOWN = ("message", "error", "payoutId", "userId")  # the fields whose text a report shows
_MAGIC: tuple[tuple[bytes, Any], ...] = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))
_ZSTD = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class LogFile:
    path: str
    input: InputConfig


def rotated_globs(pattern: str) -> tuple[str, ...]:
    """A current file's glob and the globs of its rotated generations (logrotate's numbered and
    dated names; Winston's own `combined1.log` already matches `*.log`)."""
    return (pattern, pattern + ".*", pattern + "-*")


def counted_files(config: Config, sources: Sequence[str]) -> list[LogFile]:
    """Every file of a JSON input whose name matches `sources`, each once (by device and inode)."""
    out: list[LogFile] = []
    seen: set[tuple[int, int]] = set()
    for inp in config.inputs:
        if inp.format != "json":
            continue
        patterns = {g for p in inp.paths for g in rotated_globs(p)} | set(inp.rotated_paths)
        for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
            if not any(fnmatch.fnmatchcase(os.path.basename(path), s) for s in sources):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not os.path.isfile(path) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            out.append(LogFile(path, inp))
    return out


def open_log(path: str) -> IO[bytes] | None:
    """The file's bytes, decompressed; None for a compression the standard library cannot read."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(_ZSTD):
        return None
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            stream: IO[bytes] = opener(path, "rb")
            return stream
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def _chunks(f: IO[bytes]) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for line in f:
        chunk.append(line.rstrip(b"\n"))  # the prefilter maps hits back to lines by their newlines
        if len(chunk) >= CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class FileCounter:
    """Feeds a Tally from files; `notes` says what it could not read."""

    def __init__(self, tally: Tally, redactor: Redactor | None) -> None:
        self.tally = tally
        self.redactor = redactor
        self.notes: list[str] = []
        self.untimed = 0
        self._parsers: dict[str, tuple[TimestampParser, str]] = {}

    def _parser(self, inp: InputConfig) -> tuple[TimestampParser, str]:
        hit = self._parsers.get(inp.id)
        if hit is None:
            opts = inp.options
            hit = self._parsers[inp.id] = (TimestampParser(inp.timezone, opts.timestamp_formats), opts.timestamp_field)
        return hit

    def read(self, log: LogFile) -> None:
        try:
            if os.stat(log.path).st_mtime < self.tally.window.start:
                return  # last written before the window began
            f = open_log(log.path)
        except OSError as e:
            self.notes.append(f"{log.path}: not read ({e.strerror})")
            return
        if f is None:
            self.notes.append(f"{log.path}: not read (zstd compression: decompress it, or compress with gzip)")
            return
        try:
            with f:
                for chunk in _chunks(f):
                    self._count(chunk, log.input)
        except (OSError, EOFError, lzma.LZMAError) as e:
            self.notes.append(f"{log.path}: read partly ({e})")

    def _count(self, lines: list[bytes], inp: InputConfig) -> None:
        parser, ts_field = self._parser(inp)
        tally, redactor = self.tally, self.redactor
        hits = redactor.scan(lines) if redactor is not None else set()
        loads = orjson.loads
        for i, line in enumerate(lines):
            try:
                rec = loads(line)
            except orjson.JSONDecodeError:
                continue  # not the app's JSON: nothing a figure counts
            if type(rec) is not dict:
                continue
            ts = rec.get("@timestamp", rec.get(ts_field))
            stamp = parser.parse_any(ts) if ts is not None else None
            if stamp is None:
                self.untimed += 1
                continue
            if not tally.wants(stamp[1]):
                continue
            if redactor is not None:
                shown = {k: rec[k] for k in SHOWN if k in rec}
                if shown and redactor.walk(shown, patterns=i in hits):
                    rec.update(shown)
                    for k in SHOWN:
                        if k in rec and k not in shown:  # a field redaction drops
                            del rec[k]
            tally.add(rec, stamp[1])


def figures_from_files(config: Config, tally: Tally, sources: Sequence[str], redactor: Redactor | None) -> Figures:
    files = counted_files(config, sources)
    counter = FileCounter(tally, redactor)
    for log in files:
        counter.read(log)
    names = ", ".join(Path(f.path).name for f in files) or "none"
    figures = tally.figures(f"local files ({names})")
    if not files:
        figures.notes.append(f"no file of the inputs matches {', '.join(sources)} (report.sources)")
    if counter.untimed:
        figures.notes.append(f"{counter.untimed} records without a readable time were left out")
    figures.notes.extend(counter.notes)
    return figures
