"""Typed getters over one mapping of the config, shared by every section's parser.

A `Reader` remembers which keys were read, so `done()` names a key nobody read (a typo) at its
line. Every problem goes through `error()`, that is through the section's `where`. A bad value
that has a default goes through `values.soft`: while the loader collects a whole file's problems,
it is recorded and the default read on, so one run names every problem. A key that is missing
while a close spelling of it is present is reported as that typo ("did you mean"), not as missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal, overload

from ccf_agent.conditions import Condition, ConditionError, compile_condition
from ccf_agent.config.values import (
    KeyPath,
    Where,
    format_duration,
    kind_name,
    kind_of,
    parse_duration,
    parse_size,
    soft,
)


class Reader:
    """One mapping of the document at `path`; errors name keys below it."""

    def __init__(self, where: Where, path: KeyPath, value: Any) -> None:
        if not isinstance(value, dict):
            raise where(path, f"must be a mapping, not {kind_of(value)}")
        self.where, self.path, self.value = where, path, value
        self.used: set[str] = set()  # the keys the parser read: the ones known here
        self.named: set[str] = set()  # unknown keys already reported

    def error(self, key: str | int | KeyPath | None, message: str) -> Exception:
        """The problem at `key` (a key, a key path below this mapping, or None for the mapping itself)."""
        keys = () if key is None else key if isinstance(key, tuple) else (key,)
        return self.where((*self.path, *keys), message)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.value or self.value[key] is None:
            if required:
                raise self.missing(key)
            return default
        v = self.value[key]
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        problem = None
        if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, float)):
            problem = f"must be {kind_name(kind)}, not {kind_of(v)}"
        elif isinstance(v, float) and not math.isfinite(v):  # YAML's .nan passes every comparison's else branch
            problem = f"must be a finite number, not {v}"
        if problem is None:
            return v
        if required:
            raise self.error(key, problem)
        return soft(self.error(key, problem), default)

    def positive(self, key: str, kind: type, default: Any) -> Any:
        v = self.get(key, kind, default)
        if v is not None and v <= 0:
            return soft(self.error(key, "must be greater than 0"), default)
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        v: str = self.get(key, str, default)
        if v not in choices:
            return soft(self.error(key, f"must be one of {', '.join(choices)}, not '{v}'"), default)
        return v

    def missing(self, key: str, what: str = "") -> Exception:
        """A required key is absent: most often because it is misspelt, and then the misspelling is
        the problem to name (it is taken as read, so `done` does not name it twice)."""
        # Closer than done()'s suggestions: the other keys here are not all read yet, and a known one
        # must not be called a typo.
        from difflib import get_close_matches  # only for a config in error: ~220 KiB a daemon never holds

        typo = get_close_matches(key, [k for k in self.value if k not in self.used and k not in self.named], n=1,
                                 cutoff=0.75)
        if typo:
            self.named.add(typo[0])
            return self.error(typo[0], f"unknown key; did you mean `{key}`?")
        return self.error(None, f"missing required key '{key}'" + (f" ({what})" if what else ""))

    @overload
    def strings(self, key: str, default: tuple[str, ...] = (), required: bool = False) -> tuple[str, ...]: ...
    @overload
    def strings(self, key: str, default: None, required: bool = False) -> tuple[str, ...] | None: ...

    def strings(self, key: str, default: tuple[str, ...] | None = (), required: bool = False) -> tuple[str, ...] | None:
        """A list of strings, or one string as a list of one."""
        v = self.get(key, (list, str), None, required)
        if v is None:
            return default
        items = [v] if isinstance(v, str) else v
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error((key, i), f"must be a string, not {kind_of(item)}")
        return tuple(items)

    def strmap(self, key: str) -> dict[str, str]:
        """A mapping of names to scalar values (labels, headers), as strings."""
        raw = self.get(key, dict, {})
        out = {}
        for k, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise self.error(key, f"'{k}' must be a string")
            out[str(k)] = str(v)
        return out

    @overload
    def duration(self, key: str, default: float, required: bool = False, minimum: float = 0.0) -> float: ...
    @overload
    def duration(self, key: str, default: None, required: Literal[True], minimum: float = 0.0) -> float: ...
    @overload
    def duration(self, key: str, default: float | None, required: bool = False,
                 minimum: float = 0.0) -> float | None: ...

    def duration(self, key: str, default: float | None, required: bool = False,
                 minimum: float = 0.0) -> float | None:
        """A duration; `minimum` above 0 for the ones a loop waits on (0 there is a busy loop at 100% CPU)."""
        self.used.add(key)
        raw = self.value.get(key)
        if raw is None:
            if required:
                raise self.missing(key)
            return default
        v = parse_duration(raw)
        problem = None
        if v is None or v < 0:
            problem = f"must be a duration like 250ms, 5s, 2m or 1h, not {raw!r}"
        elif v < minimum:
            problem = f"must be at least {format_duration(minimum)}, not {raw!r}"
        if problem is None:
            return v
        if required or default is None:
            raise self.error(key, problem)
        return soft(self.error(key, problem), default)

    def size(self, key: str, default: int) -> int:
        self.used.add(key)
        raw = self.value.get(key)
        if raw is None:
            return default
        v = parse_size(raw)
        if v is None or v <= 0:
            return soft(self.error(key, f"must be a size like 512KiB or 5MiB, not {raw!r}"), default)
        return v

    @overload
    def condition(self, key: str, required: Literal[True]) -> Condition: ...
    @overload
    def condition(self, key: str, required: bool = False) -> Condition | None: ...

    def condition(self, key: str, required: bool = False) -> Condition | None:
        """A condition of the shared language (routes, processors, alerts)."""
        raw = self.get(key, dict, None, required)
        if raw is None:
            return None
        try:
            return compile_condition(raw)
        except ConditionError as e:
            raise self.error((key, *e.path), e.message) from e

    def each(self, key: str) -> Iterator[Reader]:
        """A reader for each mapping of the list at `key`, in order (an absent list has none)."""
        for i, item in enumerate(self.get(key, list, [])):
            yield Reader(self.where, (*self.path, key, i), item)

    def sub(self, key: str) -> Reader:
        """The mapping at `key`; absent or empty reads as an empty one."""
        self.used.add(key)
        value = self.value.get(key)
        return Reader(self.where, (*self.path, key), {} if value is None else value)

    def done(self) -> None:
        """Every key of the mapping was read: any other one is a typo (each is named, and recorded
        rather than raised while a whole config's problems are collected)."""
        for key in self.value:
            if key not in self.used and key not in self.named:
                self.named.add(key)
                soft(self.error(key, unknown_key(key, self.used)), None)


def unknown_key(key: str, known: set[str]) -> str:
    """`unknown key; did you mean `paths`?`, or the keys known here when none is close."""
    from difflib import get_close_matches  # (see Reader.missing)

    names = sorted(known)
    close = get_close_matches(key, names, n=1)
    if close:
        return f"unknown key; did you mean `{close[0]}`?"
    return f"unknown key (known keys here: {', '.join(names)})"


# The loader's own names for two getters (the outputs' parsing calls them so).
def duration(r: Reader, key: str, default: float, minimum: float = 0.0) -> float:
    return r.duration(key, default, minimum=minimum)


def size(r: Reader, key: str, default: int) -> int:
    return r.size(key, default)
