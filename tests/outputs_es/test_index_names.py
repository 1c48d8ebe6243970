"""Index names from the record against the real OpenSearch node: documents land in per-service
indices, and no log line can make the agent create an index the config did not allow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ccf_agent.samples import lines
from tests.harness import AgentProcess, Engine, agent_config, write_lines

pytestmark = pytest.mark.engine

HOSTILE = ["../x", "_all", "*", "a" * 300, "x,y", ".kibana", "Payout Job"]


def records(n: int) -> tuple[list[str], dict[int, str]]:
    """Sample records: their own service, every 50th a hostile one; (lines, seq -> hostile value)."""
    out, hostile = [], {}
    for k, line in enumerate(lines(n)):
        rec = json.loads(line)
        if k % 50 == 7:
            rec["service"] = hostile[rec["seq"]] = HOSTILE[len(hostile) % len(HOSTILE)]
        elif k % 3 == 0:
            rec["service"] = "Billing"  # upper case: lower-cased into the name
        out.append(json.dumps(rec))
    return out, hostile


def every_index(engine: Engine) -> set[str]:
    return {i["index"] for i in engine.request("GET", "/_cat/indices?format=json&expand_wildcards=all")}


def run(tmp_path: Path, engine: Engine, agents: list[AgentProcess], index: str, n: int) -> tuple[AgentProcess,
                                                                                               dict[int, str]]:
    recs, hostile = records(n)
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", recs)
    cfg: dict[str, Any] = agent_config(engine, [str(tmp_path / "logs" / "*.log")], routes=False)
    cfg["outputs"] = {"logs": {**cfg["outputs"]["logs"], "index": index}}
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    agent.wait_caught_up()
    return agent, hostile


def test_documents_land_in_the_index_of_their_service_and_day(tmp_path: Path, engine: Engine,
                                                              agents: list[AgentProcess]) -> None:
    before = every_index(engine)
    agent, hostile = run(tmp_path, engine, agents, f"{engine.prefix}-%{{[service]:unknown}}-%{{+yyyy.MM.dd}}", 1_500)

    created = every_index(engine) - before
    assert created == {f"{engine.prefix}-{s}-2024.01.15" for s in ("click-clack-cashflow", "billing",
                                                                     "payout-job", "unknown")}
    docs = engine.docs(fields=("seq", "service"))
    assert len(docs) == 1_500 and len({d["seq"] for d in docs}) == 1_500  # nothing lost, nothing twice
    for d in docs:
        expected = "unknown" if d["seq"] in hostile else str(d["service"]).lower()
        assert d["_index"] == f"{engine.prefix}-{expected}-2024.01.15", d
        if d["seq"] in hostile:  # the record itself is stored as written
            assert d["service"] == hostile[d["seq"]]
    status = next(o for o in agent.status()["outputs"] if o["name"] == "logs")  # type: ignore[index]
    assert status["index_name_fallbacks"] >= len(HOSTILE) and status["docs_dead_lettered"] == 0
    assert agent.stop() == 0


def test_a_hostile_service_without_a_default_never_creates_an_index_and_is_dead_lettered(
        tmp_path: Path, engine: Engine, agents: list[AgentProcess]) -> None:
    before = every_index(engine)
    agent, hostile = run(tmp_path, engine, agents, f"{engine.prefix}-%{{[service]}}-%{{+yyyy.MM.dd}}", 1_000)

    created = every_index(engine) - before
    assert created == {f"{engine.prefix}-{s}-2024.01.15" for s in ("click-clack-cashflow", "billing", "payout-job")}
    assert not any(i.startswith(("_", "*", ".")) or ".." in i or len(i) > 255 for i in created)
    assert engine.count() == 1_000 - len(hostile)
    letters = [json.loads(x) for x in (tmp_path / "state" / "dead_letter" / "logs.ndjson").read_text().splitlines()]
    assert sorted(json.loads(d["document"])["seq"] for d in letters) == sorted(hostile)
    assert {d["error"]["type"] for d in letters} == {"index_name_refused"}
    assert all("[service]" in d["error"]["reason"] for d in letters)
    status = next(o for o in agent.status()["outputs"] if o["name"] == "logs")  # type: ignore[index]
    assert status["docs_dead_lettered"] == len(hostile) and status["docs_acked"] == 1_000
    # Every offset committed: the refused records are settled, not pending.
    assert agent.stop() == 0
