"""The tailer, in-process: every line read once through rotation, truncation and restarts."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccf_agent.acks import Flow, Ledger
from ccf_agent.pipeline.native import fast as _fast
from ccf_agent.registry import Entry, Registry
from ccf_agent.tail.reader import FileReader
from tests.tail.helpers import Tail, numbered, seqs


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the reader alone


def reader_for(path: Path, max_line: int = 1 << 20, ahead: Any = None) -> FileReader:
    entry = Entry("s" * 16, "fp", "app", str(path), 0, 0)
    ledger = Ledger(entry, Registry(path.parent / "state"), Flow(1 << 30))
    reader = FileReader(os.open(path, os.O_RDONLY), str(path), entry, ledger, 0, max_line)
    reader.ahead = ahead
    return reader


class PromptReadAhead:
    """The real read-ahead as on an idle machine: its thread has always begun a job when the
    reader comes back for it, so the reader never takes one back (see StarvedReadAhead)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def withdraw(self) -> bool:
        return False


def read_ahead() -> Any:
    if _fast is None:
        pytest.skip("the C extension is not built")
    return PromptReadAhead(_fast.ReadAhead())


def read_all(readers: list[FileReader], size: int) -> list[list[bytes]]:
    """Each reader's lines, reading a chunk from each in turn until all are at their end."""
    got: list[list[bytes]] = [[] for _ in readers]
    at = [0] * len(readers)
    busy = True
    while busy:
        busy = False
        for k, r in enumerate(readers):
            for b in r.read(size):
                assert b.start == at[k]  # contiguous: every byte in exactly one batch
                at[k] = b.end
                got[k].extend(b.lines)
                busy = True
    return got


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"one\ntw")
    r = reader_for(p)
    [b] = r.read()
    assert (b.lines, b.start, b.end) == ([b"one"], 0, 4)
    with open(p, "ab") as f:
        f.write(b"o\n")
    [b] = r.read()
    assert (b.lines, b.start, b.end) == ([b"two"], 4, 8)


def test_an_over_long_line_is_cut_and_its_rest_skipped(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"x" * 100 + b"\nnext\n")
    r = reader_for(p, max_line=10)
    batches = r.read()
    assert [(b.lines, b.truncated) for b in batches] == [([b"x" * 10], True), ([b"next"], False)]
    assert batches[-1].end == 106  # every byte accounted for, so the offset can pass the long line


def test_an_over_long_line_across_reads_is_cut_once(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"y" * 50)
    r = reader_for(p, max_line=10)
    [b] = r.read(size=20)
    assert b.truncated and b.lines == [b"y" * 10]
    with open(p, "ab") as f:
        f.write(b"y" * 30 + b"\nafter\n")
    lines = [line for b in r.read() + r.read() + r.read() for line in b.lines]
    assert lines == [b"after"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), min_size=1, max_size=30),
       st.lists(st.integers(1, 90), min_size=1, max_size=8), st.integers(0, 50), st.booleans())
def test_lines_read_in_any_chunks_are_the_lines_written(tmp_path: Path, lines: list[bytes], sizes: list[int],
                                                        max_line: int, ahead: bool) -> None:
    p = tmp_path / "chunks.log"
    p.write_bytes(b"".join(x + b"\n" for x in lines))
    r = reader_for(p, max_line=max_line or 1 << 20, ahead=read_ahead() if ahead else None)
    got, at, k = [], 0, 0
    while batches := r.read(size=sizes[k % len(sizes)]) or r.read():
        k += 1
        for b in batches:
            assert b.start == at  # contiguous: every byte in exactly one batch
            got.extend(b.lines)
            if b.lines and b.lines[-1] and not b.truncated:  # what a resume recognises the offset by
                assert b.token is not None and b.token.tail == (b.lines[-1] + b"\n")[-64:]
            at = b.end
    assert at == p.stat().st_size
    assert got == [x[:max_line] if max_line else x for x in lines]


