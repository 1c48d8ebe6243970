"""Index names: from each record's event time (`ccf-logs-%{+yyyy.MM.dd}`), never the wall clock, and
from its fields (`ccf-%{[service]:unknown}-%{+yyyy.MM.dd}`, see outputs.names)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from ccf_agent.outputs.names import INDEX_RULES, NamePattern, Namer, PatternError, Refused

if TYPE_CHECKING:
    from ccf_agent.batch import Events

DATE_PATTERN = re.compile(r"%\{\+([^}]+)\}")
INDEX_NAME = re.compile(r'^[a-z0-9][^\\/*?"<>| ,#:A-Z]*$')


def _action(name: str) -> bytes:
    return b'{"create":{"_index":' + orjson.dumps(name) + b',"_id":"'


class IndexNamer:
    """The bulk action line of a record: by the day of its @timestamp (cached per day) and, when
    the pattern reads fields, by their values (cached per distinct values)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.compiled = NamePattern(pattern, INDEX_RULES)  # PatternError: config_problem said so first
        self.dated = self.compiled.dated
        self.by_record = bool(self.compiled.fields)
        self.names = Namer(self.compiled, _action)
        self.static_action = _action(pattern)
        self.period = itemgetter(slice(0, self.compiled.stamp_len))  # of an @timestamp: its day, or hour
        fields = self.compiled.fields
        # The usual pattern reads one top-level field (`%{[service]}`): looked up without a tuple of values.
        self._top = fields[0].path[0] if len(fields) == 1 and len(fields[0].path) == 1 else None
        self._seen: dict[tuple[str, bytes], Any] = {}

    def name(self, day: bytes) -> str:
        """The index for a day `YYYY-MM-DD`; field references as `*` (every index of that day)."""
        return self.compiled.wildcards(day)

    def action(self, stamp: bytes) -> bytes:
        if not self.dated:
            return self.static_action
        hit: bytes = self.names.for_stamp(stamp)
        return hit

    def route(self, events: Events, indices: Sequence[int]) -> tuple[list[bytes], list[int], list[tuple[int, Refused]]]:
        """A pattern that reads fields: (the action line of each record kept, the records kept, the
        records refused with why). One dict walk and one cache lookup per record."""
        get = self.names.for_record
        records, stamps = events.records, events.stamps
        actions: list[bytes] = []
        kept: list[int] = []
        refused: list[tuple[int, Refused]] = []
        top, cut, seen = self._top, self.compiled.stamp_len, self._seen
        for i in indices:
            if top is not None:  # one top-level field: a string value is a cache key by itself
                value = records[i].get(top)
                hit = seen.get((value, stamps[i][:cut])) if type(value) is str else None
                if hit is None:
                    hit = get(records[i], stamps[i])
                    if type(value) is str:
                        if len(seen) > 4096:
                            seen.clear()
                        seen[(value, stamps[i][:cut])] = hit
            else:
                hit = get(records[i], stamps[i])
            if type(hit) is Refused:
                refused.append((i, hit))
            else:
                actions.append(hit)
                kept.append(i)
        return actions, kept, refused


def index_pattern(index: str) -> str:
    """The wildcard pattern covering every index an `index` setting names (for templates)."""
    try:
        return NamePattern(index, INDEX_RULES).glob()
    except PatternError:
        return DATE_PATTERN.sub("*", index)


def index_problem(index: str) -> str | None:
    """What Elasticsearch refuses in an index name pattern: a literal part or date it would answer
    with invalid_index_name_exception for every record, a malformed reference, a bad default."""
    try:
        problem = NamePattern(index, INDEX_RULES).problem()
    except PatternError as e:
        return str(e)
    if problem:
        return (f"must give lowercase index names of at most 255 bytes, starting with a letter or digit, without "
                f"spaces or any of \\ / * ? \" < > | , # : (field references like %{{[service]:unknown}} and a "
                f"date like %{{+yyyy.MM.dd}} may be part of it): {index!r} {problem}")
    return None
