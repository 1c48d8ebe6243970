"""`ccf-agent setup`: the bodies it installs (unit), and what it leaves on the real node."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccf_agent.config import OutputConfig, load_config
from ccf_agent.outputs.elasticsearch.config import EsOptions
from ccf_agent.outputs.elasticsearch.setup import (
    COMPONENT,
    MAPPINGS,
    component_template,
    ilm_policy,
    index_template,
    ism_digest,
    ism_policy,
    run_setup,
)
from ccf_agent.samples import lines
from tests.harness import AgentProcess, Engine, agent_config, write_lines

DAYS_30 = 30 * 86400.0


def es_output(index: str = "ccf-logs-%{+yyyy.MM.dd}", **opts: Any) -> OutputConfig:
    return OutputConfig(name="logs", type="elasticsearch", hosts=("http://es:9200",), index=index,
                        options=EsOptions(**opts))


# ------------------------------------------------------------------------------ bodies


def test_mappings_give_the_seeds_fields_their_types() -> None:
    props = component_template()["template"]["mappings"]["properties"]
    assert {f: props[f]["type"] for f in ("amount", "currency", "status", "processingTime", "@timestamp",
                                           "message")} == {
        "amount": "long", "currency": "keyword", "status": "keyword", "processingTime": "long",
        "@timestamp": "date", "message": "text"}


def test_the_ism_policy_deletes_indices_30_days_after_creation() -> None:
    policy = ism_policy(es_output(), DAYS_30)["policy"]
    hot, delete = policy["states"]
    assert policy["default_state"] == "hot"
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "30d"}}]
    assert hot["actions"] == [] and delete["actions"] == [{"delete": {}}]
    assert policy["ism_template"] == [{"index_patterns": ["ccf-logs-*"], "priority": 109}]


def test_the_ism_policy_rolls_a_data_stream_over_daily_and_covers_the_dead_letter_index() -> None:
    policy = ism_policy(es_output("ccf-logs", data_stream=True, dead_letter_index="ccf-dead"), DAYS_30)["policy"]
    assert policy["states"][0]["actions"] == [{"rollover": {"min_index_age": "1d"}}]
    assert policy["ism_template"][0]["index_patterns"] == ["ccf-logs", "ccf-dead"]


def test_the_ism_digest_changes_with_the_retention() -> None:
    a = ism_digest(ism_policy(es_output(), DAYS_30)["policy"])
    b = ism_digest(ism_policy(es_output(), 7 * 86400.0)["policy"])
    assert a and b and a != b


def test_the_ilm_policy_deletes_after_30_days_and_rolls_data_streams_over() -> None:
    daily = ilm_policy(es_output(), DAYS_30)["policy"]["phases"]
    stream = ilm_policy(es_output("ccf-logs", data_stream=True), DAYS_30)["policy"]["phases"]
    assert daily == {"hot": {"actions": {}}, "delete": {"min_age": "30d", "actions": {"delete": {}}}}
    assert stream["hot"]["actions"]["rollover"]["max_age"] == "1d"


def test_only_elasticsearch_templates_name_the_ilm_policy() -> None:
    es = index_template(es_output(), "elasticsearch", "ccf-agent-logs")
    os_ = index_template(es_output(), "opensearch", "ccf-agent-logs")
    assert es["template"]["settings"] == {"index.lifecycle.name": "ccf-agent-logs"}
    assert "template" not in os_
    assert es["composed_of"] == os_["composed_of"] == [COMPONENT]


def test_a_more_specific_pattern_gets_a_higher_priority() -> None:
    broad = index_template(es_output("ccf-logs-%{+yyyy.MM.dd}"), "opensearch", None)
    narrow = index_template(es_output("ccf-logs-payouts-%{+yyyy.MM.dd}"), "opensearch", None)
    assert narrow["priority"] > broad["priority"]


def test_a_data_stream_output_gets_a_data_stream_template() -> None:
    assert index_template(es_output("ccf-logs", data_stream=True), "opensearch", None)["data_stream"] == {}


# ------------------------------------------------------------------------------ on the real node


@pytest.fixture
def setup_config(tmp_path: Path, engine: Engine) -> Iterator[tuple[Path, dict[str, Any]]]:
    cfg = agent_config(engine, [str(tmp_path / "logs" / "*.log")])
    for name, out in cfg["outputs"].items():
        out["template"] = f"{engine.prefix}-{name}"
    path = tmp_path / "agent.yaml"
    cfg["state_dir"] = str(tmp_path / "state")
    path.write_text(yaml.safe_dump(cfg))
    yield path, cfg
    for name in cfg["outputs"]:
        try:
            engine.request("DELETE", f"/_index_template/{engine.prefix}-{name}")
        except AssertionError:
            pass
    try:  # shared by every output on a cluster: removed only when no other template uses it
        engine.request("DELETE", f"/_component_template/{COMPONENT}")
    except AssertionError:
        pass


def setup_run(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = run_setup(load_config(path), out)
    return code, out.getvalue()


def installed(engine: Engine) -> dict[str, Any]:
    templates = engine.request("GET", f"/_index_template/{engine.prefix}-*")["index_templates"]
    component = engine.request("GET", f"/_component_template/{COMPONENT}")["component_templates"]
    return {"index_templates": sorted(templates, key=lambda t: t["name"]), "component": component}


@pytest.mark.engine
def test_setup_run_twice_leaves_the_same_templates(setup_config: tuple[Path, dict[str, Any]],
                                                   engine: Engine) -> None:
    path, _ = setup_config
    _, first_report = setup_run(path)
    first = installed(engine)
    _, second_report = setup_run(path)
    assert installed(engine) == first
    assert [t["name"] for t in first["index_templates"]] == [f"{engine.prefix}-logs", f"{engine.prefix}-payouts"]
    assert f"index template {engine.prefix}-logs ({engine.index('logs')}): created" in first_report
    assert f"index template {engine.prefix}-logs ({engine.index('logs')}): unchanged" in second_report
    assert ": created" not in second_report and ": updated" not in second_report


def has_ism(engine: Engine) -> bool:
    try:
        engine.request("GET", "/_plugins/_ism/policies")
    except AssertionError as e:
        if "no handler found" in str(e):
            return False
        raise
    return True


@pytest.mark.engine
def test_setup_says_clearly_that_the_node_has_no_ism_and_fails(setup_config: tuple[Path, dict[str, Any]],
                                                               engine: Engine) -> None:
    if has_ism(engine):
        pytest.skip("this cluster has the ISM plugin (the test node has not)")
    code, report = setup_run(setup_config[0])
    assert code == 1
    assert (f"ISM policy {setup_config[1]['outputs']['logs']['template']}: NOT INSTALLED: this OpenSearch cluster "
            "has no Index State Management plugin (no _plugins/_ism API)") in report
    assert "setup incomplete" in report


@pytest.mark.engine
def test_setup_run_twice_leaves_the_same_ism_policy_where_ism_exists(setup_config: tuple[Path, dict[str, Any]],
                                                                    engine: Engine) -> None:
    if not has_ism(engine):
        pytest.skip("no ISM plugin on this node (it is not on Maven Central); the policy body is unit-tested")
    name = setup_config[1]["outputs"]["logs"]["template"]
    try:
        assert setup_run(setup_config[0])[0] == 0
        first = engine.request("GET", f"/_plugins/_ism/policies/{name}")
        code, report = setup_run(setup_config[0])
        second = engine.request("GET", f"/_plugins/_ism/policies/{name}")
        assert code == 0 and f"ISM policy {name}: unchanged" in report
        assert (second["_seq_no"], second["policy"]) == (first["_seq_no"], first["policy"])
    finally:
        for out in setup_config[1]["outputs"].values():
            engine.request("DELETE", f"/_plugins/_ism/policies/{out['template']}")


@pytest.mark.engine
def test_setup_without_retention_succeeds_on_a_node_without_ism(tmp_path: Path,
                                                                 setup_config: tuple[Path, dict[str, Any]]) -> None:
    path, cfg = setup_config
    for out in cfg["outputs"].values():
        out["retention"] = "off"
    path.write_text(yaml.safe_dump(cfg))
    code, report = setup_run(path)
    assert code == 0, report
    assert "retention policy: none (retention: off)" in report


@pytest.mark.engine
def test_documents_shipped_after_setup_get_the_mapped_types(tmp_path: Path, engine: Engine,
                                                            setup_config: tuple[Path, dict[str, Any]],
                                                            agents: list[AgentProcess]) -> None:
    path, cfg = setup_config
    setup_run(path)
    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "combined.log", lines(500))
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    agent.wait_caught_up()
    mapping = engine.request("GET", f"/{engine.index('payouts')}/_mapping")
    props = mapping[engine.index("payouts")]["mappings"]["properties"]
    types = {f: props[f]["type"] for f in ("amount", "currency", "status", "processingTime", "@timestamp", "message")}
    assert types == {f: MAPPINGS["properties"][f]["type"] for f in types}
    assert types["amount"] == "long" and types["currency"] == "keyword"
