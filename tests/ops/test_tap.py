"""`ccf-agent tap`: the running daemon's events as its outputs get them (redacted), filtered per
input, route or output, up to --limit; a tap that does not keep up loses events, the outputs none."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccf_agent.samples import lines
from tests.harness import AgentProcess, Engine, agent_config, wait_until, write_lines

CARD = "4242 4242 4242 4242"


def secret_lines(n: int, start: int = 0) -> Iterator[str]:
    """The sample records, each carrying a card number in its message (redaction masks it)."""
    for line in lines(n, start):
        rec = json.loads(line)
        rec["note"] = f"card {CARD} on file"
        yield json.dumps(rec)


def file_agent(tmp_path: Path, **extra: Any) -> AgentProcess:
    """The daemon tailing logs/combined.log, payouts routed to one file output, the rest to another."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    (tmp_path / "logs" / "combined.log").touch()
    config: dict[str, Any] = {
        "inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "combined.log")], "scan_interval": "200ms"}],
        "outputs": {"logs": {"type": "file", "path": str(tmp_path / "logs.ndjson")},
                    "payouts": {"type": "file", "path": str(tmp_path / "payouts.ndjson")}},
        "routes": [{"name": "payouts", "output": "payouts", "when": {"field": "message", "icontains": "payout"}}],
        **extra,
    }
    return AgentProcess(tmp_path, config).start()


