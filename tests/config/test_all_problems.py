"""A bad config names every problem in one run, each with file:line, and a misspelt key as what
it is ("did you mean"), not as the missing key it causes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccf_agent.config import ConfigError, parse_config

GOOD = """\
state_dir: /tmp/ccf-state
inputs:
  - id: app
    paths: ["/var/log/ccf/*.log"]
  - id: worker
    paths: ["/var/log/worker/*.log"]
    format: text
outputs:
  logs:
    type: elasticsearch
    hosts: ["https://es1:9200"]
    flush_interval: 5ms
  payouts:
    type: elasticsearch
    hosts: ["https://es1:9200"]
    index: ccf-payouts
routes:
  - {name: payouts, when: {field: message, icontains: payout}, output: payouts}
agent:
  shutdown_timeout: 10s
"""


def problems(*edits: tuple[str, str], env: dict[str, str] | None = None) -> list[str]:
    text = GOOD
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    with pytest.raises(ConfigError) as err:
        parse_config(text, "agent.yaml", env or {})
    return [str(e) for e in err.value.errors]


def test_the_base_config_passes() -> None:
    parse_config(GOOD, "agent.yaml", {})


def test_a_misspelt_required_key_is_named_as_a_typo_at_its_own_line_not_as_missing() -> None:
    assert problems(('    paths: ["/var/log/ccf/*.log"]', '    pathz: ["/var/log/ccf/*.log"]')) == [
        "agent.yaml:4: inputs[0].pathz: unknown key; did you mean `paths`?"]


def test_a_misspelt_optional_key_suggests_the_known_one() -> None:
    assert problems(("    flush_interval: 5ms", "    flush_intervall: 5ms")) == [
        "agent.yaml:12: outputs.logs.flush_intervall: unknown key; did you mean `flush_interval`?"]


def test_an_unknown_key_like_no_known_one_lists_the_known_keys() -> None:
    [problem] = problems(("  shutdown_timeout: 10s", "  shutdown_timeout: 10s\n  colour: red"))
    assert problem.startswith("agent.yaml:21: agent.colour: unknown key (known keys here: ")
    assert "shutdown_timeout" in problem


def test_a_misspelt_top_level_required_key_is_named_once() -> None:
    assert problems(("state_dir:", "state_dirr:")) == [
        "agent.yaml:1: state_dirr: unknown key; did you mean `state_dir`?"]


def test_problems_of_every_section_are_named_in_one_run_in_line_order() -> None:
    assert problems(
        ("state_dir: /tmp/ccf-state", "state_dir: /tmp/ccf-state\nstatus: {listen: nowhere}"),
        ('    paths: ["/var/log/ccf/*.log"]', '    pathz: ["/var/log/ccf/*.log"]'),
        ("    index: ccf-payouts", "    index: ccf-payouts\n    batch_max_docs: -1"),
        ("output: payouts}", "output: archive}"),
        ("  shutdown_timeout: 10s", "  shutdown_timeout: soon"),
    ) == [
        "agent.yaml:2: status.listen: must be host:port with a port from 1 to 65535 (like 127.0.0.1:5066), "
        "or off, not 'nowhere'",
        "agent.yaml:5: inputs[0].pathz: unknown key; did you mean `paths`?",
        "agent.yaml:18: outputs.payouts.batch_max_docs: must be greater than 0",
        "agent.yaml:20: routes[0].output: no output named 'archive' (outputs: logs, payouts)",
        "agent.yaml:22: agent.shutdown_timeout: must be a duration like 250ms, 5s, 2m or 1h, not 'soon'",
    ]


def test_a_bad_value_does_not_hide_the_other_problems_of_its_mapping() -> None:
    assert problems(("    format: text", "    format: xml\n    start_at: middle\n    encodin: latin-1")) == [
        "agent.yaml:7: inputs[1].format: must be one of json, text, not 'xml'",
        "agent.yaml:8: inputs[1].start_at: must be one of beginning, end, not 'middle'",
        "agent.yaml:9: inputs[1].encodin: unknown key; did you mean `encoding`?",
    ]


def test_every_unknown_key_of_one_mapping_is_named() -> None:
    assert problems(("    index: ccf-payouts", "    indexx: ccf-payouts\n    tiemout: 5s")) == [
        "agent.yaml:16: outputs.payouts.indexx: unknown key; did you mean `index`?",
        "agent.yaml:17: outputs.payouts.tiemout: unknown key; did you mean `timeout`?",
    ]


def test_a_problem_in_each_of_two_list_items_names_both() -> None:
    assert problems(('"/var/log/ccf/*.log"', '"var/log/ccf/*.log"'), ('"/var/log/worker/*.log"', '""')) == [
        "agent.yaml:4: inputs[0].paths[0]: glob must be an absolute path: 'var/log/ccf/*.log'",
        "agent.yaml:6: inputs[1].paths[0]: empty glob",
    ]


def test_every_unset_environment_variable_is_named() -> None:
    assert problems(('hosts: ["https://es1:9200"]\n    flush', 'hosts: ["${ES_URL}"]\n    flush'),
                    ("index: ccf-payouts", "index: ccf-payouts\n    password: ${ES_PASSWORD}\n    username: u")) == [
        "agent.yaml:11: outputs.logs.hosts[0]: environment variable ES_URL is not set",
        "agent.yaml:17: outputs.payouts.password: environment variable ES_PASSWORD is not set",
    ]


def test_a_route_to_an_output_with_a_problem_is_not_also_refused() -> None:
    assert problems(("    type: elasticsearch\n    hosts: [\"https://es1:9200\"]\n    index",
                     "    type: elastic\n    hosts: [\"https://es1:9200\"]\n    index")) == [
        "agent.yaml:14: outputs.payouts.type: unknown output type 'elastic' (known: elasticsearch, file, "
        "logstash, http, kafka)"]


def test_one_problem_is_a_plain_config_error_with_its_line_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace("format: text", "format: xml"), "agent.yaml", {})
    assert (err.value.line, err.value.key, type(err.value)) == (7, "inputs[1].format", ConfigError)


def test_check_prints_every_problem_on_its_own_line_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(GOOD.replace("pathz", "paths").replace("    paths: [\"/var/log/ccf", "    pathz: [\"/var/log/ccf")
                   .replace("format: text", "format: xml"))
    run = subprocess.run([sys.executable, "-m", "ccf_agent", "check", "-c", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"ccf-agent: config error: {cfg}:4: inputs[0].pathz: unknown key; did you mean `paths`?",
        f"ccf-agent: config error: {cfg}:7: inputs[1].format: must be one of json, text, not 'xml'",
    ]
