"""`{{ field }}` / `{{ value }}` templating for alert annotations.

Templates are parsed once at load into literal and lookup parts, so rendering is a join.
A name is looked up first among the alert's own variables (value, count, ...) and then as a
(dotted) field of the sample record; `{{ $value }}` is accepted for operators used to Prometheus.
A name that resolves to nothing renders as an empty string: a notification with a blank is
better than none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_VAR_RE = re.compile(r"\{\{\s*\$?([A-Za-z_@][\w.@-]*)\s*\}\}")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[tuple[bool, str], ...]  # (is_lookup, text or name)

    def render(self, variables: Mapping[str, Any], record: Mapping[str, Any] | None = None) -> str:
        out = []
        for is_lookup, text in self.parts:
            if not is_lookup:
                out.append(text)
                continue
            value = variables.get(text)
            if value is None and record is not None:
                value = _lookup(record, text)
            out.append(_text(value))
        return "".join(out)


def compile_template(source: str) -> Template:
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _VAR_RE.finditer(source):
        parts.append((False, source[pos:m.start()]))
        parts.append((True, m.group(1)))
        pos = m.end()
    rest = source[pos:]
    # Whatever braces remain were not a valid `{{ name }}`: say so at load, not at 3 a.m.
    if "{{" in rest or "}}" in rest or any("{{" in t for lk, t in parts if not lk):
        raise TemplateError("malformed placeholder: write {{ field }} or {{ value }}")
    parts.append((False, rest))
    return Template(source, tuple(p for p in parts if p[1]))


def _lookup(record: Mapping[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    cur: Any = record
    for part in name.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # Readable, never in exponent form: 12345.0 -> 12345, 13.0434 -> 13.04, 0.13043 -> 0.1304
        if value.is_integer():
            return str(int(value))
        if abs(value) >= 1:
            return f"{value:.2f}".rstrip("0").rstrip(".")
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)
