"""The one HTTP layer: every part of the agent that speaks HTTP (the Elasticsearch and HTTP outputs,
`ccf-agent setup`, the report, alert notifiers) sends its requests through `HttpClient`.

- `client`: the session (TLS, default headers, timeouts, connection limits, where proxies plug in),
  `Response`, and Retry-After read and capped in one place.
- `errors`: one exception hierarchy, and the one function that maps aiohttp's and the OS's errors
  into it with a message written for an operator.
- `auth`: the Authorization header from an output's credentials or a URL's `user:password@`.
- `tls`: the client TLS context, verified by default.
- `proxy`: which proxy a request goes through (`proxy_url`, or HTTPS_PROXY/HTTP_PROXY/NO_PROXY).
"""

from ccf_agent.httpclient.client import RETRY_AFTER_MAX, HttpClient, Response, parse_retry_after
from ccf_agent.httpclient.errors import (
    ConnectError,
    Disconnected,
    DnsError,
    HttpError,
    ProxyError,
    RequestRefused,
    Timeout,
    TlsError,
    TransportError,
    transport_error,
)
from ccf_agent.httpclient.tls import client_ssl_context
from ccf_agent.proxies import Proxy

__all__ = [
    "RETRY_AFTER_MAX",
    "ConnectError",
    "Disconnected",
    "DnsError",
    "HttpClient",
    "HttpError",
    "Proxy",
    "ProxyError",
    "RequestRefused",
    "Response",
    "Timeout",
    "TlsError",
    "TransportError",
    "client_ssl_context",
    "parse_retry_after",
    "transport_error",
]
