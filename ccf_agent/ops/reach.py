"""`ccf-agent test`: after `check`, connect to every output and notifier the config names and say,
per target on one line, how far the agent gets: DNS, TCP, TLS (the certificate's subject, issuer and
days to expiry), authentication, the engine and its version, whether it may write, and for the
Beats protocol, what can be tested without sending events; for Kafka, the cluster's metadata.

Nothing is written anywhere: a GET / and a privileges question for Elasticsearch/OpenSearch, a HEAD
for HTTP endpoints and notifiers (a test notice only with `--send-test-notice`), a TCP and TLS
handshake for Logstash. A step that cannot be checked says so rather than passing quietly.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import orjson

from ccf_agent.alerts.notifiers import DeliveryError, deliver, endpoint
from ccf_agent.config import Config, OutputConfig, TlsConfig
from ccf_agent.credentials import Scrubber, config_secrets
from ccf_agent.httpclient import HttpClient, HttpError, Response, client_ssl_context
from ccf_agent.httpclient.auth import Endpoint, auth_header
from ccf_agent.httpclient.proxy import Route, Router
from ccf_agent.outputs.elasticsearch.client import EsClient
from ccf_agent.outputs.elasticsearch.indices import index_pattern
from ccf_agent.outputs.http.config import options_of
from ccf_agent.outputs.logstash.config import LogstashOptions
from ccf_agent.proxies import Proxy, proxy_of

STEP_TIMEOUT = 10.0

# A step's verdict: passed, failed (the target fails), or not checked (said, and not a failure).
PASS, FAIL, SKIP = "ok", "FAILED", "not checked"


@dataclass
class Step:
    name: str  # dns, tcp, tls, auth, engine, write, handshake, http
    verdict: str
    text: str

    def line(self) -> str:
        return f"{self.name} {self.text}" if self.verdict == PASS else f"{self.name} {self.verdict}: {self.text}"


@dataclass
class Target:
    kind: str  # "output logs (elasticsearch)", "notifier slack (slack)"
    where: str  # what it connects to, safe to show (no credentials; a notifier's host only)
    steps: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.verdict == FAIL for s in self.steps)

    def add(self, name: str, verdict: str, text: str) -> bool:
        """Record a step; True when the next may run."""
        self.steps.append(Step(name, verdict, text))
        return verdict != FAIL

    def line(self) -> str:
        head = "FAIL" if self.failed else "PASS"
        return f"{head}  {self.kind}  {self.where}  " + " | ".join(s.line() for s in self.steps)


# ---------------------------------------------------------------------------------- the network steps


async def dns(target: Target, host: str, port: int) -> bool:
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                       STEP_TIMEOUT)
    except (OSError, TimeoutError) as e:
        return target.add("dns", FAIL, f"'{host}' does not resolve ({getattr(e, 'strerror', None) or e})")
    addresses = sorted({str(i[4][0]) for i in infos})
    return target.add("dns", PASS, ",".join(addresses[:3]) + (" ..." if len(addresses) > 3 else ""))


async def tcp(target: Target, host: str, port: int) -> bool:
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT)
    except TimeoutError:
        return target.add("tcp", FAIL, f"no connection to {host}:{port} within {STEP_TIMEOUT:g}s")
    except OSError as e:
        return target.add("tcp", FAIL, f"cannot connect to {host}:{port}: {_os_error(e)}")
    writer.close()
    return target.add("tcp", PASS, f"{(time.monotonic() - started) * 1000:.0f}ms")


async def tls(target: Target, host: str, port: int, context: ssl.SSLContext, server_name: str | None) -> bool:
    """A verified handshake, as the output makes it; the certificate's subject, issuer and expiry."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=server_name or host), STEP_TIMEOUT)
    except ssl.SSLCertVerificationError as e:
        return target.add("tls", FAIL, f"certificate not accepted: {e.verify_message} (set tls.ca_file to the CA "
                          "that signed it, tls.server_name to the name it carries)")
    except (ssl.SSLError, ConnectionError) as e:
        return target.add("tls", FAIL, f"handshake failed ({getattr(e, 'reason', None) or e}): does it speak TLS, "
                          "does it want a client certificate (tls.cert_file)?")
    except (OSError, TimeoutError) as e:
        return target.add("tls", FAIL, f"no TLS connection: {_os_error(e)}")
    cert = writer.get_extra_info("peercert") or {}
    writer.close()
    return target.add("tls", PASS, describe_certificate(cert, time.time()))


def _os_error(e: BaseException) -> str:
    errno = getattr(e, "errno", None)  # before strerror: asyncio's says "Connect call failed (...)"
    return os.strerror(errno) if errno else getattr(e, "strerror", None) or str(e) or type(e).__name__


