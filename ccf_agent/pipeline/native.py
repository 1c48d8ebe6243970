"""The C extension (`_fast.c`), or None when it was not built or CCF_AGENT_PURE_PYTHON is set.

Every user keeps its Python loop as the fallback; the tests hold the two equal.
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("CCF_AGENT_PURE_PYTHON"):
        return None
    try:
        from ccf_agent.pipeline import _fast
    except ImportError:  # pragma: no cover - a build without a compiler
        return None
    return _fast


fast = _load()
