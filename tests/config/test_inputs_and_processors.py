"""The pipeline's YAML keys (config/inputs.py, config/processors.py), read by the real loader: good values typed, bad ones named by file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccf_agent.config import ConfigError, InputOptions, Processors, parse_config

BASE = """\
state_dir: /tmp/ccf-state
outputs:
  logs: {type: file, path: /tmp/out.ndjson}
inputs:
  - id: app
    paths: [/var/log/ccf/*.log]
"""


def load(inputs_extra: str = "", top_extra: str = "") -> tuple[InputOptions, Processors]:
    cfg = parse_config(BASE + inputs_extra + top_extra, "agent.yaml")
    return cfg.inputs[0].options, cfg.processors


def error(inputs_extra: str = "", top_extra: str = "") -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + inputs_extra + top_extra, "agent.yaml")
    return str(e.value)


def test_without_the_keys_defaults_apply_and_redaction_is_on() -> None:
    opts, procs = load()
    assert opts == InputOptions()
    assert procs.redact.enabled and "paymentMethodId" in procs.redact.fields
    assert procs.redact.card_numbers and procs.redact.stripe_keys and procs.redact.bearer_tokens
    assert not procs.redact.emails and procs.drop == () and procs.sample == ()


def test_every_input_key_is_read() -> None:
    opts, _ = load("""\
    format: text
    parser: {pattern: syslog, timestamp_formats: ['%b %d %H:%M:%S']}
    multiline: {preset: java, max_lines: 50, timeout: 2s}
    encoding: latin-1
    ecs: true
""")
    assert opts.parser is not None and opts.timestamp_formats == ("%b %d %H:%M:%S",)
    assert opts.multiline is not None and opts.multiline.max_lines == 50 and opts.multiline.timeout == 2.0
    assert opts.encoding == "iso8859-1" and opts.ecs is not None


def test_every_processor_key_is_read(tmp_path: Path) -> None:
    table = tmp_path / "users.yaml"
    table.write_text("user_1: {tier: gold}\n")
    _, procs = load(top_extra=f"""\
processors:
  enrich:
    fields: {{team: payments}}
    environment: production
    host: {{ip: false}}
    lookup:
      - {{field: userId, target: user, file: {table}}}
  redact:
    mask: "***"
    fields: [secret]
    drop_fields: [stripeKeys]
    patterns: {{emails: true, bearer_tokens: false}}
    custom: [{{name: ssn, regex: '\\d{{3}}-\\d{{2}}-\\d{{4}}'}}]
  drop: [{{name: debug, when: {{field: level, equals: debug}}}}]
  sample: [{{when: {{field: path, equals: /health}}, keep: 10}}]
""")
    assert procs.enrich.fields == {"team": "payments"} and procs.enrich.environment == "production"
    assert not procs.enrich.host_ip and procs.enrich.host_os
    assert procs.enrich.lookups[0].table == {"user_1": {"tier": "gold"}}
    assert procs.redact.mask == "***" and procs.redact.fields == ("secret",)
    assert procs.redact.drop_fields == ("stripeKeys",) and procs.redact.emails and not procs.redact.bearer_tokens
    assert procs.redact.custom == (("ssn", r"\d{3}-\d{2}-\d{4}"),)
    assert procs.drop[0].name == "debug" and procs.drop[0].when({"level": "debug"})
    assert procs.sample[0].keep == 10 and procs.sample[0].name == "sample-0"


@pytest.mark.parametrize(("extra", "expected"), [
    ("    multiline: {preset: python}\n", "agent.yaml:7: inputs[0].multiline.preset: must be one of stack_trace"),
    ("    multiline: {pattern: '^\\s', match: around}\n", "agent.yaml:7: inputs[0].multiline.match: must be one of"),
    ("    multiline: {negate: true}\n", "inputs[0].multiline: needs either 'preset'"),
    ("    multiline: {pattern: '(', timeout: 1s}\n", "inputs[0].multiline.pattern: invalid regular expression"),
    ("    encoding: utf-16\n", "agent.yaml:7: inputs[0].encoding: 'utf-16' is not ASCII-compatible"),
    ("    encoding: klingon\n", "inputs[0].encoding: unknown encoding 'klingon'"),
    ("    format: text\n    parser: '^no groups$'\n", "agent.yaml:8: inputs[0].parser.pattern: the pattern needs named groups"),
    ("    parser: {pattern: syslog, types: {x: date}}\n", "inputs[0].parser.pattern: type of 'x' must be one of"),
    ("    ecs: {fields: {level: 'log level'}}\n", "inputs[0].ecs.fields.level: must be a dotted field name"),
    ("    parsr: syslog\n", "agent.yaml:7: inputs[0].parsr: unknown key"),
])
def test_bad_input_options_name_file_line_and_key(extra: str, expected: str) -> None:
    assert expected in error(extra)


@pytest.mark.parametrize(("top", "expected"), [
    ("processors:\n  redact:\n    patterns: {ssn: true}\n", "agent.yaml:9: processors.redact.patterns.ssn: unknown key"),
    ("processors:\n  drop:\n    - when: {field: level, equal: debug}\n",
     "agent.yaml:9: processors.drop[0].when.equal: unknown operator"),
    ("processors:\n  drop:\n    - {name: x}\n", "processors.drop[0]: missing required key 'when'"),
    ("processors:\n  sample:\n    - {when: {field: a, exists: true}, keep: 0}\n",
     "processors.sample[0].keep: must be a whole number greater than 0"),
    ("processors:\n  enrich:\n    lookup:\n      - {field: a, target: b, file: /nonexistent.json}\n",
     "processors.enrich.lookup[0].file: cannot read lookup table /nonexistent.json"),
    ("processors:\n  redact:\n    custom: [{name: any, regex: 'x*'}]\n", "matches the empty string"),
    ("processors:\n  redact: {mask: 'a\\\\b'}\n", "processors.redact.mask: must be non-empty plain text"),
    ("processors:\n  enrch: {}\n", "agent.yaml:8: processors.enrch: unknown key"),
])
def test_bad_processors_name_file_line_and_key(top: str, expected: str) -> None:
    assert expected in error(top_extra=top)


def test_redaction_can_be_switched_off_in_one_line() -> None:
    _, procs = load(top_extra="processors:\n  redact: false\n")
    assert not procs.redact.enabled
