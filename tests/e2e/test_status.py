"""`ccf-agent status`: the running daemon's view, or the saved offsets and exit 3 when it is not running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from ccf_agent.samples import lines
from tests.harness import AgentProcess, wait_until, write_lines


def status(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccf_agent", "status", "-c", str(agent.config_path), *args],
                          capture_output=True, text=True, timeout=30)


def test_status_of_a_running_daemon_lists_files_and_outputs(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", lines(500))
    agent = AgentProcess(tmp_path, {"inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
                                    "outputs": {"archive": {"type": "file", "path": str(tmp_path / "o.ndjson")}}})
    agent.start()
    try:
        agent.wait_caught_up()
        r = status(agent)
        assert r.returncode == 0, r.stderr
        assert "running (pid" in r.stdout
        assert str(tmp_path / "logs" / "combined.log") in r.stdout and "100%" in r.stdout
        assert "archive (file)  healthy  acked 500" in r.stdout
        j = json.loads(status(agent, "--json").stdout)
        assert j["running"] is True and j["files"][0]["lag_bytes"] == 0
    finally:
        agent.kill()


def test_status_without_a_daemon_reads_the_registry_and_exits_3(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", lines(50))
    agent = AgentProcess(tmp_path, {"inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
                                    "outputs": {"archive": {"type": "file", "path": str(tmp_path / "o.ndjson")}}})
    agent.start()
    agent.wait_caught_up()
    assert agent.stop() == 0
    r = status(agent)
    assert r.returncode == 3
    assert "not running" in r.stdout and "combined.log" in r.stdout
    j = json.loads(status(agent, "--json").stdout)
    assert j["running"] is False and j["registry"][0]["offset"] == (tmp_path / "logs" / "combined.log").stat().st_size


def test_a_second_agent_on_the_same_state_dir_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    config = {"inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
              "outputs": {"archive": {"type": "file", "path": str(tmp_path / "o.ndjson")}}}
    first = AgentProcess(tmp_path, config).start()
    try:
        second = subprocess.run([sys.executable, "-m", "ccf_agent", "run", "-c", str(first.config_path)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert "another ccf-agent is running with state_dir" in second.stderr
        assert first.alive
    finally:
        first.kill()


def test_status_of_a_daemon_with_its_endpoint_off_says_it_runs(tmp_path: Path) -> None:
    # It said "not running" and exited 3: the lock the daemon holds on its state_dir tells otherwise.
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", lines(50))
    agent = AgentProcess(tmp_path, {"inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
                                    "outputs": {"archive": {"type": "file", "path": str(tmp_path / "o.ndjson")}}})
    agent.config["status"] = {"listen": "off"}
    agent.config_path.write_text(yaml.safe_dump(agent.config))
    proc = subprocess.Popen([sys.executable, "-m", "ccf_agent", "run", "-c", str(agent.config_path)],
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (tmp_path / "o.ndjson").exists(), 30, "the daemon to ship")
        r = status(agent)
        assert r.returncode == 0, r.stdout
        assert f"ccf-agent is running (pid {proc.pid}) but its status endpoint off is off" in r.stdout
        assert json.loads(status(agent, "--json").stdout)["running"] is True
    finally:
        proc.kill()
        proc.wait()