def test_a_chunk_read_ahead_holds_what_a_read_then_would(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    r = reader_for(p, ahead=read_ahead())
    [first] = r.read(100)
    assert r.ahead.owner is r  # a full chunk: the next one is being read
    [second] = r.read(100)
    assert second.scan is not None and second.start == first.end and second.end == first.end + len(second.data)
    lines = first.lines + second.lines
    assert lines == [b"line %d" % i for i in range(len(lines))]


class StarvedReadAhead:
    """A read-ahead whose thread never gets a CPU: every job is still queued when the reader
    comes back for it (fault injection: the machine busy with others)."""

    def __init__(self) -> None:
        self.owner: object = None
        self.submitted = self.withdrawn = 0

    def submit(self, owner: object, fd: int, offset: int, size: int, partial: bytes) -> bool:
        self.owner = owner
        self.submitted += 1
        return True

    def withdraw(self) -> bool:
        self.owner = None
        self.withdrawn += 1
        return True

    def take(self) -> None:
        raise AssertionError("waited for a thread that had not begun the job")


def test_a_chunk_the_thread_has_not_begun_is_read_now_not_waited_for(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    starved = StarvedReadAhead()
    r = reader_for(p, ahead=starved)
    lines = [line for _ in range(3) for b in r.read(100) for line in b.lines]
    assert lines == [b"line %d" % i for i in range(len(lines))]
    assert starved.withdrawn == 2 and starved.submitted == 3  # each job taken back, the next one submitted


def test_a_chunk_read_ahead_at_the_end_of_the_file_is_read_again(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"x" * 99 + b"\n")
    r = reader_for(p, ahead=read_ahead())
    assert r.read(100)[0].lines == [b"x" * 99]
    assert r.ahead.owner is r  # it finds the end: the file may still grow before the next read
    with open(p, "ab") as f:
        f.write(b"more\n")
    assert [b.lines for b in r.read(100)] == [[b"more"]]


def test_a_chunk_read_ahead_behind_a_flushed_partial_line_is_read_again(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"first\nhalf")
    r = reader_for(p, ahead=read_ahead())
    assert r.read(10)[0].lines == [b"first"]
    assert r.ahead.owner is r
    assert r.flush_partial()[0].lines == [b"half"]  # a writer that never finished its line
    with open(p, "ab") as f:
        f.write(b" then\nnext\n")
    assert [line for b in r.read(100) for line in b.lines] == [b" then", b"next"]  # "half" not again


def test_files_sharing_one_read_ahead_are_each_read_once(tmp_path: Path) -> None:
    ahead = read_ahead()
    readers = []
    for name in ("a", "b", "c"):
        p = tmp_path / f"{name}.log"
        p.write_bytes(b"".join(b"%s %d\n" % (name.encode(), i) for i in range(500)))
        readers.append(reader_for(p, ahead=ahead))
    got = read_all(readers, 64)
    assert got == [[b"%s %d" % (name, i) for i in range(500)] for name in (b"a", b"b", b"c")]


def test_closing_a_reader_waits_for_and_drops_its_read_ahead(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"y\n" * 1000)
    ahead = read_ahead()
    r = reader_for(p, ahead=ahead)
    r.read(100)
    assert ahead.owner is r
    r.close()
    assert ahead.owner is None and r.fd == -1
    other = reader_for(p, ahead=ahead)  # the thread serves the next reader
    assert len(read_all([other], 100)[0]) == 1000


# ---------------------------------------------------------------- discovery and rotation


def test_new_files_are_read_from_the_start(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path) as t:
            (t.logs / "combined.log").write_text(numbered(0, 100))
            await t.has_lines(100)
            (t.logs / "error.log").write_text(numbered(100, 10))
            await t.has_lines(110)
        assert sorted(seqs(t.lines)) == list(range(110))
    run(go())


def test_a_file_longer_than_a_chunk_is_read_ahead_and_counted(tmp_path: Path) -> None:
    if _fast is None:
        pytest.skip("the C extension is not built")

    async def go() -> None:
        async with Tail(tmp_path) as t:
            # As on an idle machine: on a busy one the thread may not have begun any job when the
            # reader comes back, and every chunk is read on the loop (nothing read ahead to count).
            t.input.read_ahead = PromptReadAhead(t.input.read_ahead)
            (t.logs / "combined.log").write_text(numbered(0, 20_000))  # ~0.7 MB: about six chunks
            await t.has_lines(20_000)
            ahead = t.input.bytes_read_ahead
            assert 0 < ahead < t.input.bytes_read == (t.logs / "combined.log").stat().st_size
            assert ahead == sum(b.end - b.start for b in t.batches if b.scan is not None)
        assert seqs(t.lines) == list(range(20_000))
    run(go())


def test_files_sharing_a_first_line_are_both_read(tmp_path: Path) -> None:
    async def go() -> None:
        t = Tail(tmp_path)
        (t.logs / "combined.log").write_text(numbered(0, 1) + numbered(1, 50))
        (t.logs / "error.log").write_text(numbered(0, 1) + numbered(100, 5))
        async with t:
            await t.has_lines(57)
        assert len(t.lines) == 57
    run(go())


def test_rename_rotation_finishes_the_old_file_and_reads_the_new(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path) as t:
            live = t.logs / "combined.log"
            with open(live, "a") as f:
                f.write(numbered(0, 50))
                f.flush()
                await t.has_lines(50)
                os.rename(live, t.logs / "combined.log.1")
                f.write(numbered(50, 20))  # the app writes on until it reopens
            live.write_text(numbered(70, 30))
            await t.has_lines(100)
            await t.until(lambda: len(t.input.readers) == 1, "the old file to be finished (rotate_wait)")
            await t.scanned(2)  # and not found again under its new name
        assert sorted(seqs(t.lines)) == list(range(100))
    run(go())


def storm_while_paused(tmp_path: Path, generations: int, size: int, alive: float, apart: float) -> None:
    """Each rotation renames combined.log over combined.log.1 while reading waits for room: a
    generation is gone from every name before reading resumes, so only a descriptor opened
    during the pause keeps it. Every line must be read once room is back."""
    async def go() -> None:
        async with Tail(tmp_path) as t:
            live = t.logs / "combined.log"
            live.write_text(numbered(0, 100))
            await t.has_lines(100)
            t.room.clear()
            for g in range(generations):
                live.write_text(numbered(100 + size * g, size))
                await asyncio.sleep(alive)
                os.replace(live, t.logs / "combined.log.1")
                await asyncio.sleep(apart)
            last = 100 + size * generations
            live.write_text(numbered(last, 10))
            t.room.set()
            await t.has_lines(last + 10)
        assert sorted(seqs(t.lines)) == list(range(last + 10))
    run(go())


def test_generations_renamed_over_while_reading_waits_for_room_are_all_read(tmp_path: Path) -> None:
    storm_while_paused(tmp_path, generations=6, size=50, alive=0.15, apart=0.15)


def test_generations_living_milliseconds_while_reading_waits_for_room_are_all_read(tmp_path: Path) -> None:
    # Faster than any timer: only acting on inotify's news at once holds each generation.
    storm_while_paused(tmp_path, generations=10, size=20, alive=0.02, apart=0)


def test_truncation_restarts_at_zero(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path) as t:
            live = t.logs / "combined.log"
            live.write_text(numbered(0, 40))
            await t.has_lines(40)
            os.truncate(live, 0)
            await t.scanned(2)
            live.write_text(numbered(40, 5))
            await t.has_lines(45)
        assert sorted(seqs(t.lines)) == list(range(45))
    run(go())


def test_copytruncate_copy_is_finished_from_where_reading_stopped(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path) as t:
            live = t.logs / "combined.log"
            live.write_text(numbered(0, 30))
            await t.has_lines(30)
            t.hold = True
            with open(live, "a") as f:
                f.write(numbered(30, 10))  # lands after our last read, before the copy
            shutil.copyfile(live, t.logs / "combined.log.1")
            os.truncate(live, 0)
            with open(live, "a") as f:
                f.write(numbered(40, 5))
            t.hold = False
            t.release()
            await t.has_lines(45)
            await t.scanned(2)
        assert sorted(seqs(t.lines)) == list(range(45))
    run(go())


def test_a_line_half_read_when_copytruncate_copies_it_is_shipped_whole_from_the_copy(tmp_path: Path) -> None:
    # At 40,000 lines/s the reader often holds the first half of a line when logrotate copies the
    # file: the copy must continue the stream from that line's start, not from after its half.
    async def go() -> None:
        async with Tail(tmp_path) as t:
            live = t.logs / "combined.log"
            line30 = numbered(30, 1)
            live.write_text(numbered(0, 30) + line30[:10])
            await t.has_lines(30)
            [reader] = t.input.readers.values()
            await t.until(lambda: reader.offset == live.stat().st_size and reader.partial != b"",
                          "the half line held")
            t.room.clear()  # reading waits while logrotate works
            with open(live, "a") as f:
                f.write(line30[10:] + numbered(31, 9))
            shutil.copyfile(live, t.logs / "combined.log.1")
            os.truncate(live, 0)
            with open(live, "a") as f:
                f.write(numbered(40, 5))
            t.room.set()
            await t.has_lines(45)
            await asyncio.sleep(0.3)
        assert sorted(seqs(t.lines)) == list(range(45))
        assert all(x.startswith(b"{") for x in t.lines)  # no fragment of line 30
    run(go())


@pytest.mark.parametrize(("regrown", "during_compare"), [(0, False), (80, False), (0, True)],
                         ids=["truncated", "truncated and regrown", "truncated while compared"])
def test_a_copy_whose_original_is_truncated_as_a_scan_finds_it_is_not_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, regrown: int, during_compare: bool) -> None:
    # copytruncate racing a scan: the truncate (and the writer's next lines) land after the scan
    # checked the files it holds, before it opens the copy or while it compares the copy with
    # the original. The copy must wait, then continue the stream: every line arrives once.
    from ccf_agent.tail import source

    async def go() -> None:
        async with Tail(tmp_path) as t:
            live = t.logs / "combined.log"
            live.write_text(numbered(0, 50))
            await t.has_lines(50)
            shutil.copyfile(live, t.logs / "combined.log.1")

            def truncate() -> None:
                os.truncate(live, 0)
                with open(live, "a") as f:
                    f.write(numbered(50, regrown))

            if during_compare:
                real = source.same_prefix

                def truncated_first(a: int, b: int, n: int) -> bool:
                    truncate()
                    return real(a, b, n)

                monkeypatch.setattr(source, "same_prefix", truncated_first)
            else:
                truncate()
            [reader] = t.input.readers.values()
            assert t.input._open(str(t.logs / "combined.log.1"), True, {reader.entry.fingerprint}) is False
            assert len(t.input.readers) == 1
            monkeypatch.undo()
            with open(live, "a") as f:
                f.write(numbered(50 + regrown, 5))
            await t.has_lines(55 + regrown)
            await t.scanned(2)  # time to (wrongly) read the copy again
        assert sorted(seqs(t.lines)) == list(range(55 + regrown))
    run(go())


def test_compressed_rotations_are_never_read(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path, pattern="*") as t:
            (t.logs / "combined.log.2.gz").write_text(numbered(0, 5))
            (t.logs / "combined.log").write_text(numbered(5, 5))
            await t.has_lines(5)
            await t.scanned(2)
        assert sorted(seqs(t.lines)) == list(range(5, 10))
    run(go())


def test_a_file_deleted_while_open_is_read_to_its_end(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path) as t:
            live = t.logs / "combined.log"
            with open(live, "a") as f:
                f.write(numbered(0, 10))
                f.flush()
                await t.has_lines(10)
                os.unlink(live)
                f.write(numbered(10, 10))
                f.flush()
                await t.has_lines(20)
        assert sorted(seqs(t.lines)) == list(range(20))
    run(go())


def test_a_deleted_file_is_given_up_after_its_bound_and_the_loss_counted(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path, deleted_max_wait=0.2) as t:
            live = t.logs / "combined.log"
            with open(live, "a") as f:
                f.write(numbered(0, 10))
                f.flush()
                await t.has_lines(10)
                t.input.flow.take(1 << 30)  # reading paused: the output is down
                os.unlink(live)
                f.write(numbered(10, 10))
                f.flush()
                await t.until(lambda: t.input.lost_bytes > 0, "the deleted file to be given up")
                assert not t.input.readers
    run(go())


def test_a_partial_line_is_shipped_after_the_idle_time(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path, partial_flush=0.2) as t:
            (t.logs / "combined.log").write_text(numbered(0, 3) + '{"message":"no newline","seq":3}')
            await t.has_lines(4)
        assert seqs(t.lines) == [0, 1, 2, 3]
    run(go())


def test_idle_files_close_and_reopen_when_they_grow(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path, close_inactive=0.2) as t:
            live = t.logs / "combined.log"
            live.write_text(numbered(0, 5))
            await t.has_lines(5)
            await t.until(lambda: not t.input.readers, "the idle file to close")
            with open(live, "a") as f:
                f.write(numbered(5, 5))
            await t.has_lines(10)
        assert seqs(t.lines) == list(range(10))
    run(go())


def test_open_files_are_capped(tmp_path: Path) -> None:
    async def go() -> None:
        t = Tail(tmp_path, max_open_files=3, close_inactive=0.1)
        for i in range(6):
            (t.logs / f"f{i}.log").write_text(numbered(i * 10, 10))
        async with t:
            await t.until(lambda: len(t.input.readers) == 3, "three files open")
            await t.has_lines(60)
            assert len(t.input.readers) <= 3
    run(go())


def test_ignore_older_skips_old_new_files(tmp_path: Path) -> None:
    async def go() -> None:
        t = Tail(tmp_path, ignore_older=60)
        old = t.logs / "old.log"
        old.write_text(numbered(0, 5))
        os.utime(old, (time.time() - 3600, time.time() - 3600))
        (t.logs / "new.log").write_text(numbered(5, 5))
        async with t:
            await t.has_lines(5)
            await t.scanned(2)
        assert seqs(t.lines) == list(range(5, 10))
    run(go())


def test_start_at_end_skips_what_was_there_at_the_first_start(tmp_path: Path) -> None:
    async def go() -> None:
        t = Tail(tmp_path, start_at="end")
        live = t.logs / "combined.log"
        live.write_text(numbered(0, 5))
        async with t:
            await t.scanned(1)  # the first start's scan skipped what was there
            with open(live, "a") as f:
                f.write(numbered(5, 5))
            await t.has_lines(5)
        assert seqs(t.lines) == list(range(5, 10))
    run(go())


# ---------------------------------------------------------------- restarts


def test_restart_resumes_at_the_committed_offset(tmp_path: Path) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 20))
            await t.has_lines(20)
        with open(live, "a") as f:
            f.write(numbered(20, 5))
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(5)
            await t2.scanned(2)
        assert seqs(t2.lines) == list(range(20, 25))
    run(go())


