"""The C extension (`_fast.c`), or None when it was not built or CCF_AGENT_PURE_PYTHON is set.

Every user keeps its Python loop as the fallback; the tests hold the two equal. The type checker
sees `fast` as the module its stub (`_fast.pyi`) describes, so every call into C is checked
against the boundary's types; that it may be None at run time is each caller's `is not None`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeAlias

    from ccf_agent.pipeline._fast import ReadAhead as ReadAhead
    from ccf_agent.pipeline._fast import _Scan, _ShapeCache

    Scan: TypeAlias = _Scan  # what a read-ahead thread found in a block (a capsule)
    ShapeCache: TypeAlias = _ShapeCache  # a projection's per-pipeline cache (a capsule)

__all__ = ["fast"]

try:
    if os.environ.get("CCF_AGENT_PURE_PYTHON"):
        raise ImportError("CCF_AGENT_PURE_PYTHON is set")
    from ccf_agent.pipeline import _fast as fast
except ImportError:  # pragma: no cover - a build without a compiler
    fast = None  # type: ignore[assignment]  # typed as the module: see the docstring
