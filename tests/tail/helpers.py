"""Run one TailInput in-process, acknowledging every batch at once, and collect the lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccf_agent.acks import Flow
from ccf_agent.batch import Batch
from ccf_agent.config import InputConfig
from ccf_agent.pipeline.native import ScanSpec
from ccf_agent.registry import Registry
from ccf_agent.tail.source import TailInput


class Tail:
    def __init__(self, tmp: Path, pattern: str = "*.log", first_run: bool = True, flow_limit: int = 64 << 20,
                 **cfg: Any) -> None:
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.state = tmp / "state"
        opts: dict[str, Any] = {"scan_interval": 0.05, "poll_interval": 0.02, "rotate_wait": 0.3, **cfg}
        self.cfg = InputConfig(id="app", paths=(str(self.logs / pattern),), **opts)
        self.first_run = first_run
        self.flow_limit = flow_limit  # bytes read but not acknowledged before reading pauses
        self.lines: list[bytes] = []
        self.batches: list[Batch] = []
        self.hold = False  # True: keep batches unacknowledged (an output that is down)
        self.held: list[Batch] = []
        self.room = asyncio.Event()  # cleared: reading waits for room (backpressure from the outputs)
        self.room.set()

    def dispatch(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.lines.extend(batch.lines)
        if self.hold:
            self.held.append(batch)
        elif batch.token is not None:
            batch.token.done()

    def release(self) -> None:
        for b in self.held:
            assert b.token is not None
            b.token.done()
        self.held.clear()

    async def __aenter__(self) -> Tail:
        self.registry = Registry(self.state)
        self.registry.load()
        self.flow = Flow(self.flow_limit)
        self.input = TailInput(self.cfg, self.registry, self.flow, self.dispatch, self._room,
                               first_run=self.first_run, scan_spec=ScanSpec())
        self.scans = 0
        scan = self.input.scan

        def counted() -> None:  # what a scan finds is read before the next scan starts
            scan()
            self.scans += 1

        self.input.scan = counted  # type: ignore[method-assign]
        self.task = asyncio.create_task(self.input.run())
        return self

    async def _room(self) -> None:
        await self.flow.wait_for_room()
        await self.room.wait()

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        self.registry.save()

    async def until(self, predicate: Callable[[], bool], what: str, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {len(self.lines)} lines")
            await asyncio.sleep(0.01)

    async def has_lines(self, n: int) -> None:
        await self.until(lambda: len(self.lines) >= n, f"{n} lines")

    async def scanned(self, n: int = 2) -> None:
        """`n` more scans from now. After two, whatever a scan would (wrongly) open again has been
        opened and its first chunk read: how "nothing is read twice" is awaited, not slept on."""
        target = self.scans + n
        await self.until(lambda: self.scans >= target, f"{n} more scans")


def numbered(start: int, n: int, prefix: str = "line") -> str:
    return "".join(f'{{"message":"{prefix} {i}","seq":{i}}}\n' for i in range(start, start + n))


def seqs(lines: list[bytes]) -> list[int]:
    import json

    return [json.loads(x)["seq"] for x in lines if x.startswith(b"{")]