def describe_certificate(cert: dict[str, Any], now: float) -> str:
    """`subject CN=localhost, issuer CN=ccf test ca, expires in 12 days` from getpeercert()."""
    def name(parts: Any) -> str:
        pairs = [f"{'CN' if k == 'commonName' else 'O' if k == 'organizationName' else k}={v}"
                 for rdn in parts or () for k, v in rdn if k in ("commonName", "organizationName")]
        return ",".join(pairs) or "?"

    text = f"subject {name(cert.get('subject'))}, issuer {name(cert.get('issuer'))}"
    not_after = cert.get("notAfter")
    if not_after:
        days = (ssl.cert_time_to_seconds(not_after) - now) / 86400
        text += f", expires in {int(days)} days" if days >= 1 else f", expires in {days * 24:.0f} hours"
    return text


async def connection(target: Target, host: str, port: int, context: ssl.SSLContext | None,
                     server_name: str | None, via: Route | None) -> bool:
    """DNS, TCP and TLS to a destination, or DNS and TCP to the proxy in between."""
    if via is not None:
        proxy = urlsplit(via.url)
        phost, pport = proxy.hostname or "", proxy.port or (443 if proxy.scheme == "https" else 80)
        target.add("proxy", PASS, f"{via.shown} (from {via.source})")
        if not (await dns(target, phost, pport) and await tcp(target, phost, pport)):
            return False
        if context is not None:
            target.add("tls", SKIP, "tunnelled through the proxy; verified by the request below")
        return True
    if not (await dns(target, host, port) and await tcp(target, host, port)):
        return False
    return context is None or await tls(target, host, port, context, server_name)


