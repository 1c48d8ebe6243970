"""The leaf of the config package: value parsers and the error every config problem becomes.

Nothing here imports the rest of ccf_agent, so every part (outputs parsing their own keys, the
report command reading a `--since`) can use it without pulling in the loader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

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