def test_unacknowledged_lines_are_read_again_after_a_restart(tmp_path: Path) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 10))
            await t.has_lines(10)
            t.hold = True
            with open(live, "a") as f:
                f.write(numbered(10, 10))
            await t.has_lines(20)  # read, never acknowledged
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(10)
        assert seqs(t2.lines) == list(range(10, 20))
    run(go())


def test_a_file_rotated_while_stopped_is_finished_under_its_new_name(tmp_path: Path) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 10))
            await t.has_lines(10)
        with open(live, "a") as f:
            f.write(numbered(10, 5))
        os.rename(live, tmp_path / "logs" / "combined.log.1")
        live.write_text(numbered(15, 5))
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(10)
            await t2.scanned(2)
        assert sorted(seqs(t2.lines)) == list(range(10, 20))
    run(go())


def test_a_reused_inode_with_new_content_is_read_from_the_start(tmp_path: Path) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 50))
            await t.has_lines(50)
        # Same path (and often the same inode), shorter, different content.
        os.unlink(live)
        live.write_text(numbered(100, 3, prefix="new"))
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(3)
        assert seqs(t2.lines) == [100, 101, 102]
    run(go())


def test_a_file_rewritten_with_the_same_first_line_is_not_resumed_blindly(tmp_path: Path) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 1) + numbered(1, 30))
            await t.has_lines(31)
        # Truncated and rewritten while stopped, longer than before, same first line.
        live.write_text(numbered(0, 1) + numbered(200, 60))
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(61)
        assert seqs(t2.lines) == [0, *range(200, 260)]
    run(go())


