"""Proxies, through a real one (tinyproxy on 127.0.0.1): plain HTTP to the real OpenSearch node,
CONNECT tunnels to a TLS endpoint in front of it, proxy authentication, the environment's
HTTPS_PROXY/HTTP_PROXY/NO_PROXY, `proxy_url: none`, and proxies that refuse."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ccf_agent.alerts.notifiers import post
from ccf_agent.config.alerts import NotifierConfig
from ccf_agent.httpclient import ConnectError, HttpClient, Proxy, ProxyError, client_ssl_context
from ccf_agent.samples import lines
from tests.faults import FaultProxy
from tests.harness import AgentProcess, Engine, agent_config, free_port, wait_until, write_lines
from tests.pki import Pki
from tests.tinyproxy import TinyProxy

pytestmark = pytest.mark.engine

PASSWORD = "pr0xy-S3cret-pw"


@pytest.fixture
def proxy() -> Iterator[TinyProxy]:
    with TinyProxy() as p:
        yield p


@pytest.fixture
def auth_proxy() -> Iterator[TinyProxy]:
    with TinyProxy(auth=("ccf", PASSWORD)) as p:
        yield p


def shipping(tmp_path: Path, engine: Engine, n: int = 1_000, **output: Any) -> dict[str, Any]:
    (tmp_path / "logs").mkdir(exist_ok=True)
    write_lines(tmp_path / "logs" / "combined.log", lines(n))
    return agent_config(engine, [str(tmp_path / "logs" / "*.log")], backoff_max="1s", **output)


def output_status(agent: AgentProcess, name: str = "logs") -> dict[str, Any]:
    return next(o for o in (agent.status() or {"outputs": []})["outputs"] if o["name"] == name)


def get(url: str, proxy: Proxy | None = None, ca: Path | None = None) -> int:
    """One GET through a client built now (so it reads the environment as it is now)."""
    async def go() -> int:
        from ccf_agent.config import TlsConfig

        ctx = client_ssl_context(TlsConfig(ca_file=str(ca)), "test") if ca else False
        async with HttpClient(ssl_context=ctx, proxy=proxy, timeout=20) as client:
            return (await client.request("GET", url, shown=url)).status
    return asyncio.run(go())


# ------------------------------------------------------------------------------ through the proxy


def test_records_reach_the_node_through_proxy_url_over_plain_http(
        tmp_path: Path, engine: Engine, proxy: TinyProxy, agents: list[AgentProcess]) -> None:
    agent = AgentProcess(tmp_path, shipping(tmp_path, engine, proxy_url=proxy.url)).start()
    agents.append(agent)
    agent.wait_caught_up()

    assert engine.tally(1_000)["distinct"] == 1_000
    assert any(r.startswith(f"POST {engine.url}/_bulk") for r in proxy.requests())
    assert agent.stop() == 0


def test_https_goes_through_a_connect_tunnel_with_proxy_authentication_never_shown(
        tmp_path: Path, engine: Engine, pki: Pki, tls_node: FaultProxy, auth_proxy: TinyProxy,
        agents: list[AgentProcess]) -> None:
    cfg = shipping(tmp_path, engine, tls={"ca_file": str(pki.ca)}, proxy_url="http://ccf:${PROXY_PASSWORD}@"
                   f"127.0.0.1:{auth_proxy.port}")
    for out in cfg["outputs"].values():
        out["hosts"] = [tls_node.url]
    agent = AgentProcess(tmp_path, cfg, env={"PROXY_PASSWORD": PASSWORD}).start()
    agents.append(agent)
    agent.wait_caught_up()

    assert engine.tally(1_000)["distinct"] == 1_000
    port = tls_node.url.rpartition(":")[2]
    assert f"CONNECT localhost:{port} HTTP/1.1" in auth_proxy.requests()
    assert all(r.path for r in tls_node.requests())  # the TLS endpoint saw the bulks: end-to-end TLS
    assert PASSWORD not in agent.log_path.read_text() and PASSWORD not in str(agent.status())
    assert agent.stop() == 0


def test_the_environments_http_proxy_is_used_without_proxy_url(
        es_url: str, proxy: TinyProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert get(es_url + "/") == 200
    assert f"GET {es_url}/ HTTP/1.1" in proxy.requests()


def test_the_environments_https_proxy_tunnels_https(
        tls_node: FaultProxy, pki: Pki, auth_proxy: TinyProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", auth_proxy.url_with("ccf", PASSWORD))
    assert get(tls_node.url + "/", ca=pki.ca) == 200
    assert any(r.startswith("CONNECT localhost:") for r in auth_proxy.requests())


def test_no_proxy_bypasses_the_environments_proxy(es_url: str, proxy: TinyProxy,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert get(es_url + "/") == 200
    assert proxy.requests() == []


def test_proxy_url_none_ignores_the_environment(es_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert get(es_url + "/", Proxy.parse("none")) == 200


def test_a_notifier_posts_through_its_proxy_url(auth_proxy: TinyProxy) -> None:
    got: list[bytes] = []

    async def go() -> None:
        async def hook(request: web.Request) -> web.Response:
            got.append(await request.read())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook/T0KEN", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        cfg = NotifierConfig("hook", "webhook", f"http://127.0.0.1:{port}/hook/T0KEN",
                             proxy=Proxy.parse(auth_proxy.url_with("ccf", PASSWORD)))
        try:
            async with HttpClient() as client:
                await post(client, cfg, b'{"alert":"x"}', {"Content-Type": "application/json"})
        finally:
            await runner.cleanup()

    asyncio.run(go())
    assert got == [b'{"alert":"x"}']
    assert any(r.startswith("POST http://127.0.0.1:") for r in auth_proxy.requests())


# ------------------------------------------------------------------------------ proxies that refuse


def refused(url: str, proxy: Proxy, ca: Path | None = None) -> Exception:
    with pytest.raises(Exception) as err:  # noqa: PT011 - the type is asserted by each test
        get(url, proxy, ca)
    return err.value


def test_a_proxy_wanting_credentials_is_a_proxy_error_saying_where_to_give_them(
        es_url: str, auth_proxy: TinyProxy) -> None:
    e = refused(es_url + "/", Proxy.parse(auth_proxy.url))
    assert isinstance(e, ProxyError) and not e.maybe_received
    assert str(e) == (f"proxy {auth_proxy.url} (from proxy_url) refused the request to {es_url}/: 407 Proxy "
                      "Authentication Required: the proxy wants credentials; give them in proxy_url as "
                      "http://user:password@host:port")


def test_a_wrong_proxy_password_is_a_proxy_error_for_a_connect_tunnel(
        tls_node: FaultProxy, pki: Pki, auth_proxy: TinyProxy) -> None:
    e = refused(tls_node.url + "/", Proxy.parse(auth_proxy.url_with("ccf", "wrong-pw-123")), pki.ca)
    assert isinstance(e, ProxyError)
    assert str(e).startswith(f"proxy http://***@127.0.0.1:{auth_proxy.port} (from proxy_url) refused the request")
    assert "check the user:password@ of proxy_url" in str(e) and "wrong-pw-123" not in str(e)


def test_a_proxy_that_denies_the_destination_says_so(tls_node: FaultProxy, pki: Pki) -> None:
    with TinyProxy(deny_all=True) as denying:
        e = refused(tls_node.url + "/", Proxy.parse(denying.url), pki.ca)
    assert isinstance(e, ProxyError)
    assert "403" in str(e) and "allowed through the proxy" in str(e)


def test_a_proxy_that_is_down_is_a_connect_error_naming_the_proxy(es_url: str) -> None:
    port = free_port()
    e = refused(es_url + "/", Proxy.parse(f"http://ccf:{PASSWORD}@127.0.0.1:{port}"))
    assert isinstance(e, ConnectError)
    assert str(e).startswith(f"cannot connect to proxy http://***@127.0.0.1:{port} (from proxy_url)")
    assert PASSWORD not in str(e)


def test_the_daemon_reports_a_refusing_proxy_and_keeps_running(
        tmp_path: Path, engine: Engine, pki: Pki, tls_node: FaultProxy, auth_proxy: TinyProxy,
        agents: list[AgentProcess]) -> None:
    cfg = shipping(tmp_path, engine, n=50, tls={"ca_file": str(pki.ca)},
                   proxy_url=auth_proxy.url_with("ccf", "wrong-pw-123"))
    for out in cfg["outputs"].values():
        out["hosts"] = [tls_node.url]
    agent = AgentProcess(tmp_path, cfg).start()
    agents.append(agent)
    wait_until(lambda: output_status(agent)["problem"] == "proxy", 60, "the proxy's refusal in the status")

    message = output_status(agent)["last_error"]
    assert "refused the request" in message and "check the user:password@ of proxy_url" in message
    assert "wrong-pw-123" not in agent.log_path.read_text() and "wrong-pw-123" not in str(agent.status())
    assert agent.alive and engine.count() == 0
    assert agent.stop() == 0
