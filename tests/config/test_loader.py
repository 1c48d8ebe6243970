"""Config: a bad config stops with file, line, key and what is wrong; `check` exits 2."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ccf_agent.config import ConfigError, load_config, parse_config

GOOD = """\
state_dir: /tmp/ccf-state
inputs:
  - id: app
    paths: ["/var/log/ccf/*.log"]
    exclude: ["*.gz"]
    format: json
    fields: {env: production}
outputs:
  logs:
    type: elasticsearch
    hosts: ["https://es1:9200"]
    index: ccf-logs
    username: elastic
    password: ${ES_PASSWORD}
  payouts:
    type: elasticsearch
    hosts: ["https://es1:9200"]
    index: ccf-payouts
routes:
  - name: payouts
    when: {any: [{field: message, icontains: payout}, {field: service, equals: payout-job}]}
    output: payouts
"""


def error_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "cfg.yaml", env if env is not None else {"ES_PASSWORD": "x"})
    return e.value


def test_good_config_parses_into_typed_values() -> None:
    cfg = parse_config(GOOD, "cfg.yaml", {"ES_PASSWORD": "s3cret"})
    assert cfg.inputs[0].fields == {"env": "production"}
    assert cfg.outputs["logs"].password == "s3cret"
    assert cfg.routes[0].outputs == ("payouts",)
    assert cfg.default_output == "logs"  # no output named default: the first one


def test_secrets_are_not_in_the_repr() -> None:
    cfg = parse_config(GOOD.replace("https://es1:9200", "https://u:urlpass@es1:9200", 1), "cfg.yaml",
                       {"ES_PASSWORD": "s3cret"})
    assert "s3cret" not in repr(cfg) and "urlpass" not in repr(cfg)


def test_unknown_key_names_its_line() -> None:
    e = error_of(GOOD.replace("    format: json\n", "    format: json\n    colour: blue\n"))
    assert (e.line, e.key) == (7, "inputs[0].colour")
    assert "unknown key" in e.message


def test_wrong_type_names_its_line() -> None:
    e = error_of(GOOD.replace('paths: ["/var/log/ccf/*.log"]', "paths: 42"))
    assert (e.line, e.key) == (4, "inputs[0].paths")
    assert "must be a list or a string" in e.message


def test_route_to_a_missing_output_is_an_error() -> None:
    e = error_of(GOOD.replace("output: payouts", "output: nowhere"))
    assert e.key == "routes[0].output" and e.line == 22
    assert "no output named 'nowhere'" in e.message


def test_missing_outputs_section_is_an_error() -> None:
    text = GOOD.split("outputs:")[0]
    e = error_of(text)
    assert "missing required key 'outputs'" in e.message


def test_bad_glob_is_an_error() -> None:
    e = error_of(GOOD.replace("/var/log/ccf/*.log", "/var/log/ccf/[*.log"))
    assert e.key == "inputs[0].paths[0]" and "bad glob" in e.message


def test_relative_glob_is_an_error() -> None:
    e = error_of(GOOD.replace("/var/log/ccf/*.log", "logs/*.log"))
    assert "absolute" in e.message


def test_missing_environment_variable_is_an_error() -> None:
    e = error_of(GOOD, env={})
    assert (e.line, e.key) == (14, "outputs.logs.password")
    assert "ES_PASSWORD is not set" in e.message


def test_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    cfg = parse_config(GOOD.replace("${ES_PASSWORD}", "${file:" + str(secret) + "}"), "cfg.yaml", {})
    assert cfg.outputs["logs"].password == "from-file"


def test_bad_condition_operator_names_its_path() -> None:
    e = error_of(GOOD.replace("icontains: payout", "smells_like: payout"))
    assert e.key.startswith("routes[0].when.any[0]") and "unknown operator" in e.message


def test_invalid_yaml_names_its_line() -> None:
    e = error_of(GOOD.replace("  logs:\n", "  logs:\n   - [\n"))
    assert e.line is not None and "invalid YAML" in e.message


def test_bad_duration_is_an_error() -> None:
    e = error_of(GOOD.replace("    format: json\n", "    format: json\n    scan_interval: soon\n"))
    assert "duration" in e.message


def test_check_command_exits_2_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(GOOD.replace("    format: json\n", "    format: xml\n"))
    r = subprocess.run([sys.executable, "-m", "ccf_agent", "check", "-c", str(cfg)], capture_output=True, text=True,
                       env={"ES_PASSWORD": "x", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert f"{cfg}:6: inputs[0].format: must be one of json, text" in r.stderr


def test_check_command_accepts_the_example_config() -> None:
    example = Path(__file__).parents[2] / "config.example.yaml"
    r = subprocess.run([sys.executable, "-m", "ccf_agent", "check", "-c", str(example)], capture_output=True,
                       text=True, env={"PATH": "/usr/bin:/bin", "ES_PASSWORD": "x", "ES_USERNAME": "elastic"})
    assert r.returncode == 0, r.stderr


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read config" in str(e.value)


@pytest.mark.parametrize(("value", "parsed"), [(None, None), ("auto", None), ("true", True), ("false", False)])
def test_read_ahead_is_true_false_or_auto(value: str | None, parsed: bool | None) -> None:
    text = GOOD if value is None else GOOD + f"agent:\n  read_ahead: {value}\n"
    assert parse_config(text, "cfg.yaml", {"ES_PASSWORD": "x"}).read_ahead is parsed


def test_read_ahead_names_its_line_when_it_is_anything_else() -> None:
    e = error_of(GOOD + "agent:\n  read_ahead: sometimes\n")
    assert (e.line, e.key) == (GOOD.count("\n") + 2, "agent.read_ahead")
    assert "true, false or auto" in e.message


@pytest.mark.parametrize(("setting", "cpus", "reads_ahead"), [
    ("auto", {0, 1}, True), ("auto", {3}, False), ("true", {3}, True), ("false", {0, 1}, False)])
def test_read_ahead_on_auto_follows_the_cpus_the_agent_may_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, cpus: set[int], reads_ahead: bool) -> None:
    from ccf_agent.agent import Agent

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cpus)
    text = GOOD.replace("/tmp/ccf-state", str(tmp_path)) + f"agent:\n  read_ahead: {setting}\n"

    async def decide() -> bool:
        return Agent(parse_config(text, "cfg.yaml", {"ES_PASSWORD": "x"}))._reads_ahead()

    assert asyncio.run(decide()) is reads_ahead


# ---------------------------------------------------------------------------- hostile YAML


def check_exit(tmp_path: Path, text: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-m", "ccf_agent", "check", "-c", str(cfg)], capture_output=True,
                          text=True, env={"ES_PASSWORD": "x", "PATH": "/usr/bin:/bin"}, timeout=timeout)


def test_an_alias_bomb_is_a_config_error_not_a_hang(tmp_path: Path) -> None:
    # "Billion laughs": 9 levels of 9 aliases expand to 9**9 strings (it ran at 100% CPU, growing).
    levels = ["a0: &a0 [lol]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    r = check_exit(tmp_path, GOOD + "x:\n" + "".join(f"  {lv}\n" for lv in levels), timeout=20)
    assert r.returncode == 2
    assert "expands to more than 100000 values (YAML aliases?)" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("nested", "message"), [
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", "bad.yaml:19: invalid YAML: nested deeper than 64 levels"),
    ("x:\n" + "".join("  " * i + "- \n" for i in range(1, 3000)), "bad.yaml:83: invalid YAML: nested deeper"),
    ("routes:\n  - name: deep\n    output: logs\n    when: " + "{not: " * 3000 + "{field: a, exists: true}"
     + "}" * 3000 + "\n", "bad.yaml:22: invalid YAML: nested deeper than 64 levels"),
    ("x: &a [*a]\n", "bad.yaml:19: x[0][0]"),  # an alias inside its own anchor
])
def test_deep_nesting_is_a_config_error_not_a_traceback(tmp_path: Path, nested: str, message: str) -> None:
    r = check_exit(tmp_path, GOOD.split("routes:")[0] + nested)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_a_yaml_merge_key_is_merged() -> None:
    text = GOOD.replace("""  payouts:
    type: elasticsearch
    hosts: ["https://es1:9200"]
    index: ccf-payouts
""", """  payouts:
    <<: *logs
    index: ccf-payouts
""").replace("  logs:\n", "  logs: &logs\n")
    cfg = parse_config(text, "cfg.yaml", {"ES_PASSWORD": "s3cret"})
    payouts = cfg.outputs["payouts"]
    assert (payouts.type, payouts.hosts, payouts.index) == ("elasticsearch", ("https://es1:9200",), "ccf-payouts")
    assert (payouts.username, payouts.password) == ("elastic", "s3cret")


def test_a_key_twice_in_one_mapping_is_still_an_error_next_to_a_merge_key() -> None:
    e = error_of(GOOD.replace("  logs:\n", "  logs: &logs\n") + "x:\n  <<: *logs\n  a: 1\n  a: 2\n")
    assert (e.key, e.message) == ("x.a", "duplicate key")
