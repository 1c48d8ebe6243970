"""A Kafka topic from the output's `topic`: a literal, or a template whose `%{[field]}` references
(Beats' format strings; `%{[field]:default}` for a record without that field) are rendered from each
record and sanitised to a legal topic name.

Pure functions, no Kafka: the general field-reference renderer for index names can take this over.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 249  # Kafka refuses longer topic names
MISSING = "unknown"  # what a reference to a missing field renders as, without a default of its own
LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")
_ILLEGAL = re.compile(r"[^a-z0-9._-]")
# %{[a]}, %{[a][b]}, %{[a.b]}, each with an optional :default
_REFERENCE = re.compile(r"%\{((?:\[[^\[\]{}]+\])+)(?::([^{}]*))?\}")

Field = tuple[tuple[str, ...], str]  # (path in the record, what it renders as when missing)


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Field, ...]  # literal text, or a field reference

    @property
    def literal(self) -> str | None:
        """The topic itself when the template references no field."""
        if all(isinstance(p, str) for p in self.parts):
            return "".join(p for p in self.parts if isinstance(p, str))
        return None

    @property
    def fields(self) -> tuple[str, ...]:
        """The top-level record fields it reads (what the pipeline must keep in records)."""
        return tuple(sorted({p[0][0] for p in self.parts if not isinstance(p, str)}))


def parse(text: str) -> Template:
    """The template of `text`; ValueError says what is wrong with it."""
    parts: list[str | Field] = []
    pos = 0
    for m in _REFERENCE.finditer(text):
        parts.append(text[pos:m.start()])
        path = tuple(s for seg in re.findall(r"\[([^\]]+)\]", m.group(1)) for s in seg.split("."))
        if not all(path):
            raise ValueError(f"{m.group(0)!r} has an empty field name")
        default = m.group(2) if m.group(2) is not None else MISSING
        if default and not LEGAL.match(default):
            raise ValueError(f"the default in {m.group(0)!r} may hold only letters, digits, '.', '_' and '-'")
        parts.append((path, default))
        pos = m.end()
    parts.append(text[pos:])
    literals = [p for p in parts if isinstance(p, str) and p]
    for lit in literals:
        if "%{" in lit:
            raise ValueError(f"{lit!r}: a field reference is written %{{[field]}} or %{{[field]:default}}")
        if not LEGAL.match(lit):
            raise ValueError(f"{lit!r}: a topic name may hold only letters, digits, '.', '_' and '-'")
    template = Template(tuple(p for p in parts if p != ""))
    if not template.parts:
        raise ValueError("must not be empty")
    name = template.literal
    if name is not None and (len(name) > MAX_LENGTH or name in (".", "..")):
        raise ValueError(f"{name!r} is not a legal topic name (at most {MAX_LENGTH} characters, not '.' or '..')")
    return template


def sanitise(value: str) -> str:
    """A field's value as part of a topic name: lower-cased, each character Kafka refuses as '_'."""
    return _ILLEGAL.sub("_", value.lower())


def _value(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def render(template: Template, record: Mapping[str, Any]) -> str:
    """The topic of one record: a field that is missing, empty or not a scalar renders as its
    default; the whole is cut to Kafka's limit, and '.' or '..' (names Kafka refuses) become the
    default topic."""
    out: list[str] = []
    for p in template.parts:
        if isinstance(p, str):
            out.append(p)
            continue
        value = _value(record, p[0])
        if isinstance(value, bool):
            value = str(value).lower()
        text = sanitise(str(value)) if isinstance(value, str | int | float) and value != "" else p[1]
        out.append(text)
    name = "".join(out)[:MAX_LENGTH]
    return name if name not in ("", ".", "..") else MISSING
