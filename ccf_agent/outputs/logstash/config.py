"""The Logstash output's own config keys, parsed where config loading asks for them
(outputs.registry): nothing here imports the protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ccf_agent.config.values import parse_duration

Where = Callable[[tuple[str | int, ...], str], Exception]

OPTION_KEYS: tuple[str, ...] = (
    "loadbalance", "pipelining", "ttl", "compression_level", "window_max", "tls_enabled",
)


@dataclass(frozen=True)
class LogstashOptions:
    loadbalance: bool = False
    pipelining: int = 2  # batches in flight per connection (0 = wait for each ACK, like 1)
    ttl: float = 0.0  # seconds; 0 = keep connections until they fail
    compression_level: int = 3
    window_max: int = 2048  # Beats' bulk_max_size
    tls_enabled: bool | None = None  # None: TLS when the output has a `tls` section


def parse_options(raw: Mapping[str, Any], where: Where) -> LogstashOptions:
    def integer(key: str, default: int, lo: int, hi: int) -> int:
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise where((key,), f"must be an integer from {lo} to {hi}, not {v!r}")
        return v

    def boolean(key: str, default: bool | None) -> bool | None:
        v = raw.get(key, default)
        if v is not None and not isinstance(v, bool):
            raise where((key,), f"must be true or false, not {v!r}")
        return v

    ttl = parse_duration(raw.get("ttl", 0))
    if ttl is None or ttl < 0:
        raise where(("ttl",), f"must be a duration like 60s or 5m (0 = off), not {raw.get('ttl')!r}")
    return LogstashOptions(
        loadbalance=bool(boolean("loadbalance", False)),
        pipelining=integer("pipelining", 2, 0, 64),
        ttl=ttl,
        compression_level=integer("compression_level", 3, 0, 9),
        window_max=integer("window_max", 2048, 1, 1 << 20),
        tls_enabled=boolean("tls_enabled", None),
    )
