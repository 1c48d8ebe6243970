"""One exception hierarchy for HTTP trouble, and the one place that maps aiohttp's and the OS's
errors into it (in the manner of httpx's `_exceptions.py`).

    HttpError                      anything that kept a request from a usable answer
    └── TransportError             no HTTP answer at all
        ├── TlsError               certificate not trusted, handshake refused
        ├── DnsError               the host name does not resolve
        ├── ConnectError           no connection (refused, unreachable): never reached the server
        ├── Timeout                no answer in time
        │   └── ConnectTimeout     no connection in time: never reached the server
        ├── Disconnected           the connection was cut before the answer
        ├── ProxyError             the proxy refused to forward it (407, a CONNECT refused)
        └── RequestRefused         the client itself refused to send it (a header it will not write)

Each carries `kind` (what /status and the outputs' `problem` say), a message written for an
operator, and `maybe_received`: False only when the server certainly never saw the request, which
is what tells a resend that cannot be deduplicated from one that might store records twice.
Statuses are not exceptions here: what a status means (retry, split, dead-letter) is the
protocol's business, read from `Response`.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

if TYPE_CHECKING:
    from ccf_agent.httpclient.proxy import Route


class HttpError(Exception):
    """A request without a usable answer; `str(e)` is the operator's message (never a credential,
    as long as `where` is a URL made safe to show, or None where the URL itself is a secret)."""

    kind = "http"
    maybe_received = True

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


class TransportError(HttpError):
    kind = "connect"


class TlsError(TransportError):
    kind = "tls"
    maybe_received = False


class DnsError(TransportError):
    kind = "dns"
    maybe_received = False


class ConnectError(TransportError):
    kind = "connect"
    maybe_received = False


class Timeout(TransportError):
    kind = "timeout"


class ConnectTimeout(Timeout):
    """No connection within the time: nothing can have been received."""

    maybe_received = False


class Disconnected(TransportError):
    kind = "connect"


class RequestRefused(TransportError):
    kind = "refused"
    maybe_received = False


class ProxyError(TransportError):
    """The proxy answered in place of the destination: it never forwarded the request."""

    kind = "proxy"
    maybe_received = False


def proxy_refused(via: Route, status: int, reason: str | None, where: str | None) -> ProxyError:
    to = f" to {where}" if where else ""
    # 407 is the standard answer; tinyproxy answers a wrong password with 401.
    hint = (f": check the user:password@ of {via.source}" if status in (401, 407) and via.auth is not None else
            f": the proxy wants credentials; give them in {via.source} as http://user:password@host:port"
            if status in (401, 407) else f": is {_host(where) or 'the destination'} allowed through the proxy?")
    return ProxyError(f"proxy {via.shown} (from {via.source}) refused the request{to}: {status} {reason or ''}"
                      .rstrip() + hint, where)


# What transport_error() maps: anything else is a bug, not a network condition, and propagates.
CAUGHT: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError, ValueError)


def transport_error(e: BaseException, where: str | None, timeout: float, via: Route | None = None) -> TransportError:
    """The error `e` raised while sending a request to `where` (a URL safe to show, or None when
    the URL is a secret, as a webhook's is), through the proxy `via` if any, as one of this
    module's errors."""
    at = f" {where}" if where else ""
    of = f" of {where}" if where else ""
    if via is not None and isinstance(e, aiohttp.ClientHttpProxyError):
        return proxy_refused(via, e.status, e.message, where)
    if via is not None and isinstance(e, aiohttp.ClientProxyConnectionError):
        err = e.os_error.strerror if e.os_error and e.os_error.strerror else type(e.os_error).__name__
        return ConnectError(f"cannot connect to proxy {via.shown} (from {via.source}): {err}; is the proxy up "
                            "and its address right?", where)
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert = e.certificate_error
        detail = getattr(cert, "verify_message", None) or str(cert)
        return TlsError(f"TLS certificate{of} is not trusted ({detail}): set tls.ca_file to the CA that "
                        "signed the server's certificate (or tls.server_name to the name it carries)", where)
    if isinstance(e, ssl.SSLCertVerificationError):
        return TlsError(f"TLS certificate{of} is not trusted ({e.verify_message}): set tls.ca_file to "
                        "the CA that signed the server's certificate", where)
    if isinstance(e, aiohttp.ClientSSLError | ssl.SSLError):
        reason = getattr(getattr(e, "os_error", None), "reason", None) or getattr(e, "reason", None) or e
        return TlsError(f"TLS handshake with{at or ' the server'} failed ({reason}): check that it speaks "
                        "https, and whether it requires a client certificate (tls.cert_file, tls.key_file)",
                        where)
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        host = _host(where)
        return DnsError(f"unknown host: '{host}' in {where} does not resolve; check the configured hosts"
                        if host else "unknown host: the name does not resolve", where)
    if isinstance(e, aiohttp.ClientConnectorError):
        err = e.os_error.strerror if e.os_error and e.os_error.strerror else str(e.os_error or e)
        if not where:  # aiohttp's own text names the host and port: keep to the OS's words
            err = e.os_error.strerror if e.os_error and e.os_error.strerror else type(e.os_error).__name__
        return ConnectError(f"cannot connect to {where}: {err}; is the server up and the port right?"
                            if where else f"cannot connect: {err}", where)
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(f"no connection to{at or ' the server'} within {timeout:g}s", where)
    if isinstance(e, TimeoutError | aiohttp.ServerTimeoutError):
        return Timeout(f"{where} did not answer within {timeout:g}s" if where else f"timed out after {timeout:g}s",
                       where)
    if isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError):
        hint = ""
        if where and where.startswith("https://"):
            # With TLS 1.3 a server refusing a missing or unknown client certificate just hangs up.
            hint = (" (a server that requires a client certificate hangs up like this: check tls.cert_file "
                    "and tls.key_file)")
        return Disconnected(f"connection to{at or ' the server'} was cut before an answer "
                            f"({type(e).__name__}){hint}", where)
    if isinstance(e, ValueError):
        # aiohttp refused to build the request (a header value it will not write): nothing was sent.
        return RequestRefused(f"{where}: the request was refused before sending: {e}" if where
                              else f"the request was refused before sending ({type(e).__name__})", where)
    return Disconnected(f"{where}: {type(e).__name__}: {e}" if where else type(e).__name__, where)


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None
