"""The real search node itself goes down under the agent: killed, hung, refusing connections.

The proxy scenarios (test_chaos.py) cut connections while TCP accepts still succeed; here the
node's own process is SIGKILLed or SIGSTOPped and brought back on the same home (its data kept)
and port. These need a node of their own, started once for this module: never the session's
shared node, nor a $CCF_TEST_ES_URL cluster, which a test must not kill. Counted in that node
once it is back: lost = written - distinct, duplicated = stored - distinct.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import scenarios as sc
from tests.chaos.test_chaos import RATE, record
from tests.harness import AgentProcess, Engine, wait_until
from tests.opensearch import launcher

pytestmark = pytest.mark.engine

DOWN = 5.0  # seconds the node stays down or hung (a restart then takes as long again, or longer)
BATCH = 500
# Short request timeouts so that a hung node is given up on (and resent to) within the scenario.
AGENT_OPTS = {"backoff_max": "2s", "max_queued_bytes": "4MiB", "batch_max_docs": BATCH, "timeout": "3s"}


@pytest.fixture(scope="module")
def own_node() -> Iterator[launcher.Node]:
    node = launcher.start()
    yield node
    node.stop()


@pytest.fixture
def own_engine(own_node: launcher.Node, request: pytest.FixtureRequest) -> Iterator[Engine]:
    eng = Engine(own_node.url, request.node.name)
    yield eng
    if own_node.running:  # a failed scenario may leave the node hung, or down
        own_node.resume()
    else:
        own_node.restart()
    eng.cleanup()


def outputs(agent: AgentProcess) -> list[dict[str, Any]]:
    status = agent.status()
    return status["outputs"] if status else []


def failing_for(run: sc.Run, seconds: float) -> None:
    """Once a request failed, `seconds` more, noting each failure the outputs reported: the
    scenario is about one kind of failure, and checks that it happened."""
    seen: set[str] = set()

    def note() -> bool:
        outs = outputs(run.agent)
        seen.update(o["last_error"] for o in outs if o["last_error"])
        return any(o["request_errors"] for o in outs)

    wait_until(note, 30, "a request to fail")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.2)
        note()
    run.notes["errors"] = sorted(seen)


def scenario_node_killed(run: sc.Run, node: launcher.Node) -> dict[str, Any]:
    """SIGKILL mid-bulk: connections refused until the node is restarted and has recovered."""
    run.agent.start()
    writer = sc.Writer(run.live, run.rate)
    time.sleep(2)
    node.kill()
    failing_for(run, DOWN)
    started = time.monotonic()
    node.restart()
    run.notes["restart_s"] = round(time.monotonic() - started, 1)
    time.sleep(2)
    return run.result(writer.stop())


def scenario_node_hung(run: sc.Run, node: launcher.Node) -> dict[str, Any]:
    """SIGSTOP: connections are still accepted, nothing is answered; then SIGCONT, and the node
    works through what it had received, requests the agent had given up on included."""
    run.agent.start()
    writer = sc.Writer(run.live, run.rate)
    time.sleep(2)
    node.pause()
    try:
        failing_for(run, DOWN)
    finally:
        node.resume()
    time.sleep(2)
    return run.result(writer.stop())


# Each scenario, and the failure the agent must have met in it (its operator message).
SCENARIOS = {"node SIGKILLed, connections refused, restarted": (scenario_node_killed, "Connect call failed"),
             "node SIGSTOPped, then continued": (scenario_node_hung, "did not answer within 3s")}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_node_going_down_loses_nothing_and_stores_nothing_twice(
        name: str, tmp_path: Path, own_node: launcher.Node, own_engine: Engine, agents: list[AgentProcess]) -> None:
    run = sc.Run(name, tmp_path, own_engine, 0, RATE, output_url=own_node.url, agent_opts=AGENT_OPTS)
    agents.append(run.agent)
    scenario, failure = SCENARIOS[name]
    row = scenario(run, own_node)
    outs = outputs(run.agent)
    row["request_errors"] = sum(o["request_errors"] for o in outs)
    row["resent_409"] = sum(o["duplicates"] for o in outs)
    record(row)
    assert row["written"] > 0
    assert (row["lost"], row["duplicated"]) == (0, 0), row
    assert any(failure in e for e in row["errors"]), row
    # Only a request that failed can have been resent, and one holds at most a batch.
    assert row["resent_409"] <= row["request_errors"] * BATCH, row
