"""Outages longer than one rotation, in-process, with the real logrotate and the guide's settings
(daily, rotate 30, compress, delaycompress, notifempty, create): every line of every generation
read once, the generations in the order written, compressed ones only to continue what is known."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tail.helpers import Tail, numbered, seqs

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"

# logrotate's compresscmd/compressext for each format the agent reads; gzip is logrotate's default.
COMPRESSORS: dict[str, tuple[str, ...]] = {
    "gzip": (),
    "bzip2": ("compresscmd /usr/bin/bzip2", "compressext .bz2"),
    "xz": ("compresscmd /usr/bin/xz", "compressext .xz"),
    "zstd": ("compresscmd /usr/bin/zstd", "compressoptions -q", "compressext .zst"),
}


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def guide_logrotate(logs: Path, *extra: str, keep: int = 30) -> Callable[[], None]:
    """`logrotate -f` with the operations guide's block for logs/*.log (the app reopens its file
    on every write here, so no postrotate reload is needed)."""
    conf = logs.parent / "logrotate.conf"
    body = [f"{logs}/*.log {{", "    daily", "    missingok", f"    rotate {keep}", "    compress",
            "    delaycompress", "    notifempty", "    create 0644", *(f"    {x}" for x in extra), "}", ""]
    conf.write_text("\n".join(body))
    state = logs.parent / "logrotate.state"

    def rotate() -> None:
        subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], check=True, capture_output=True)

    return rotate


# dateext with a name per second, so that forced rotations a second apart do not collide
DATEEXT = ("dateext", "dateformat -%Y%m%d-%s")


def append(path: Path, start: int, n: int) -> None:
    with open(path, "a") as f:
        f.write(numbered(start, n))


def rotate_three_times(live: Path, rotate: Callable[[], None], start: int, n: int, dateext: bool) -> int:
    """Write n lines before each of three rotations and n after: returns the next number."""
    for _ in range(3):
        append(live, start, n)
        start += n
        if dateext:
            time.sleep(1.05)  # one name per second
        rotate()
    append(live, start, n)
    return start + n


def assert_each_once_in_order(lines: list[bytes], expected: range) -> None:
    got = seqs(lines)
    assert len(got) == len(set(got)), "stored twice"
    assert sorted(got) == list(expected), f"lost {sorted(set(expected) - set(got))[:10]}"
    assert got == sorted(got), "generations not read in the order written"


def tool_for(compressor: str) -> None:
    if compressor == "zstd":
        pytest.importorskip("backports.zstd", reason="zstd needs backports.zstd (the [zstd] extra)")
    if compressor != "gzip" and shutil.which(compressor) is None:
        pytest.skip(f"{compressor} is not installed (tests/run.sh installs it)")


@pytest.mark.parametrize("compressor", list(COMPRESSORS))
def test_an_agent_stopped_across_three_rotations_reads_every_generation_in_order(
        tmp_path: Path, compressor: str) -> None:
    tool_for(compressor)

    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 100))
            await t.has_lines(100)
        rotate = guide_logrotate(live.parent, *COMPRESSORS[compressor])
        end = rotate_three_times(live, rotate, 100, 100, dateext=False)
        # combined.log.3.<ext> ends the stream the registry knows; .2.<ext> was never seen live.
        assert len(list(live.parent.glob("combined.log.*"))) == 3
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(end - 100)
            await asyncio.sleep(0.3)
        assert_each_once_in_order(t2.lines, range(100, end))
    run(go())


def test_an_agent_stopped_across_three_dateext_rotations_reads_every_generation_in_order(tmp_path: Path) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 100))
            await t.has_lines(100)
        end = rotate_three_times(live, guide_logrotate(live.parent, *DATEEXT), 100, 100, dateext=True)
        assert len(list(live.parent.glob("combined.log-*.gz"))) == 2
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(end - 100)
            await asyncio.sleep(0.3)
        assert_each_once_in_order(t2.lines, range(100, end))
    run(go())


@pytest.mark.parametrize("dateext", [False, True], ids=["numbered", "dateext"])
@pytest.mark.parametrize("held", [True, False], ids=["files held", "deleted files given up"])
def test_an_output_down_across_three_rotations_loses_nothing_and_reads_in_order(
        tmp_path: Path, dateext: bool, held: bool) -> None:
    # Nothing is acknowledged, so reading pauses (the bytes in flight are over the bound). With
    # the deleted generations held, they are read from their descriptors; given up
    # (deleted_max_wait, as in an outage of days), from their compressed rotations.
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path, flow_limit=2048, deleted_max_wait=300 if held else 0.1) as t:
            live.write_text(numbered(0, 100))
            await t.has_lines(100)
            t.hold = True  # the output is down from here on
            append(live, 100, 100)
            await t.has_lines(200)  # read, not acknowledged: reading pauses
            rotate = guide_logrotate(live.parent, *(DATEEXT if dateext else ()))
            end = 200
            for _ in range(3):
                append(live, end, 100)
                end += 100
                await asyncio.sleep(1.05 if dateext else 0.2)
                rotate()
            append(live, end, 100)
            end += 100
            await asyncio.sleep(0.6)  # a few scans while paused (and the bound for deleted files)
            assert len(t.lines) == 200
            # Given up, the deleted generations are continued from their .gz while still paused.
            assert sum(r.compressed for r in t.input.readers.values()) == (0 if held else 2)
            t.hold = False
            t.release()
            await t.has_lines(end)
            await asyncio.sleep(0.3)
        assert t.input.lost_bytes == t.input.lost_files == 0
        assert_each_once_in_order(t.lines, range(end))
    run(go())


def test_rotations_older_than_the_last_run_are_not_read_as_new_logs(tmp_path: Path) -> None:
    async def go() -> None:
        logs = tmp_path / "logs"
        logs.mkdir()
        (logs / "combined.log.3").write_text(numbered(20, 5, prefix="old"))  # rotate without compress
        with gzip.open(logs / "combined.log.2.gz", "wt") as f:
            f.write(numbered(0, 5, prefix="old"))
        with gzip.open(logs / "error.log-20240101.gz", "wt") as f:
            f.write(numbered(5, 5, prefix="old"))
        async with Tail(tmp_path) as t:
            (logs / "combined.log").write_text(numbered(10, 5))
            await t.has_lines(5)
        (logs / "combined.log").write_text(numbered(15, 6))  # rewritten: a new stream
        async with Tail(tmp_path, first_run=False) as t2:
            await t2.has_lines(6)
            await asyncio.sleep(0.3)
        assert seqs(t.lines) == list(range(10, 15))
        assert seqs(t2.lines) == list(range(15, 21))
    run(go())


def test_a_rotation_deleted_by_rotate_n_before_it_was_shipped_is_reported_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 100))
            await t.has_lines(100)
            t.hold = True  # read, never acknowledged: known unread
            append(live, 100, 50)
            await t.has_lines(150)
        rotate = guide_logrotate(live.parent, keep=1)
        end = rotate_three_times(live, rotate, 150, 100, dateext=False)
        with caplog.at_level(logging.ERROR, logger="ccf_agent.tail"):
            async with Tail(tmp_path, first_run=False, forget_after=0.3) as t2:
                await t2.until(lambda: t2.input.lost_files == 1, "the loss to be reported")
                await t2.has_lines(200)
        # combined.log.2.gz (rotate 1 keeps one generation past .1) and the live file survive.
        assert sorted(seqs(t2.lines)) == list(range(end - 200, end))
        assert t2.input.lost_bytes == len(numbered(100, 50))
        assert any("rotate N" in r.getMessage() and "LOST" in r.getMessage() for r in caplog.records)
    run(go())


def test_a_compressed_rotation_that_cannot_be_decompressed_is_reported_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        live = tmp_path / "logs" / "combined.log"
        async with Tail(tmp_path) as t:
            live.write_text(numbered(0, 100))
            await t.has_lines(100)
        append(live, 100, 2000)
        os.rename(live, live.parent / "combined.log.1")
        with open(live.parent / "combined.log.1", "rb") as src, gzip.open(live.parent / "combined.log.2.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(live.parent / "combined.log.1")
        gz = live.parent / "combined.log.2.gz"
        os.truncate(gz, gz.stat().st_size // 2)  # cut: a disk that filled up, a copy interrupted
        live.write_text(numbered(5000, 10))
        with caplog.at_level(logging.ERROR, logger="ccf_agent.tail"):
            async with Tail(tmp_path, first_run=False) as t2:
                await t2.until(lambda: t2.input.lost_files == 1, "the loss to be reported")
                await t2.has_lines(10)
                await asyncio.sleep(0.3)
        got = seqs(t2.lines)
        assert len(got) == len(set(got))
        assert set(range(5000, 5010)) <= set(got) and set(got) - set(range(5000, 5010)) <= set(range(100, 2100))
        assert any("cannot decompress" in r.getMessage() and "LOST" in r.getMessage() for r in caplog.records)
    run(go())
