"""The chaos suite, short form (runs in CI): every scenario loses nothing and stores nothing twice.

The long soak runs the same scenarios for minutes each:
`CCF_CHAOS_SECONDS=600 CCF_CHAOS_DOWN_SECONDS=60 bash tests/run.sh tests/chaos` (tests/chaos/RESULTS.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import scenarios as sc
from tests.faults.proxy import FaultProxy
from tests.harness import AgentProcess, Engine

pytestmark = pytest.mark.engine

SECONDS = float(os.environ.get("CCF_CHAOS_SECONDS", "8"))
DOWN = float(os.environ.get("CCF_CHAOS_DOWN_SECONDS", "10"))  # the soak uses 60
RATE = int(os.environ.get("CCF_CHAOS_RATE", "1000"))

SCENARIOS: dict[str, Callable[[sc.Run], dict[str, Any]]] = {
    "logrotate create": lambda r: sc.scenario_logrotate(r, "create"),
    "logrotate copytruncate": lambda r: sc.scenario_logrotate(r, "copytruncate"),
    "rename storm every 200 ms": sc.scenario_rename_storm,
    "truncation": sc.scenario_truncate,
    "deletion while open": sc.scenario_delete_while_open,
    "inode reuse": sc.scenario_inode_reuse,
    "kill -9 every 2.5 s": sc.scenario_kill9,
    # The agent as installed without a compiler: the pipeline's Python loop, ids and offsets included.
    "kill -9 every 2.5 s, pure Python": sc.scenario_kill9,
    "SIGHUP reload every 1 s": sc.scenario_reload,
}


def record(row: dict[str, Any]) -> None:
    out = os.environ.get("CCF_CHAOS_RESULTS")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


OUTPUT_SCENARIOS: dict[str, Callable[[sc.Run, FaultProxy], dict[str, Any]]] = {
    "output down": lambda r, p: sc.scenario_output_down(r, p, DOWN),
    "429 storm": sc.scenario_429_storm,
    "connection resets": sc.scenario_connection_resets,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_loses_nothing_and_stores_nothing_twice(name: str, tmp_path: Path, engine: Engine,
                                                         agents: list[AgentProcess]) -> None:
    env = {"CCF_AGENT_PURE_PYTHON": "1"} if name.endswith("pure Python") else {}
    run = sc.Run(name, tmp_path, engine, SECONDS, RATE, env=env)
    agents.append(run.agent)
    rss = sc.RssSampler(run.agent)
    try:
        row = SCENARIOS[name](run)
    finally:
        row_rss = rss.stop()
    row["peak_rss_mib"] = round(row_rss, 1)
    record(row)
    assert row["written"] > 0
    assert (row["lost"], row["duplicated"]) == (0, 0), row
    assert run.agent.runs_the_c_loop() != bool(env)


@pytest.mark.parametrize("name", list(OUTPUT_SCENARIOS))
def test_output_trouble_loses_nothing_and_stores_nothing_twice(name: str, tmp_path: Path, engine: Engine,
                                                               agents: list[AgentProcess]) -> None:
    proxy = FaultProxy(engine.url)
    url = proxy.start()
    run = sc.Run(name, tmp_path, engine, SECONDS, RATE, output_url=url,
                 agent_opts={"backoff_max": "2s", "max_queued_bytes": "4MiB"})
    agents.append(run.agent)
    rss = sc.RssSampler(run.agent)
    try:
        row = OUTPUT_SCENARIOS[name](run, proxy)
    finally:
        row_rss = rss.stop()
        proxy.stop()
    row["peak_rss_mib"] = round(row_rss, 1)
    record(row)
    assert row["written"] > 0
    assert (row["lost"], row["duplicated"]) == (0, 0), row
