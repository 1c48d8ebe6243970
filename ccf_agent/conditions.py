"""The condition language shared by routes, drop rules and alerts.

A condition is a mapping, parsed once at load and compiled to one Python function,
so evaluating it per record costs a single call:

    {field: message, icontains: payout}
    {field: amount, gt: 10000}
    {any: [cond, ...]}   {all: [cond, ...]}   {not: cond}

Leaf operators: equals, not_equals, contains, icontains, regex, gt, gte, lt, lte, in, exists.
`field` may be dotted (`error.code`) to reach into nested objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Record = Mapping[str, Any]

LEAF_OPS = ("equals", "not_equals", "contains", "icontains", "regex", "gt", "gte", "lt", "lte", "in", "exists")
_LEAF_EXTRA = ("field",)


class ConditionError(Exception):
    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Condition:
    spec: Mapping[str, Any]
    test: Callable[[Record], bool]
    source: str

    def __call__(self, record: Record) -> bool:
        return self.test(record)


def _get_path(record: Any, parts: tuple[str, ...]) -> Any:
    for p in parts:
        if not isinstance(record, dict):
            return None
        record = record.get(p)
    return record


def _contains(value: Any, needle: Any) -> bool:
    if isinstance(value, str):
        return isinstance(needle, str) and needle in value
    if isinstance(value, list):
        return needle in value
    return False


def _icontains(value: Any, needle: str) -> bool:
    return isinstance(value, str) and needle in value.lower()


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _gt(v: Any, x: float) -> bool:
    n = _num(v)
    return n is not None and n > x


def _gte(v: Any, x: float) -> bool:
    n = _num(v)
    return n is not None and n >= x


def _lt(v: Any, x: float) -> bool:
    n = _num(v)
    return n is not None and n < x


def _lte(v: Any, x: float) -> bool:
    n = _num(v)
    return n is not None and n <= x


def _in(v: Any, values: frozenset[Any]) -> bool:
    try:
        return v in values
    except TypeError:  # an unhashable field value (a list, an object) is in no set of scalars
        return False


def _regex(v: Any, pattern: re.Pattern[str]) -> bool:
    return isinstance(v, str) and pattern.search(v) is not None


class _Compiler:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {
            "_get_path": _get_path, "_contains": _contains, "_icontains": _icontains,
            "_gt": _gt, "_gte": _gte, "_lt": _lt, "_lte": _lte, "_regex": _regex, "_in": _in,
        }

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def compile(self, spec: Any, path: tuple[str | int, ...]) -> str:
        if not isinstance(spec, dict) or not spec:
            raise ConditionError(path, "a condition must be a non-empty mapping")
        if "any" in spec or "all" in spec:
            key = "any" if "any" in spec else "all"
            if len(spec) != 1:
                raise ConditionError(path, f"'{key}' must stand alone in its mapping")
            items = spec[key]
            if not isinstance(items, list) or not items:
                raise ConditionError((*path, key), "must be a non-empty list of conditions")
            joiner = " or " if key == "any" else " and "
            return "(" + joiner.join(self.compile(c, (*path, key, i)) for i, c in enumerate(items)) + ")"
        if "not" in spec:
            if len(spec) != 1:
                raise ConditionError(path, "'not' must stand alone in its mapping")
            return f"(not {self.compile(spec['not'], (*path, 'not'))})"
        return self.leaf(spec, path)

    def leaf(self, spec: dict[str, Any], path: tuple[str | int, ...]) -> str:
        unknown = [k for k in spec if k not in LEAF_OPS and k not in _LEAF_EXTRA]
        if unknown:
            raise ConditionError((*path, unknown[0]),
                                 f"unknown operator '{unknown[0]}' (known: any, all, not, {', '.join(LEAF_OPS)})")
        name = spec.get("field")
        if not isinstance(name, str) or not name:
            raise ConditionError(path, "a condition needs 'field' (the record field to test)")
        ops = [k for k in spec if k in LEAF_OPS]
        if len(ops) != 1:
            raise ConditionError(path, "a condition needs exactly one operator besides 'field'")
        op, value = ops[0], spec[ops[0]]
        parts = tuple(name.split("."))
        get = f"r.get({name!r})" if len(parts) == 1 else f"_get_path(r, {self.const(parts)})"
        vpath = (*path, op)
        if op == "equals":
            return f"({get} == {self.const(value)})"
        if op == "not_equals":
            return f"({get} != {self.const(value)})"
        if op == "exists":
            if not isinstance(value, bool):
                raise ConditionError(vpath, "must be true or false")
            return f"({get} is {'not ' if value else ''}None)"
        if op == "in":
            if not isinstance(value, list):
                raise ConditionError(vpath, "must be a list of values")
            return f"_in({get}, {self.const(frozenset(v for v in value if _hashable(v)))})"
        if op in ("contains", "icontains"):
            if not isinstance(value, str):
                raise ConditionError(vpath, "must be a string")
            if op == "icontains":  # inline: this runs per record on every route (no call per leaf)
                v = f"_v{len(self.consts)}"
                return f"(isinstance({v} := {get}, str) and {self.const(value.lower())} in {v}.lower())"
            return f"_contains({get}, {self.const(value)})"
        if op == "regex":
            if not isinstance(value, str):
                raise ConditionError(vpath, "must be a regular expression string")
            try:
                pattern = re.compile(value)
            except re.error as e:
                raise ConditionError(vpath, f"invalid regular expression: {e}") from e
            return f"_regex({get}, {self.const(pattern)})"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConditionError(vpath, "must be a number")
        return f"_{op}({get}, {self.const(value)})"


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def compile_condition(spec: Mapping[str, Any]) -> Condition:
    """Compile a condition spec into one function; raises ConditionError with the key path."""
    c = _Compiler()
    expr = c.compile(spec, ())
    source = f"lambda r: {expr}"
    fn = eval(source, c.consts)  # noqa: S307 - the source is built from validated parts and constants
    return Condition(spec=spec, test=fn, source=source)


# Route programs: a condition as nested tuples for the C router (_native/py_routes.c: assign), whose
# common leaves run there without a Python call; any other leaf is (P_CALL, its own test).
P_ANY, P_ALL, P_NOT, P_EQUALS, P_NOT_EQUALS, P_EXISTS, P_ICONTAINS, P_CALL = range(8)
P_HAS = 8  # (P_HAS, path, True): the key is present, even with null (no condition operator says that)
_NATIVE_LEAVES = {"equals": P_EQUALS, "not_equals": P_NOT_EQUALS, "exists": P_EXISTS, "icontains": P_ICONTAINS}

Program = tuple[Any, ...]


def program(spec: Mapping[str, Any]) -> Program:
    """The program of a (valid) condition spec; evaluates as compile_condition(spec) does."""
    for key, op in (("any", P_ANY), ("all", P_ALL)):
        if key in spec:
            return op, tuple(program(c) for c in spec[key])
    if "not" in spec:
        return P_NOT, program(spec["not"])
    (name, value), = ((k, v) for k, v in spec.items() if k in LEAF_OPS)
    leaf = _NATIVE_LEAVES.get(name)
    if leaf is None:
        return P_CALL, compile_condition(spec).test
    return leaf, tuple(spec["field"].split(".")), value.lower() if leaf == P_ICONTAINS else value


def condition_fields(spec: Any) -> set[str]:
    """The top-level record fields a (valid) condition spec reads: `a.b` reads `a`."""
    if not isinstance(spec, dict):
        return set()
    for key in ("any", "all"):
        if key in spec:
            return set().union(*(condition_fields(c) for c in spec[key]))
    if "not" in spec:
        return condition_fields(spec["not"])
    field = spec.get("field")
    return {field.split(".")[0]} if isinstance(field, str) else set()


ALWAYS = Condition(spec={}, test=lambda r: True, source="lambda r: True")
