"""Pipeline options in the YAML: per input (parsers, multiline, encoding) and global processors.

The config loader hands each section here raw, with a `where(key_path, message)` that turns
a problem into a file:line error; this module owns the keys and their meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Where = Callable[[tuple[str | int, ...], str], Exception]

# Keys an input may carry besides the loader's own (id, paths, exclude, format, fields, ...).
INPUT_KEYS: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputOptions:
    pass


@dataclass(frozen=True)
class Processors:
    pass


def parse_input_options(raw: Mapping[str, Any], where: Where) -> InputOptions:
    return InputOptions()


def parse_processors(raw: Any, where: Where) -> Processors:
    if raw is not None:
        raise where((), "processors are not supported yet")
    return Processors()
