"""The leaf of the config package: value parsers and the error every config problem becomes.

Nothing here imports the rest of ccf_agent, so every part (outputs parsing their own keys, the
report command reading a `--since`) can use it without pulling in the loader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

KeyPath = tuple[str | int, ...]

# Turns a problem at a key path (relative to the section it is given to) into the error to raise:
# the loader's closes over the file and its line map, so every message names file:line.
Where = Callable[[KeyPath, str], Exception]


class ConfigError(Exception):
    """A config problem an operator can fix: file, line, key and what is wrong."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.errors: tuple[ConfigError, ...] = (self,)  # every problem this error stands for


class ConfigErrors(ConfigError):
    """Several problems of one config, in the order of their lines. Its own file, line, key and
    message are the first problem's; its text is every problem's, one a line."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.line, first.key, first.message)
        self.errors = tuple(errors)
        self.args = ("\n".join(str(e) for e in errors),)


class Recorded(ConfigError):
    """A section stopped by problems of its items, already recorded in the config's Problems."""

    def __init__(self) -> None:
        super().__init__("", None, "", "problems recorded")
        self.errors = ()


class Problems:
    """The problems found while one whole config is parsed, so that one run reports them all.

    The loader parses each section, and each item of a list, through `attempt`: a problem that
    stops an item is recorded and the next item is read. While `collect` is active, a getter
    that meets a bad value where a default exists (`Reader`) records it and goes on with the
    default, so one mapping's other problems and unknown keys are found too; the Config built
    from those defaults is never returned (`raise_any`)."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self._seen: set[str] = set()

    def add(self, error: ConfigError) -> None:
        for e in error.errors:
            # One problem per key: a typo is found both as a missing key's cause and as unknown, and
            # an unset ${VAR} read as "" must not be named again as an empty host.
            seen = f"{e.file}\0{e.key}" if e.key else str(e)
            if seen not in self._seen:
                self._seen.add(seen)
                self.errors.append(e)

    def attempt(self, parse: Callable[[], T]) -> T | None:
        """parse(), or None when it stopped at a problem (recorded)."""
        try:
            return parse()
        except ConfigError as e:
            self.add(e)
            return None

    def raise_any(self) -> None:
        if not self.errors:
            return
        # Stable: problems of one line keep the order they were found in.
        ordered = sorted(self.errors, key=lambda e: (e.file, e.line is None, e.line or 0))
        raise ordered[0] if len(ordered) == 1 else ConfigErrors(ordered)


# The Problems of the config being parsed in this context; None outside parse_config (a part
# parsing its own keys, a test of one section): every problem is then raised at once.
COLLECTING: ContextVar[Problems | None] = ContextVar("ccf_agent_config_problems", default=None)


def attempt(parse: Callable[[], T]) -> T | None:
    """parse() of one section or list item: while a whole config is parsed, a problem that stops it
    is recorded (None is returned, and the next item read); otherwise it is raised."""
    problems = COLLECTING.get()
    return parse() if problems is None else problems.attempt(parse)


def every(items: list[T | None]) -> list[T]:
    """The items `attempt` parsed, when all of them were; else their problems are recorded and the
    section stops (Recorded)."""
    if None in items:
        raise Recorded()
    return [i for i in items if i is not None]


def soft(error: Exception, default: T) -> T:
    """A bad value that has a default: recorded (and the default used) while a whole config is
    parsed, raised otherwise."""
    problems = COLLECTING.get()
    if problems is None or not isinstance(error, ConfigError):
        raise error
    problems.add(error)
    return default


def dotted(path: KeyPath) -> str:
    """`inputs[0].paths[2]`: how a key path reads in a message."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


_KINDS = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
          float: "a number", type(None): "empty"}
_WANTED = {**_KINDS, bool: "true or false"}


def kind_of(v: object) -> str:
    """What a YAML value is, for 'must be X, not <this>'."""
    return _KINDS.get(type(v), type(v).__name__)


def kind_name(kind: type | tuple[type, ...]) -> str:
    """What a key must be, for 'must be <this>, not X'."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_WANTED.get(k, k.__name__) for k in kinds)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kib|kb|k|mib|mb|m|gib|gb|g)?\s*$", re.I)


def parse_duration(v: Any) -> float | None:
    """'250ms', '5s', '2m', '1h', or a number of seconds."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None  # YAML's .nan and .inf
    m = _DURATION_RE.match(str(v))
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]


def parse_size(v: Any) -> int | None:
    """'5MiB', '512k', or a number of bytes."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    m = _SIZE_RE.match(str(v))
    if not m:
        return None
    unit = (m.group(2) or "b").lower()
    mult = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
            "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
    return int(float(m.group(1)) * mult)


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_problem(name: str, value: str) -> str | None:
    """What an HTTP client refuses in a header, at the first request rather than at load (aiohttp:
    "Forbidden control character detected in headers"). The value is never echoed: it may be a secret."""
    if not _TOKEN.match(name):
        return f"'{name}' is not a valid header name"
    if _CONTROL.search(value):
        return ("holds a control character such as a newline (an environment variable or secret file with a "
                "trailing line break?)")
    return None


LISTEN_OFF = ("", "off", "none")


def split_listen(listen: str) -> tuple[str, int] | None:
    """`host:port` or `[v6]:port` (an empty host is loopback); None when it is not one."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if any(c in host for c in " /[]@") or (":" in host and not listen.strip().startswith("[")):
        return None
    return host or "127.0.0.1", int(port)
