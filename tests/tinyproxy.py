"""A real forward proxy for the tests: Debian's tinyproxy on 127.0.0.1 with a config of the test's own.

    with TinyProxy(auth=("ccf", "s3cret")) as proxy:   # Basic proxy authentication (BasicAuth)
        proxy.url                                      # http://127.0.0.1:PORT
        proxy.requests()                               # ["GET http://127.0.0.1:9200/ HTTP/1.1",
                                                       #  "CONNECT 127.0.0.1:43211 HTTP/1.1", ...]
    TinyProxy(deny_all=True)                           # answers 403 to every request (a filter)

Its log is read for the requests it saw: the proof that a request went through it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.harness import free_port

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (.+)$")


class TinyProxy:
    def __init__(self, auth: tuple[str, str] | None = None, deny_all: bool = False) -> None:
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        self.dir = Path(tempfile.mkdtemp(prefix="tinyproxy-"))
        self.port = free_port()
        self.log_path = self.dir / "tinyproxy.log"
        conf = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 60", "LogLevel Connect", "MaxClients 64",
                "DisableViaHeader Yes", f"LogFile \"{self.log_path}\""]
        # No ConnectPort line: CONNECT to any port (the test's TLS servers are on ephemeral ports).
        if auth is not None:
            conf.append(f"BasicAuth {auth[0]} {auth[1]}")
        if deny_all:
            (self.dir / "filter").write_text("")
            conf += [f"Filter \"{self.dir / 'filter'}\"", "FilterDefaultDeny Yes"]
        (self.dir / "tinyproxy.conf").write_text("\n".join(conf) + "\n")
        self._proc = subprocess.Popen([binary, "-d", "-c", str(self.dir / "tinyproxy.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start: {self.log()}") from None
                time.sleep(0.05)

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """The request lines it received, in order (CONNECT host:port, or an absolute URL)."""
        return [m.group(1).strip() for line in self.log().splitlines() if (m := _REQUEST.search(line))]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TinyProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
