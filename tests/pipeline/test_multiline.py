"""Multiline: continuation lines join their event; offsets stay exact; nothing is ever dropped."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ccf_agent.tail.multiline import PRESETS, Multiline, MultilineConfig

NODE_TRACE = [
    b"Error: connect ECONNREFUSED 10.0.4.12:5432",
    b"    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)",
    b"    at async Pool.connect (/app/node_modules/pg-pool/index.js:45:11) {",
    b"  errno: -111,",
    b"  code: 'ECONNREFUSED'",
    b"}",
]
JAVA_TRACE = [
    b'Exception in thread "main" java.lang.IllegalStateException: payout batch rejected',
    b"\tat com.ccf.payouts.Batcher.submit(Batcher.java:88)",
    b"\tat com.ccf.payouts.Main.main(Main.java:12)",
    b"Caused by: java.io.IOException: connection reset",
    b"\tat java.base/sun.nio.ch.SocketDispatcher.read0(Native Method)",
    b"\t... 3 more",
]


def preset(name: str = "stack_trace", **kw: object) -> Multiline:
    source, negate, match = PRESETS[name]
    return Multiline(MultilineConfig(re.compile(source), negate, match, **kw))  # type: ignore[arg-type]


def custom(pattern: bytes, negate: bool = False, match: str = "after", **kw: object) -> Multiline:
    return Multiline(MultilineConfig(re.compile(pattern), negate, match, **kw))  # type: ignore[arg-type]


def test_a_node_stack_trace_is_one_event_once_the_next_line_starts() -> None:
    ml = preset()
    events, used = ml.push([*NODE_TRACE, b"next line"])
    assert events == [b"\n".join(NODE_TRACE)]
    assert used == len(NODE_TRACE)
    assert ml.pending_lines == 1


def test_a_java_stack_trace_with_caused_by_is_one_event() -> None:
    ml = preset("java")
    events, _ = ml.push([*JAVA_TRACE, b"2024-01-15 10:30:01 INFO next"])
    assert events == [b"\n".join(JAVA_TRACE)]


def test_lines_without_continuations_are_events_of_their_own() -> None:
    ml = preset()
    events, used = ml.push([b"one", b"two", b"three"])
    assert (events, used) == ([b"one", b"two"], 2)
    assert ml.flush() == (b"three", 1)


def test_the_open_event_waits_for_the_next_push() -> None:
    ml = preset()
    assert ml.push(NODE_TRACE[:2]) == ([], 0)
    events, used = ml.push([*NODE_TRACE[2:], b"after"])
    assert events == [b"\n".join(NODE_TRACE)] and used == len(NODE_TRACE)


def test_negate_after_joins_lines_not_starting_an_event() -> None:
    # Events start with "[", everything else continues the one before (Filebeat's classic example).
    ml = custom(rb"^\[", negate=True, match="after")
    events, used = ml.push([b"[10:00] a", b"  detail", b"more", b"[10:01] b"])
    assert events == [b"[10:00] a\n  detail\nmore"] and used == 3


def test_before_joins_continued_lines_onto_the_next() -> None:
    # A trailing backslash continues onto the next line.
    ml = custom(rb"\\$", match="before")
    events, used = ml.push([b"echo a \\", b"  b \\", b"  c", b"single"])
    assert events == [b"echo a \\\n  b \\\n  c", b"single"] and used == 4
    assert ml.pending_lines == 0


def test_negate_before_ends_an_event_at_the_line_matching_the_pattern() -> None:
    ml = custom(rb";$", negate=True, match="before")
    events, _ = ml.push([b"SELECT *", b"FROM t", b"WHERE x;", b"SELECT 1;"])
    assert events == [b"SELECT *\nFROM t\nWHERE x;", b"SELECT 1;"]


def test_max_lines_splits_an_event_without_dropping_a_line() -> None:
    ml = preset(max_lines=3)
    events, used = ml.push([b"Error: x", b"  at a", b"  at b", b"  at c", b"  at d", b"next"])
    assert events == [b"Error: x\n  at a\n  at b", b"  at c\n  at d"]
    assert used == 5 and ml.splits == 1


def test_max_bytes_splits_an_event_without_dropping_a_line() -> None:
    ml = preset(max_bytes=20)
    events, _ = ml.push([b"Error: boom", b"  at aaaaaaa", b"  at b", b"next"])
    assert events == [b"Error: boom", b"  at aaaaaaa\n  at b"]
    assert all(len(e) <= 20 for e in events) and ml.splits == 1


def test_before_mode_also_splits_at_max_lines() -> None:
    ml = custom(rb"\\$", match="before", max_lines=2)
    events, used = ml.push([b"a \\", b"b \\", b"c \\", b"d"])
    assert events == [b"a \\\nb \\", b"c \\\nd"] and used == 4


def test_flush_returns_the_open_event_and_empties_it() -> None:
    ml = preset()
    ml.push(NODE_TRACE)
    assert ml.flush() == (b"\n".join(NODE_TRACE), len(NODE_TRACE))
    assert ml.flush() == (None, 0)
    assert ml.pending_lines == 0 and ml.pending_bytes == 0


def test_timeout_counts_from_the_last_line_added() -> None:
    ml = preset(timeout=5.0)
    assert ml.deadline is None and not ml.expired(100.0)
    ml.push([b"Error: x"], now=100.0)
    ml.push([b"  at a"], now=103.0)
    assert ml.deadline == 108.0
    assert not ml.expired(107.9)
    assert ml.expired(108.0)


def test_pending_bytes_are_the_file_bytes_of_the_held_lines() -> None:
    ml = preset()
    ml.push([b"done", b"Error: x", b"  at a"])
    assert ml.pending_bytes == len(b"Error: x\n  at a\n")


def test_the_bytes_an_event_covers_are_its_length_plus_a_newline() -> None:
    """The reader's offset arithmetic: events are lines joined by b"\\n", each line had one."""
    ml = preset()
    chunk = [*NODE_TRACE, b"plain", *JAVA_TRACE[:1], b"tail"]
    events, used = ml.push(chunk)
    assert sum(len(e) + 1 for e in events) == sum(len(line) + 1 for line in chunk[:used])


@given(st.lists(st.sampled_from([b"Error: a", b"    at f (x.js:1:2)", b"\tat a.B(C.java:1)", b"plain",
                                 b"Caused by: x", b"}", b"", b"  code: 'E'"]), max_size=60),
       st.lists(st.integers(min_value=0, max_value=60), max_size=5),
       st.integers(min_value=1, max_value=7))
def test_any_lines_in_any_chunks_come_out_exactly_once_in_order(lines: list[bytes], cuts: list[int],
                                                                max_lines: int) -> None:
    ml = preset(max_lines=max_lines)
    out: list[bytes] = []
    used_total = 0
    bounds = sorted({0, len(lines), *(min(c, len(lines)) for c in cuts)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        events, used = ml.push(lines[a:b])
        out += events
        used_total += used
        assert used_total + ml.pending_lines == b
    event, n = ml.flush()
    if event is not None:
        out.append(event)
    used_total += n
    assert used_total == len(lines)
    assert b"\n".join(out) == b"\n".join(lines) and (len(out) > 0) == (len(lines) > 0)
    assert all(e.count(b"\n") < max_lines for e in out)
