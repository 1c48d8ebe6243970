"""Credentials never reach text people or programs see: URLs shown without them, every log line
(tracebacks included) scrubbed of every secret the config holds."""

from __future__ import annotations

import io
import logging

import pytest

from ccf_agent.config import parse_config
from ccf_agent.credentials import LOG_SCRUBBER, Scrubber, ScrubbingFormatter, config_secrets, safe_url

CONFIG = """\
state_dir: /tmp/ccf-state
inputs: [{id: app, paths: [/var/log/app/*.log]}]
outputs:
  es: {type: elasticsearch, hosts: ["https://elastic:${ES_PASSWORD}@es1:9200"], index: logs}
  keyed: {type: elasticsearch, hosts: ["https://es2:9200"], index: logs, api_key: "${API_KEY}"}
  collector:
    type: http
    hosts: ["https://collector:8080/ingest?access_token=${TOKEN}"]
    headers: {X-Api-Key: "${HEADER_KEY}"}
  basic: {type: http, hosts: ["https://c2:8080/in"], username: shipper, password: "${BASIC_PW}"}
alerts:
  notifiers:
    slack: {type: slack, url: "https://hooks.slack.com/services/T0000/B0000/${SLACK_TOKEN}"}
    am: {type: alertmanager, url: "http://am:9093", bearer_token: "${AM_TOKEN}"}
"""
ENV = {"ES_PASSWORD": "esPass!1", "API_KEY": "apiKey22", "TOKEN": "tok333", "HEADER_KEY": "hdrKey44",
       "BASIC_PW": "basicPw55", "SLACK_TOKEN": "slackTok66", "AM_TOKEN": "amTok77"}


@pytest.mark.parametrize(("url", "shown"), [
    ("https://u:p%40ss@es1:9200/x", "https://***@es1:9200/x"),
    ("http://h/x?access_token=abc&a=1&sig=zz", "http://h/x?access_token=***&a=1&sig=***"),
    ("u:p@logstash:5044", "***@logstash:5044"),
    ("https://es1:9200", "https://es1:9200"),
    ("http://[::1", "<a URL that does not parse>"),
])
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_a_scrubber_hides_longer_secrets_first_and_any_userinfo() -> None:
    scrub = Scrubber(["abc", "abcdef", None, "x"])
    assert scrub("abcdef abc x ftp://a:b@h/") == "*** *** x ftp://***@h/"


def test_every_secret_of_a_config_is_scrubbed_from_a_log_line_and_its_traceback() -> None:
    LOG_SCRUBBER.add(config_secrets(parse_config(CONFIG, "c.yaml", ENV)))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(ScrubbingFormatter("%(message)s"))
    logger = logging.getLogger("test.credentials")
    logger.addHandler(handler)
    try:
        every = " ".join(ENV.values())
        try:
            raise RuntimeError(f"a library quoting what it was given: {every}")
        except RuntimeError:
            logger.exception("failed with %s and https://hooks.slack.com/services/T0000/B0000/slackTok66", every)
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "a library quoting what it was given" in text and "Traceback" in text
    for secret in ENV.values():
        assert secret not in text
