"""The proxy setting of an output or notifier (`proxy_url`): parsed and checked with the config,
without the HTTP layer (httpclient.proxy routes requests by it).

    proxy_url: http://proxy.internal:3128            every request of this output through it
    proxy_url: http://ccf:${PROXY_PASSWORD}@proxy:3128   with Basic proxy authentication
    proxy_url: none                                 never a proxy, whatever the environment says
    (no proxy_url)                                  HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY,
                                                    read as curl and Python's urllib read them

An https:// URL through a proxy is tunnelled (CONNECT): TLS is end to end, verified against the
destination as without a proxy. As with curl, loopback addresses are not exempt by themselves:
list them in NO_PROXY. The proxy's credentials are sent as Proxy-Authorization only, never shown
(`Proxy.shown`), and are among the secrets every log line is scrubbed of (credentials.proxy_secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ccf_agent.credentials import safe_url

OFF = ("none", "off")
KEY = "proxy_url"


@dataclass(frozen=True)
class Proxy:
    """A proxy setting: `url` for an explicit proxy, else the environment's unless `env` is False."""

    url: str | None = field(default=None, repr=False)  # may carry user:password@
    env: bool = True

    @classmethod
    def parse(cls, value: Any) -> Proxy:
        """`proxy_url` as configured (None when absent); ValueError with the message for `check`."""
        if value is None or (isinstance(value, str) and not value.strip()):  # `${PROXY:-}` unset: as absent
            return cls()
        if value is False or (isinstance(value, str) and value.strip().lower() in OFF):
            return cls(None, env=False)
        if not isinstance(value, str):
            raise ValueError("must be a proxy URL like http://proxy.internal:3128, or none")
        problem = url_problem(value.strip())
        if problem:
            raise ValueError(problem)
        return cls(value.strip(), env=False)

    @property
    def shown(self) -> str:
        return safe_url(self.url) if self.url else ("the environment's" if self.env else "none")


def url_problem(url: str) -> str | None:
    """What is wrong with a proxy URL (never echoing its credentials)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"must be a proxy URL like http://proxy.internal:3128, not {safe_url(url)!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (f"must be an http:// or https:// proxy URL like http://proxy.internal:3128 (no socks), "
                f"not {safe_url(url)!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or port == 0:
        return f"must be scheme://[user:password@]host:port only, not {safe_url(url)!r}"
    return None


def parse_proxy(raw: Mapping[str, Any], where: Any) -> Proxy:
    """`proxy_url` of a section's keys; `where(key path, message)` gives the error naming file:line."""
    try:
        return Proxy.parse(raw.get(KEY))
    except ValueError as e:
        raise where((KEY,), str(e)) from None


def proxy_of(options: Any) -> Proxy:
    """An output's or notifier's proxy setting (its `proxy` option; the environment's without one)."""
    proxy = getattr(options, "proxy", None)
    return proxy if isinstance(proxy, Proxy) else Proxy()
