"""state_dir: the agent never writes through a link planted there, and refuses a state_dir that
another user can write into (the agent often runs with more rights than that user)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ccf_agent.alerts.engine import AlertEngine
from ccf_agent.config import AlertsConfig
from ccf_agent.fsutil import atomic_write
from ccf_agent.ops.business import BusinessMetrics
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.registry import Entry, Registry
from ccf_agent.samples import lines
from tests.harness import AgentProcess, write_lines

PRECIOUS = b"root:precious\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file the agent must never touch (think /etc/shadow)."""
    path = tmp_path / "victim"
    path.write_bytes(PRECIOUS)
    return path


def plant(link: Path, target: Path, hard: bool = False) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if hard:
        os.link(target, link)
    else:
        link.symlink_to(target)


def _registry(state: Path) -> None:
    reg = Registry(state)
    reg.add(Entry("a" * 16, "fp", "app", "/var/log/x.log", 1, 2))
    assert reg.save()


def _alerts(state: Path) -> None:
    AlertEngine(AlertsConfig(), state).save()


def _business(state: Path) -> None:
    metrics = BusinessMetrics()
    metrics.last_job = 1.0
    assert metrics.write(state, metrics.snapshot())


def _atomic(state: Path) -> None:
    atomic_write(state / "business.json", b"{}")


WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "registry": ("registry.json.tmp", _registry),
    "alerts": ("alerts/state.json.tmp", _alerts),
    "business": ("business.json.tmp", _business),
    "atomic_write": ("business.json.tmp", _atomic),
}


@pytest.mark.parametrize("hard", [False, True], ids=["symlink", "hardlink"])
@pytest.mark.parametrize("writer", WRITERS)
def test_a_link_planted_at_a_temporary_file_is_replaced_not_written_through(
    tmp_path: Path, victim: Path, writer: str, hard: bool
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    name, write = WRITERS[writer]
    plant(state / name, victim, hard)
    write(state)

    assert victim.read_bytes() == PRECIOUS
    assert not (state / name).exists()  # renamed into place: it was a fresh file of ours


@pytest.mark.parametrize("hard", [False, True], ids=["symlink", "hardlink"])
def test_a_link_planted_at_a_dead_letter_file_is_refused_and_the_records_kept(
    tmp_path: Path, victim: Path, hard: bool
) -> None:
    dead = DeadLetters(tmp_path)
    plant(tmp_path / "dead_letter" / "logs.ndjson", victim, hard)

    assert dead.write("logs", 400, {"type": "x"}, b"", b'{"a":1}') is False  # kept by the output instead
    assert victim.read_bytes() == PRECIOUS


def test_a_dead_letter_directory_that_is_a_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "dead_letter").symlink_to(elsewhere)

    assert DeadLetters(tmp_path / "state").write("logs", 400, {}, b"", b'{"a":1}') is False
    assert list(elsewhere.iterdir()) == []


# ---------------------------------------------------------------------------- the daemon


def _config(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return {"inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
            "outputs": {"archive": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
            "agent": {"registry_flush_interval": "50ms"}}


def test_the_daemon_never_writes_through_links_planted_in_its_state_dir(tmp_path: Path, victim: Path) -> None:
    # The attack: links at the files the agent rewrites, as root, at its next start.
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    for name in ("registry.json.tmp", "alerts/state.json.tmp", "business.json.tmp"):
        plant(state / name, victim)
    agent = AgentProcess(tmp_path, _config(tmp_path))
    write_lines(tmp_path / "logs" / "combined.log", lines(100))
    agent.start()
    agent.wait_caught_up()
    assert agent.stop() == 0

    assert victim.read_bytes() == PRECIOUS
    assert len((tmp_path / "out.ndjson").read_text().splitlines()) == 100


def run(tmp_path: Path, command: str = "run") -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({**_config(tmp_path), "state_dir": str(tmp_path / "state"),
                                   "status": {"listen": "off"}}))
    return subprocess.run([sys.executable, "-m", "ccf_agent", command, "-c", str(cfg)], capture_output=True,
                          text=True, timeout=60)


def test_a_link_planted_at_the_lock_stops_the_start_with_a_clear_error(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o750)
    plant(tmp_path / "state" / "lock", victim)
    r = run(tmp_path)

    assert r.returncode == 2
    assert "refusing state_dir" in r.stderr and "lock" in r.stderr
    assert victim.read_bytes() == PRECIOUS


@pytest.mark.parametrize(("mode", "who"), [(0o777, "every user"), (0o770, "its group")])
def test_a_state_dir_others_can_write_is_refused_by_run_and_check(tmp_path: Path, mode: int, who: str) -> None:
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path / "state", mode)
    r = run(tmp_path)
    assert r.returncode == 2
    assert f"is writable by {who} (mode {mode:04o})" in r.stderr

    r = run(tmp_path, "check")
    assert r.returncode == 2
    assert f"agent.yaml:{_line_of(tmp_path, 'state_dir')}: state_dir: {tmp_path / 'state'} is writable by {who}" in r.stderr


def test_an_alerts_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state" / "alerts").mkdir(parents=True)
    os.chmod(tmp_path / "state", 0o750)
    os.chmod(tmp_path / "state" / "alerts", 0o777)
    r = run(tmp_path)
    assert r.returncode == 2
    assert f"{tmp_path / 'state' / 'alerts'} is writable by every user" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the directory to another user")
def test_a_state_dir_of_another_user_is_refused_when_running_as_root(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o750)
    os.chown(tmp_path / "state", 65534, 65534)
    r = run(tmp_path)
    assert r.returncode == 2
    assert "belongs to uid 65534, not to the agent's user (uid 0) or root" in r.stderr


def test_a_state_dir_the_agent_creates_is_0750(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, _config(tmp_path))
    agent.start()
    assert agent.stop() == 0
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o750
    assert json.loads((tmp_path / "state" / "registry.json").read_text())["version"] == 1


def _line_of(tmp_path: Path, key: str) -> int:
    text = (tmp_path / "agent.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(text, 1) if line.startswith(key + ":"))
