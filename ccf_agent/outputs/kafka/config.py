"""The Kafka output's own config keys, parsed and checked where config loading asks for them
(outputs.registry): nothing here imports aiokafka."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccf_agent.outputs.kafka import topic as topics

if TYPE_CHECKING:
    from ccf_agent.config import OutputConfig

Where = Callable[[tuple[str | int, ...], str], Exception]

OPTION_KEYS: tuple[str, ...] = ("brokers", "topic", "key", "compression", "acks", "sasl")
# aiokafka compresses gzip with the standard library; the others with cramjam (a dependency).
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ACKS = ("all", 1)
_BROKER = re.compile(r"^[^\s/:@]+:\d+$")


@dataclass(frozen=True)
class Sasl:
    mechanism: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class KafkaOptions:
    brokers: tuple[str, ...] = ()
    topic: topics.Template = field(default_factory=lambda: topics.parse("ccf-logs"))
    key: tuple[str, ...] | None = None  # path of the field that keys each message; None: the record's id
    compression: str = "none"
    acks: str | int = "all"
    sasl: Sasl | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """What credentials.output_secrets hides wherever the output's texts are shown."""
        return (self.sasl.password,) if self.sasl else ()


def parse_options(raw: Mapping[str, Any], where: Where) -> KafkaOptions:
    brokers = raw.get("brokers")
    if isinstance(brokers, str):
        brokers = [brokers]
    if not isinstance(brokers, list) or not brokers:
        raise where(("brokers",), "needs at least one broker, like [kafka1:9092, kafka2:9092]")
    for j, b in enumerate(brokers):
        if not isinstance(b, str) or not _BROKER.match(b) or not 1 <= int(b.rpartition(":")[2]) <= 65535:
            raise where(("brokers", j), f"must be host:port like kafka1:9092 (port 1 to 65535), not {b!r}")
    text = raw.get("topic", "ccf-logs")
    if not isinstance(text, str):
        raise where(("topic",), f"must be a topic name or a template like ccf-%{{[service]}}, not {text!r}")
    try:
        template = topics.parse(text)
    except ValueError as e:
        raise where(("topic",), str(e)) from None
    key = _key(raw.get("key", "id"), where)
    compression = raw.get("compression", "none")
    if compression not in COMPRESSIONS:
        raise where(("compression",), f"must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
    if compression not in ("none", "gzip") and importlib.util.find_spec("cramjam") is None:
        raise where(("compression",), f"{compression} needs the cramjam package (pip install cramjam); "
                    "gzip needs nothing")
    acks = raw.get("acks", "all")
    if acks == -1:
        acks = "all"
    if acks not in ACKS or isinstance(acks, bool):
        raise where(("acks",), f"must be all (every in-sync replica has the record: the default) or 1 "
                    f"(the leader only; the producer is then not idempotent), not {acks!r}")
    return KafkaOptions(tuple(brokers), template, key, compression, acks, _sasl(raw.get("sasl"), where))


def _key(value: Any, where: Where) -> tuple[str, ...] | None:
    if value == "id":
        return None
    if isinstance(value, str):
        try:
            template = topics.parse(value)
        except ValueError:
            template = None
        refs = [p for p in template.parts if not isinstance(p, str)] if template else []
        if template is not None and len(template.parts) == 1 and refs:
            return refs[0][0]
    raise where(("key",), f"must be id (the record's deterministic id: the default, what makes a resend "
                "recognisable downstream) or one field reference like %{[userId]}, "
                f"not {value!r}")


def _sasl(raw: Any, where: Where) -> Sasl | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise where(("sasl",), "must be a mapping {mechanism, username, password}")
    unknown = sorted(set(raw) - {"mechanism", "username", "password"})
    if unknown:
        raise where(("sasl", unknown[0]), "unknown key (known keys here: mechanism, username, password)")
    mechanism = raw.get("mechanism", "SCRAM-SHA-512")
    if mechanism not in MECHANISMS:
        raise where(("sasl", "mechanism"), f"must be one of {', '.join(MECHANISMS)}, not {mechanism!r}")
    for k in ("username", "password"):
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise where(("sasl", k), "is required" + (" (from ${ENV_VAR} or ${file:/path})" if k == "password" else ""))
    return Sasl(mechanism, raw["username"], raw["password"])


def options_of(cfg: OutputConfig) -> KafkaOptions:
    return cfg.options if isinstance(cfg.options, KafkaOptions) else KafkaOptions()


def config_problem(cfg: OutputConfig) -> str | tuple[tuple[str, ...], str] | None:
    """Common keys that mean nothing to Kafka are refused rather than ignored: an operator who
    wrote them expects them to act."""
    opts = options_of(cfg)
    if cfg.hosts:
        return ("hosts",), "a kafka output lists its brokers under brokers:, not hosts:"
    for key in ("username", "password", "api_key", "bearer_token"):
        if getattr(cfg, key):
            return (key,), "a kafka output authenticates with sasl: {mechanism, username, password}"
    if cfg.tls.server_name:
        return ("tls", "server_name",), ("not supported by the kafka output: each broker's certificate is checked "
                                         "against the host name the cluster advertises for it")
    if opts.sasl and opts.sasl.mechanism == "PLAIN" and not cfg.tls.present:
        return ("sasl", "mechanism"), ("PLAIN sends the password in clear: add a tls section (SASL_SSL), or use "
                                       "SCRAM-SHA-512")
    return None