def start_tap(agent: AgentProcess, *args: str) -> subprocess.Popen[str]:
    """`ccf-agent tap`, once the daemon counts it attached (events written after that reach it)."""
    before = agent.status()
    assert before is not None
    proc = subprocess.Popen([sys.executable, "-m", "ccf_agent", "tap", "-c", str(agent.config_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: proc.poll() is not None or (agent.status() or {}).get("tap", {}).get("clients", 0)
               > before["tap"]["clients"], 30, "the tap to attach")
    assert proc.poll() is None, proc.communicate()
    return proc


def shipped(path: Path) -> list[dict[str, Any]]:
    """The documents a file output wrote (each beside its _id)."""
    return [json.loads(line)["doc"] for line in path.read_text().splitlines()] if path.exists() else []


def test_tap_prints_the_events_redacted_exactly_as_the_outputs_get_them(tmp_path: Path) -> None:
    agent = file_agent(tmp_path)
    try:
        tap = start_tap(agent, "--limit", "50")
        write_lines(tmp_path / "logs" / "combined.log", secret_lines(50))
        out, err = tap.communicate(timeout=60)
        assert tap.returncode == 0, err
        tapped = [json.loads(line) for line in out.splitlines()]
        assert len(tapped) == 50
        assert CARD not in out and "pm_abc123" not in out  # a card number in text, paymentMethodId by name
        agent.wait_caught_up()
        by_seq = {d["seq"]: d for d in shipped(tmp_path / "logs.ndjson") + shipped(tmp_path / "payouts.ndjson")}
        assert [by_seq[t["seq"]] for t in tapped] == tapped
    finally:
        agent.kill()


def test_tap_stops_at_its_limit(tmp_path: Path) -> None:
    agent = file_agent(tmp_path)
    try:
        tap = start_tap(agent, "--limit", "5")
        write_lines(tmp_path / "logs" / "combined.log", lines(500))
        out, err = tap.communicate(timeout=60)
        assert tap.returncode == 0, err
        assert len(out.splitlines()) == 5
        wait_until(lambda: (agent.status() or {})["tap"]["clients"] == 0, 10, "the tap to detach")
    finally:
        agent.kill()


@pytest.mark.parametrize(("args", "wanted"), [
    (("--route", "payouts"), lambda rec: "payout" in rec["message"].lower()),
    (("--output", "logs"), lambda rec: "payout" not in rec["message"].lower()),
    (("--route", "default"), lambda rec: "payout" not in rec["message"].lower()),
], ids=["route", "output", "default-route"])
def test_tap_shows_only_the_events_of_its_route_or_output(tmp_path: Path, args: tuple[str, ...],
                                                          wanted: Any) -> None:
    agent = file_agent(tmp_path)
    try:
        expected = [json.loads(line)["seq"] for line in lines(300) if wanted(json.loads(line))][:20]
        tap = start_tap(agent, *args, "--limit", "20")
        write_lines(tmp_path / "logs" / "combined.log", lines(300))
        out, err = tap.communicate(timeout=60)
        assert tap.returncode == 0, err
        assert [json.loads(line)["seq"] for line in out.splitlines()] == expected
    finally:
        agent.kill()


def test_tap_of_another_input_shows_none_of_this_ones_events(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "other.log").touch()
    agent = file_agent(tmp_path, inputs=[
        {"id": "app", "paths": [str(tmp_path / "logs" / "combined.log")], "scan_interval": "200ms"},
        {"id": "other", "paths": [str(tmp_path / "other" / "other.log")], "scan_interval": "200ms"}])
    try:
        tap = start_tap(agent, "--input", "other", "--limit", "3")
        write_lines(tmp_path / "logs" / "combined.log", lines(200))
        agent.wait_caught_up()
        write_lines(tmp_path / "other" / "other.log", lines(3, start=1000))
        out, err = tap.communicate(timeout=60)
        assert tap.returncode == 0, err
        # (Within a batch, events come route by route, as the outputs get them.)
        assert sorted(json.loads(line)["seq"] for line in out.splitlines()) == [1000, 1001, 1002]
    finally:
        agent.kill()


def test_tap_text_format_says_where_each_event_goes(tmp_path: Path) -> None:
    agent = file_agent(tmp_path)
    try:
        tap = start_tap(agent, "--format", "text", "--route", "payouts", "--limit", "1")
        write_lines(tmp_path / "logs" / "combined.log", lines(100))
        out, err = tap.communicate(timeout=60)
        assert tap.returncode == 0, err
        head, _, body = out.partition("\n")
        assert head == "── app › payouts → payouts"
        assert "payout" in json.loads(body)["message"].lower()
    finally:
        agent.kill()


def test_a_daemon_with_a_tap_attached_stops_promptly(tmp_path: Path) -> None:
    agent = file_agent(tmp_path)
    try:
        tap = start_tap(agent)
        write_lines(tmp_path / "logs" / "combined.log", lines(10))
        agent.wait_caught_up()
        assert agent.stop(timeout=15) == 0  # the endpoint's cleanup waited a minute for the stream to end
        out, err = tap.communicate(timeout=30)
        assert tap.returncode == 0, err
        assert len(out.splitlines()) == 10
    finally:
        agent.kill()


def test_tap_naming_no_route_of_the_config_says_so(tmp_path: Path) -> None:
    agent = file_agent(tmp_path)
    try:
        r = subprocess.run([sys.executable, "-m", "ccf_agent", "tap", "-c", str(agent.config_path), "--route",
                            "payout"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "no route named 'payout' (routes: payouts, default)" in r.stderr
    finally:
        agent.kill()


def test_tap_without_a_daemon_exits_3(tmp_path: Path) -> None:
    agent = file_agent(tmp_path)
    agent.stop()
    r = subprocess.run([sys.executable, "-m", "ccf_agent", "tap", "-c", str(agent.config_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "no daemon answers" in r.stderr


def test_a_tap_client_that_reads_nothing_does_not_hold_back_shipping(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "combined.log"
    log.touch()
    agent = AgentProcess(tmp_path, agent_config(engine, [str(log)])).start()
    stalled = socket.create_connection(("127.0.0.1", agent.port))
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /tap HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read a byte of the answer
        wait_until(lambda: (agent.status() or {})["tap"]["clients"] == 1, 30, "the tap to attach")
        written = write_lines(log, lines(20_000))
        agent.wait_caught_up()
        engine.settle()
        tally = engine.tally(written)
        assert (tally["lost"], tally["duplicated"]) == (0, 0)
        tap = (agent.status() or {})["tap"]
        assert tap["dropped"] > 0 and tap["dropped"] + tap["sent"] <= written
    finally:
        stalled.close()
        agent.kill()
