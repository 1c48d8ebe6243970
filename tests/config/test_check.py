"""`check` refuses, with file:line, every config that `run` would refuse, crash on, spin on or silently
half-ignore: a config that passes `check` starts and ships."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccf_agent.config import ConfigError, parse_config

BASE = """\
state_dir: /tmp/ccf-state
status:
  listen: 127.0.0.1:5066
agent:
  registry_flush_interval: 1s
inputs:
  - id: app
    paths: ["/var/log/ccf/*.log"]
    scan_interval: 10s
    poll_interval: 250ms
outputs:
  logs:
    type: elasticsearch
    hosts: ["https://es1:9200"]
    index: ccf-logs
    timeout: 30s
    backoff_initial: 100ms
    backoff_max: 30s
  beats:
    type: logstash
    hosts: ["logstash1:5044"]
  collector:
    type: http
    hosts: ["https://collector:8080/ingest"]
    headers: {X-Source: ccf}
alerts:
  repeat_interval: 4h
  notifiers:
    hook: {type: webhook, url: "https://hooks.example/T0000/B0000/XXXXXXXXXXXXXXXXXXXX"}
  rules:
    - {name: errors, kind: count, when: {field: level, equals: error}, window: 1m, threshold: 5}
"""


def refusal(old: str, new: str, env: dict[str, str] | None = None) -> ConfigError:
    assert old in BASE, old
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.replace(old, new, 1), "agent.yaml", env or {})
    return err.value


def test_the_base_config_passes() -> None:
    parse_config(BASE, "agent.yaml", {})


@pytest.mark.parametrize(("old", "new", "where"), [
    # run: int('localhost') raised at start; 99999: bind refused, the endpoint silently absent
    ("listen: 127.0.0.1:5066", "listen: localhost", "agent.yaml:3: status.listen"),
    ("listen: 127.0.0.1:5066", "listen: 127.0.0.1:99999", "agent.yaml:3: status.listen"),
    ("listen: 127.0.0.1:5066", "listen: 127.0.0.1:0", "agent.yaml:3: status.listen"),
    # .nan passed `v < 0`; 0 made the loop that waits on it spin at 100% CPU
    ("registry_flush_interval: 1s", "registry_flush_interval: .nan", "agent.yaml:5: agent.registry_flush_interval"),
    ("registry_flush_interval: 1s", "registry_flush_interval: .inf", "agent.yaml:5: agent.registry_flush_interval"),
    ("registry_flush_interval: 1s", "registry_flush_interval: 0", "agent.yaml:5: agent.registry_flush_interval"),
    ("scan_interval: 10s", "scan_interval: 0", "agent.yaml:9: inputs[0].scan_interval"),
    ("poll_interval: 250ms", "poll_interval: 0s", "agent.yaml:10: inputs[0].poll_interval"),
    # Elasticsearch refuses these names: every record was dead-lettered
    ("index: ccf-logs", "index: CCF-Logs", "agent.yaml:15: outputs.logs.index"),
    ("index: ccf-logs", "index: _all", "agent.yaml:15: outputs.logs.index"),
    ("index: ccf-logs", "index: a*", "agent.yaml:15: outputs.logs.index"),
    ("index: ccf-logs", "index: 'a,b'", "agent.yaml:15: outputs.logs.index"),
    ("index: ccf-logs", "index: ''", "agent.yaml:15: outputs.logs.index"),
    ("index: ccf-logs", "index: ccf-%{+YYYY.MM}", "agent.yaml:15: outputs.logs.index"),  # Joda's week-year
    # shipped literally before names from the record: every record in 'ccf-%{service}'
    ("index: ccf-logs", "index: ccf-%{service}", "agent.yaml:15: outputs.logs.index"),
    ("index: ccf-logs", "index: 'ccf-%{[service]:_all}'", "agent.yaml:15: outputs.logs.index"),
    # a proxy aiohttp cannot speak (socks) or that is not a URL: every request failed
    ("index: ccf-logs", "proxy_url: socks5://proxy:1080", "agent.yaml:15: outputs.logs.proxy_url"),
    ("headers: {X-Source: ccf}", "proxy_url: proxy:3128", "agent.yaml:25: outputs.collector.proxy_url"),
    ('XXXXXXXXXXXXXXXXXXXX"}', 'XXXXXXXXXXXXXXXXXXXX", proxy_url: "http://proxy/x"}', "agent.yaml:29: alerts.notifiers.hook.proxy_url"),
    # 0: no timeout at all (aiohttp) or none ever met (logstash); a backoff of 0 retries in a busy loop
    ("timeout: 30s", "timeout: 0", "agent.yaml:16: outputs.logs.timeout"),
    ("backoff_initial: 100ms", "backoff_initial: 0", "agent.yaml:17: outputs.logs.backoff_initial"),
    ("backoff_max: 30s", "backoff_max: 10ms", "agent.yaml:18: outputs.logs.backoff_max"),
    # a port out of range failed every connection, for ever
    ('hosts: ["https://es1:9200"]', 'hosts: ["https://es1:99999"]', "agent.yaml:14: outputs.logs.hosts[0]"),
    ('hosts: ["logstash1:5044"]', 'hosts: ["logstash1:99999"]', "agent.yaml:21: outputs.beats.hosts[0]"),
    # aiohttp refuses a control character in a header at the first request
    ("headers: {X-Source: ccf}", 'headers: {X-Source: "a\\nb"}', "agent.yaml:25: outputs.collector.headers.X-Source"),
    ("headers: {X-Source: ccf}", "headers: {'X Source': ccf}", "agent.yaml:25: outputs.collector.headers.X Source"),
    # no host at all: the first delivery failed picking one
    ('hosts: ["https://es1:9200"]', "hosts: []", "agent.yaml:14: outputs.logs.hosts"),
    # 0 notified on every tick, four times a second, while an alert fires
    ("repeat_interval: 4h", "repeat_interval: 0", "agent.yaml:27: alerts.repeat_interval"),
    ("threshold: 5", "threshold: .nan", "agent.yaml:31: alerts.rules[0].threshold"),
])
def test_check_refuses_what_run_chokes_on(old: str, new: str, where: str) -> None:
    assert str(refusal(old, new)).startswith(where + ":")


@pytest.mark.parametrize("name", ["'../../tmp/evil'", "'a/b'", "'.hidden'", "''"])
def test_an_output_name_that_is_no_file_name_is_refused(name: str) -> None:
    # The name picks its dead-letter file: state_dir/dead_letter/<name>.ndjson.
    err = refusal("  beats:\n", f"  {name}:\n")
    assert str(err).startswith(f"agent.yaml:19: outputs.{name.strip(chr(39))}: an output's name must be")


def test_a_token_with_a_line_break_is_refused_without_showing_it() -> None:
    err = refusal("backoff_max: 30s\n", "backoff_max: 30s\n    bearer_token: ${TOKEN}\n", {"TOKEN": "SECRET9\n"})
    assert str(err).startswith("agent.yaml:19: outputs.logs.bearer_token: holds a control character")
    assert "SECRET9" not in str(err)


def test_a_notifier_with_credentials_in_its_url_and_a_token_is_refused_without_showing_the_url() -> None:
    # aiohttp refused every notice ("Cannot combine AUTHORIZATION header"), and the alerts task died with it.
    err = refusal('url: "https://hooks.example/', 'bearer_token: tok, url: "https://u:PASS55@hooks.example/')
    assert str(err).startswith("agent.yaml:29: alerts.notifiers.hook.url: carries user:password@")
    assert "PASS55" not in str(err) and "XXXX" not in str(err)


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-m", "ccf_agent", "check", "-c", str(cfg)], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_check_builds_the_outputs_so_a_tls_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    # The loader only saw that the file is readable; run failed building the output.
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    r = check(tmp_path, BASE.replace("    timeout: 30s\n", f"    timeout: 30s\n    tls: {{ca_file: {tmp_path}/ca.pem}}\n"))
    assert r.returncode == 2, r.stdout
    assert f"{tmp_path}/agent.yaml:12: outputs.logs: cannot load the TLS files" in r.stderr
    assert "cannot load the TLS files" in r.stderr


def test_check_refuses_a_file_output_without_a_path(tmp_path: Path) -> None:
    r = check(tmp_path, BASE.replace("  beats:\n", "  archive:\n    type: file\n    path: ''\n  beats:\n"))
    assert r.returncode == 2
    assert "agent.yaml:21: outputs.archive.path: must not be empty" in r.stderr


def test_check_refuses_a_file_output_whose_path_is_a_directory(tmp_path: Path) -> None:
    r = check(tmp_path, BASE.replace("  beats:\n", f"  archive:\n    type: file\n    path: {tmp_path}\n  beats:\n"))
    assert r.returncode == 2
    assert f"agent.yaml:21: outputs.archive.path: {tmp_path} is a directory" in r.stderr


def test_a_binary_value_is_refused_at_its_line() -> None:
    # run (and check, once it built the pipelines) ended in "TypeError: Type is not JSON serializable".
    err = refusal("    scan_interval: 10s\n", "    scan_interval: 10s\n    fields: {v: !!binary aGk=}\n")
    assert str(err) == "agent.yaml:10: inputs[0].fields.v: binary values (!!binary) are not supported"
