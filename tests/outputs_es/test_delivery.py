"""What the Elasticsearch output decides, against a scripted in-process bulk endpoint:
batch shapes and timing, requests in flight, per-item outcomes, backoff, hosts, auth headers."""

from __future__ import annotations

import asyncio
import base64
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ccf_agent.outputs.delivery import linger
from ccf_agent.outputs.delivery.batch import Piece
from ccf_agent.outputs.elasticsearch import encoding
from ccf_agent.outputs.elasticsearch.config import EsOptions
from tests import virtual_time
from tests.outputs_es.fakes import BulkCall, Token, alive, drained, events, fake_node, items, output, running


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ------------------------------------------------------------------------------ batching


def test_a_batch_closes_at_batch_max_docs(tmp_path: Path) -> None:
    async def go() -> list[int]:
        async with fake_node() as node:
            out = output([node.url], tmp_path, batch_max_docs=100, max_in_flight=1)
            for k in range(10):
                out.submit(events(50, start=50 * k), list(range(50)), None)
            async with running(out):
                await drained(out)
            return [len(c.ids) for c in node.calls]

    assert run(go()) == [100] * 5


def test_a_batch_closes_at_batch_max_bytes(tmp_path: Path) -> None:
    async def go() -> list[int]:
        async with fake_node() as node:
            size = len(output([node.url], tmp_path).encode(events(10, start=80), list(range(10))))  # the largest
            out = output([node.url], tmp_path, batch_max_bytes=3 * size, max_in_flight=1)
            for k in range(9):
                out.submit(events(10, start=10 * k), list(range(10)), None)
            async with running(out):
                await drained(out)
            return [len(c.ids) for c in node.calls]

    assert run(go()) == [30, 30, 30]


class LoopTime:
    """The time module, but time.monotonic() reads the event loop's clock (the virtual one)."""

    monotonic = staticmethod(virtual_time.loop_clock)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def on_virtual_time(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Any]:
    """Run a test's coroutine on the virtual clock, which the output reads too: its batching
    rules then see exactly the timing the test scripts, however loaded the machine is."""
    monkeypatch.setattr(linger, "time", LoopTime())
    return virtual_time.run


def test_a_partial_batch_leaves_flush_interval_after_its_first_record(
        tmp_path: Path, on_virtual_time: Callable[[Any], Any]) -> None:
    async def go() -> tuple[float, list[int]]:
        async with fake_node() as node:
            out = output([node.url], tmp_path, flush_interval=0.4)
            async with running(out):
                await asyncio.sleep(0.05)  # the loop is idle, waiting for work
                first = asyncio.get_running_loop().time()
                out.submit(events(5), list(range(5)), None)
                await asyncio.sleep(0.1)
                out.submit(events(5, start=5), list(range(5)), None)
                await drained(out)
            return node.calls[0].at - first, [len(c.ids) for c in node.calls]

    waited, sizes = on_virtual_time(go())
    assert sizes == [10]
    assert waited == pytest.approx(0.4)


def test_a_batch_filling_fast_waits_past_flush_interval_for_half_a_batch(
        tmp_path: Path, on_virtual_time: Callable[[Any], Any]) -> None:
    async def go() -> list[int]:
        async with fake_node() as node:
            out = output([node.url], tmp_path, batch_max_docs=1000, flush_interval=0.01, max_in_flight=1)
            async with running(out):
                await asyncio.sleep(0.05)  # the loop is idle, waiting for work
                for k in range(12):  # 100 records every 4 ms: 300 by flush_interval, 500 at 16 ms
                    out.submit(events(100, start=100 * k), list(range(100)), None)
                    await asyncio.sleep(0.004)
                await drained(out)
            return [len(c.ids) for c in node.calls]

    # Half a batch each while the records keep coming (not 300 at flush_interval, nor a full batch
    # later), then the rest at flush_interval once they stop.
    assert on_virtual_time(go()) == [500, 500, 200]


def test_up_to_max_in_flight_requests_run_at_once(tmp_path: Path) -> None:
    async def go() -> tuple[int, int]:
        async with fake_node() as node:
            node.release = asyncio.Event()
            out = output([node.url], tmp_path, batch_max_docs=10, max_in_flight=3)
            for k in range(10):
                out.submit(events(10, start=10 * k), list(range(10)), None)
            async with running(out):
                await until(lambda: node.active == 3)
                await asyncio.sleep(0.2)  # a fourth request would have arrived by now
                at_most = node.max_active
                node.release.set()
                await drained(out)
            return at_most, len(node.stored_ids)

    assert run(go()) == (3, 100)


