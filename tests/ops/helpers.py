"""Shared by the ops tests: the app's logs as Winston writes them, the daemon, scraping."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import AgentProcess


def stamp(t: float) -> str:
    """Winston's `YYYY-MM-DD HH:mm:ss` (the app logs in UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


@dataclass
class AppLogs:
    """What was written, and what the business metrics must say about it."""

    payouts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, method) -> attempts
    durations: list[float] = field(default_factory=list)  # seconds
    last_job: float = 0.0
    lines: int = 0  # over all files


def write_app_logs(logs: Path, now: float) -> AppLogs:
    """A known mix in combined.log, each record copied to error.log / payouts.log as the app's
    Winston transports do: counting every file would count a failed payout three times."""
    logs.mkdir(parents=True, exist_ok=True)
    base = {"service": "click-clack-cashflow", "version": "1.0.0"}
    expected = AppLogs()
    records: list[dict[str, Any]] = []
    t = now - 900

    def add(rec: dict[str, Any]) -> None:
        nonlocal t
        t += 1
        records.append({**base, **rec, "timestamp": stamp(t)})

    for i, (method, ms) in enumerate([("standard", 50), ("standard", 400), ("standard", 900), ("standard", 1500),
                                      ("standard", 4000), ("standard", 45000), ("instant", 300),
                                      ("instant", 8000)]):
        add({"level": "info", "message": "Payout processed", "payoutId": f"payout_{i}", "userId": "user_1",
             "amount": 1000 + i, "currency": "usd", "status": "completed", "processingTime": ms,
             "method": method, "paymentMethodId": "pm_abc123", "stripePayoutId": f"po_stripe{i}"})
        expected.payouts["completed", method] += 1
        expected.durations.append(ms / 1000)
        add({"level": "info", "message": "HTTP request", "method": "GET", "path": "/api/balance",
             "statusCode": 200, "durationMs": 12})
    for i, method in enumerate(["standard", "standard", "standard", None]):
        rec = {"level": "error", "message": "Payout failed", "payoutId": f"payout_f{i}", "userId": "user_2",
               "amount": 25000, "error": "insufficient_funds", "retryCount": 2,
               "errorMessage": "Insufficient funds in connected account"}
        if method:
            rec["method"] = method
        add(rec)
        expected.payouts["failed", method or "unknown"] += 1
    add({"level": "info", "message": "Payout requested", "payoutId": "payout_r", "amount": 5})  # not an attempt
    add({"level": "info", "message": "Payout job run finished", "service": "payout-job", "processed": 12})
    add({"level": "info", "message": "Payout job run finished", "service": "payout-job", "processed": 3})
    expected.last_job = float(int(t))
    add({"level": "warn", "message": "Authentication failed", "userId": "user_3", "ip": "10.0.0.7"})

    with open(logs / "combined.log", "w") as combined, open(logs / "error.log", "w") as errors, \
            open(logs / "payouts.log", "w") as payouts:
        for rec in records:
            line = json.dumps(rec) + "\n"
            combined.write(line)
            expected.lines += 1
            if rec["level"] == "error":
                errors.write(line)
                expected.lines += 1
            if "payout" in rec["message"].lower() or rec.get("service") == "payout-job":
                payouts.write(line)
                expected.lines += 1
    return expected


def file_outputs_config(tmp_path: Path) -> dict[str, Any]:
    """The example config's routing, into local files: no search engine needed."""
    return {
        "inputs": [{"id": "app", "paths": [str(tmp_path / "logs" / "*.log")], "scan_interval": "200ms",
                    "fields": {"environment": "test"}}],
        "outputs": {"logs": {"type": "file", "path": str(tmp_path / "out" / "logs.ndjson")},
                    "payouts": {"type": "file", "path": str(tmp_path / "out" / "payouts.ndjson")}},
        "routes": [{"name": "payouts", "output": "payouts",
                    "when": {"any": [{"field": "message", "icontains": "payout"},
                                     {"field": "service", "equals": "payout-job"}]}}],
        "agent": {"registry_flush_interval": "200ms"},
    }


def get(url: str, timeout: float = 10) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def scrape(agent: AgentProcess) -> str:
    status, body, _ = get(f"http://127.0.0.1:{agent.port}/metrics")
    assert status == 200
    return body.decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of one metric in a text exposition: frozenset of labels -> value."""
    out: dict[frozenset[tuple[str, str]], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            out[frozenset(_LABEL.findall(m.group(2) or ""))] = float(m.group(3))
    return out


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def shipped_app_logs(tmp: Path) -> Iterator[tuple[AgentProcess, AppLogs]]:
    """One daemon that shipped the app's logs (combined, error, payouts) to files, caught up;
    for module-scoped fixtures: `yield from shipped_app_logs(tmp_path_factory.mktemp(...))`."""
    expected = write_app_logs(tmp / "logs", time.time())
    agent = AgentProcess(tmp, file_outputs_config(tmp)).start()
    try:
        agent.wait_caught_up(60)
        yield agent, expected
    finally:
        agent.kill()
