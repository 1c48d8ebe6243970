"""Index names: from each record's event time (`ccf-logs-%{+yyyy.MM.dd}`), never the wall clock."""

from __future__ import annotations

import re

import orjson

DATE_PATTERN = re.compile(r"%\{\+([^}]+)\}")
INDEX_NAME = re.compile(r'^[a-z0-9][^\\/*?"<>| ,#:A-Z]*$')


class IndexNamer:
    """The bulk action line of a record, by the day of its @timestamp (cached per day)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.dated = bool(DATE_PATTERN.search(pattern))
        self._cache: dict[bytes, bytes] = {}
        self.static_action = b'{"create":{"_index":' + orjson.dumps(pattern) + b',"_id":"'

    def name(self, day: bytes) -> str:
        """The index for a day `YYYY-MM-DD` (Joda-style yyyy, yy, MM, dd in the pattern)."""
        y, m, d = day[0:4].decode(), day[5:7].decode(), day[8:10].decode()

        def fmt(mt: re.Match[str]) -> str:
            return mt.group(1).replace("yyyy", y).replace("yy", y[2:]).replace("MM", m).replace("dd", d)

        return DATE_PATTERN.sub(fmt, self.pattern)

    def action(self, stamp: bytes) -> bytes:
        if not self.dated:
            return self.static_action
        day = stamp[:10]
        hit = self._cache.get(day)
        if hit is None:
            hit = b'{"create":{"_index":' + orjson.dumps(self.name(day)) + b',"_id":"'
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[day] = hit
        return hit


def index_pattern(index: str) -> str:
    """The wildcard pattern covering every index an `index` setting names (for templates)."""
    return DATE_PATTERN.sub("*", index)


def index_problem(index: str) -> str | None:
    """What Elasticsearch refuses in an index name (its date pattern filled in): it would answer
    every record's create with invalid_index_name_exception, and every record be dead-lettered."""
    name = IndexNamer(index).name(b"2024-12-31")
    if not name or len(name.encode()) > 255 or not INDEX_NAME.match(name):
        return ("must be a lowercase index name of at most 255 bytes, starting with a letter or digit, without "
                f"spaces or any of \\ / * ? \" < > | , # : (a date pattern like %{{+yyyy.MM.dd}} may follow), "
                f"not {index!r}")
    return None
