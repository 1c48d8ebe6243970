"""The local HTTP endpoint: `/status` for `ccf-agent status`, `/health`, `/metrics`.

Bound to loopback by default (`status.listen`): it describes the host's files.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from ccf_agent.config import LISTEN_OFF, split_listen
from ccf_agent.ops.metrics import render_metrics

if TYPE_CHECKING:
    from ccf_agent.agent import Agent

log = logging.getLogger("ccf_agent.ops")


class StatusServer:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        listen = self.agent.config.status_listen
        address = None if listen in LISTEN_OFF else split_listen(listen)
        if address is None:  # the loader refused any other value
            return
        app = web.Application()
        app.router.add_get("/status", self._status)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        host, port = address
        try:
            await web.TCPSite(self.runner, host, port).start()
        except OSError as e:
            log.error("status endpoint %s unavailable: %s (shipping continues)", listen, e.strerror)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.agent.status()), content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        from ccf_agent.ops.health import health

        body, ok = health(self.agent)
        return web.Response(body=orjson.dumps(body), content_type="application/json", status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        # The text exposition format's own media type (Prometheus picks its parser by it).
        return web.Response(body=render_metrics(self.agent).encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8",
                                     "X-Content-Type-Options": "nosniff"})
