"""`ccf-agent test -c FILE` as an operator runs it: against the real OpenSearch node, the go-lumber
server, TLS endpoints with a good, an expired and a wrong-host certificate, a server refusing the
password, and a webhook that must not get a notice unless asked."""

from __future__ import annotations

import asyncio
import base64
import calendar
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web

from ccf_agent.ops.reach import FAIL, PASS, SKIP, describe_certificate, has_privileges_verdict
from tests.faults import FaultProxy
from tests.harness import ROOT, free_port
from tests.lumber import server as lumber
from tests.pki import Pki
from tests.tinyproxy import TinyProxy

pytestmark = pytest.mark.engine

RIGHT, WRONG = "right-pa55word", "wr0ng-pa55word"


def tls_endpoint(es_url: str, context: Any) -> FaultProxy:
    p = FaultProxy(es_url, ssl_context=context, host="localhost")
    p.start()
    return p


class Server:
    """A small aiohttp server in its own thread: an engine-like GET / behind Basic auth
    (`ccf:RIGHT`), and a webhook that counts what it is sent."""

    def __init__(self) -> None:
        self.posts: list[bytes] = []
        self.heads = 0
        self._loop = asyncio.new_event_loop()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_route("HEAD", "/hook/{token}", self._head)
        app.router.add_post("/hook/{token}", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _root(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"ccf:{RIGHT}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": {"type": "security_exception"}}, status=401)
        return web.json_response({"version": {"number": "8.15.0"}})

    async def _head(self, request: web.Request) -> web.Response:
        self.heads += 1
        return web.Response(status=405)

    async def _post(self, request: web.Request) -> web.Response:
        self.posts.append(await request.read())
        return web.Response(text="ok")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


