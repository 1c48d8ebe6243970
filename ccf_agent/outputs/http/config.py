"""The HTTP output's own config keys, parsed and checked where config loading asks for them
(outputs.registry): nothing here imports the HTTP layer or the protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccf_agent.config.values import header_problem
from ccf_agent.credentials import split_userinfo
from ccf_agent.proxies import Proxy, parse_proxy

if TYPE_CHECKING:
    from ccf_agent.config.outputs import OutputConfig

Where = Callable[[tuple[str | int, ...], str], Exception]

OPTION_KEYS: tuple[str, ...] = ("format", "headers", "proxy_url")
FORMATS = ("ndjson", "json_array")
_RESERVED_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding", "host"})


@dataclass(frozen=True)
class HttpOptions:
    format: str = "ndjson"
    headers: Mapping[str, str] = field(default_factory=dict)
    proxy: Proxy = field(default_factory=Proxy)  # proxy_url, else the environment's (ccf_agent.proxies)


def parse_options(raw: Mapping[str, Any], where: Where) -> HttpOptions:
    fmt = raw.get("format", "ndjson")
    if fmt not in FORMATS:
        raise where(("format",), f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise where(("headers",), "must be a mapping of header names to values")
    for name, value in headers.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise where(("headers", name), "must be a string")
        if name.lower() in _RESERVED_HEADERS:
            raise where(("headers", name), "is set by the agent itself")
        problem = header_problem(str(name), str(value))
        if problem:
            raise where(("headers", name), problem)
    return HttpOptions(fmt, {str(k): str(v) for k, v in headers.items()}, parse_proxy(raw, where))


def options_of(cfg: OutputConfig) -> HttpOptions:
    return cfg.options if isinstance(cfg.options, HttpOptions) else HttpOptions()


def config_problem(cfg: OutputConfig) -> str | None:
    """One source of credentials: aiohttp refuses a request that has both an Authorization header and
    credentials in its URL, so such a config would pass `check` and fail every delivery."""
    in_url = [j for j, h in enumerate(cfg.hosts) if split_userinfo(h)[1] is not None]
    other = [k for k, v in (("api_key", cfg.api_key), ("bearer_token", cfg.bearer_token),
                            ("username", cfg.username)) if v]
    other += [f"headers.{k}" for k in options_of(cfg).headers if k.lower() == "authorization"]
    if in_url and other:
        return (f"hosts[{in_url[0]}] carries user:password@ and {other[0]} is set too: give the credentials "
                "one way only")
    return None
