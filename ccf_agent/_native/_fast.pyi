"""The C extension's boundary (_fast.c and its py_*.c), for the type checker: every name the module defines,
with the types its argument checks accept and its results. Users reach it through
ccf_agent.pipeline.native (None when it was not built)."""

from collections.abc import Callable
from typing import Any, final

# Stamp: @timestamp as (ISO 8601 UTC bytes, epoch seconds); Shape: a record's keys' verdict
# (Pipeline._shape: no reserved key, the sensitive keys, masked only).
_Stamp = tuple[bytes, float]
_Shape = tuple[bool, tuple[str, ...], bool]
_Program = tuple[Any, ...]  # conditions.Program: nested tuples

RECORD_DEPTH_MAX: int
CRC32_CLMUL: int  # 1: crc32 runs the carry-less multiply path (the CPU has PCLMULQDQ and SSE4.1)

@final
class _ShapeCache:
    """A PyCapsule ("ccf_agent.shape_cache"): the projection's per-pipeline cache."""

@final
class _Scan:
    """A PyCapsule ("ccf_agent.scan"): what the read-ahead thread found in a block's lines."""

@final
class ReadAhead:
    """A thread that reads a file's next chunk and scans its lines while the loop works."""

    def __new__(cls, fold: tuple[Any, ...] | None = None, objects: bool = True) -> ReadAhead: ...
    def submit(self, owner: object, fd: int, offset: int, size: int, partial: bytes, /) -> bool: ...
    def take(self) -> tuple[object, int, bytes, bytes | None, bytes, int, _Scan | None]: ...
    def drop(self) -> None: ...
    def withdraw(self) -> bool: ...
    def close(self) -> None: ...
    @property
    def owner(self) -> object: ...
    @property
    def error(self) -> str | None: ...

@final
class Loop:
    """The pipeline's per-line loop for JSON lines, made once per pipeline generation from its
    constants; `run` per batch. The callbacks get the batch and its default stamp after their
    own arguments."""

    def __new__(
        cls, *, shapes: dict[tuple[str, ...], _Shape], new_shape: Callable[[tuple[str, ...]], _Shape],
        reserved: frozenset[str], ts_field: str, ts_cache: dict[str, _Stamp],
        parse_ts: Callable[[str], _Stamp | None], parse_any: Callable[[object], _Stamp | None],
        redact: Callable[[bytes, dict[str, Any], bool, tuple[str, ...] | None], bytes | None] | None,
        mask_top: Callable[[bytes, dict[str, Any], tuple[str, ...]], bytes | None] | None,
        names: bool, mask: str | None, mask_json: bytes | None, end: bytes,
        dict_doc: Callable[[dict[str, Any], int, Any, _Stamp], tuple[bytes, _Stamp]],
        bad_ts: Callable[[dict[str, Any], int, Any, _Stamp], tuple[bytes, _Stamp]],
        odd: Callable[[Any, bytes, int, bool, Any, _Stamp], tuple[bytes, _Stamp, dict[str, Any]] | None],
        loads: Callable[[bytes], Any], decode_error: type[Exception], cache: _ShapeCache | None,
    ) -> Loop: ...
    def run(
        self, lines: list[bytes] | bytes, start: int, sid: bytes, path_part: bytes, default_stamp: _Stamp,
        hits: set[int], scan: _Scan | None, batch: Any,
        records: list[dict[str, Any]], docs: list[bytes], ids: list[bytes], stamps: list[bytes], times: list[float],
        /,
    ) -> tuple[int, int]:
        """Appends each line's record, document, id, stamp and time; returns (records, fields) masked in C."""

def prefilter(lines: list[bytes] | bytes, table: bytes, drop: bytes, zeros: int, needle: int,
              suffixes: tuple[bytes, ...], vector: int = 1, json: bool = False, /) -> list[int]: ...
def crc32(data: bytes | bytearray | memoryview, /) -> int: ...
def select(records: list[Any], programs: tuple[_Program, ...], dicts_only: bool = False, /) -> list[list[int]]: ...
def assign(records: list[Any], programs: tuple[_Program, ...], /) -> list[list[int]]: ...
def bulk_body(actions: bytes | list[bytes], ids: list[bytes], docs: list[bytes], indices: list[int] | None, /) -> bytes: ...
def column(records: list[Any], indices: list[int], field: str, /) -> list[Any]: ...
def tally(records: list[Any], indices: list[int], fields: tuple[str, ...], /) -> dict[tuple[Any, ...], int]: ...
def shape_cache(fields: tuple[str, ...], local_utc: bool, iso_z: bool, /) -> _ShapeCache: ...
def scan_hits(scan: _Scan, /) -> list[int]: ...
def keep_memory() -> None: ...
def too_deep(line: bytes, /) -> bool: ...
def members(line: bytes, /) -> int: ...
