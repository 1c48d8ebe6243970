"""Evaluate every rule's conditions over a batch, sharing the work between rules.

Each condition is split into its top-level `all:` conjuncts, applied in order, each one only to
the records that passed the ones before (exactly the short-circuit of `all`). Rules whose
conditions begin with the same conjuncts share that prefix: it runs once per record for all of
them. So put the cheap, selective test first (`{field: message, icontains: payout}`), and the
expensive ones then run only on the few records that reach them.

Within a step the work is column-wise and C-level where it can be: a field's values are read
once per batch (`map(dict.get, ...)`) and lowercased once for every `icontains` on it, and the
simple operators (equals, not_equals, in, exists, icontains, regex, and any/all/not of them) are
maps over those columns. Their semantics are exactly the compiled condition's (a property test
holds them to it); anything else, or a batch where a column holds something unexpected (a
non-dict record, a number where a string was expected), runs the compiled condition per record.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import compress, repeat
from typing import Any

import orjson

from ccf_agent.conditions import Condition, Program, compile_condition, program
from ccf_agent.pipeline.native import fast as _fast  # condition programs in C, or None

Path = tuple[bytes, ...]
Within = list[int] | None  # indices of the records a step applies to; None = all of them


class Columns:
    """One batch, with each field's values (and their lowercase) read at most once."""

    def __init__(self, records: Sequence[Any]) -> None:
        self.records = records
        self._raw: dict[str, list[Any]] = {}
        self._low: dict[str, list[str]] = {}

    def rows(self, within: Within) -> Sequence[Any]:
        return self.records if within is None else list(map(self.records.__getitem__, within))

    def _small(self, within: Within) -> bool:
        # A step on a small subset reads just that subset rather than a whole column.
        return within is not None and len(within) * 4 < len(self.records)

    def values(self, field: str, within: Within) -> list[Any]:
        col = self._raw.get(field)
        if col is None:
            if self._small(within):
                return list(map(dict.get, self.rows(within), repeat(field)))
            col = self._raw[field] = list(map(dict.get, self.records, repeat(field)))
        return col if within is None else list(map(col.__getitem__, within))

    def present(self, field: str, within: Within) -> list[Any]:
        """The field's values with a missing one read as ""."""
        vals = self.values(field, within)
        return [("" if v is None else v) for v in vals] if None in vals else vals

    def lowered(self, field: str, within: Within) -> list[str]:
        """The field lowercased; "" where it is missing or not a string (no needle is found in it)."""
        col = self._low.get(field)
        if col is None:
            small = self._small(within) and field not in self._raw
            vals = self.values(field, within if small else None)
            try:
                low = list(map(str.lower, vals))
            except TypeError:
                low = [v.lower() if isinstance(v, str) else "" for v in vals]
            if small:
                return low
            col = self._low[field] = low
        return col if within is None else list(map(col.__getitem__, within))


Step = Callable[[Columns, Within], list[Any]]  # one truthy/falsy value per record in `within`


def _conjuncts(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if set(spec) == {"all"}:
        return [c for sub in spec["all"] for c in _conjuncts(sub)]
    return [spec]


class Selector:
    def __init__(self, native: bool = True) -> None:
        self._steps: list[tuple[Path, Path, Step]] = []  # (path, parent path, step)
        self._known: set[Path] = {()}
        # With the C extension, each condition also as a program (conditions.program), all run
        # in one pass over the batch; the steps are the reference, and what a raising test or a
        # record that is not a dict falls back to.
        self._programs: dict[Path, Program] | None = {} if native and _fast is not None else None

    def add(self, cond: Condition) -> Path:
        """Register a condition; returns the key to read its matches from `select()`."""
        path: Path = ()
        for spec in _conjuncts(cond.spec):
            key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS, default=repr)
            parent, path = path, (*path, key)
            if path not in self._known:
                self._known.add(path)
                self._steps.append((path, parent, step(spec)))
        if self._programs is not None:
            self._programs[path] = program(cond.spec if cond.spec else {"all": []})
        return path

    def select(self, records: Sequence[Any]) -> dict[Path, list[int]]:
        """Indices of the records matching each registered condition."""
        programs = self._programs
        if programs and type(records) is list:
            assert _fast is not None
            try:
                return dict(zip(programs, _fast.select(records, tuple(programs.values()), True), strict=True))
            except Exception:  # noqa: BLE001 - odd data (a test raised, a record not a dict): the steps decide
                pass
        return self._select_steps(records)

    def _select_steps(self, records: Sequence[Any]) -> dict[Path, list[int]]:
        cols = Columns(records)
        out: dict[Path, Any] = {(): None}
        for path, parent, run in self._steps:
            within = out[parent]
            if within is None:
                out[path] = list(compress(range(len(records)), run(cols, None)))
            elif within:
                out[path] = list(compress(within, run(cols, within)))
            else:
                out[path] = within
        return out