# ---------------------------------------------------------------- multiline


def stack_trace_options() -> object:
    from ccf_agent.config import parse_input_options

    def where(path: tuple[object, ...], message: str) -> Exception:
        return ValueError(f"{path}: {message}")

    return parse_input_options({"multiline": {"preset": "stack_trace", "timeout": "300ms"}}, where)


TRACE = ("Error: boom\n    at handler (/app/routes/balance.js:42:11)\n"
         "    at next (/app/node_modules/express/lib/router/route.js:144:13)\n")


def test_a_stack_trace_is_one_event(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path, format="text", options=stack_trace_options()) as t:
            (t.logs / "app.log").write_text("started\n" + TRACE + "next line\n")
            await t.has_lines(3)
        assert t.lines == [b"started", TRACE.rstrip("\n").encode(), b"next line"]
    run(go())


def test_an_open_event_is_not_committed_until_it_ends(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path, format="text", options=stack_trace_options()) as t:
            (t.logs / "app.log").write_text("started\n" + TRACE)
            await t.has_lines(1)
            await asyncio.sleep(0.1)
            entry = next(iter(t.registry.entries.values()))
            assert entry.offset == len(b"started\n")  # the trace may still grow
            await t.has_lines(2)  # then the timeout ships it whole
            assert entry.offset == len(b"started\n") + len(TRACE)
        assert t.lines[1] == TRACE.rstrip("\n").encode()
    run(go())


