"""`HttpClient`: one aiohttp session with its TLS, default headers, timeouts and connection limit.

Every request returns a `Response` (any status: what a status means is the caller's protocol) or
raises one of `errors`' TransportErrors, mapped in one place. The session is opened at the first
request, inside the event loop, so a client can be built where no loop runs (`ccf-agent check`).

Proxies are chosen here, per destination (`proxy.Router`): the client's `proxy` setting (an
output's `proxy_url`, else the environment's HTTPS_PROXY/HTTP_PROXY/NO_PROXY), or a request's own
(notifiers share one client). aiohttp's `trust_env` stays off: it would also read ~/.netrc.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from ccf_agent.httpclient.errors import CAUGHT, RequestRefused, proxy_refused, transport_error
from ccf_agent.httpclient.proxy import Route, Router
from ccf_agent.proxies import Proxy

# Retry-After is honoured, but a bogus header must not park a sender for hours.
RETRY_AFTER_MAX = 300.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date, in seconds from now; capped at RETRY_AFTER_MAX."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(RETRY_AFTER_MAX, max(0.0, seconds))


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]
    elapsed: float  # seconds from sending to the whole answer read

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return orjson.loads(self.body)

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", "replace").strip()


class HttpClient:
    def __init__(self, *, ssl_context: ssl.SSLContext | bool = True, headers: Mapping[str, str] | None = None,
                 timeout: float = 30.0, connect_timeout: float | None = None, limit: int = 100,
                 server_hostname: str | None = None, proxy: Proxy | None = None) -> None:
        """`ssl_context`: True for the system's verified default, False for plain http only, or a
        context (`tls.client_ssl_context`); `server_hostname`: the name to verify instead of the URL's;
        `proxy`: the proxy setting (default: the environment's)."""
        self.ssl = ssl_context
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.limit = limit
        self.proxies = Router(proxy or Proxy())
        self._routers: dict[Proxy, Router] = {}
        self._extra: dict[str, Any] = {"server_hostname": server_hostname} if server_hostname else {}
        self._session: aiohttp.ClientSession | None = None

    def route(self, url: str, proxy: Proxy | None = None) -> Route | None:
        """The proxy a request to `url` goes through (with the request's own setting, if any)."""
        router = self.proxies
        if proxy is not None and proxy != router.proxy:
            router = self._routers.get(proxy) or self._routers.setdefault(proxy, Router(proxy))
        return router.route(url)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.limit, ssl=self.ssl, enable_cleanup_closed=True)
            timeout = aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, headers=self.headers,
                                                  auto_decompress=True, trust_env=False)
        return self._session

    async def request(self, method: str, url: str, *, data: Any = None, headers: Mapping[str, str] | None = None,
                      seconds: float | None = None, shown: str | None = None, proxy: Proxy | None = None) -> Response:
        """Send one request and read its whole answer within the client's timeout (or `seconds`).
        `shown`: the URL as messages may name it (no credentials), or None where the URL is itself
        a secret (a webhook's); `proxy`: this request's proxy setting instead of the client's."""
        started = time.monotonic()
        extra = self._extra
        if seconds is not None:
            extra = {**extra, "timeout": aiohttp.ClientTimeout(total=seconds, connect=self.connect_timeout)}
        try:
            via = self.route(url, proxy)
        except ValueError as e:  # a proxy variable that is not a proxy URL
            raise RequestRefused(f"{shown + ': ' if shown else ''}{e}", shown) from None
        if via is not None:
            extra = {**extra, "proxy": via.url}
            if via.auth is not None:
                # aiohttp sends proxy_headers with a CONNECT only; a plain request carries its own.
                if url.startswith("https:"):
                    extra["proxy_headers"] = via.auth
                else:
                    headers = {**(headers or {}), **via.auth}
        try:
            async with self.session.request(method, url, data=data, headers=headers, **extra) as resp:
                body = await resp.read()
                if resp.status == 407 and via is not None:  # only a proxy answers 407
                    raise proxy_refused(via, 407, resp.reason, shown)
                return Response(resp.status, body, resp.headers, time.monotonic() - started)
        except CAUGHT as e:
            raise transport_error(e, shown, self.timeout if seconds is None else seconds, via) from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
