"""The file output's config check, made where config loading asks for it (outputs.registry)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccf_agent.config.outputs import OutputConfig


def config_problem(cfg: OutputConfig) -> tuple[tuple[str, ...], str] | None:
    if cfg.path and os.path.isdir(cfg.path):
        return ("path",), f"{cfg.path} is a directory; name the file to append to"
    return None
