"""Compressed rotations (logrotate's `compress`: combined.log.2.gz), read only as a stream's continuation.

A compressed file's offsets are those of its decompressed bytes, so a stream keeps its offsets (and
its records their document ids) from the plain file to its compressed rotation. The format comes
from the file's first bytes, not its name (logrotate's `compressext` may call it anything): gzip,
bzip2 and xz through the standard library; zstd through `compression.zstd` (Python 3.14) or the
optional `backports.zstd` package (`pip install ccf-agent[zstd]`), since logrotate compresses
with gzip unless told otherwise and the agent should not need a C library for a rare setup.

Decompression stays off the hot path and off the event loop where it is long: `probe` (how long
the decompressed stream is, and the bytes where a stream resumes) and `open_at` (decompress up to
the resume offset) run in a thread, in 1 MiB steps, so memory stays bounded whatever the size;
reading on then decompresses one chunk per read.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import BinaryIO, cast

# Names that mark a compressed file, never read as a new log; every other name is plain.
SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd", ".lz4", ".lzo", ".z", ".zip")
STEP = 1 << 20  # decompressed bytes per step of a probe or a seek
ERRORS = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError)  # BadGzipFile is an OSError


class Unreadable(Exception):
    """The file is compressed in a format (or a state) this agent cannot decompress."""


def is_compressed_name(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def _zstd() -> ModuleType | None:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14
    except ImportError:
        try:
            from backports import zstd
        except ImportError:
            return None
    return zstd  # type: ignore[no-any-return]


class _PreadRaw(io.RawIOBase):
    """The file as a raw stream read with pread: its own position, whoever else reads the descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = os.pread(self.fd, len(b), self.pos)
        n = len(data)
        b[:n] = data
        self.pos += n
        return n


def _gzip(raw: BinaryIO) -> BinaryIO:
    import gzip  # here, not at the top: the daemon holds its code (~110 KiB) only once a rotation is gzipped

    return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))


def _bzip2(raw: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, bz2.BZ2File(raw, "rb"))


def _xz(raw: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, lzma.LZMAFile(raw, "rb"))


def _zstd_file(zstd: ModuleType) -> Callable[[BinaryIO], BinaryIO]:
    return lambda raw: cast(BinaryIO, zstd.ZstdFile(raw, "rb"))


def _opener(fd: int) -> Callable[[BinaryIO], BinaryIO]:
    magic = os.pread(fd, 6, 0)
    if magic.startswith(b"\x1f\x8b"):
        return _gzip
    if magic.startswith(b"BZh"):
        return _bzip2
    if magic.startswith(b"\xfd7zXZ\x00"):
        return _xz
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        zstd = _zstd()
        if zstd is None:
            raise Unreadable("zstd: install backports.zstd (pip install 'ccf-agent[zstd]') to read it")
        return _zstd_file(zstd)
    if len(magic) < 2:
        raise Unreadable("empty")
    raise Unreadable("not gzip, bzip2, xz or zstd")


class Stream:
    """A compressed file's decompressed bytes, read forward from 0 (on a descriptor it does not own)."""

    def __init__(self, fd: int) -> None:
        opener = _opener(fd)
        self.file: BinaryIO = opener(cast(BinaryIO, io.BufferedReader(_PreadRaw(fd), 1 << 16)))
        self.pos = 0

    def read(self, n: int) -> bytes:
        """Up to n bytes; b"" at the end. Raises one of ERRORS where the data is corrupt or cut."""
        data = self.file.read(n)
        self.pos += len(data)
        return data

    def skip_to(self, offset: int) -> bool:
        """Decompress (and drop) up to `offset`; False if the stream ends before it."""
        while self.pos < offset:
            if not self.read(min(STEP, offset - self.pos)):
                return False
        return True

    def close(self) -> None:
        self.file.close()


def head(fd: int, nbytes: int) -> bytes:
    """The first `nbytes` decompressed bytes (fewer if the stream is shorter)."""
    s = Stream(fd)
    try:
        out = b""
        while len(out) < nbytes:
            got = s.read(nbytes - len(out))
            if not got:
                break
            out += got
        return out
    except ERRORS as e:
        raise Unreadable(str(e) or type(e).__name__) from e
    finally:
        s.close()


@dataclass
class Probe:
    size: int = 0  # decompressed bytes readable (to the end, or to where decompression failed)
    error: str | None = None  # why decompression stopped before the end of the file
    windows: dict[tuple[int, int], bytes] = field(default_factory=dict)  # asked-for [start, end) ranges


def probe(fd: int, windows: list[tuple[int, int]]) -> Probe:
    """Decompress the whole file once: its decompressed size, and the bytes of each small window
    (where a stream's committed offset ends), to tell whether it continues that stream. Blocks:
    run it in a thread."""
    fd = os.dup(fd)  # the caller may close its descriptor while this thread runs
    result = Probe()
    parts: dict[tuple[int, int], list[bytes]] = {w: [] for w in windows}
    try:
        s = Stream(fd)
        try:
            while True:
                start = s.pos
                chunk = s.read(STEP)
                if not chunk:
                    break
                end = s.pos
                for (a, b), got in parts.items():
                    if a < end and b > start:
                        got.append(chunk[max(a, start) - start: min(b, end) - start])
        except ERRORS as e:
            result.error = str(e) or type(e).__name__
        finally:
            result.size = s.pos
            s.close()
    except Unreadable as e:
        result.error = str(e)
    finally:
        os.close(fd)
    result.windows = {w: b"".join(p) for w, p in parts.items()}
    return result


def open_at(fd: int, offset: int) -> Stream:
    """A stream positioned at `offset` (decompressing everything before it). Blocks: run it in a thread."""
    s = Stream(fd)
    try:
        if not s.skip_to(offset):
            raise Unreadable(f"ends before offset {offset}")
    except ERRORS as e:
        s.close()
        raise Unreadable(str(e) or type(e).__name__) from e
    except Unreadable:
        s.close()
        raise
    return s
