"""Destination names from the record: `index: "ccf-%{[service]:unknown}-%{+yyyy.MM.dd}"`.

The syntax is Filebeat's and Logstash's format strings, so a config carried over reads the same:

    %{[service]}            the record's `service` field
    %{[error][code]}        a nested field (`%{[error.code]}` is the same: dots walk into objects,
                            as in the condition language)
    %{[service]:unknown}    with `unknown` when the field is missing, empty, not a string or number,
                            or holds what a name may not (Filebeat's `:default`)
    %{+yyyy.MM.dd}          the record's @timestamp (UTC) in Joda letters: yyyy yy MM dd HH, and
                            xxxx.ww for the ISO week-year and week (Logstash's weekly indices)

A value goes in lower-cased (when the destination's rules say so) and only if it could be a name on
its own: no character the destination forbids, not `.` or `..`, not starting with `.`, `_`, `-` or
`+`. So a log line can fill in its part of a name, never choose another name: `../x`, `_all`, `*`
or `a,b` in `service` cannot reach `ccf-*` nor leave the pattern's prefix. A value refused that way
takes its default; a whole name the destination would still refuse (too long) takes the *fallback
name*, every reference at its default; without defaults the record is refused with the reason
(the output dead-letters it: never shipped under a name the config did not allow).

Pure: no I/O. The rules of a destination (`NameRules`) are data, so a Kafka topic uses the same
renderer with its own legal characters and length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

_REF = re.compile(r"%\{([^{}]*)\}")
_FIELD = re.compile(r"^((?:\[[^\[\]]+\])+)(?::(.*))?$", re.S)
_DATE_TOKEN = re.compile(r"yyyy|xxxx|yy|MM|dd|HH|ww|[A-Za-z]+")
DATE_TOKENS = ("yyyy", "yy", "MM", "dd", "HH", "xxxx", "ww")


@dataclass(frozen=True)
class NameRules:
    """What a destination accepts as a name."""

    what: str  # "index name", "topic name": for messages
    max_bytes: int
    lowercase: bool  # values are lower-cased (index names must be)
    forbidden: str  # characters no name may hold
    allowed: re.Pattern[str] | None = None  # when set, a whole name must match it (Kafka's [a-zA-Z0-9._-]+)
    lead_forbidden: str = "._-+"  # a name (and a value) may not start with these

    def name_problem(self, name: str) -> str | None:
        """Why the destination refuses `name`, or None."""
        if not name:
            return f"an empty {self.what}"
        if name in (".", ".."):
            return f"'{name}' is not a {self.what}"
        if len(name.encode()) > self.max_bytes:
            return f"longer than {self.max_bytes} bytes ({len(name.encode())})"
        if name[0] in self.lead_forbidden:
            return f"starts with '{name[0]}'"
        bad = next((c for c in name if c in self.forbidden or c.isspace() or ord(c) < 32), None)
        if bad is not None:
            return f"holds {bad!r}"
        if self.lowercase and name != name.lower():
            return "has upper-case letters"
        if self.allowed is not None and not self.allowed.fullmatch(name):
            return f"holds a character other than {self.allowed.pattern}"
        return None

    def value_problem(self, value: str) -> str | None:
        """Why a field's value may not go into a name: what a name refuses, and `.`/`..`."""
        if value in (".", ".."):
            return f"is '{value}'"
        return self.name_problem(value)


# Elasticsearch's and OpenSearch's rules for index and data stream names (MetadataCreateIndexService):
# lower case, at most 255 bytes, not . or .., no leading - _ +, none of \ / * ? " < > | , # : or space.
# A leading '.' is a hidden or system index: refused too.
INDEX_RULES = NameRules("index name", 255, True, '\\/*?"<>|,#: ')


class Refused(NamedTuple):
    """A record that gets no name: why (for its dead letter), and the name it would have had."""

    reason: str
    name: str


class Fallback(NamedTuple):
    """A name given with defaults in place of values a name may not hold: the name, and why."""

    name: str
    reason: str


class PatternError(ValueError):
    """A pattern that is not well formed; its text is the message for `check`."""


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]
    default: str | None
    source: str  # as written, for messages: [service]


@dataclass(frozen=True)
class _Date:
    tokens: tuple[str, ...]  # a token of DATE_TOKENS, or literal text


Part = str | _Field | _Date


def parse(pattern: str) -> tuple[Part, ...]:
    """The pattern's literal text, field references and date formats, in order."""
    parts: list[Part] = []
    at = 0
    for m in _REF.finditer(pattern):
        if m.start() > at:
            parts.append(pattern[at:m.start()])
        parts.append(_ref(m.group(1)))
        at = m.end()
    rest = pattern[at:]
    if "%{" in rest:
        raise PatternError(f"'%{{' at {rest[rest.index('%{'):][:20]!r} is never closed by '}}'")
    if rest:
        parts.append(rest)
    return tuple(parts)