def step(spec: Mapping[str, Any]) -> Step:
    """The step for one conjunct: column-wise when it can be, else the compiled condition."""
    test = compile_condition(spec).test

    def compiled(cols: Columns, within: Within) -> list[Any]:
        return _mask(test, cols.rows(within))

    fast = _vector(spec)
    if fast is None:
        return compiled

    def vectorized(cols: Columns, within: Within) -> list[Any]:
        try:
            return fast(cols, within)
        except Exception:  # a non-dict record, a number where a string was expected
            return compiled(cols, within)

    return vectorized


def _vector(spec: Any) -> Step | None:
    """Column-wise equivalent of a condition with conditions.py's semantics, or None."""
    if not isinstance(spec, Mapping) or len(spec) != (2 if "field" in spec else 1):
        return None
    if "any" in spec or "all" in spec:
        combine = any if "any" in spec else all
        parts = [_vector(s) for s in spec.get("any") or spec.get("all") or ()]
        if not parts or None in parts:
            return None
        # Every branch runs on every record (no short-circuit): if one raises where the
        # compiled `or`/`and` would not have reached it, the step falls back to compiled.
        return lambda c, w: list(map(combine, zip(*(p(c, w) for p in parts), strict=True)))  # type: ignore[misc]
    if "not" in spec:
        inner = _vector(spec["not"])
        return None if inner is None else (lambda c, w: list(map(operator.not_, inner(c, w))))
    field = spec.get("field")
    if not isinstance(field, str) or "." in field:
        return None
    op = next(k for k in spec if k != "field")
    value = spec[op]
    if op == "equals":
        return lambda c, w: list(map(operator.eq, c.values(field, w), repeat(value)))
    if op == "not_equals":
        return lambda c, w: list(map(operator.ne, c.values(field, w), repeat(value)))
    if op == "exists" and isinstance(value, bool):
        same = operator.is_not if value else operator.is_
        return lambda c, w: list(map(same, c.values(field, w), repeat(None)))
    if op == "in" and isinstance(value, list):
        members = frozenset(v for v in value if _hashable(v)).__contains__
        return lambda c, w: list(map(members, c.values(field, w)))
    if op == "icontains" and isinstance(value, str) and value:
        needle = value.lower()  # not empty, so the "" of a missing field never matches
        return lambda c, w: list(map(operator.contains, c.lowered(field, w), repeat(needle)))
    if op == "regex" and isinstance(value, str):
        try:
            search = re.compile(value).search
        except re.error:
            return None
        # A missing field is None and makes search raise (-> compiled) unless "" cannot match,
        # in which case reading it as "" gives the same answer.
        if search("") is None:
            return lambda c, w: list(map(search, c.present(field, w)))
        return lambda c, w: list(map(search, c.values(field, w)))
    return None


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _mask(test: Callable[[Any], bool], records: Sequence[Any]) -> list[bool]:
    try:
        return list(map(test, records))
    except Exception:
        # A condition can raise on odd data (e.g. `in` against a list value). Alerts must never
        # break shipping, so that record simply does not match; rare, so the slow path is fine.
        out = []
        for r in records:
            try:
                out.append(bool(test(r)))
            except Exception:
                out.append(False)
        return out
