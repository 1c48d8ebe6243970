"""The Elasticsearch output against the real OpenSearch node, run as the daemon an operator runs:
mapping conflicts dead-lettered, per-item 429s retried, a read-only index reported."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccf_agent.config import load_config
from ccf_agent.outputs.elasticsearch.setup import COMPONENT, run_setup
from ccf_agent.samples import lines
from tests.faults import FaultProxy
from tests.harness import AgentProcess, Engine, agent_config, wait_until, write_lines

pytestmark = pytest.mark.engine


@pytest.fixture
def proxy(es_url: str) -> Iterator[FaultProxy]:
    p = FaultProxy(es_url)
    p.start()
    yield p
    p.stop()


def with_bad_amounts(n: int, every: int) -> tuple[list[str], set[int]]:
    """Sample records where every `every`-th payout says its amount in words (a mapping conflict)."""
    out, bad = [], set()
    payouts = 0
    for line in lines(n):
        rec = json.loads(line)
        if "amount" in rec:
            payouts += 1
            if payouts % every == 0:
                rec["amount"] = "ten dollars"
                bad.add(rec["seq"])
        out.append(json.dumps(rec))
    return out, bad


def output_status(agent: AgentProcess, name: str = "logs") -> dict[str, Any]:
    s = agent.status() or {"outputs": []}
    return next((o for o in s["outputs"] if o["name"] == name), {})


def test_mapping_conflicts_are_dead_lettered_while_the_rest_of_the_batch_is_stored_once(
        tmp_path: Path, engine: Engine, agents: list[AgentProcess]) -> None:
    engine.request("PUT", f"/{engine.index('logs')}", {"mappings": {"properties": {"amount": {"type": "long"}}}})
    records, bad = with_bad_amounts(3_000, every=25)
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", records)
    agent = AgentProcess(tmp_path, agent_config(engine, [str(tmp_path / "logs" / "*.log")], routes=False)).start()
    agents.append(agent)
    agent.wait_caught_up()

    letters = [json.loads(x) for x in (tmp_path / "state" / "dead_letter" / "logs.ndjson").read_text().splitlines()]
    assert sorted(json.loads(d["document"])["seq"] for d in letters) == sorted(bad)
    assert {d["error"]["type"] for d in letters} == {"mapper_parsing_exception"}
    assert all(json.loads(d["document"])["amount"] == "ten dollars" for d in letters)
    assert engine.tally(3_000) == {"written": 3_000, "stored": 3_000 - len(bad), "distinct": 3_000 - len(bad),
                                   "lost": len(bad), "duplicated": 0}
    assert output_status(agent)["docs_dead_lettered"] == len(bad)
    assert agent.stop() == 0


def test_dead_letters_can_go_to_a_dead_letter_index(tmp_path: Path, engine: Engine,
                                                     agents: list[AgentProcess]) -> None:
    engine.request("PUT", f"/{engine.index('logs')}", {"mappings": {"properties": {"amount": {"type": "long"}}}})
    records, bad = with_bad_amounts(500, every=10)
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", records)
    cfg = agent_config(engine, [str(tmp_path / "logs" / "*.log")], routes=False,
                       dead_letter_index=engine.index("dead"))
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    agent.wait_caught_up()

    dead = engine.docs("dead", ("document", "error", "output", "index"))
    assert sorted(json.loads(d["document"])["seq"] for d in dead) == sorted(bad)
    assert {(d["error"]["type"], d["output"], d["index"]) for d in dead} == {
        ("mapper_parsing_exception", "logs", engine.index("logs"))}
    assert not (tmp_path / "state" / "dead_letter" / "logs.ndjson").exists()


def test_per_item_429_for_30_percent_of_items_loses_nothing_and_duplicates_nothing(
        tmp_path: Path, engine: Engine, proxy: FaultProxy, agents: list[AgentProcess]) -> None:
    proxy.set("items", fraction=0.3)
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", lines(20_000))
    cfg = agent_config(engine, [str(tmp_path / "logs" / "*.log")], batch_max_docs=1_000,
                       backoff_initial="20ms", backoff_max="500ms")
    for out in cfg["outputs"].values():
        out["hosts"] = [proxy.url]
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    agent.wait_caught_up(timeout=300)

    assert engine.tally(20_000) == {"written": 20_000, "stored": 20_000, "distinct": 20_000, "lost": 0,
                                    "duplicated": 0}
    rejected = proxy.counters()["items_rejected"]
    assert rejected >= 0.3 * 20_000 * 0.9  # every item is rolled for again on its retries too
    s = agent.status() or {}
    assert sum(o["docs_retried"] for o in s["outputs"]) == rejected
    assert sum(o["docs_dead_lettered"] for o in s["outputs"]) == 0


def test_an_index_set_read_only_gives_a_clear_status_and_delivery_resumes_once_cleared(
        tmp_path: Path, engine: Engine, agents: list[AgentProcess]) -> None:
    index = engine.index("logs")
    engine.request("PUT", f"/{index}", {"settings": {"number_of_replicas": 0}})
    engine.request("PUT", f"/{index}/_settings", {"index.blocks.read_only_allow_delete": True})
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", lines(2_000))
    cfg = agent_config(engine, [str(tmp_path / "logs" / "*.log")], routes=False, backoff_max="1s")
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    wait_until(lambda: output_status(agent).get("problem") == "blocked", 60, "the output to report the block")

    status = output_status(agent)
    assert status["healthy"] is False
    assert "index blocked read-only" in status["last_error"] and "flood-stage watermark" in status["last_error"]
    assert "free disk space" in status["last_error"]
    shown = subprocess.run([sys.executable, "-m", "ccf_agent", "status", "-c", str(agent.config_path)],
                           capture_output=True, text=True, timeout=60).stdout
    assert "UNHEALTHY" in shown and "index blocked read-only" in shown
    assert "index blocked read-only" in agent.log()
    assert engine.count("logs") == 0

    engine.request("PUT", f"/{index}/_settings", {"index.blocks.read_only_allow_delete": None})
    agent.wait_caught_up()
    tally = engine.tally(2_000)
    assert (tally["lost"], tally["duplicated"]) == (0, 0)
    assert output_status(agent)["healthy"] is True


def test_a_data_stream_output_stores_each_record_once_in_the_stream(tmp_path: Path, engine: Engine,
                                                                    agents: list[AgentProcess]) -> None:
    stream = engine.index("logs")
    cfg = agent_config(engine, [str(tmp_path / "logs" / "*.log")], routes=False, data_stream=True,
                       retention="off")
    del cfg["outputs"]["payouts"]
    cfg["outputs"]["logs"]["template"] = f"{engine.prefix}-logs"
    config_path = tmp_path / "setup.yaml"
    config_path.write_text(yaml.safe_dump({**cfg, "state_dir": str(tmp_path / "state")}))
    try:
        assert run_setup(load_config(config_path), io.StringIO()) == 0
        (tmp_path / "logs").mkdir()
        write_lines(tmp_path / "logs" / "combined.log", lines(1_000))
        agent = AgentProcess(tmp_path, cfg).start()
        agents.append(agent)
        agent.wait_caught_up()

        streams = engine.request("GET", f"/_data_stream/{stream}")["data_streams"]
        assert [d["name"] for d in streams] == [stream]
        assert engine.tally(1_000) == {"written": 1_000, "stored": 1_000, "distinct": 1_000, "lost": 0,
                                       "duplicated": 0}
    finally:
        engine.request("DELETE", f"/_data_stream/{stream}")
        engine.request("DELETE", f"/_index_template/{engine.prefix}-logs")
        try:  # shared by all of setup's templates: goes only when no other uses it
            engine.request("DELETE", f"/_component_template/{COMPONENT}")
        except AssertionError:
            pass