def _ref(inner: str) -> Part:
    if inner.startswith("+"):
        tokens = tuple(_DATE_TOKEN.findall(inner[1:]))
        unknown = [t for t in tokens if t.isalpha() and t not in DATE_TOKENS]
        if unknown or not inner[1:]:
            raise PatternError(f"%{{{inner}}}: date letters are {', '.join(DATE_TOKENS)}"
                               + (f", not {unknown[0]!r}" if unknown else "")
                               + (" (YYYY is the week-year in Joda: write yyyy)" if "YYYY" in unknown else ""))
        # Literal text between the tokens, kept as written (dots, dashes).
        out: list[str] = []
        at = 0
        fmt = inner[1:]
        for m in _DATE_TOKEN.finditer(fmt):
            if m.start() > at:
                out.append(fmt[at:m.start()])
            out.append(m.group(0))
            at = m.end()
        if at < len(fmt):
            out.append(fmt[at:])
        return _Date(tuple(out))
    fm = _FIELD.match(inner)
    if not fm:
        raise PatternError(f"%{{{inner}}}: a field reference is written %{{[field]}}, %{{[a][b]}} or "
                           "%{[field]:default}; a date %{+yyyy.MM.dd}")
    path = tuple(p for seg in fm.group(1)[1:-1].split("][") for p in seg.split("."))
    if any(not p.strip() for p in path):
        raise PatternError(f"%{{{inner}}}: an empty field name")
    return _Field(path, fm.group(2), fm.group(1))


class NamePattern:
    """A compiled name pattern for one destination's rules."""

    def __init__(self, pattern: str, rules: NameRules) -> None:
        self.pattern = pattern
        self.rules = rules
        self.parts = parse(pattern)
        self.fields = tuple(p for p in self.parts if isinstance(p, _Field))
        dates = [p for p in self.parts if isinstance(p, _Date)]
        self.dated = bool(dates)
        # How much of an @timestamp the date parts read: the day, or the hour with HH.
        self.stamp_len = 13 if any("HH" in d.tokens for d in dates) else 10
        # Every reference at its default: where a record whose name is refused goes, if anywhere.
        self.has_fallback = all(f.default is not None for f in self.fields)

    @property
    def top_fields(self) -> set[str]:
        """The top-level record fields the pattern reads (a pipeline's projection keeps them)."""
        return {f.path[0] for f in self.fields}

    def values(self, record: Mapping[str, Any] | None) -> tuple[str | None, ...]:
        """The record's value for each field reference (None when it has no usable one). Per record:
        a dict walk per reference, no more."""
        out: list[str | None] = []
        for f in self.fields:
            v: Any = record
            for p in f.path:
                v = v.get(p) if type(v) is dict else None
            t = type(v)
            out.append(v if t is str else (str(v).lower() if t is bool else str(v) if t in (int, float) else None))
        return tuple(out)

    def render(self, values: tuple[str | None, ...], stamp: bytes) -> str | Fallback | Refused:
        """The name for these field values and this @timestamp (ISO 8601, UTC); a `Fallback` when
        a value a name may not hold gave way to its default; a `Refused` when no name is left."""
        rules = self.rules
        filled: list[str] = []
        notes: list[str] = []
        for f, v in zip(self.fields, values, strict=True):
            if v is not None and rules.lowercase:
                v = v.lower()
            why = "is missing" if v is None or v == "" else rules.value_problem(v)
            if why is not None:
                shown = "" if v is None or v == "" else f" ({_clip(v)!r})"
                if f.default is None:
                    return Refused(f"{rules.what} field {f.source}{shown} {why}, and the pattern "
                                   f"{self.pattern!r} gives it no default", self._sketch(values, stamp))
                if v is not None and v != "":
                    notes.append(f"field {f.source}{shown} {why}")
                v = f.default.lower() if rules.lowercase else f.default
            assert v is not None  # a value without a problem is a string
            filled.append(v)
        name = self._join(filled, stamp)
        problem = rules.name_problem(name)
        if problem is None:
            return Fallback(name, f"{'; '.join(notes)}: its default used") if notes else name
        if self.has_fallback:
            fallback = self._join([self._default(f) for f in self.fields], stamp)
            if fallback != name and rules.name_problem(fallback) is None:
                return Fallback(fallback, f"{rules.what} {_clip(name)!r} is refused ({problem}): every "
                                "field at its default")
        return Refused(f"{rules.what} {_clip(name)!r} from {self.pattern!r} is refused: {problem}", _clip(name))

    def _default(self, f: _Field) -> str:
        d = f.default or ""
        return d.lower() if self.rules.lowercase else d

    def _sketch(self, values: tuple[str | None, ...], stamp: bytes) -> str:
        return _clip(self._join([v if v is not None else f.source for f, v in zip(self.fields, values, strict=True)],
                                stamp))

    def _join(self, values: list[str], stamp: bytes) -> str:
        out: list[str] = []
        it = iter(values)
        for p in self.parts:
            if type(p) is str:
                out.append(p)
            elif type(p) is _Date:
                out.append(format_date(p.tokens, stamp))
            else:
                out.append(next(it))
        return "".join(out)

    def glob(self) -> str:
        """Every name the pattern can give, as a wildcard pattern (index templates)."""
        return "".join(p if type(p) is str else "*" for p in self.parts)

    def wildcards(self, stamp: bytes) -> str:
        """Every name the pattern gives records of this @timestamp: field references as `*`."""
        return "".join(p if type(p) is str else format_date(p.tokens, stamp) if type(p) is _Date else "*"
                       for p in self.parts)

    def problem(self) -> str | None:
        """What `check` says of the pattern: a literal part the destination refuses, or a date or
        default that renders a refused name. Field values are checked per record instead."""
        sample = b"2024-12-31T23:00:00.000Z"
        literal = self._join(["x" for _ in self.fields], sample)
        why = self.rules.name_problem(literal)
        if why is not None:
            return f"renders {self.rules.what}s like {literal!r}, which is refused: {why}"
        for f in self.fields:
            if f.default is not None:
                d = f.default.lower() if self.rules.lowercase else f.default
                why = self.rules.value_problem(d) if d else "is empty"
                if why is not None:
                    return f"the default of {f.source} ({d!r}) {why}"
        if self.has_fallback and self.fields:
            fallback = self._join([self._default(f) for f in self.fields], sample)
            why = self.rules.name_problem(fallback)
            if why is not None:
                return f"the name with every default, {fallback!r}, is refused: {why}"
        return None


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."


