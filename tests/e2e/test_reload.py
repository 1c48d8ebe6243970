"""SIGHUP re-reads the config; a bad new config is refused and the running one stays."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import yaml

from ccf_agent.samples import lines
from tests.harness import AgentProcess, wait_until, write_lines


def shipped(out: Path) -> list[int]:
    if not out.exists():
        return []
    return [json.loads(line)["doc"]["seq"] for line in out.read_text().splitlines()]


def test_reload_applies_a_new_input_and_keeps_offsets(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out = tmp_path / "out.ndjson"
    config = {"inputs": [{"id": "a", "paths": [str(tmp_path / "a" / "*.log")]}],
              "outputs": {"archive": {"type": "file", "path": str(out)}}}
    agent = AgentProcess(tmp_path, config).start()
    try:
        write_lines(tmp_path / "a" / "app.log", lines(100))
        wait_until(lambda: len(shipped(out)) == 100, 20, "the first input")
        write_lines(tmp_path / "b" / "app.log", lines(50, start=100))
        config = yaml.safe_load(agent.config_path.read_text())
        config["inputs"].append({"id": "b", "paths": [str(tmp_path / "b" / "*.log")]})
        agent.config_path.write_text(yaml.safe_dump(config))
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(shipped(out)) == 150, 20, "the new input after reload")
        write_lines(tmp_path / "a" / "app.log", lines(10, start=150))
        wait_until(lambda: len(shipped(out)) == 160, 20, "the kept input after reload")
        assert sorted(shipped(out)) == list(range(160))  # nothing read twice across the reload
        assert (agent.status() or {})["reloads"] == 1
    finally:
        agent.kill()


def test_an_invalid_config_on_reload_is_refused_and_shipping_goes_on(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    out = tmp_path / "out.ndjson"
    config = {"inputs": [{"id": "a", "paths": [str(tmp_path / "a" / "*.log")]}],
              "outputs": {"archive": {"type": "file", "path": str(out)}}}
    agent = AgentProcess(tmp_path, config).start()
    try:
        good = agent.config_path.read_text()
        agent.config_path.write_text(good + "colour: blue\n")
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool((agent.status() or {}).get("last_reload_error")), 20, "the refusal")
        status = agent.status() or {}
        assert "colour: unknown key" in status["last_reload_error"]
        assert "reload rejected, keeping the running config" in agent.log()
        write_lines(tmp_path / "a" / "app.log", lines(20))
        wait_until(lambda: len(shipped(out)) == 20, 20, "shipping under the running config")
    finally:
        agent.kill()
