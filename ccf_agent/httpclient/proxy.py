"""Which proxy a request goes through, by the proxy setting (`ccf_agent.proxies.Proxy`): the
explicit `proxy_url`, or the environment's HTTPS_PROXY/HTTP_PROXY/ALL_PROXY minus NO_PROXY."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ccf_agent.credentials import basic_auth, safe_url, split_userinfo
from ccf_agent.proxies import Proxy, url_problem


@dataclass(frozen=True)
class Route:
    """Through which proxy one request goes."""

    url: str  # the proxy, without credentials
    shown: str  # as messages name it
    auth: dict[str, str] | None = field(default=None, repr=False)  # the Proxy-Authorization header
    source: str = "proxy_url"  # or the environment variable it came from


class Router:
    """A proxy setting resolved per destination (scheme, host, port): cached, since the environment
    is read once, when the client is built."""

    def __init__(self, proxy: Proxy, environ: Mapping[str, str] | None = None) -> None:
        self.proxy = proxy
        self.from_env = _environment(environ) if proxy.url is None and proxy.env else {}
        self._cache: dict[tuple[str, str], Route | None] = {}
        self._direct = proxy.url is None and not self.from_env  # every request goes direct: no URL to split

    def route(self, url: str) -> Route | None:
        if self._direct:
            return None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key in self._cache:
            return self._cache[key]
        got = self._resolve(parts.scheme, parts.netloc.rpartition("@")[2])
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = got
        return got

    def _resolve(self, scheme: str, hostport: str) -> Route | None:
        if self.proxy.url is not None:
            return _route(self.proxy.url, "proxy_url")
        env = self.from_env
        chosen = env.get(scheme) or env.get("all")
        # proxy_bypass_environment is stdlib (NO_PROXY as curl reads it) but not in typeshed.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if not chosen or bypass(hostport, env):
            return None
        var = f"{'HTTPS' if scheme == 'https' and env.get('https') else 'HTTP' if env.get(scheme) else 'ALL'}_PROXY"
        problem = url_problem(chosen)
        if problem:
            raise ValueError(f"{var} {problem}")
        return _route(chosen, var)


def _environment(environ: Mapping[str, str] | None) -> dict[str, str]:
    """scheme -> proxy URL, and 'no' -> NO_PROXY, as urllib reads them (lower case wins)."""
    if environ is None:
        return urllib.request.getproxies_environment()
    out: dict[str, str] = {}
    for name, value in environ.items():  # upper case first, so lower case overrides
        if name.isupper() and value and name.lower().endswith("_proxy"):
            out[name.lower()[:-6]] = value
    for name, value in environ.items():
        if name.islower() and value and name.endswith("_proxy"):
            out[name[:-6]] = value
    return out


def _route(url: str, source: str) -> Route:
    bare, user, password = split_userinfo(url)
    auth = {"Proxy-Authorization": basic_auth(user, password or "")} if user is not None else None
    return Route(bare, safe_url(url), auth, source)