def run_test(tmp_path: Path, outputs: dict[str, Any], notifiers: dict[str, Any] | None = None,
             *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    (tmp_path / "logs").mkdir(exist_ok=True)
    cfg: dict[str, Any] = {"state_dir": str(tmp_path / "state"),
                           "inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")]}],
                           "outputs": outputs}
    if notifiers:
        cfg["alerts"] = {"notifiers": notifiers}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "ccf_agent", "test", "-c", str(path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def line_of(lines: list[str], target: str) -> str:
    found = [x for x in lines if f"  {target} (" in x]
    assert len(found) == 1, lines
    return found[0]


def test_the_real_node_passes_with_engine_version_and_an_honest_privileges_verdict(
        tmp_path: Path, es_url: str) -> None:
    code, lines = run_test(tmp_path, {"logs": {"type": "elasticsearch", "hosts": [es_url], "index": "ccf-logs"}})

    assert code == 0, lines
    line = line_of(lines, "output logs")
    assert line.startswith(f"PASS  output logs (elasticsearch)  {es_url}  dns 127.0.0.1 | tcp ")
    assert "| auth none configured | engine opensearch 2." in line
    assert line.endswith("| write not checked: no security plugin: not checked (anyone may write)")
    assert lines[-1].startswith("all 1 targets reachable")


def test_a_good_certificate_shows_subject_issuer_and_days_to_expiry(tmp_path: Path, pki: Pki,
                                                                   tls_node: FaultProxy) -> None:
    code, lines = run_test(tmp_path, {"logs": {"type": "elasticsearch", "hosts": [tls_node.url],
                                               "tls": {"ca_file": str(pki.ca)}}})
    assert code == 0, lines
    assert "| tls subject CN=localhost, issuer CN=ccf test ca, expires in 1 days | auth" in line_of(lines, "output logs")


@pytest.mark.parametrize("cert, says", [("expired", "certificate has expired"),
                                         ("other_host", "Hostname mismatch, certificate is not valid for 'localhost'")])
def test_an_expired_or_wrong_host_certificate_fails_the_target_and_says_so(
        tmp_path: Path, es_url: str, pki: Pki, cert: str, says: str) -> None:
    endpoint = tls_endpoint(es_url, pki.context(getattr(pki, f"{cert}_cert"), getattr(pki, f"{cert}_key")))
    try:
        code, lines = run_test(tmp_path, {"logs": {"type": "elasticsearch", "hosts": [endpoint.url],
                                                   "tls": {"ca_file": str(pki.ca)}}})
    finally:
        endpoint.stop()
    assert code == 1
    line = line_of(lines, "output logs")
    assert line.startswith("FAIL  output logs (elasticsearch)")
    assert f"| tls FAILED: certificate not accepted: {says}" in line
    assert lines[-1] == "1 of 1 targets failed: output logs"


def test_a_wrong_password_fails_authentication_and_is_never_printed(tmp_path: Path, server: Server) -> None:
    outputs = {"good": {"type": "elasticsearch", "hosts": [server.url], "username": "ccf", "password": RIGHT},
               "bad": {"type": "elasticsearch", "hosts": [server.url], "username": "ccf", "password": WRONG}}
    code, lines = run_test(tmp_path, outputs)

    assert code == 1
    assert "| auth accepted | engine elasticsearch 8.15.0 |" in line_of(lines, "output good")
    assert "| auth FAILED: 401: the credentials of output 'bad' were refused" in line_of(lines, "output bad")
    assert lines[-1] == "1 of 2 targets failed: output bad"
    assert not any(WRONG in x or RIGHT in x for x in lines)


def test_logstash_is_tested_to_tcp_and_tls_and_says_the_handshake_is_not(tmp_path: Path, pki: Pki) -> None:
    with lumber.start(tls={"cert": str(pki.server_cert), "key": str(pki.server_key)}) as srv:
        code, lines = run_test(tmp_path, {"beats": {"type": "logstash", "hosts": [f"localhost:{srv.port}"],
                                                    "tls": {"ca_file": str(pki.ca)}}})
        assert srv.events() == []
    assert code == 0, lines
    line = line_of(lines, "output beats")
    assert "| tls subject CN=localhost, issuer CN=ccf test ca" in line
    assert line.endswith("| handshake not checked: the Beats protocol has no handshake without events: TCP and "
                         "TLS only")


def test_a_down_logstash_fails_at_tcp(tmp_path: Path) -> None:
    code, lines = run_test(tmp_path, {"beats": {"type": "logstash", "hosts": [f"127.0.0.1:{free_port()}"]}})
    assert code == 1
    assert "| tcp FAILED: cannot connect to 127.0.0.1:" in line_of(lines, "output beats")
    assert line_of(lines, "output beats").endswith("Connection refused")


def test_a_notifier_is_reached_without_a_notice_unless_asked(tmp_path: Path, server: Server) -> None:
    hook = {"hook": {"type": "webhook", "url": f"{server.url}/hook/S3CRET-T0KEN-0123456789"}}
    outputs = {"f": {"type": "file", "path": str(tmp_path / "out.ndjson")}}
    code, lines = run_test(tmp_path, outputs, hook)
    assert code == 0, lines
    assert line_of(lines, "notifier hook") == (f"PASS  notifier hook (webhook)  {server.url}  dns 127.0.0.1 | tcp "
                                               + line_of(lines, "notifier hook").split("| tcp ")[1].split(" |")[0]
                                               + " | http HEAD answered 405 (nothing sent)")
    assert server.heads == 1 and server.posts == []
    assert not any("S3CRET" in x for x in lines)

    code, lines = run_test(tmp_path, outputs, hook, "--send-test-notice")
    assert code == 0, lines
    assert line_of(lines, "notifier hook").endswith("| notice test notice delivered")
    assert len(server.posts) == 1 and "ccf-agent test" in orjson.loads(server.posts[0])["message"]


def test_through_a_proxy_the_proxy_is_reached_and_the_engine_answers_through_it(tmp_path: Path, es_url: str) -> None:
    with TinyProxy() as proxy:
        code, lines = run_test(tmp_path, {"logs": {"type": "elasticsearch", "hosts": [es_url],
                                                   "proxy_url": proxy.url}})
        assert f"GET {es_url}/ HTTP/1.1" in proxy.requests()
    assert code == 0, lines
    line = line_of(lines, "output logs")
    assert line.startswith(f"PASS  output logs (elasticsearch)  {es_url}  proxy {proxy.url} (from proxy_url) | "
                           "dns 127.0.0.1 | tcp ")
    assert "| engine opensearch 2." in line


def test_a_config_error_exits_2_before_connecting(tmp_path: Path) -> None:
    code, lines = run_test(tmp_path, {"logs": {"type": "elasticsearch", "hosts": ["http://127.0.0.1:9200"],
                                               "index": "ccf-%{service}"}})
    assert code == 2
    assert any("agent.yaml:" in x and "outputs.logs.index" in x for x in lines)


@pytest.mark.kafka
def test_a_kafka_outputs_brokers_are_asked_for_the_clusters_metadata_and_its_topic(
        tmp_path: Path, kafka_bootstrap: str, kafka_topic: str) -> None:
    down = f"127.0.0.1:{free_port()}"
    code, lines = run_test(tmp_path, {"events": {"type": "kafka", "brokers": [kafka_bootstrap, down],
                                                 "topic": kafka_topic}})
    good, bad = (next(x for x in lines if f"  {host}  " in x) for host in (kafka_bootstrap, down))
    assert code == 1
    assert "metadata 1 brokers" in good and f"topic {kafka_topic} " in good and "FAILED" not in good, good
    assert "tcp FAILED" in bad, bad


# ------------------------------------------------------------------------------ the pure parts


def test_a_certificate_is_described_by_subject_issuer_and_days_left() -> None:
    cert = {"subject": ((("commonName", "es1"),),), "issuer": ((("organizationName", "Acme"),),
                                                             (("commonName", "Acme CA"),)),
            "notAfter": "Jan 31 00:00:00 2030 GMT"}
    now = calendar.timegm((2030, 1, 1, 0, 0, 0)) - 10 * 86400.0
    assert describe_certificate(cert, now) == "subject CN=es1, issuer O=Acme,CN=Acme CA, expires in 40 days"


@pytest.mark.parametrize("answer, verdict", [
    ({"index": {"ccf-*": {"create_doc": True, "create_index": True, "auto_configure": False}}}, PASS),
    ({"index": {"ccf-*": {"create_doc": True, "create_index": False, "auto_configure": True}}}, PASS),
    ({"index": {"ccf-*": {"create_doc": False, "create_index": True, "auto_configure": True}}}, FAIL),
    ({"index": {"ccf-*": {"create_doc": True, "create_index": False, "auto_configure": False}}}, FAIL),
])
def test_elasticsearch_privileges_decide_the_write_verdict(answer: dict[str, Any], verdict: str) -> None:
    assert has_privileges_verdict(200, answer, "ccf-*")[0] == verdict


def test_elasticsearch_without_security_is_not_checked_rather_than_passed() -> None:
    assert has_privileges_verdict(500, {"error": "security is disabled"}, "ccf-*")[0] == SKIP
