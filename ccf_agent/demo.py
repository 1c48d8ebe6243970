"""`ccf-agent demo`: the whole path on sample Winston logs, with no server needed.

Writes the app's five log files into a scratch directory, ships them with the example
routing (payouts apart) into local NDJSON file outputs, and prints what arrived.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import yaml

from ccf_agent.agent import Agent
from ccf_agent.config import load_config
from ccf_agent.ops.status_cli import render
from ccf_agent.samples import is_payout, lines

FILES = ("combined.log", "error.log", "payouts.log", "exceptions.log", "rejections.log")


def write_samples(logs: Path, n: int) -> int:
    logs.mkdir(parents=True, exist_ok=True)
    written = 0
    rng = random.Random(1)
    with open(logs / "combined.log", "w") as combined, open(logs / "error.log", "w") as errors, \
            open(logs / "payouts.log", "w") as payouts:
        for line in lines(n):
            rec = json.loads(line)
            combined.write(line + "\n")
            written += 1
            if rec["level"] == "error":
                errors.write(line + "\n")
                written += 1
            if is_payout(rec):
                payouts.write(line + "\n")
                written += 1
    exc = {"level": "error", "message": "uncaughtException: Cannot read properties of undefined",
           "error": {}, "stack": "TypeError: Cannot read properties of undefined\n    at /app/server.js:10:5",
           "exception": True, "date": "Mon Jan 15 2024 10:30:00 GMT+0000", "process": {"pid": 4242},
           "os": {"loadavg": [0.1, 0.2, 0.3]}, "trace": [{"file": "/app/server.js", "line": 10}],
           "timestamp": "2024-01-15 10:30:00"}
    (logs / "exceptions.log").write_text(json.dumps(exc) + "\n")
    rej = {**exc, "message": "unhandledRejection: payout webhook timed out", "rejection": True}
    rej.pop("exception")
    (logs / "rejections.log").write_text(json.dumps(rej) + "\n" + "plain text that is not JSON\n")
    rng.random()
    return written + 3


def demo(directory: str | None = None, n: int = 20_000) -> int:
    root = Path(directory or tempfile.mkdtemp(prefix="ccf-agent-demo-"))
    written = write_samples(root / "logs", n)
    cfg = {
        "state_dir": str(root / "state"),
        "status": {"listen": "off"},
        "inputs": [{"id": "app", "paths": [str(root / "logs" / "*.log")], "fields": {"environment": "demo"}}],
        "outputs": {"logs": {"type": "file", "path": str(root / "out" / "logs.ndjson")},
                    "payouts": {"type": "file", "path": str(root / "out" / "payouts.ndjson")}},
        "routes": [{"name": "payouts", "output": "payouts",
                    "when": {"any": [{"field": "message", "icontains": "payout"},
                                     {"field": "service", "equals": "payout-job"}]}}],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    config = load_config(root / "config.yaml")
    print(f"demo: {written} lines in {root / 'logs'}; config {root / 'config.yaml'}")
    agent = Agent(config)
    started = time.monotonic()

    async def main() -> int:
        task = asyncio.create_task(agent.run())
        while sum(o.docs_acked for o in agent.snapshot().outputs) < written:
            if task.done():
                return task.result()
            await asyncio.sleep(0.05)
        agent.stop()
        return await task

    try:
        import uvloop

        code = uvloop.run(main())
    except ImportError:  # pragma: no cover
        code = asyncio.run(main())
    took = time.monotonic() - started
    print(render(agent.snapshot().to_json()))
    shipped = {name: sum(1 for _ in open(root / "out" / f"{name}.ndjson")) for name in ("logs", "payouts")}
    print(f"\nshipped {sum(shipped.values())} of {written} records in {took:.2f}s: {shipped}")
    print(f"outputs: {root / 'out'}")
    return code if sum(shipped.values()) == written else 1
