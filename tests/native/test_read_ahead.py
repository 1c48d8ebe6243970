"""The read-ahead thread (_native/readahead.c, through py_readahead.c's ReadAhead) on its own:
what take() gives is what a read then would have given, and its life cycle (made, used, closed)
holds no race or dangling state. tests/native/sanitize.sh runs these under ThreadSanitizer and AddressSanitizer too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccf_agent.pipeline.native import fast as _fast

pytestmark = pytest.mark.skipif(_fast is None, reason="the C extension is not built")


def expected(data: bytes, offset: int, size: int, partial: bytes) -> tuple[bytes | None, bytes, int]:
    """(block, rest, nread) as the docstring of ReadAhead.take promises them for a pread."""
    new = data[offset:offset + size]
    whole = partial + new
    if b"\n" not in new:
        return None, whole, len(new)
    cut = whole.rindex(b"\n") + 1
    return whole[:cut], whole[cut:], len(new)


@settings(max_examples=200)
@given(st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"\n")), st.integers(0, 320), st.integers(1, 64),
       st.binary(max_size=8).filter(lambda b: b"\n" not in b))
def test_take_gives_what_a_read_then_would(tmp_path_factory: Any, data: bytes, offset: int, size: int,
                                           partial: bytes) -> None:
    path = tmp_path_factory.mktemp("ra") / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    ahead = _fast.ReadAhead()
    try:
        owner = object()
        assert ahead.submit(owner, fd, offset, size, partial) is True
        assert ahead.owner is owner
        got_owner, got_offset, got_partial, block, rest, nread, scan = ahead.take()
        assert (got_owner, got_offset, got_partial) == (owner, offset, partial)
        assert (block, rest, nread) == expected(data, offset, size, partial)
        assert (scan is None) == (block is None)
        assert ahead.owner is None
    finally:
        ahead.close()
        os.close(fd)


def test_many_jobs_one_after_another_each_see_their_own_chunk(tmp_path: Path) -> None:
    """The thread and the loop hand each job back and forth; each take sees that job's result."""
    data = b"".join(b"line %d\n" % i for i in range(2000))
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    ahead = _fast.ReadAhead()
    try:
        offset, partial, lines = 0, b"", []
        while True:
            assert ahead.submit(None, fd, offset, 97, partial)
            _, _, _, block, rest, nread, _ = ahead.take()
            if nread == 0:
                break
            offset += nread
            partial = rest
            if block is not None:
                lines.extend(block.splitlines(keepends=True))
        assert b"".join(lines) == data
    finally:
        ahead.close()
        os.close(fd)


def test_a_job_dropped_unread_leaves_the_thread_ready_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a\nb\n")
    fd = os.open(path, os.O_RDONLY)
    ahead = _fast.ReadAhead()
    try:
        for _ in range(50):
            assert ahead.submit(1, fd, 0, 4, b"")
            ahead.drop()
            assert ahead.owner is None
        assert ahead.submit(2, fd, 2, 2, b"")
        assert ahead.take()[3] == b"b\n"
    finally:
        ahead.close()
        os.close(fd)


def test_submit_after_close_submits_nothing_and_says_why(tmp_path: Path) -> None:
    """Before: close() stopped the thread, submit() started a new one that saw the stop flag and
    left, and the take() that followed waited for good."""
    path = tmp_path / "f"
    path.write_bytes(b"a\n")
    fd = os.open(path, os.O_RDONLY)
    ahead = _fast.ReadAhead()
    try:
        assert ahead.submit(1, fd, 0, 2, b"")
        ahead.take()
        ahead.close()
        assert ahead.submit(1, fd, 0, 2, b"") is False
        assert ahead.owner is None and ahead.error == "closed"
        with pytest.raises(RuntimeError, match="nothing submitted"):
            ahead.take()
    finally:
        os.close(fd)


def test_a_second_submit_before_take_is_refused() -> None:
    r, w = os.pipe()
    ahead = _fast.ReadAhead()
    try:
        os.write(w, b"x\n")
        assert ahead.submit(1, r, 0, 2, b"")  # a pipe cannot pread: the job ends in an error
        with pytest.raises(RuntimeError, match="already submitted"):
            ahead.submit(1, r, 0, 2, b"")
        with pytest.raises(OSError):
            ahead.take()
        assert ahead.owner is None
    finally:
        ahead.close()
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("fold", [[b"x"], (1, 2), ("not", "a", "fold")])
def test_a_read_ahead_that_cannot_be_made_raises_and_leaves_nothing_behind(fold: Any) -> None:
    """The error paths of ReadAhead() deallocate the object: before, that destroyed a mutex and
    condition variables never made (undefined behaviour, though glibc's all-zero initializer hides
    it from the sanitizers too); now dealloc destroys only those that exist."""
    for _ in range(20):
        with pytest.raises((TypeError, ValueError)):
            _fast.ReadAhead(fold)


def test_closing_twice_and_dropping_with_nothing_submitted_are_no_ops() -> None:
    ahead = _fast.ReadAhead()
    ahead.drop()
    ahead.close()
    ahead.close()
    ahead.drop()
    assert ahead.owner is None
