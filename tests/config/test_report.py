"""The `report:` section: validated like the rest, every error at its file:line."""

from __future__ import annotations

import pytest

from ccf_agent.config import ConfigError, parse_config

HEAD = """\
state_dir: /tmp/ccf-state
inputs:
  - id: app
    paths: ["/var/log/ccf/*.log"]
    timezone: Europe/Berlin
outputs:
  logs: {type: elasticsearch, hosts: ["https://es1:9200"]}
  archive: {type: file, path: /tmp/archive.ndjson}
alerts:
  notifiers:
    slack: {type: slack, url: "https://hooks.slack.invalid/T/B/X"}
    teams: {type: teams, url: "${TEAMS_URL:-}"}
    am: {type: alertmanager, url: "http://127.0.0.1:9093"}
"""


def parse(report: str, env: dict[str, str] | None = None):
    return parse_config(HEAD + report, "agent.yaml", env or {})


def error_of(report: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        parse(report, env)
    return str(e.value)


def test_a_full_report_section_parses_with_the_password_from_the_environment():
    cfg = parse("""\
report:
  timezone: America/New_York
  top: 10
  outputs: [logs]
  url: "https://reports.invalid/ccf/{date}.html"
  notifiers: [slack, teams]
  smtp:
    host: smtp.invalid
    username: ccf
    password: ${SMTP_PASSWORD}
    from: ccf-agent@example.invalid
    to: [admin@yourdomain.com, ops@yourdomain.com]
    tls: {ca_file: /etc/ssl/certs/ca-certificates.crt}
""", {"SMTP_PASSWORD": "s3cret-pw"}).report
    assert (cfg.timezone, cfg.top, cfg.outputs, cfg.smtp.port, cfg.smtp.starttls) == (
        "America/New_York", 10, ("logs",), 587, True)
    assert cfg.smtp.password == "s3cret-pw" and "s3cret-pw" not in repr(cfg)


def test_without_a_report_section_the_defaults_apply():
    cfg = parse("").report
    assert (cfg.top, cfg.high_value_cents, cfg.sources, cfg.smtp) == (5, 10000, ("combined*.log*",), None)


def test_a_notifier_switched_off_by_an_empty_url_is_skipped_not_an_error():
    cfg = parse("report:\n  notifiers: [slack, teams]\n")
    assert cfg.report.notifier_names(cfg.alerts) == ["slack"]
    assert parse("").report.notifier_names(parse("").alerts) == ["slack"]  # default: all but alertmanager


@pytest.mark.parametrize(("report", "where", "what"), [
    ("report:\n  notifiers: [slak]\n", "agent.yaml:15: report.notifiers[0]", "no notifier named 'slak'"),
    ("report:\n  notifiers: [am]\n", "agent.yaml:15: report.notifiers[0]", "takes alerts, not reports"),
    ("report:\n  outputs: [archive]\n", "agent.yaml:15: report.outputs[0]", "no elasticsearch output named 'archive'"),
    ("report:\n  tz: UTC\n", "agent.yaml:15: report.tz", "unknown key"),
    ("report:\n  timezone: Mars/Olympus\n", "agent.yaml:15: report.timezone", "unknown time zone"),
    ("report:\n  top: 0\n", "agent.yaml:15: report.top", "from 1 to 100"),
    ("report:\n  sources: [/var/log/combined.log]\n", "agent.yaml:15: report.sources[0]", "file name pattern"),
    ("report:\n  url: reports.invalid\n", "agent.yaml:15: report.url", "http:// or https://"),
    ("report:\n  smtp:\n    host: h\n    from: a@b.invalid\n    to: []\n", "agent.yaml:18: report.smtp.to",
     "at least one address"),
    ("report:\n  smtp:\n    host: h\n    from: nobody\n    to: [a@b.invalid]\n", "agent.yaml:17: report.smtp.from",
     "e-mail address"),
    ("report:\n  smtp:\n    host: h\n    from: a@b.invalid\n    to: [a@b.invalid]\n    username: u\n"
     "    password: p\n    starttls: false\n", "agent.yaml:21: report.smtp.starttls", "would cross in clear"),
    ("report:\n  smtp:\n    host: h\n    from: a@b.invalid\n    to: [a@b.invalid]\n    port: 0\n",
     "agent.yaml:19: report.smtp.port", "TCP port"),
    ("report:\n  smtp:\n    host: h\n    from: a@b.invalid\n    to: [a@b.invalid]\n    tls: {ca_file: /nope}\n",
     "agent.yaml:19: report.smtp.tls.ca_file", "cannot read /nope"),
])
def test_a_bad_report_section_names_file_line_and_key(report, where, what):
    message = error_of(report)
    assert message.startswith(where) and what in message, message


def test_an_unset_smtp_password_variable_is_a_config_error_and_no_secret_is_echoed():
    message = error_of("report:\n  smtp:\n    host: h\n    from: a@b.invalid\n    to: [a@b.invalid]\n"
                       "    username: u\n    password: ${SMTP_PASSWORD}\n")
    assert message == "agent.yaml:20: report.smtp.password: environment variable SMTP_PASSWORD is not set"
