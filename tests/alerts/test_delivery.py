"""Delivery through the outbox against a real local HTTP receiver (aiohttp on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.alerts.helpers import (
    FAILED,
    PAYOUT,
    Clock,
    Receiver,
    free_port,
    make_engine,
    payout,
    running,
    until,
)


def config(url: str, **notifier):
    return {
        "notifiers": {"hook": {"type": "webhook", "url": url, "backoff_initial": "20ms", "backoff_max": "100ms",
                               **notifier}},
        "rules": [{"name": "HighValuePayoutFailed", "kind": "match", "window": "1m", "severity": "error",
                   "when": {"all": [PAYOUT, FAILED, {"field": "amount", "gt": 10000}]}}],
    }


def fire_resolve_fire(engine, clock):
    """Three notices: firing, resolved, firing."""
    engine.observe([payout("failed", 20000)], [clock.t])
    clock.t += 60
    engine.tick(clock.t)
    clock.t += 1
    engine.observe([payout("failed", 30000)], [clock.t])
    assert [n["status"] for n in engine.queued()] == ["firing", "resolved", "firing"]


def test_a_receiver_down_across_a_restart_gets_every_notice_once_when_back(tmp_path, caplog):
    async def scenario():
        port = free_port()
        url = f"http://127.0.0.1:{port}/hooks/SECRETPATH"
        clock = Clock(time.time())
        first = make_engine(tmp_path, config(url), clock)
        async with running(first):
            fire_resolve_fire(first, clock)
            await until(lambda: first.status()["notifiers"]["hook"]["failures"] >= 2, what="retries")
            hook = first.status()["notifiers"]["hook"]
            assert hook["ok"] is False and hook["error"].startswith("cannot connect")
            assert hook["outbox"] == 3

        second = make_engine(tmp_path, config(url), clock)   # the agent restarted; receiver still down
        assert [n["status"] for n in second.queued()] == ["firing", "resolved", "firing"]
        async with running(second):
            await until(lambda: second.status()["notifiers"]["hook"]["failures"] >= 1, what="a failure")
            async with Receiver(port) as rx:
                await rx.wait_for(3)
                await until(lambda: second.status()["outbox_depth"] == 0, what="an empty outbox")
                keys = [k for k, _ in rx.got]
                assert len(rx.got) == 3 and len(set(keys)) == 3
                assert [b["details"]["status"] for _, b in rx.got] == ["firing", "resolved", "firing"]
                assert [b["details"]["count"] for _, b in rx.got] == [1, 1, 1]
                st = second.status()
                assert st["notifiers"]["hook"]["ok"] is True
                assert st["rules"][0]["last_notification"]["hook"]["status"] == "firing"
        third = make_engine(tmp_path, config(url), clock)    # delivered notices stay delivered
        assert third.queued() == []

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("notifier hook (webhook) is failing" in w for w in warnings)
    assert "SECRETPATH" not in caplog.text


def test_server_errors_are_retried_with_backoff_and_delivered_once(tmp_path):
    async def scenario():
        port = free_port()
        clock = Clock(time.time())
        engine = make_engine(tmp_path, config(f"http://127.0.0.1:{port}/"), clock)
        async with Receiver(port, answers=[503, 500, 429]) as rx, running(engine):
            engine.observe([payout("failed", 20000)], [clock.t])
            await rx.wait_for(1)
            await until(lambda: engine.status()["outbox_depth"] == 0, what="an empty outbox")
            assert rx.calls == 4 and len(rx.got) == 1

    asyncio.run(scenario())


def test_a_notice_refused_for_good_is_dropped_and_does_not_block_the_next(tmp_path):
    async def scenario():
        port = free_port()
        clock = Clock(time.time())
        engine = make_engine(tmp_path, config(f"http://127.0.0.1:{port}/"), clock)
        async with Receiver(port, answers=[400]) as rx, running(engine):
            fire_resolve_fire(engine, clock)
            await rx.wait_for(2)
            await until(lambda: engine.status()["outbox_depth"] == 0, what="an empty outbox")
            assert [b["details"]["status"] for _, b in rx.got] == ["resolved", "firing"]
            assert rx.calls == 3

    asyncio.run(scenario())


def test_a_dead_notifier_does_not_hold_back_another(tmp_path):
    async def scenario():
        up, down = free_port(), free_port()
        clock = Clock(time.time())
        raw = config(f"http://127.0.0.1:{down}/")
        raw["notifiers"]["good"] = {"type": "slack", "url": f"http://127.0.0.1:{up}/"}
        engine = make_engine(tmp_path, raw, clock)
        async with Receiver(up) as rx, running(engine):
            engine.observe([payout("failed", 20000)], [clock.t])
            await rx.wait_for(1)
            [(_, body)] = rx.got
            assert body["attachments"][0]["title"] == "ERROR: HighValuePayoutFailed"
            assert engine.status()["notifiers"]["hook"]["outbox"] == 1

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_receiver_down_for_a_minute_gets_every_notice_once_with_default_backoff(tmp_path):
    async def scenario():
        port = free_port()
        url = f"http://127.0.0.1:{port}/hook"
        clock = Clock(time.time())
        raw = config(url)
        del raw["notifiers"]["hook"]["backoff_initial"], raw["notifiers"]["hook"]["backoff_max"]  # defaults
        engine = make_engine(tmp_path, raw, clock)
        async with running(engine):
            fire_resolve_fire(engine, clock)
            await asyncio.sleep(60)  # the outage itself is the point of this test
            assert engine.status()["outbox_depth"] == 3
            back = time.monotonic()
            async with Receiver(port) as rx:
                await rx.wait_for(3, within=45)  # the backoff ceiling is 30 s
                took = time.monotonic() - back
                await until(lambda: engine.status()["outbox_depth"] == 0, what="an empty outbox")
                assert len({k for k, _ in rx.got}) == 3 and len(rx.got) == 3
                assert [b["details"]["status"] for _, b in rx.got] == ["firing", "resolved", "firing"]
        print(f"delivered {len(rx.got)} notices {took:.1f}s after a 60 s outage")

    asyncio.run(scenario())
