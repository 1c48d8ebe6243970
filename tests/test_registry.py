"""The registry survives torn and corrupt writes, and a failing disk never corrupts it."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from ccf_agent.registry import Entry, Registry


def saved(tmp_path: Path, offsets: list[int]) -> Registry:
    reg = Registry(tmp_path)
    e = Entry("a" * 16, "fp", "app", "/var/log/x.log", 1, 2)
    reg.add(e)
    for off in offsets:
        reg.commit(e, off)
        assert reg.save()
    return reg


def loaded(tmp_path: Path) -> int:
    reg = Registry(tmp_path)
    reg.load()
    return reg.entries["a" * 16].offset


def test_offsets_survive_a_restart(tmp_path: Path) -> None:
    saved(tmp_path, [10, 20])
    assert loaded(tmp_path) == 20


@pytest.mark.parametrize("cut", [0, 1, 17, 100, -1])
def test_a_torn_registry_falls_back_to_the_previous_version(tmp_path: Path, cut: int) -> None:
    saved(tmp_path, [10, 20])
    path = tmp_path / "registry.json"
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:-1])
    assert loaded(tmp_path) == 10


def test_every_single_byte_corruption_is_detected(tmp_path: Path) -> None:
    saved(tmp_path, [10, 20])
    path = tmp_path / "registry.json"
    good = path.read_bytes()
    for i in range(0, len(good), 7):
        flipped = bytearray(good)
        flipped[i] ^= 0x20
        path.write_bytes(bytes(flipped))
        assert loaded(tmp_path) in (10, 20), i  # never garbage: an intact version or the same content
    path.write_bytes(b"\0" * len(good))  # NUL-filled after a power cut
    assert loaded(tmp_path) == 10


def test_a_crash_between_the_two_renames_keeps_the_newest(tmp_path: Path) -> None:
    saved(tmp_path, [10, 20])
    # The new version is in .tmp, the old moved to .prev, nothing at the main name.
    os.replace(tmp_path / "registry.json", tmp_path / "registry.json.tmp")
    assert loaded(tmp_path) == 20


def test_an_unwritable_state_dir_reports_and_keeps_the_last_good_file(tmp_path: Path) -> None:
    reg = saved(tmp_path, [10])
    (tmp_path / "registry.json.tmp").mkdir()  # any write of the temp file now fails
    e = reg.entries["a" * 16]
    reg.commit(e, 99)
    assert reg.save() is False
    assert reg.last_error and "cannot write registry" in reg.last_error
    assert loaded(tmp_path) == 10


def test_a_snapshot_written_late_never_replaces_a_newer_one(tmp_path: Path) -> None:
    # The periodic save writes in a thread; the shutdown save may overtake it.
    reg = saved(tmp_path, [10])
    e = reg.entries["a" * 16]
    reg.commit(e, 20)
    older = reg.snapshot()
    reg.commit(e, 30)
    assert reg.save()
    assert reg.write(older)
    assert loaded(tmp_path) == 30
    main = orjson.loads((tmp_path / "registry.json").read_bytes())
    assert [e["offset"] for e in main["entries"]] == [30]  # not merely found again in .prev


def test_a_failed_write_leaves_the_registry_dirty_for_the_next_flush(tmp_path: Path) -> None:
    reg = saved(tmp_path, [10])
    reg.commit(reg.entries["a" * 16], 20)
    (tmp_path / "registry.json.tmp").mkdir()
    snap = reg.snapshot()
    assert not reg.dirty
    assert reg.write(snap) is False
    assert reg.dirty
