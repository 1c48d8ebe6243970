"""The file output: what a failed write leaves in the file, and its health after the disk recovers.

A full disk is injected at the write system call (a real write of part of the body, then ENOSPC),
the one fault a test cannot get from a real file system without privileges."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from ccf_agent.config import OutputConfig
from ccf_agent.outputs.base import Fragment
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.file import output as file_output
from ccf_agent.outputs.file.output import FileOutput, create
from tests.outputs_es.fakes import Token, alive, events


def _output(path: Path, state: Path) -> FileOutput:
    cfg = OutputConfig(name="archive", type="file", path=str(path), backoff_initial=0.01, backoff_max=0.05)
    out = create(cfg, DeadLetters(state))
    assert isinstance(out, FileOutput)
    return out


@contextmanager
def disk_full_once(monkeypatch: pytest.MonkeyPatch, part: float,
                   before_next: Callable[[], None] = lambda: None) -> Iterator[list[int]]:
    """The next write of a body writes `part` of it, then fails with ENOSPC; later writes succeed
    (`before_next` is called before each). Yields the bytes that failing write got into the file."""
    real = file_output.write_all
    written: list[int] = []

    def write_all(fd: int, data: bytes) -> None:
        if written:
            before_next()
            real(fd, data)
            return
        n = os.write(fd, data[:int(len(data) * part)])
        written.append(n)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(file_output, "write_all", write_all)
    yield written


async def _ship(out: FileOutput, batches: int, size: int, until: Callable[[], bool]) -> list[Token]:
    tokens = [Token() for _ in range(batches)]
    task = asyncio.create_task(out.run())
    try:
        for k, token in enumerate(tokens):
            out.submit(events(size, start=size * k), list(range(size)), token)  # type: ignore[arg-type]
        deadline = asyncio.get_running_loop().time() + 20
        while not until():
            assert asyncio.get_running_loop().time() < deadline, out.status()
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return tokens


def _lines(path: Path) -> list[Any]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_write_that_fails_part_way_leaves_each_record_once_and_no_partial_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out" / "archive.ndjson"
    out = _output(path, tmp_path / "state")
    with disk_full_once(monkeypatch, part=0.5) as written:
        tokens = asyncio.run(_ship(out, 3, 10, lambda: out.stats.docs_acked == 30))

    assert written and written[0] > 0  # the failed write did put part of a record in the file
    assert [t.released for t in tokens] == [1, 1, 1]
    assert path.read_bytes().endswith(b"\n")
    assert [d["_id"] for d in _lines(path)] == [f"s-{i}" for i in range(30)]


def test_an_output_whose_write_failed_is_healthy_again_once_a_write_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "archive.ndjson"
    out = _output(path, tmp_path / "state")
    health_at_retry: list[tuple[bool, str | None]] = []

    with disk_full_once(monkeypatch, part=0.0, before_next=lambda: health_at_retry.append((out.healthy, out.problem))):
        asyncio.run(_ship(out, 1, 10, lambda: out.stats.docs_acked == 10))

    assert out.stats.last_error is not None and "No space left on device" in out.stats.last_error
    assert health_at_retry[0] == (False, "write")  # the failed write showed in its health...
    assert out.status()["healthy"] is True  # ...and the good one cleared it
    assert out.status()["problem"] is None


def test_a_partial_line_left_by_a_crash_mid_write_is_cut_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "archive.ndjson"
    path.write_bytes(b'{"_id":"s-0","doc":{"seq":0}}\n{"_id":"s-1","doc":{"se')  # kill -9 mid-write
    out = _output(path, tmp_path / "state")
    asyncio.run(_ship(out, 1, 2, lambda: out.stats.docs_acked == 2))

    assert [d["_id"] for d in _lines(path)] == ["s-0", "s-0", "s-1"]  # the resend follows whole lines


def test_a_written_batch_holds_no_memory_while_the_output_waits_for_the_next(tmp_path: Path) -> None:
    # A batch is up to batch_max_bytes: one kept alive past its write adds that much to peak RSS.
    async def go() -> int:
        out = _output(tmp_path / "archive.ndjson", tmp_path / "state")
        task = asyncio.create_task(out.run())
        try:
            out.submit(events(10), list(range(10)), Token())  # type: ignore[arg-type]
            assert await out.drain(asyncio.get_running_loop().time() + 20), out.status()
            return alive(Fragment)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(go()) == 0
