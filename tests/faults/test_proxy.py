"""The fault proxy itself, in front of the real node: each mode does what it says, nothing more."""

from __future__ import annotations

import gzip
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults import FaultProxy
from tests.harness import Engine

pytestmark = pytest.mark.engine


@pytest.fixture
def proxy(es_url: str) -> Iterator[FaultProxy]:
    p = FaultProxy(es_url, seed=3)
    p.start()
    yield p
    p.stop()


def bulk_body(engine: Engine, n: int, start: int = 0) -> bytes:
    index = engine.index("proxy")
    return b"".join(b'{"create":{"_index":"%s","_id":"d%d"}}\n{"seq":%d}\n' % (index.encode(), i, i)
                    for i in range(start, start + n))


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url + "/_bulk", data=body, method="POST",
                                 headers={"Content-Type": "application/x-ndjson", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_pass_forwards_requests_unchanged(proxy: FaultProxy, engine: Engine) -> None:
    status, _, answer = post(proxy.url, bulk_body(engine, 10))
    assert status == 200 and answer["errors"] is False
    assert engine.count("proxy") == 10
    assert proxy.counters()["forwarded"] == 1


def test_items_mode_rejects_a_fraction_of_items_that_never_reach_the_node(proxy: FaultProxy,
                                                                          engine: Engine) -> None:
    proxy.set("items", fraction=0.3)
    status, _, answer = post(proxy.url, bulk_body(engine, 400))
    rejected = [it["create"] for it in answer["items"] if it["create"]["status"] == 429]
    assert status == 200 and answer["errors"] is True and len(answer["items"]) == 400
    assert 80 <= len(rejected) <= 160
    assert all(r["error"]["type"] == "rejected_execution_exception" for r in rejected)
    assert proxy.counters()["items_rejected"] == len(rejected)
    assert engine.count("proxy") == 400 - len(rejected)
    stored = {d["_id"] for d in engine.docs("proxy")}
    assert stored.isdisjoint(r["_id"] for r in rejected)


def test_items_mode_can_store_what_it_reports_rejected(proxy: FaultProxy, engine: Engine) -> None:
    proxy.set("items", fraction=0.5, store_rejected=True)
    _, _, answer = post(proxy.url, bulk_body(engine, 100))
    assert any(it["create"]["status"] == 429 for it in answer["items"])
    assert engine.count("proxy") == 100


def test_reject_mode_answers_the_status_with_retry_after_for_count_requests(proxy: FaultProxy,
                                                                           engine: Engine) -> None:
    proxy.set("reject", status=429, retry_after=7, count=2)
    first = post(proxy.url, bulk_body(engine, 1))
    second = post(proxy.url, bulk_body(engine, 1))
    third = post(proxy.url, bulk_body(engine, 1))
    assert (first[0], first[1]["Retry-After"]) == (429, "7")
    assert second[0] == 429 and third[0] == 200
    assert proxy.counters()["rejected"] == 2


def test_reject_mode_leaves_other_paths_alone_unless_asked(proxy: FaultProxy) -> None:
    proxy.set("reject", status=401)
    with urllib.request.urlopen(proxy.url + "/", timeout=30) as r:  # noqa: S310
        assert r.status == 200
    proxy.set("reject", status=401, paths="all")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(proxy.url + "/", timeout=30)  # noqa: S310
    assert e.value.code == 401


@pytest.mark.parametrize("after_forward, stored", [(False, 0), (True, 5)])
def test_reset_mode_cuts_the_connection(proxy: FaultProxy, engine: Engine, after_forward: bool,
                                        stored: int) -> None:
    proxy.set("reset", after_forward=after_forward)
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        post(proxy.url, bulk_body(engine, 5))
    assert proxy.counters()["resets"] == 1
    assert engine.count("proxy") == stored


def test_delay_mode_holds_requests(proxy: FaultProxy, engine: Engine) -> None:
    proxy.set("delay", seconds=0.5)
    started = time.monotonic()
    assert post(proxy.url, bulk_body(engine, 1))[0] == 200
    assert time.monotonic() - started >= 0.5


def test_gzip_bodies_are_decoded_and_headers_recorded(proxy: FaultProxy, engine: Engine) -> None:
    proxy.set("items", fraction=0.0)
    status, _, answer = post(proxy.url, gzip.compress(bulk_body(engine, 20)),
                             {"Content-Encoding": "gzip", "Authorization": "ApiKey c2VjcmV0"})
    assert status == 200 and not answer["errors"]
    assert engine.count("proxy") == 20
    assert proxy.counters()["gzip_requests"] == 1
    assert proxy.requests()[-1].headers["Authorization"] == "ApiKey c2VjcmV0"
    assert "c2VjcmV0" not in repr(proxy.requests()[-1])


def test_unknown_mode_or_parameter_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        proxy.set("explode")
    with pytest.raises(ValueError, match="unknown parameters"):
        proxy.set("items", fractoin=0.3)