def test_a_restart_mid_trace_neither_splits_nor_repeats_it(tmp_path: Path) -> None:
    async def go() -> None:
        log = tmp_path / "logs" / "app.log"
        async with Tail(tmp_path, format="text", options=stack_trace_options(), partial_flush=60) as t:
            log.write_text("started\n" + TRACE[:30])
            await t.has_lines(1)
        with open(log, "a") as f:
            f.write(TRACE[30:] + "after\n")
        async with Tail(tmp_path, first_run=False, format="text", options=stack_trace_options()) as t2:
            await t2.has_lines(2)
        assert t2.lines == [TRACE.rstrip("\n").encode(), b"after"]
    run(go())


# ---------------------------------------------------------------- odd paths


def test_a_directory_that_appears_later_is_watched_and_read(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path, pattern="app/*.log") as t:
            await asyncio.sleep(0.1)
            (t.logs / "app").mkdir()
            (t.logs / "app" / "combined.log").write_text(numbered(0, 5))
            await t.has_lines(5)
        assert seqs(t.lines) == list(range(5))
    run(go())


def test_a_symlinked_path_is_read_through_the_link(tmp_path: Path) -> None:
    async def go() -> None:
        elsewhere = tmp_path / "real"
        elsewhere.mkdir()
        target = elsewhere / "app-2024.log"
        target.write_text(numbered(0, 5))
        t = Tail(tmp_path)
        (t.logs / "combined.log").symlink_to(target)
        async with t:
            await t.has_lines(5)
            with open(target, "a") as f:
                f.write(numbered(5, 5))
            await t.has_lines(10)
        assert seqs(t.lines) == list(range(10))
    run(go())


