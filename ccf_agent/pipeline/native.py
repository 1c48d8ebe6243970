"""The C extension (`ccf_agent/_native/`), or None when it was not built or CCF_AGENT_PURE_PYTHON is set.
This is the one place the rest of the code imports it from.

Every user keeps its Python loop as the fallback; the tests hold the two equal. The type checker
sees `fast` as the module its stub (`_fast.pyi`) describes, so every call into C is checked
against the boundary's types; that it may be None at run time is each caller's `is not None`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeAlias

    from ccf_agent._native._fast import Loop as Loop
    from ccf_agent._native._fast import ReadAhead as ReadAhead
    from ccf_agent._native._fast import _Scan, _ShapeCache

    Scan: TypeAlias = _Scan  # what a read-ahead thread found in a block (a capsule)
    ShapeCache: TypeAlias = _ShapeCache  # a projection's per-pipeline cache (a capsule)

__all__ = ["ScanSpec", "fast", "read_ahead"]

try:
    if os.environ.get("CCF_AGENT_PURE_PYTHON"):
        raise ImportError("CCF_AGENT_PURE_PYTHON is set")
    from ccf_agent._native import _fast as fast
except ImportError:  # pragma: no cover - a build without a compiler
    fast = None  # type: ignore[assignment]  # typed as the module: see the docstring


@dataclass(frozen=True)
class ScanSpec:
    """What a read-ahead thread does to a chunk's lines besides finding them and their crc32,
    as the pipeline that takes them asks: the redaction prefilter's fold (None: no prefilter in
    C) and the projection's structural scan of each object."""

    fold: tuple[Any, ...] | None = None
    objects: bool = True


def read_ahead(spec: ScanSpec | None) -> ReadAhead | None:
    """A read-ahead thread for `spec` (started on its first job), or None without one: no spec,
    or no extension."""
    return fast.ReadAhead(spec.fold, spec.objects) if spec is not None and fast is not None else None