def _host_port(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    return parts.hostname or "", parts.port or (443 if https else 80), https


async def http_answer(target: Target, client: HttpClient, method: str, url: str, shown: str | None,
                      proxy: Proxy | None = None) -> Response | None:
    try:
        return await client.request(method, url, seconds=STEP_TIMEOUT, shown=shown, proxy=proxy)
    except HttpError as e:
        target.add(e.kind, FAIL, str(e))
        return None


# ---------------------------------------------------------------------------------- per output type


async def elasticsearch(cfg: OutputConfig) -> list[Target]:

    client = EsClient(cfg, json=True, timeout=STEP_TIMEOUT)
    router = Router(proxy_of(cfg.options))
    try:
        return [await _es_host(cfg, client, h, router) for h in client.hosts]
    finally:
        await client.close()


async def _es_host(cfg: OutputConfig, client: Any, host: Any, router: Router) -> Target:
    target = Target(f"output {cfg.name} ({cfg.type})", host.url)
    name, port, https = _host_port(host.url)
    context = client_ssl_context(cfg.tls, cfg.name) if https else None
    if not await connection(target, name, port, context, cfg.tls.server_name, router.route(host.url)):
        return target
    resp = await _es_request(target, client, host, "GET", "/")
    if resp is None:
        return target
    if resp.status in (401, 403):
        target.add("auth", FAIL, f"{resp.status}: the credentials of output '{cfg.name}' were refused"
                   if resp.status == 401 else "403: the credentials may not even read GET /")
        return target
    info = _json(resp)
    version = info.get("version") if isinstance(info, dict) else None
    if resp.status != 200 or not isinstance(version, dict):
        target.add("engine", FAIL, f"GET / answered {resp.status}, not an Elasticsearch/OpenSearch node")
        return target
    target.add("auth", PASS, "accepted" if client.headers.get("Authorization") or host.auth else "none configured")
    distribution = version.get("distribution", "elasticsearch")
    target.add("engine", PASS, f"{distribution} {version.get('number', '?')}")
    await _may_write(target, cfg, client, host, distribution)
    return target


async def _es_request(target: Target, client: Any, host: Any, method: str, path: str, body: Any = None) -> Response | None:

    try:
        resp: Response = await client.request(host, method, path,
                                              orjson.dumps(body) if body is not None else None, STEP_TIMEOUT)
        return resp
    except HttpError as e:
        target.add(e.kind, FAIL, str(e))
        return None


async def _may_write(target: Target, cfg: OutputConfig, client: Any, host: Any, distribution: str) -> None:
    """Whether the credentials may write to the output's indices: a privileges question where the
    engine has one (Elasticsearch's _has_privileges), never a test document."""

    pattern = index_pattern(cfg.index)
    if distribution == "opensearch":
        resp = await _es_request(target, client, host, "GET", "/_plugins/_security/authinfo")
        if resp is None:
            return
        if resp.status in (400, 404):
            target.add("write", SKIP, "no security plugin: not checked (anyone may write)")
            return
        info = _json(resp)
        roles = info.get("roles") if isinstance(info, dict) else None
        target.add("write", SKIP, f"security plugin, roles {roles or '?'}: OpenSearch has no privileges check, "
                   f"so writing to {pattern} is not checked")
        return
    body = {"index": [{"names": [pattern], "privileges": ["create_doc", "create_index", "auto_configure"]}]}
    resp = await _es_request(target, client, host, "POST", "/_security/user/_has_privileges", body)
    if resp is None:
        return
    verdict, text = has_privileges_verdict(resp.status, _json(resp), pattern)
    target.add("write", verdict, text)


def has_privileges_verdict(status: int, answer: Any, pattern: str) -> tuple[str, str]:
    """Elasticsearch's answer to _has_privileges for the output's index pattern, as a verdict."""
    if status != 200 or not isinstance(answer, dict):
        return SKIP, f"security is off or the question was refused ({status}): not checked"
    granted = (answer.get("index") or {}).get(pattern) or {}
    if not granted.get("create_doc"):
        return FAIL, f"may not write documents to {pattern} (create_doc not granted)"
    if not (granted.get("create_index") or granted.get("auto_configure")):
        return FAIL, f"may write to existing {pattern} indices but not create them (create_index or auto_configure)"
    return PASS, f"may create documents and indices in {pattern}"


def _json(resp: Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


async def logstash(cfg: OutputConfig) -> list[Target]:

    opts = cfg.options if isinstance(cfg.options, LogstashOptions) else LogstashOptions()
    use_tls = opts.tls_enabled if opts.tls_enabled is not None else cfg.tls.present or cfg.tls != TlsConfig()
    context = client_ssl_context(cfg.tls, cfg.name) if use_tls else None
    out = []
    for h in cfg.hosts:
        host, _, port = h.rpartition(":")
        target = Target(f"output {cfg.name} ({cfg.type})", h)
        if await connection(target, host, int(port), context, cfg.tls.server_name, None):
            # The Beats protocol acknowledges windows of events; an empty window is never answered,
            # so there is no handshake to test without shipping an event.
            target.add("handshake", SKIP, "the Beats protocol has no handshake without events: TCP"
                       + (" and TLS" if context else "") + " only")
        out.append(target)
    return out


async def http_output(cfg: OutputConfig) -> list[Target]:

    opts = options_of(cfg)
    headers = dict(opts.headers)
    header = auth_header(cfg)
    if header:
        headers["Authorization"] = header
    out = []
    async with HttpClient(ssl_context=client_ssl_context(cfg.tls, cfg.name), headers=headers, timeout=STEP_TIMEOUT,
                          server_hostname=cfg.tls.server_name, proxy=opts.proxy) as client:
        for h in cfg.hosts:
            ep = Endpoint.parse(h)
            target = Target(f"output {cfg.name} ({cfg.type})", ep.shown)
            out.append(target)
            name, port, https = _host_port(ep.url)
            context = client_ssl_context(cfg.tls, cfg.name) if https else None
            if not await connection(target, name, port, context, cfg.tls.server_name, client.route(ep.url)):
                continue
            resp = await http_answer(target, client, "HEAD", ep.url, ep.shown)
            if resp is not None:
                _http_verdict(target, resp, "HEAD")
    return out


def _http_verdict(target: Target, resp: Response, method: str) -> None:
    if resp.status in (401, 403):
        target.add("auth", FAIL, f"{method} answered {resp.status}: the credentials were refused")
    elif resp.status == 407:
        target.add("proxy", FAIL, "the proxy wants credentials (407)")
    else:
        # Any other answer proves the endpoint is there; a HEAD it does not serve is 404/405.
        target.add("http", PASS, f"{method} answered {resp.status} (nothing sent)")


async def file_output(cfg: OutputConfig) -> list[Target]:
    target = Target(f"output {cfg.name} ({cfg.type})", cfg.path or "?")
    problem = _unwritable(cfg.path or "")
    target.add("write", FAIL if problem else PASS, problem or "writable")
    return [target]


def _unwritable(path: str) -> str | None:
    directory = os.path.dirname(os.path.abspath(path))
    if os.access(path, os.W_OK) or (not os.path.exists(path) and os.access(directory, os.W_OK)):
        return None
    return f"cannot write {path} (or create it in {directory})"


async def kafka(cfg: OutputConfig) -> list[Target]:
    """Kafka: DNS and TCP to each bootstrap host, then the cluster's metadata (its brokers, and the
    topic when the output names a fixed one), with aiokafka when it is installed."""
    targets = []
    for h in cfg.hosts or getattr(cfg.options, "brokers", ()):  # the kafka output's are its `brokers`
        host, _, port = h.rpartition(":")
        target = Target(f"output {cfg.name} ({cfg.type})", h)
        targets.append(target)
        if not await connection(target, host, int(port), None, None, None):
            continue
        try:
            from aiokafka import AIOKafkaClient
            from aiokafka.errors import KafkaError
        except ImportError:
            target.add("metadata", SKIP, "aiokafka is not installed: TCP only")
            continue
        if cfg.tls.present or getattr(cfg.options, "sasl", None):
            target.add("metadata", SKIP, "TLS/SASL listeners are not tested yet: TCP only")
            continue
        client = AIOKafkaClient(bootstrap_servers=h, request_timeout_ms=int(STEP_TIMEOUT * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), STEP_TIMEOUT)
            brokers = client.cluster.brokers()
            topic = getattr(cfg.options, "topic", None)
            topic = getattr(topic, "literal", topic)  # the kafka output's Template: a fixed name, or None
            text = f"{len(brokers)} brokers"
            if isinstance(topic, str) and "%{" not in topic:
                await asyncio.wait_for(client.fetch_all_metadata(), STEP_TIMEOUT)
                known = topic in client.cluster.topics()
                text += f", topic {topic} {'exists' if known else 'does not exist (created on first use if allowed)'}"
            target.add("metadata", PASS, text)
        except (KafkaError, OSError, TimeoutError) as e:
            target.add("metadata", FAIL, f"no metadata from {h}: {type(e).__name__}: {e}")
        finally:
            await client.close()
    return targets


async def other(cfg: OutputConfig) -> list[Target]:
    target = Target(f"output {cfg.name} ({cfg.type})", ", ".join(cfg.hosts) or "-")
    target.add("connect", SKIP, f"no connection test for outputs of type {cfg.type} yet")
    return [target]


OUTPUT_TESTS: dict[str, Callable[[OutputConfig], Awaitable[list[Target]]]] = {
    "elasticsearch": elasticsearch, "logstash": logstash, "http": http_output, "file": file_output, "kafka": kafka,
}


# ---------------------------------------------------------------------------------- notifiers


async def notifier(ncfg: Any, alerts: Any, send: bool) -> Target:

    url = endpoint(ncfg)
    name, port, https = _host_port(url)
    target = Target(f"notifier {ncfg.name} ({ncfg.type})", f"{urlsplit(url).scheme}://{name}:{port}")  # the
    # rest of a webhook URL is its secret
    async with HttpClient(timeout=STEP_TIMEOUT, proxy=ncfg.proxy) as client:
        context = ssl.create_default_context() if https else None
        if not await connection(target, name, port, context, None, client.route(url)):
            return target
        if send:
            try:
                await deliver(client, ncfg, sample_notice(ncfg.name, alerts), time.time())
            except DeliveryError as e:
                target.add("notice", FAIL, str(e))
            else:
                target.add("notice", PASS, "test notice delivered")
            return target
        resp = await http_answer(target, client, "HEAD", url, None, ncfg.proxy)
        if resp is not None:
            _http_verdict(target, resp, "HEAD")
    return target


def sample_notice(name: str, alerts: Any) -> dict[str, Any]:
    now = time.time()
    return {"id": uuid.uuid4().hex, "notifier": name, "rule": "ccf-agent test", "status": "firing", "repeat": False,
            "created": now, "severity": "info", "labels": {"alertname": "ccf-agent test", "severity": "info"},
            "annotations": {"summary": "ccf-agent test: this notifier is reachable (sent by `ccf-agent test "
                                       "--send-test-notice`)"},
            "value": 0.0, "count": 0, "starts_at": now, "ends_at": None, "service": alerts.service,
            "environment": alerts.environment, "generator_url": alerts.external_url}


# ---------------------------------------------------------------------------------- the command


async def probe_targets(config: Config, send_notice: bool = False) -> list[Target]:
    jobs: list[Awaitable[list[Target]]] = [OUTPUT_TESTS.get(o.type, other)(o) for o in config.outputs.values()]
    if config.alerts is not None:
        for n in config.alerts.notifiers.values():
            jobs.append(_one(notifier(n, config.alerts, send_notice)))
    results = await asyncio.gather(*jobs)
    return [t for group in results for t in group]


async def _one(job: Awaitable[Target]) -> list[Target]:
    return [await job]


def run_test(config: Config, out: TextIO, send_notice: bool = False) -> int:
    """Print a line per target; 0 when none failed, 1 naming those that did."""
    scrub = Scrubber(config_secrets(config))
    targets = asyncio.run(probe_targets(config, send_notice))
    for t in targets:
        print(scrub(t.line()), file=out)
    failed = [t for t in targets if t.failed]
    if failed:
        names = ", ".join(dict.fromkeys(t.kind.split(" (")[0] for t in failed))
        print(f"{len(failed)} of {len(targets)} targets failed: {names}", file=out)
        return 1
    print(f"all {len(targets)} targets reachable ({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)", file=out)
    return 0