def test_a_file_replaced_by_a_directory_stops_nothing_else(tmp_path: Path) -> None:
    async def go() -> None:
        async with Tail(tmp_path) as t:
            (t.logs / "combined.log").write_text(numbered(0, 5))
            (t.logs / "error.log").write_text(numbered(100, 5))
            await t.has_lines(10)
            os.unlink(t.logs / "combined.log")
            (t.logs / "combined.log").mkdir()
            with open(t.logs / "error.log", "a") as f:
                f.write(numbered(105, 5))
            await t.has_lines(15)
        assert sorted(seqs(t.lines)) == [*range(5), *range(100, 110)]
    run(go())


def test_a_deleted_file_read_to_its_end_is_closed(tmp_path: Path) -> None:
    # It was held open until the agent stopped: a descriptor, and the file's disk space, per deletion.
    async def go() -> None:
        async with Tail(tmp_path, rotate_wait=0.1) as t:
            (t.logs / "combined.log").write_text(numbered(0, 5))
            await t.has_lines(5)
            os.unlink(t.logs / "combined.log")
            await t.until(lambda: not t.input.readers, "the deleted file to be closed")
    run(go())


def test_a_fifo_a_device_link_and_a_directory_named_like_a_log_are_each_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        t = Tail(tmp_path)
        os.mkfifo(t.logs / "pipe.log")
        (t.logs / "zero.log").symlink_to("/dev/zero")
        (t.logs / "dir.log").mkdir()
        (t.logs / "combined.log").write_text(numbered(0, 5))
        async with t:
            await t.has_lines(5)
            scans = t.input.scans
            await t.until(lambda: t.input.scans >= scans + 5, "five more scans")
        assert seqs(t.lines) == list(range(5))
    with caplog.at_level("WARNING", logger="ccf_agent.tail"):
        run(go())
    warned = [r.getMessage() for r in caplog.records if "not a log file" in r.getMessage()]
    assert sorted(w.split(" is ")[1].split(",")[0] for w in warned) == ["a FIFO", "a device", "a directory"]