def test_a_delivered_request_holds_no_memory_while_the_output_waits_for_the_next(tmp_path: Path) -> None:
    # Request bodies are megabytes: one kept alive past its request adds that much to peak RSS.
    async def go() -> int:
        async with fake_node() as node:
            out = output([node.url], tmp_path, batch_max_docs=10)
            for k in range(3):
                out.submit(events(10, start=10 * k), list(range(10)), None)
            async with running(out):
                await drained(out)
                return alive(Piece)

    assert run(go()) == 0


@pytest.mark.parametrize("codec", ["default", "stdlib zlib on a thread"])
def test_gzip_compresses_request_bodies(tmp_path: Path, codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if codec != "default":
        monkeypatch.setattr(encoding, "_zlib", zlib)
        monkeypatch.setattr(encoding, "_GZIP_OFF_LOOP", True)
        monkeypatch.setattr(encoding, "GZIP_THREAD_MIN", 1024)

    async def go() -> BulkCall:
        async with fake_node() as node:
            out = output([node.url], tmp_path, compression="gzip")
            ev = events(200)
            out.submit(ev, list(range(200)), None)
            plain = len(out.encode(ev, list(range(200))))
            async with running(out):
                await drained(out)
            assert node.calls[0].raw_bytes < plain / 4
            return node.calls[0]

    call = run(go())
    assert call.headers["Content-Encoding"] == "gzip"
    assert call.ids == [f"s-{i}" for i in range(200)]


def test_reading_pauses_while_the_queue_holds_max_queued_bytes(tmp_path: Path) -> None:
    async def go() -> tuple[bool, bool]:
        async with fake_node() as node:
            node.release = asyncio.Event()
            out = output([node.url], tmp_path, max_queued_bytes=20_000, batch_max_docs=50, max_in_flight=1)
            async with running(out):
                k = 0
                while out.queued_bytes < 40_000:  # above the cap even with one request in flight
                    out.submit(events(50, start=50 * k), list(range(50)), None)
                    k += 1
                room = asyncio.create_task(out.wait_for_room())
                await asyncio.sleep(0.2)
                paused = not room.done()
                node.release.set()
                await asyncio.wait_for(room, 10)
                await drained(out)
            return paused, room.done()

    assert run(go()) == (True, True)


# ------------------------------------------------------------------------------ per-item outcomes


def test_items_answered_429_are_retried_alone(tmp_path: Path) -> None:
    rejected_once = {"s-3", "s-7", "s-8"}

    def script(call: BulkCall) -> Any:
        status = {i: (429 if i in rejected_once and len(call.ids) == 10 else 201) for i in call.ids}
        return 200, {}, items(call, status.__getitem__, {"type": "rejected_execution_exception", "reason": "full"})

    async def go() -> tuple[list[list[str]], Token, int]:
        async with fake_node() as node:
            node.script = script
            out = output([node.url], tmp_path)
            token = Token()
            out.submit(events(10), list(range(10)), token)  # type: ignore[arg-type]
            async with running(out):
                await drained(out)
            return [c.ids for c in node.calls], token, out.stats.docs_retried

    calls, token, retried = run(go())
    assert calls[1] == ["s-3", "s-7", "s-8"]
    assert len(calls) == 2 and retried == 3
    assert token.released == 1


def test_a_request_of_several_fragments_is_their_records_in_order_and_its_429_items_are_retried_alone(
        tmp_path: Path) -> None:
    # Fragments are written one after the other, not joined first (elasticsearch.Parts).
    rejected_once = {"s-1", "s-6", "s-11"}

    def script(call: BulkCall) -> Any:
        status = {i: (429 if i in rejected_once and len(call.ids) == 12 else 201) for i in call.ids}
        return 200, {}, items(call, status.__getitem__, {"type": "rejected_execution_exception", "reason": "full"})

    async def go() -> tuple[list[BulkCall], list[Token]]:
        async with fake_node() as node:
            node.script = script
            out = output([node.url], tmp_path)
            tokens = [Token() for _ in range(3)]
            for k, token in enumerate(tokens):
                out.submit(events(4, start=4 * k), list(range(4)), token)  # type: ignore[arg-type]
            async with running(out):
                await drained(out)
            return node.calls, tokens

    calls, tokens = run(go())
    assert calls[0].ids == [f"s-{i}" for i in range(12)]
    assert [orjson.loads(line) for line in calls[0].body.splitlines()[1::2]] == [
        {"seq": i, "message": "Payout processed", "amount": 1000} for i in range(12)]
    assert calls[1].ids == ["s-1", "s-6", "s-11"] and len(calls) == 2
    assert [t.released for t in tokens] == [1, 1, 1]


def test_items_rejected_for_good_are_dead_lettered_with_error_and_record_then_acked(tmp_path: Path) -> None:
    bad = {"s-2", "s-5"}
    error = {"type": "mapper_parsing_exception", "reason": "failed to parse field [amount] of type [long]"}

    def script(call: BulkCall) -> Any:
        return 200, {}, items(call, lambda i: 400 if i in bad else 201, error)

    async def go() -> tuple[int, Token, int]:
        async with fake_node() as node:
            node.script = script
            out = output([node.url], tmp_path)
            token = Token()
            out.submit(events(8), list(range(8)), token)  # type: ignore[arg-type]
            async with running(out):
                await drained(out)
            return len(node.calls), token, out.stats.docs_dead

    calls, token, dead = run(go())
    letters = [orjson.loads(line) for line in (tmp_path / "dead_letter" / "t.ndjson").read_bytes().splitlines()]
    assert (calls, dead, token.released) == (1, 2, 1)
    assert [d["action"]["create"]["_id"] for d in letters] == ["s-2", "s-5"]
    assert letters[0]["error"] == error and letters[0]["status"] == 400
    assert orjson.loads(letters[1]["document"]) == {"seq": 5, "message": "Payout processed", "amount": 1000}


def test_items_answered_409_count_as_already_stored(tmp_path: Path) -> None:
    async def go() -> tuple[int, int, int]:
        async with fake_node() as node:
            node.script = lambda call: (200, {}, items(call, lambda i: 409))
            out = output([node.url], tmp_path)
            out.submit(events(4), list(range(4)), None)
            async with running(out):
                await drained(out)
            return len(node.calls), out.stats.duplicates, out.stats.docs_acked

    assert run(go()) == (1, 4, 4)


# One fragment of ten records, or three of four (a request sent as its fragments: elasticsearch.Parts).
@pytest.mark.parametrize(("fragments", "size", "bad"), [(1, 10, 6), (3, 4, 9)])
def test_a_whole_request_refused_413_is_split_until_the_oversized_record_is_alone(
        tmp_path: Path, fragments: int, size: int, bad: int) -> None:
    stored: list[str] = []

    def script(call: BulkCall) -> Any:
        if f"s-{bad}" in call.ids:
            return 413, {}, {"error": {"type": "content_too_long", "reason": "too large"}, "status": 413}
        stored.extend(call.ids)
        return None

    async def go() -> int:
        async with fake_node() as node:
            node.script = script
            out = output([node.url], tmp_path)
            for k in range(fragments):
                out.submit(events(size, start=size * k), list(range(size)), None)
            async with running(out):
                await drained(out)
            return out.stats.docs_dead

    assert run(go()) == 1
    assert sorted(stored) == sorted(f"s-{i}" for i in range(fragments * size) if i != bad)
    letter = orjson.loads((tmp_path / "dead_letter" / "t.ndjson").read_bytes())
    assert letter["status"] == 413 and letter["action"]["create"]["_id"] == f"s-{bad}"


def test_records_wait_while_dead_letters_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "dead_letter").write_text("a file where the directory should be")

    async def go() -> tuple[int, str | None, int]:
        async with fake_node() as node:
            node.script = lambda call: (200, {}, items(call, lambda i: 400 if i == "s-1" else 201))
            out = output([node.url], tmp_path)
            token = Token()
            out.submit(events(3), list(range(3)), token)  # type: ignore[arg-type]
            async with running(out):
                await until(lambda: out.problem == "dead_letter_io")
                waiting = token.released
                problem = out.status()["last_error"]
                (tmp_path / "dead_letter").unlink()
                await drained(out)
            return waiting, problem, token.released

    waiting, problem, released = run(go())
    assert waiting == 0 and released == 1
    assert problem is not None and "cannot write dead letters" in problem


