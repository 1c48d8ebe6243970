"""Shared helpers for the alert tests: configs from plain dicts, a settable clock, records."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from ccf_agent.alerts.engine import AlertEngine
from ccf_agent.alerts.rules import Rule, make_rule
from ccf_agent.config import AlertsConfig, parse_alerts

EXAMPLE = Path(__file__).resolve().parents[2] / "ccf_agent" / "alerts" / "example.yaml"

FAILED = {"field": "status", "equals": "failed"}
PAYOUT = {"field": "message", "icontains": "payout"}


class ConfigProblem(Exception):
    def __init__(self, path: tuple, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


def where(path: tuple, message: str) -> Exception:
    return ConfigProblem(path, message)


def alerts(raw: dict[str, Any]) -> AlertsConfig:
    return parse_alerts(raw, where)


def rule(**spec: Any) -> Rule:
    """A rule state machine from its YAML keys (`for_` for `for`)."""
    if "for_" in spec:
        spec["for"] = spec.pop("for_")
    return make_rule(alerts({"rules": [{"name": "R", **spec}]}).rules[0])


def example_config(env: dict[str, str] | None = None) -> AlertsConfig:
    """example.yaml with ${VAR:-default} substituted the way the config loader does."""
    env = {**os.environ, **(env or {})}
    text = re.sub(r"\$\{([^}:]*)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""),
                  EXAMPLE.read_text())
    return parse_alerts(yaml.safe_load(text)["alerts"], where)


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def payout(status: str = "completed", amount: int = 1000, **extra: Any) -> dict[str, Any]:
    level = "error" if status == "failed" else "info"
    msg = "Payout failed" if status == "failed" else "Payout processed"
    return {"level": level, "message": msg, "amount": amount, "status": status,
            "service": "click-clack-cashflow", "payoutId": "payout_123", "userId": "user_456", **extra}


def make_engine(tmp_path: Path, raw: dict[str, Any], clock: Clock | None = None, **kw: Any) -> AlertEngine:
    return AlertEngine(alerts(raw), tmp_path, clock=clock or Clock(), **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(predicate: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Wait for a state that has no event to await (another process, a retry loop)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Receiver:
    """A webhook endpoint that records what it got; `answers` are the statuses of the first calls."""

    def __init__(self, port: int, answers: list[int] | None = None) -> None:
        self.port, self.answers = port, list(answers or [])
        self.got: list[tuple[str, dict]] = []  # (Idempotency-Key, body) of accepted posts
        self.calls = 0
        self.changed = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.got.append((request.headers.get("Idempotency-Key", ""), await request.json()))
        self.changed.set()
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def wait_for(self, n: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.got) < n:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(engine):
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        engine.close()
