"""The report from the real OpenSearch node: a generated day shipped by the agent, then aggregated."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from ccf_agent.config import load_config
from ccf_agent.outputs.elasticsearch.setup import COMPONENT, run_setup
from tests.harness import AgentProcess, Engine
from tests.report.helpers import report, report_json
from tests.report.workload import DAY, TZ, expected, figures_part, generate, write_logs

pytestmark = pytest.mark.engine


def ship_day(tmp_path: Path, engine: Engine, agents: list[AgentProcess], mapping: str) -> tuple[Path, object]:
    """The generated day in the app's three files, shipped by the agent with the example routing
    (payouts apart) into daily indices of the test's own prefix; the config the report then reads."""
    day = generate()
    write_logs(day, tmp_path / "logs", rotated=False)
    es = {"type": "elasticsearch", "hosts": [engine.url], "retention": "off"}
    cfg = {
        "inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")], "timezone": TZ,
                    "scan_interval": "200ms"}],
        "outputs": {"logs": {**es, "index": engine.index("logs-%{+yyyy.MM.dd}"), "template": f"{engine.prefix}-logs"},
                    "payouts": {**es, "index": engine.index("payouts-%{+yyyy.MM.dd}"),
                                "template": f"{engine.prefix}-payouts"}},
        "routes": [{"name": "payouts", "output": "payouts",
                    "when": {"any": [{"field": "message", "icontains": "payout"},
                                     {"field": "service", "equals": "payout-job"}]}}],
        "agent": {"registry_flush_interval": "200ms"},
        "state_dir": str(tmp_path / "state"),
    }
    if mapping == "template":
        path = tmp_path / "setup.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert run_setup(load_config(path), io.StringIO()) == 0
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    agent.wait_caught_up()
    engine.refresh()
    return agent.config_path, day


@pytest.fixture
def templates(engine: Engine):
    yield
    for name in ("logs", "payouts"):
        try:
            engine.request("DELETE", f"/_index_template/{engine.prefix}-{name}")
        except AssertionError:
            pass
    try:  # shared by all of setup's templates: goes only when no other uses it
        engine.request("DELETE", f"/_component_template/{COMPONENT}")
    except AssertionError:
        pass


@pytest.mark.parametrize("mapping", ["dynamic", "template"])
def test_figures_from_the_engine_equal_the_counts_of_the_generated_day(
        tmp_path: Path, engine: Engine, agents: list[AgentProcess], templates: None, mapping: str) -> None:
    config, day = ship_day(tmp_path, engine, agents, mapping)
    got = report_json(config, "--date", DAY.isoformat())
    assert figures_part(got) == expected(day)
    # Berlin's day touches two UTC days: both indices of both outputs, and nothing else.
    assert got["source"].startswith("opensearch ") and got["source"].endswith(
        ", ".join(sorted(engine.index(f"{o}-2024.03.{d}") for o in ("logs", "payouts") for d in (30, 31))))
    assert got["notes"] == []
    # The same day from the files gives the same figures (the files source, forced).
    from_files = report_json(config, "--date", DAY.isoformat(), "--source", "files")
    assert figures_part(from_files) == figures_part(got)


def test_a_cluster_that_cannot_be_reached_is_exit_1_with_the_reason(tmp_path: Path) -> None:
    from tests.harness import free_port
    from tests.report.helpers import write_config

    cfg = {"inputs": [{"id": "app", "paths": [str(tmp_path / "*.log")]}],
           "outputs": {"logs": {"type": "elasticsearch", "hosts": [f"http://127.0.0.1:{free_port()}"],
                                "password": "hunter2-secret", "username": "u"}}}
    r = report(write_config(tmp_path, cfg), "--date", DAY.isoformat(), check=False)
    assert r.returncode == 1 and "cannot reach the cluster of output logs" in r.stderr
    assert "hunter2" not in r.stderr and r.stdout == ""


def test_a_day_with_no_index_yet_is_a_report_of_zeros_that_says_so(tmp_path: Path, engine: Engine) -> None:
    from tests.report.helpers import write_config

    cfg = {"inputs": [{"id": "app", "paths": [str(tmp_path / "*.log")], "timezone": TZ}],
           "outputs": {"logs": {"type": "elasticsearch", "hosts": [engine.url],
                                "index": engine.index("logs-%{+yyyy.MM.dd}")}}}
    got = report_json(write_config(tmp_path, cfg), "--date", DAY.isoformat())
    assert (got["records"], got["errors"], got["failed"], got["failure_rate"]) == (0, 0, 0, None)
    assert got["hourly"]["processed"] == [0] * 23
    assert got["notes"] == [f"none of the indices {engine.index('logs-2024.03.30')}, "
                            f"{engine.index('logs-2024.03.31')} exists"]