def test_dead_letters_go_to_the_dead_letter_index_when_configured(tmp_path: Path) -> None:
    def script(call: BulkCall) -> Any:
        if b'"_index":"dlq"' in call.body:
            return None
        return 200, {}, items(call, lambda i: 400 if i == "s-1" else 201,
                              {"type": "mapper_parsing_exception", "reason": "bad amount"})

    async def go() -> tuple[list[BulkCall], int]:
        async with fake_node() as node:
            node.script = script
            out = output([node.url], tmp_path, options=EsOptions(dead_letter_index="dlq"))
            out.submit(events(3), list(range(3)), None)
            async with running(out):
                await drained(out)
            return node.calls, out.stats.docs_dead

    calls, dead = run(go())
    action, envelope = calls[-1].body.splitlines()
    assert orjson.loads(action) == {"create": {"_index": "dlq", "_id": "s-1"}}
    doc = orjson.loads(envelope)
    assert doc["error"]["type"] == "mapper_parsing_exception" and doc["index"] == "t"
    assert orjson.loads(doc["document"])["seq"] == 1
    assert dead == 1 and not (tmp_path / "dead_letter").exists()


# ------------------------------------------------------------------------------ backoff


def test_a_cluster_answering_429_for_seconds_gets_one_request_per_backoff_interval(tmp_path: Path) -> None:
    async def go() -> tuple[int, int]:
        async with fake_node() as node:
            throttle_until = time.monotonic() + 2.0
            node.script = lambda call: ((429, {}, {"error": {"type": "rejected_execution_exception"}, "status": 429})
                                        if call.at < throttle_until else None)
            out = output([node.url], tmp_path, batch_max_docs=10, max_in_flight=4,
                         backoff_initial=0.05, backoff_max=0.5)
            for k in range(40):
                out.submit(events(10, start=10 * k), list(range(10)), None)
            async with running(out):
                await drained(out)
            during = sum(1 for c in node.calls if c.at < throttle_until)
            return during, len(set(node.stored_ids) - {i for c in node.calls if c.at < throttle_until for i in c.ids})

    during, _ = run(go())
    # Without backoff, 4 senders would make thousands of requests in 2 s; with the shared gate the
    # first 4 go out, then one probe per interval (0.05 s doubling to 0.5 s, jittered down to half).
    assert during <= 4 + 14


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    async def go() -> float:
        async with fake_node() as node:
            node.script = lambda call: ((429, {"Retry-After": "1"}, {"error": {"type": "x"}, "status": 429})
                                        if len(node.calls) == 1 else None)
            out = output([node.url], tmp_path, backoff_initial=0.01, backoff_max=0.05)
            out.submit(events(1), [0], None)
            async with running(out):
                await drained(out)
            return node.calls[1].at - node.calls[0].at

    assert run(go()) >= 0.95


