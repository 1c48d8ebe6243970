"""A page opened in Debian's headless Chromium over the DevTools protocol: what it logged, what it
fetched, and a full-page screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageRun:
    console: list[dict[str, Any]] = field(default_factory=list)  # console calls: type, text
    exceptions: list[str] = field(default_factory=list)  # uncaught errors
    log_errors: list[str] = field(default_factory=list)  # the browser's own log at level error
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    size: tuple[int, int] = (0, 0)  # the page's full width and height in CSS pixels


async def open_page(url: str, screenshot: Path, width: int = 1100) -> PageRun:
    assert CHROMIUM, "chromium is not installed (tests/run.sh installs it)"
    profile = Path(tempfile.mkdtemp(prefix="ccf-chromium-"))
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
        f"--window-size={width},800", "about:blank", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert proc.returncode is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(ws_url, max_msg_size=0) as ws:
                return await _drive(ws, url, screenshot, width)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _drive(ws: aiohttp.ClientWebSocketResponse, url: str, screenshot: Path, width: int) -> PageRun:
    run = PageRun()
    ids = itertools.count(1)
    loaded = asyncio.Event()

    async def call(method: str, **params: Any) -> dict[str, Any]:
        n = next(ids)
        await ws.send_json({"id": n, "method": method, "params": params})
        while True:
            msg = await ws.receive_json(timeout=60)
            if msg.get("id") == n:
                assert "error" not in msg, msg
                return msg.get("result", {})
            event(msg)

    def event(msg: dict[str, Any]) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            run.console.append({"type": p["type"], "text": " ".join(str(a.get("value", a.get("description")))
                                                                      for a in p.get("args", []))})
        elif method == "Runtime.exceptionThrown":
            run.exceptions.append(str(p["exceptionDetails"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            run.log_errors.append(p["entry"]["text"])
        elif method == "Network.requestWillBeSent":
            run.requests.append(p["request"]["url"])
        elif method == "Page.loadEventFired":
            loaded.set()

    for domain in ("Runtime", "Log", "Network", "Page"):
        await call(f"{domain}.enable")
    await call("Page.navigate", url=url)
    while not loaded.is_set():
        event(await ws.receive_json(timeout=60))
    metrics = await call("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    run.size = (int(size["width"]), int(size["height"]))
    shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": width, "height": run.size[1], "scale": 1})
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    return run
