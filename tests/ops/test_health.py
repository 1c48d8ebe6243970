"""`GET /health` in the shape of the app's own health check (the seed guide's healthCheck)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ccf_agent.ops.health import ErrorWindow, health
from ccf_agent.ops.snapshot import InputState, OutputState, Snapshot
from tests.harness import AgentProcess, free_port, wait_until
from tests.ops.helpers import file_outputs_config, get, write_app_logs

SEED_KEYS = {"timestamp", "status", "version", "uptime", "environment", "checks"}


def fetch_health(agent: AgentProcess) -> tuple[int, dict[str, Any]]:
    status, body, _ = get(f"http://127.0.0.1:{agent.port}/health")
    return status, json.loads(body)


def test_a_running_agent_is_healthy_in_the_seeds_shape(tmp_path: Path) -> None:
    write_app_logs(tmp_path / "logs", time.time())
    agent = AgentProcess(tmp_path, file_outputs_config(tmp_path)).start()
    try:
        agent.wait_caught_up(60)
        code, body = fetch_health(agent)
    finally:
        agent.kill()
    assert code == 200
    assert set(body) == SEED_KEYS
    assert (body["status"], body["environment"]) == ("healthy", "test")
    assert set(body["checks"]) == {"output:logs", "output:payouts", "disk", "memory", "errorRate"}
    assert all(c["status"] == "healthy" for c in body["checks"].values())
    assert body["checks"]["memory"]["rss"].endswith("MB")
    assert body["checks"]["errorRate"]["errorRate"] == "0.00%"
    assert body["timestamp"].endswith("Z") and isinstance(body["uptime"], float)


def test_an_output_that_cannot_deliver_makes_it_degraded_with_503(tmp_path: Path) -> None:
    write_app_logs(tmp_path / "logs", time.time())
    config = file_outputs_config(tmp_path)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config["outputs"]["payouts"] = {"type": "elasticsearch", "hosts": [closed], "index": "payouts",
                                    "backoff_max": "1s"}
    agent = AgentProcess(tmp_path, config).start()
    try:
        wait_until(lambda: fetch_health(agent)[0] == 503, 30, "/health to answer 503")
        code, body = fetch_health(agent)
    finally:
        agent.kill()
    assert body["status"] == "degraded"
    assert body["checks"]["output:payouts"]["status"] == "unhealthy"
    assert body["checks"]["output:payouts"]["lastError"]
    assert body["checks"]["output:logs"]["status"] == "healthy"


def test_a_snapshot_that_cannot_be_taken_makes_it_unhealthy_with_the_error() -> None:
    def broken() -> Snapshot:
        raise RuntimeError("counters unreadable")

    body, ok = health(broken, ErrorWindow())
    assert not ok
    assert body["status"] == "unhealthy" and body["error"] == "counters unreadable"


def test_health_is_rendered_from_a_snapshot_alone(tmp_path: Path) -> None:
    snap = Snapshot(taken_at=1000.0, started=940.0, state_dir=str(tmp_path), environment="staging",
                    records_in=200, inputs=(InputState("app", malformed=2),),
                    outputs=(OutputState("logs", "file"), OutputState("es", "elasticsearch", healthy=False,
                                                                      last_error="connection refused", docs_dead=4)))
    body, ok = health(lambda: snap, ErrorWindow())
    assert not ok and body["status"] == "degraded"
    assert (body["uptime"], body["environment"]) == (60.0, "staging")
    assert body["checks"]["output:es"] == {
        "status": "unhealthy", "type": "elasticsearch", "lastError": "connection refused", "lastErrorAt": None,
        "lastSuccessAt": None, "queued": 0, "inFlight": 0}
    assert body["checks"]["errorRate"]["errorRate"] == "3.00%"  # (2 malformed + 4 dead-lettered) of 200


def test_the_error_rate_is_over_the_last_five_minutes_not_since_start() -> None:
    window = ErrorWindow(300)
    started = 0.0
    window.rate(1000.0, started, records=10_000, malformed=5_000, dead=0)  # a bad first hour
    window.rate(1200.0, started, records=10_500, malformed=5_000, dead=0)
    recent = window.rate(1400.0, started, records=11_000, malformed=5_010, dead=0)
    assert (recent["errorRate"], recent["timeWindow"]) == ("1.00%", "7m")  # since the 1000 s reading
    later = window.rate(1600.0, started, records=11_500, malformed=5_010, dead=0)
    assert (later["errorRate"], later["timeWindow"]) == ("1.00%", "7m")  # 10 of 1000 since the 1200 s one


def test_dead_letters_above_one_percent_of_recent_records_are_unhealthy() -> None:
    window = ErrorWindow(300)
    assert window.rate(100.0, 0.0, records=1000, malformed=0, dead=20)["status"] == "unhealthy"
    assert ErrorWindow(300).rate(100.0, 0.0, records=1000, malformed=50, dead=5)["status"] == "healthy"
