"""The logstash output's own config keys and its encoding of records."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from ccf_agent import __version__
from ccf_agent.config import ConfigError, OutputConfig, TlsConfig, parse_config
from ccf_agent.outputs.logstash.config import LogstashOptions
from ccf_agent.outputs.logstash.lumberjack import beats_event
from ccf_agent.outputs.logstash.output import LogstashOutput
from tests.outputs.helpers import one_output_yaml, sample_events

BASE = one_output_yaml("beats", "logstash", "hosts: [ls1:5044, ls2:5044]")


def options_of(extra: str) -> LogstashOptions:
    opts = parse_config(BASE + extra).outputs["beats"].options
    assert isinstance(opts, LogstashOptions)
    return opts


def test_defaults_follow_beats() -> None:
    assert options_of("") == LogstashOptions(loadbalance=False, pipelining=2, ttl=0.0, compression_level=3,
                                             window_max=2048, tls_enabled=None)


def test_every_key_is_read() -> None:
    opts = options_of("    loadbalance: true\n    pipelining: 0\n    ttl: 2m\n    compression_level: 0\n"
                      "    window_max: 500\n    tls_enabled: true\n")
    assert opts == LogstashOptions(True, 0, 120.0, 0, 500, True)


@pytest.mark.parametrize(("line", "message"), [
    ("pipelining: -1", "outputs.beats.pipelining: must be an integer from 0 to 64, not -1"),
    ("compression_level: 12", "outputs.beats.compression_level: must be an integer from 0 to 9, not 12"),
    ("window_max: 0", "outputs.beats.window_max: must be an integer from 1 to 1048576, not 0"),
    ("ttl: soon", "outputs.beats.ttl: must be a duration like 60s or 5m (0 = off), not 'soon'"),
    ("loadbalance: 'yes'", "outputs.beats.loadbalance: must be true or false, not 'yes'"),
])
def test_a_bad_value_is_a_config_error_at_its_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "    " + line + "\n", "agent.yaml")
    assert str(err.value) == f"agent.yaml:9: {message}"


def test_a_host_needs_a_port() -> None:
    with pytest.raises(ConfigError, match="must be host:port like logstash1:5044"):
        parse_config(BASE.replace("ls2:5044", "ls2"))


def _output(tls: TlsConfig | None = None, **options: object) -> LogstashOutput:
    cfg = OutputConfig(name="beats", type="logstash", hosts=("127.0.0.1:5044",), tls=tls or TlsConfig())
    return LogstashOutput(cfg, LogstashOptions(**options))  # type: ignore[arg-type]


def test_encode_gives_one_beats_event_per_line_with_metadata_and_timestamp() -> None:
    events = sample_events(20)[0]
    body = _output().encode(events, [3, 7, 8])
    lines = body.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    for line, i in zip(lines, [3, 7, 8], strict=False):
        event = orjson.loads(line)
        assert event["@metadata"] == {"beat": "ccf-agent", "type": "_doc", "version": __version__}
        assert event["@timestamp"] == orjson.loads(events.docs[i])["@timestamp"]
        assert line.startswith(events.docs[i][:-1])  # the record's own bytes, untouched


def test_encode_gives_what_beats_event_gives_for_every_record() -> None:
    events = sample_events(500)[0]
    body = _output().encode(events, range(500))
    assert body.split(b"\n")[:-1] == [beats_event(d, "ccf-agent", __version__) for d in events.docs]


@pytest.mark.parametrize("odd", [
    b'{"a":1,"@metadata":{"pipeline":"p"}}',  # metadata of its own: merged, its keys win
    b'{"a":1 }',  # whitespace before the brace
    b"{}",
])
def test_encode_takes_the_careful_path_for_unusual_records(odd: bytes) -> None:
    events = sample_events(3)[0]
    events.docs[1] = odd
    lines = _output().encode(events, range(3)).split(b"\n")[:-1]
    assert lines == [beats_event(d, "ccf-agent", __version__) for d in events.docs]
    assert all(orjson.loads(x)["@metadata"]["beat"] == "ccf-agent" for x in lines)


def test_plain_tcp_unless_tls_is_asked_for(pki: Path) -> None:
    assert _output().ssl is None
    assert _output(tls_enabled=True).ssl is not None  # system CAs, verified
    assert _output(TlsConfig(ca_file=str(pki / "ca.pem"))).ssl is not None
    assert _output(TlsConfig(ca_file=str(pki / "ca.pem")), tls_enabled=False).ssl is None


def test_verification_off_is_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        out = _output(TlsConfig(verify=False))
    assert out.ssl is not None and not out.ssl.check_hostname
    assert "TLS CERTIFICATE VERIFICATION IS OFF" in caplog.text