# ------------------------------------------------------------------------------ hosts


def test_a_failed_host_is_taken_out_and_probed_back(tmp_path: Path) -> None:
    async def go() -> None:
        async with fake_node() as a, fake_node() as b:
            def down(call: BulkCall) -> Any:
                a.get_status = 503  # probes fail too until the host is back
                return 503, {}, {"error": {"type": "unavailable"}, "status": 503}

            a.script = down
            out = output([a.url, b.url], tmp_path, batch_max_docs=10, max_in_flight=1)
            async with running(out):
                for k in range(6):
                    out.submit(events(10, start=10 * k), list(range(10)), None)
                await drained(out)
                assert len(a.calls) == 1  # one failure, then out of rotation
                assert [h["alive"] for h in out.status()["hosts"]] == [False, True]
                await until(lambda: len([g for g in a.gets if g[1] == "/"]) >= 2)  # probed meanwhile
                a.script, a.get_status = None, 200
                await until(lambda: out.status()["hosts"][0]["alive"])
                for k in range(6, 10):
                    out.submit(events(10, start=10 * k), list(range(10)), None)
                    await drained(out)
                assert len(a.calls) >= 2  # back in the round robin
                assert sorted(set(a.stored_ids[10:] + b.stored_ids)) == sorted(f"s-{i}" for i in range(100))

    run(go())


