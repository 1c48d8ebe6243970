"""The cluster of an Elasticsearch output, over the HTTP layer: its hosts, TLS and credentials.

One client for every conversation with the cluster: the output's bulk requests, its probes and
node discovery, and the admin requests of `ccf-agent setup` and `ccf-agent report` (`Cluster`).

Hosts: requests go round robin over the hosts in rotation. A host that fails (no connection,
502/503/504) is taken out when there is another, and comes back only after a `GET /` succeeds
(`HostPool.probe`), never on live traffic. Discovery (off by default) adds the cluster's HTTP nodes
other than dedicated cluster managers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from ccf_agent.config import OutputConfig
from ccf_agent.credentials import Scrubber, output_secrets
from ccf_agent.httpclient import HttpClient, HttpError, Response, client_ssl_context
from ccf_agent.httpclient.auth import Endpoint, auth_header
from ccf_agent.outputs.elasticsearch.bulk import RequestFailed, request_failed
from ccf_agent.proxies import proxy_of

log = logging.getLogger("ccf_agent.outputs.elasticsearch")

PROBE_TIMEOUT = 5.0


@dataclass
class Host:
    url: str  # scheme://host:port[/prefix], never with credentials: safe to print
    auth: str | None = None  # from user:password@ in the configured URL
    alive: bool = True
    failures: int = 0
    retry_at: float = 0.0  # monotonic: next probe of a host taken out
    discovered: bool = False

    @classmethod
    def parse(cls, url: str, discovered: bool = False) -> Host:
        endpoint = Endpoint.parse(url)
        parts = urlsplit(endpoint.url)
        return cls(f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", endpoint.auth, discovered=discovered)


def parse_publish_address(address: str, scheme: str) -> str | None:
    """`10.0.0.5:9200`, `es1.example/10.0.0.5:9200` or `[::1]:9200` to a base URL."""
    name, _, rest = address.rpartition("/") if "/" in address else ("", "", address)
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    # A hostname, when the node publishes one, is what its certificate names.
    return f"{scheme}://{name or host}:{port}"


def discovered_urls(info: Any, scheme: str) -> list[str]:
    """Base URLs of the HTTP nodes in a `GET /_nodes/http` answer that can take bulk requests."""
    nodes = info.get("nodes", {}) if isinstance(info, dict) else {}
    out = []
    for node in nodes.values():
        roles = set(node.get("roles") or ())
        if roles and roles <= {"master", "cluster_manager", "voting_only"}:
            continue  # dedicated cluster managers should not carry indexing traffic
        address = (node.get("http") or {}).get("publish_address")
        url = parse_publish_address(address, scheme) if isinstance(address, str) else None
        if url and url not in out:
            out.append(url)
    return sorted(out)


class EsClient:
    """Requests to the output's hosts, with its TLS and credentials (`json`: admin requests, else
    bulk NDJSON, gzipped when the output says so)."""

    def __init__(self, cfg: OutputConfig, json: bool = False, timeout: float | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.hosts = [Host.parse(h) for h in cfg.hosts]
        self.seeds = [h.url for h in self.hosts]
        self._next_host = 0
        self.hosts_changed = asyncio.Event()
        self.headers = {"Content-Type": "application/json" if json else "application/x-ndjson"}
        if cfg.compression == "gzip" and not json:
            self.headers["Content-Encoding"] = "gzip"
        header = auth_header(cfg)
        if header:
            self.headers["Authorization"] = header
        needs_tls = any(h.url.startswith("https://") for h in self.hosts)
        self.timeout = cfg.timeout if timeout is None else timeout
        self.http = HttpClient(
            ssl_context=client_ssl_context(cfg.tls, cfg.name) if needs_tls else False, headers=self.headers,
            timeout=self.timeout, connect_timeout=min(10.0, self.timeout),
            limit=cfg.max_in_flight * max(1, len(self.hosts)) + 4, server_hostname=cfg.tls.server_name,
            proxy=proxy_of(cfg.options))

    async def close(self) -> None:
        await self.http.close()

    def _auth(self, host: Host) -> dict[str, str] | None:
        # A URL's own user:password@ applies when the output has no credentials of its own.
        return {"Authorization": host.auth} if host.auth and "Authorization" not in self.headers else None

    async def request(self, host: Host, method: str, path: str, data: Any = None,
                      seconds: float | None = None) -> Response:
        """One request to `host`; raises the HTTP layer's TransportError."""
        return await self.http.request(method, host.url + path, data=data, headers=self._auth(host),
                                       seconds=seconds, shown=host.url)

    async def get_json(self, host: Host, path: str, seconds: float) -> Any:
        """A GET answered 200 with JSON within `seconds`; RequestFailed for any other answer,
        TransportError without one, ValueError for a body that is not JSON."""
        resp = await self.request(host, "GET", path, seconds=seconds)
        if resp.status != 200:
            raise request_failed(resp.status, resp.body, host.url, self.name, path.split("?")[0], None)
        return resp.json()

    # ------------------------------------------------------------------ hosts

    def pick(self) -> Host:
        """Round robin over the hosts in rotation; with none, the one due for a probe soonest."""
        n = len(self.hosts)
        for k in range(n):
            h = self.hosts[(self._next_host + k) % n]
            if h.alive:
                self._next_host = (self._next_host + k + 1) % n
                return h
        return min(self.hosts, key=lambda h: h.retry_at)

    def failed(self, host: Host, why: str) -> None:
        host.failures += 1
        host.retry_at = time.monotonic() + min(30.0, 0.5 * 2 ** min(host.failures, 6)) * random.uniform(0.8, 1.0)
        if len(self.hosts) > 1 and host.alive:
            host.alive = False
            log.warning("output %s: host %s taken out of rotation (%s); probing it until it answers",
                        self.name, host.url, why)
            self.hosts_changed.set()

    async def probe(self) -> None:
        """Until cancelled: a host taken out comes back only after a `GET /` succeeds."""
        while True:
            down = [h for h in self.hosts if not h.alive]
            if not down:
                self.hosts_changed.clear()
                await self.hosts_changed.wait()
                continue
            now = time.monotonic()
            due = [h for h in down if h.retry_at <= now]
            for h in due:
                try:
                    await self.get_json(h, "/", PROBE_TIMEOUT)
                except (RequestFailed, HttpError, ValueError) as e:
                    h.failures += 1
                    h.retry_at = time.monotonic() + min(30.0, 0.5 * 2 ** min(h.failures, 6))
                    log.debug("output %s: probe of %s failed: %s", self.name, h.url, e)
                else:
                    h.alive, h.failures = True, 0
                    log.info("output %s: host %s answers again; back in rotation", self.name, h.url)
            if not due:
                wait = min(h.retry_at for h in down) - now
                self.hosts_changed.clear()
                try:
                    async with asyncio.timeout(max(0.05, wait)):
                        await self.hosts_changed.wait()
                except TimeoutError:
                    pass

    async def discover(self, interval: float, scrub: Scrubber) -> None:
        """Until cancelled: node discovery every `interval` seconds."""
        scheme = urlsplit(self.seeds[0]).scheme
        auth = self.hosts[0].auth
        while True:
            host = self.pick()
            try:
                info = await self.get_json(host, "/_nodes/http?filter_path=nodes.*.roles,nodes.*.http.publish_address",
                                           min(self.cfg.timeout, 10.0))
                self.set_discovered(discovered_urls(info, scheme), auth)
            except (RequestFailed, HttpError, ValueError) as e:
                log.warning("output %s: node discovery through %s failed: %s", self.name, host.url, scrub(str(e)))
            await asyncio.sleep(interval)

    def set_discovered(self, urls: Sequence[str], auth: str | None) -> None:
        known = {h.url for h in self.hosts}
        keep = [h for h in self.hosts if not h.discovered or h.url in urls]
        added = [Host(u, auth, discovered=True) for u in urls if u not in known]
        if added or len(keep) != len(self.hosts):
            self.hosts = keep + added
            self._next_host = 0
            log.info("output %s: hosts now %s", self.name, ", ".join(h.url for h in self.hosts))


