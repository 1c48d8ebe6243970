"""The Kafka output's own config keys, and topics rendered from records (no broker needed)."""

from __future__ import annotations

import pytest

from ccf_agent.config import ConfigError, parse_config
from ccf_agent.credentials import output_secrets
from ccf_agent.outputs.kafka import topic as topics
from ccf_agent.outputs.kafka.config import KafkaOptions
from tests.outputs.helpers import one_output_yaml

BASE = one_output_yaml("events", "kafka", "brokers: [kafka1:9092, kafka2:9092]")


def options_of(extra: str = "", env: dict[str, str] | None = None) -> KafkaOptions:
    opts = parse_config(BASE + extra, env=env or {}).outputs["events"].options
    assert isinstance(opts, KafkaOptions)
    return opts


def refusal(extra: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + extra, env={})
    return str(e.value)


def test_defaults_key_by_the_record_id_with_acks_all_and_no_compression() -> None:
    o = options_of()
    assert (o.brokers, o.topic.literal, o.key, o.acks, o.compression, o.sasl) == (
        ("kafka1:9092", "kafka2:9092"), "ccf-logs", None, "all", "none", None)


def test_every_compression_aiokafka_has_a_codec_for_is_taken() -> None:
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        assert options_of(f"    compression: {codec}\n").compression == codec


@pytest.mark.parametrize(("extra", "where", "says"), [
    ("    compression: brotli\n", "outputs.events.compression", "must be one of none, gzip, snappy, lz4, zstd"),
    ("    topic: 'ccf logs'\n", "outputs.events.topic", "may hold only letters"),
    ("    topic: '..'\n", "outputs.events.topic", "not a legal topic name"),
    ("    topic: 'ccf-%{service}'\n", "outputs.events.topic", "written %{[field]}"),
    ("    key: '%{[a]}-%{[b]}'\n", "outputs.events.key", "one field reference"),
    ("    acks: 0\n", "outputs.events.acks", "must be all"),
    ("    hosts: [kafka1:9092]\n", "outputs.events.hosts", "under brokers:"),
    ("    username: ccf\n", "outputs.events.username", "sasl:"),
    ("    sasl: {mechanism: PLAIN, username: u, password: p}\n", "outputs.events.sasl.mechanism",
     "sends the password in clear"),
    ("    sasl: {mechanism: GSSAPI, username: u, password: p}\n", "outputs.events.sasl.mechanism", "must be one of"),
    ("    sasl: {username: u}\n", "outputs.events.sasl.password", "is required"),
])
def test_a_bad_key_names_its_line_and_what_is_wrong(extra: str, where: str, says: str) -> None:
    message = refusal(extra)
    assert f":{BASE.count(chr(10)) + 1}: {where}:" in message and says in message


def test_brokers_must_be_host_and_port() -> None:
    with pytest.raises(ConfigError, match=r"brokers\[0\]: must be host:port"):
        parse_config(BASE.replace("[kafka1:9092, kafka2:9092]", "[kafka1]"), env={})


def test_the_sasl_password_comes_from_the_environment_and_is_a_secret_to_hide() -> None:
    cfg = parse_config(BASE + "    sasl: {mechanism: SCRAM-SHA-512, username: ccf, password: '${KAFKA_PW}'}\n",
                       env={"KAFKA_PW": "s3cret-value"})
    opts = cfg.outputs["events"].options
    assert opts.sasl.password == "s3cret-value"
    assert "s3cret-value" in output_secrets(cfg.outputs["events"])
    assert "s3cret-value" not in repr(opts)


def test_a_topic_template_renders_fields_lower_cased_and_sanitised() -> None:
    t = topics.parse("ccf-%{[service]}-%{[http][method]:any}")
    assert t.fields == ("http", "service")
    assert topics.render(t, {"service": "Payout Job/2", "http": {"method": "GET"}}) == "ccf-payout_job_2-get"
    assert topics.render(t, {"service": "api"}) == "ccf-api-any"
    assert topics.render(t, {"service": {"nested": 1}}) == "ccf-unknown-any"
    assert len(topics.render(t, {"service": "x" * 500})) == topics.MAX_LENGTH


def test_a_topic_that_renders_to_a_name_kafka_refuses_gets_the_default() -> None:
    assert topics.render(topics.parse("%{[a]}"), {"a": "."}) == "unknown"
    assert topics.render(topics.parse("%{[a]}"), {"a": ""}) == "unknown"
