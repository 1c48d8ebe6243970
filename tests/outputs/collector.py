"""A small HTTP collector for the http output's tests: aiohttp in its own thread, answering the
first requests from a script (failures), then 200; it keeps every request and what it stored."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    at: float  # time.monotonic() when the body had been read
    action: str
    headers: dict[str, str]
    records: list[dict[str, Any]]


class Collector:
    """Script actions: "ok", a status ("500", "400", "413"), "429:<seconds>" (with Retry-After),
    "drop" (store the records, then cut the connection without an answer: the client cannot know).
    `rule(records) -> action | None` decides for requests after the script."""

    def __init__(self, script: Sequence[str] = (),
                 rule: Callable[[list[dict[str, Any]]], str | None] | None = None) -> None:
        self.script = list(script)
        self.rule = rule
        self.seen: list[Seen] = []
        self.stored: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> Collector:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/ingest", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/ingest"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # inflated by aiohttp per Content-Encoding (a bad gzip body fails here)
        if body.startswith(b"["):
            records = json.loads(body)
        else:
            records = [json.loads(line) for line in body.splitlines() if line]
        action = self.script.pop(0) if self.script else (self.rule and self.rule(records)) or "ok"
        self.seen.append(Seen(time.monotonic(), action, dict(request.headers), records))
        if action in ("ok", "drop"):
            self.stored.extend(records)
        if action == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # no answer at all
        if action == "ok":
            return web.json_response({"ok": True})
        status, _, retry_after = action.partition(":")
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.json_response({"error": f"scripted {status}"}, status=int(status), headers=headers)

    def stored_seqs(self) -> list[int]:
        return [r["seq"] for r in self.stored]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