# ---------------------------------------------------------------------------------- admin requests


class SetupError(Exception):
    pass


class Cluster:
    """The output's cluster for a handful of sequential admin requests (`ccf-agent setup`, the
    report): the first host that answers `GET /` serves them all."""

    def __init__(self, cfg: OutputConfig) -> None:
        self.cfg = cfg
        self.client = EsClient(cfg, json=True, timeout=min(cfg.timeout, 60.0))
        self.redact = Scrubber(output_secrets(cfg))
        self.host: Host | None = None
        self.url = ""
        self.engine = ""  # "opensearch" or "elasticsearch"
        self.version = ""

    async def close(self) -> None:
        await self.client.close()

    async def connect(self) -> None:
        problems = []
        for host in self.client.hosts:
            try:
                status, info = await self._call(host, "GET", "/")
            except HttpError as e:
                problems.append(str(e))
                continue
            if status == 401:
                problems.append(f"authentication failed (401 from {host.url}): check the output's credentials")
                continue
            if status != 200 or not isinstance(info, dict):
                problems.append(f"{host.url} answered {status} to GET /")
                continue
            version = info.get("version") or {}
            self.host, self.url = host, host.url
            self.engine = "opensearch" if version.get("distribution") == "opensearch" else "elasticsearch"
            self.version = str(version.get("number", "?"))
            return
        raise SetupError(self.redact("; ".join(problems) or "no hosts configured"))

    async def _call(self, host: Host, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        resp = await self.client.request(host, method, path, data)
        try:
            return resp.status, resp.json() if resp.body else None
        except orjson.JSONDecodeError:
            return resp.status, resp.body.decode("utf-8", "replace")

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.host is not None, "connect() first"
        try:
            return await self._call(self.host, method, path, body)
        except HttpError as e:
            raise SetupError(self.redact(str(e))) from e

    async def put(self, path: str, body: Any, what: str) -> None:
        status, answer = await self.call("PUT", path, body)
        if status not in (200, 201):
            raise SetupError(self.redact(f"{what}: {status} {error_text(answer)}"))


def error_text(answer: Any) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        err = answer["error"]
        return f"{err.get('type', '')}: {err.get('reason', '')}"
    return str(answer)[:300]