def test_node_discovery_adds_the_clusters_http_nodes_but_not_dedicated_managers(tmp_path: Path) -> None:
    async def go() -> None:
        async with fake_node() as a, fake_node() as b:
            a.nodes = {"nodes": {
                "n1": {"roles": ["data", "ingest"], "http": {"publish_address": a.url.split("//")[1]}},
                "n2": {"roles": ["data"], "http": {"publish_address": "localhost/" + b.url.split("//")[1]}},
                "m1": {"roles": ["cluster_manager"], "http": {"publish_address": "10.9.9.9:9200"}},
            }}
            out = output([a.url], tmp_path, options=EsOptions(discovery=True), batch_max_docs=10, max_in_flight=1)
            async with running(out):
                port_b = b.url.rsplit(":", 1)[1]
                await until(lambda: len(out.hosts) == 2)
                assert [h["url"] for h in out.status()["hosts"]] == [a.url, f"http://localhost:{port_b}"]
                for k in range(4):
                    out.submit(events(10, start=10 * k), list(range(10)), None)
                    await drained(out)
            assert b.calls, "a discovered node takes its share of the bulk requests"

    run(go())


def test_node_discovery_is_off_by_default(tmp_path: Path) -> None:
    async def go() -> list[str]:
        async with fake_node() as node:
            out = output([node.url], tmp_path)
            async with running(out):
                out.submit(events(1), [0], None)
                await drained(out)
            return [path for _, path in node.gets]

    assert run(go()) == ["/"]


# ------------------------------------------------------------------------------ auth and errors


def test_api_key_bearer_and_url_credentials_are_sent_as_configured(tmp_path: Path) -> None:
    async def header(**kw: Any) -> str:
        async with fake_node() as node:
            hosts = [node.url.replace("http://", "http://ccf:s3cr%2Ft@")] if kw.pop("in_url", False) else [node.url]
            out = output(hosts, tmp_path, **kw)
            async with running(out):
                out.submit(events(1), [0], None)
                await drained(out)
                assert all("s3cr" not in h["url"] for h in out.status()["hosts"])
            return node.calls[0].headers["Authorization"]

    assert run(header(api_key="a2V5")) == "ApiKey a2V5"
    assert run(header(bearer_token="tok")) == "Bearer tok"
    assert run(header(username="u", password="p")) == "Basic " + base64.b64encode(b"u:p").decode()
    assert run(header(in_url=True)) == "Basic " + base64.b64encode(b"ccf:s3cr/t").decode()


def test_wrong_credentials_are_reported_without_the_secret(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        async with fake_node() as node:
            node.get_status = 401
            out = output([node.url], tmp_path, username="ccf", password="hunter2-secret")
            async with running(out):
                await until(lambda: out.problem is not None)
                return out.status()

    status = run(go())
    assert status["problem"] == "auth" and status["healthy"] is False
    assert "authentication failed (401" in status["last_error"]
    assert "hunter2" not in orjson.dumps(status).decode()


def test_an_unknown_host_is_reported_as_such(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        out = output(["http://ccf-no-such-host.invalid:9200"], tmp_path)
        async with running(out):
            await until(lambda: out.problem is not None)
            return out.status()

    status = run(go())
    assert status["problem"] == "dns"
    assert "unknown host: 'ccf-no-such-host.invalid'" in status["last_error"]


def test_a_200_answer_that_is_not_json_keeps_the_records_and_says_why(tmp_path: Path) -> None:
    async def go() -> tuple[int, str, int]:
        async with fake_node() as node:
            node.script = lambda call: (200, {}, b"<html>please log in</html>")
            out = output([node.url], tmp_path)
            token = Token()
            out.submit(events(2), [0, 1], token)  # type: ignore[arg-type]
            async with running(out):
                await until(lambda: out.problem == "protocol")
                waiting, message = token.released, out.status()["last_error"]
                node.script = None
                await drained(out)
            return waiting, message, token.released

    waiting, message, released = run(go())
    assert (waiting, released) == (0, 1)
    assert "answered a bulk request with 200 but no JSON" in message


def test_the_ingest_pipeline_is_named_on_every_bulk_request(tmp_path: Path) -> None:
    async def go() -> str:
        async with fake_node() as node:
            out = output([node.url], tmp_path, options=EsOptions(pipeline="ccf payouts"))
            out.submit(events(1), [0], None)
            async with running(out):
                await drained(out)
            return node.calls[0].query

    assert "&pipeline=ccf%20payouts" in run(go())
