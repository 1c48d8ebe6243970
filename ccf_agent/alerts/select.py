"""Evaluate every rule's conditions over a batch, sharing the work between rules.

Each condition is split into its top-level `all:` conjuncts, applied in order, each one only to
the records that passed the ones before (exactly the short-circuit of `all`). Rules whose
conditions begin with the same conjuncts share that prefix: it runs once per record for all of
them. So put the cheap, selective test first (`{field: message, icontains: payout}`), and the
regexes and numeric tests then run only on the few records that reach them.

Per step the loop over records is C (map/compress); only the condition itself runs in Python.
The commonest leaves on a top-level field (equals, not_equals, in, exists, icontains) do not
even do that: they run as C-level maps over `dict.get` (see `_vectorized`), with exactly the
compiled condition's semantics, which a property test holds them to; anything unusual in a batch
(a non-dict record, a non-string value for icontains) falls back to the compiled condition.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from itertools import compress, repeat
from typing import Any

import orjson

from ccf_agent.conditions import Condition, compile_condition

Path = tuple[bytes, ...]
Masker = Callable[[Sequence[Any]], list[Any]]  # records -> one truthy/falsy value per record


def _conjuncts(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if set(spec) == {"all"}:
        return [c for sub in spec["all"] for c in _conjuncts(sub)]
    return [spec]


class Selector:
    def __init__(self) -> None:
        self._steps: list[tuple[Path, Path, Masker]] = []  # (path, parent, mask function)
        self._known: set[Path] = {()}

    def add(self, cond: Condition) -> Path:
        """Register a condition; returns the key to read its matches from `select()`."""
        path: Path = ()
        for spec in _conjuncts(cond.spec):
            key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS, default=repr)
            parent, path = path, (*path, key)
            if path not in self._known:
                self._known.add(path)
                self._steps.append((path, parent, masker(spec)))
        return path

    def select(self, records: Sequence[Any]) -> dict[Path, list[int] | None]:
        """Indices of the records matching each registered condition (None at the root = all)."""
        out: dict[Path, list[int] | None] = {(): None}
        for path, parent, mask in self._steps:
            within = out[parent]
            if within is None:
                out[path] = list(compress(range(len(records)), mask(records)))
            elif within:
                out[path] = list(compress(within, mask(list(map(records.__getitem__, within)))))
            else:
                out[path] = within
        return out


def masker(spec: Mapping[str, Any]) -> Masker:
    """The mask function of one condition: vectorized when it can be, else the compiled test."""
    test = compile_condition(spec).test
    fast = _vectorized(spec)
    if fast is None:
        return lambda records: _mask(test, records)

    def run(records: Sequence[Any]) -> list[Any]:
        try:
            return fast(records)
        except Exception:  # a non-dict record, a non-string value: the compiled test knows
            return _mask(test, records)

    return run


def _vectorized(spec: Mapping[str, Any]) -> Masker | None:
    """C-level equivalents of conditions.py's simplest leaves, or None.

    Same semantics as the compiled test: `r.get(field) == v`, `!= v`, `in frozenset(v)`,
    `is not None`, and `isinstance(x, str) and needle in x.lower()`.
    """
    field = spec.get("field")
    ops = [k for k in spec if k != "field"]
    if not isinstance(field, str) or "." in field or len(ops) != 1:
        return None
    op, value = ops[0], spec[ops[0]]
    get, key = dict.get, repeat(field)
    if op == "equals":
        return lambda rs: list(map(operator.eq, map(get, rs, key), repeat(value)))
    if op == "not_equals":
        return lambda rs: list(map(operator.ne, map(get, rs, key), repeat(value)))
    if op == "exists" and isinstance(value, bool):
        same = operator.is_not if value else operator.is_
        return lambda rs: list(map(same, map(get, rs, key), repeat(None)))
    if op == "in" and isinstance(value, list):
        members = frozenset(v for v in value if _hashable(v)).__contains__
        return lambda rs: list(map(members, map(get, rs, key)))
    if op == "icontains" and isinstance(value, str) and value:
        # A missing field reads as "" (no match, since the needle is not empty); a non-string
        # value makes str.lower raise, and the batch falls back to the compiled test.
        needle = repeat(value.lower())
        return lambda rs: list(map(operator.contains, map(str.lower, map(get, rs, key, repeat(""))), needle))
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