def format_date(tokens: tuple[str, ...], stamp: bytes) -> str:
    """Joda-style date letters over an @timestamp `YYYY-MM-DDTHH...` (UTC)."""
    y, mo, d, h = stamp[0:4].decode(), stamp[5:7].decode(), stamp[8:10].decode(), stamp[11:13].decode()
    week: tuple[int, int, int] | None = None
    out: list[str] = []
    for t in tokens:
        if t == "yyyy":
            out.append(y)
        elif t == "yy":
            out.append(y[2:])
        elif t == "MM":
            out.append(mo)
        elif t == "dd":
            out.append(d)
        elif t == "HH":
            out.append(h or "00")
        elif t in ("xxxx", "ww"):
            week = week or tuple(date(int(y), int(mo), int(d)).isocalendar())  # type: ignore[assignment]
            assert week is not None
            out.append(f"{week[0]:04d}" if t == "xxxx" else f"{week[1]:02d}")
        else:
            out.append(t)
    return "".join(out)


class Namer:
    """A pattern's names for batches of records, cached: a batch pays one render per distinct
    (values, day) and a dict lookup per record; a pattern without field references one per day.
    `on_name(name)` turns a name into what the output keeps per name (a bulk action line, a topic)."""

    def __init__(self, pattern: NamePattern, on_name: Callable[[str], Any]) -> None:
        self.pattern = pattern
        self.on_name = on_name
        self._cache: dict[Any, Any] = {}
        self.fallbacks = 0  # distinct (values, day) that fell back to defaults (counted per render)
        self.last_fallback: str | None = None

    def for_stamp(self, stamp: bytes) -> Any:
        """A pattern without field references: the name's product for this @timestamp."""
        return self._get((), stamp[:self.pattern.stamp_len])

    def for_record(self, record: Mapping[str, Any] | None, stamp: bytes) -> Any:
        """The name's product for this record, or a `Refused`."""
        return self._get(self.pattern.values(record), stamp[:self.pattern.stamp_len])

    def _get(self, values: tuple[str | None, ...], when: bytes) -> Any:
        key = (values, when)
        hit = self._cache.get(key)
        if hit is None:
            rendered = self.pattern.render(values, when)
            if isinstance(rendered, Fallback):
                self.fallbacks += 1
                self.last_fallback = rendered.reason
                rendered = rendered.name
            hit = rendered if isinstance(rendered, Refused) else self.on_name(rendered)
            if len(self._cache) > 4096:  # a field with many values: bounded, rebuilt as they come
                self._cache.clear()
            self._cache[key] = hit
        return hit


def group(namer: Namer, records: Sequence[Mapping[str, Any] | None], stamps: Sequence[bytes],
          indices: Sequence[int]) -> tuple[dict[Any, list[int]], list[tuple[int, Refused]]]:
    """The records at `indices` grouped by their name's product (a topic, a request per index), in
    order within each group, and those refused. Per record: a dict walk and a cache lookup."""
    get = namer.for_record
    groups: dict[Any, list[int]] = {}
    refused: list[tuple[int, Refused]] = []
    for i in indices:
        hit = get(records[i], stamps[i])
        if type(hit) is Refused:
            refused.append((i, hit))
        else:
            members = groups.get(hit)
            if members is None:
                groups[hit] = [i]
            else:
                members.append(i)
    return groups, refused
