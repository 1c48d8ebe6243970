"""Run the go-lumber test server (tests/lumber/main.go) from Python tests; stdlib only.

    srv = start(mode="ack")             # builds bin/lumber-server if needed
    ... connect to 127.0.0.1:srv.port ...
    srv.events()                        # [{"conn": 1, "batch": 1, "event": {...}}, ...]
    srv.set_mode("drop-after 5")        # returns once the server has applied it
    srv.stop()

Events go to a file that the server flushes before each ACK (and before dropping a connection),
so once the client has seen an ACK or a disconnect, events() already holds what was received.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BINARY = HERE / "bin" / "lumber-server"


def build() -> Path:
    """Build bin/lumber-server unless it is newer than every source file."""
    sources = [*HERE.glob("*.go"), HERE / "go.mod", HERE / "go.sum"]
    newest = max(p.stat().st_mtime for p in sources)
    if BINARY.exists() and BINARY.stat().st_mtime >= newest:
        return BINARY
    subprocess.run(
        ["go", "build", "-buildvcs=false", "-o", str(BINARY), "./..."],
        cwd=HERE,
        check=True,
    )
    return BINARY


class LumberServer:
    def __init__(self, args: list[str], ready_timeout: float = 30.0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="lumber-"))
        self.out_path = self._dir / "events.jsonl"
        self.log_path = self._dir / "server.log"
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [str(build()), "-out", str(self.out_path), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        try:
            line = self._next_line(ready_timeout, "LUMBER_READY")
            self.port = int(line.split()[1])
        except BaseException:
            self.stop()
            raise

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _next_line(self, timeout: float, prefix: str) -> str:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"lumber-server: no {prefix} within {timeout}s") from None
            if line is None:
                raise RuntimeError(f"lumber-server exited: {self.log()}")
            if line.startswith("LUMBER_ERROR"):
                raise ValueError(line)
            if line.startswith(prefix):
                return line

    def set_mode(self, mode: str, timeout: float = 10.0) -> None:
        """ack | stall | "drop-after N" | "partial N"; blocks until the server applied it."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(mode + "\n")
        self._proc.stdin.flush()
        self._next_line(timeout, "LUMBER_MODE")

    def events(self) -> list[dict[str, Any]]:
        """Every event line written so far (a trailing partial line is left out)."""
        try:
            data = self.out_path.read_bytes()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()  # EOF on stdin makes the server exit
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LumberServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    mode: str = "ack",
    tls: dict[str, Any] | None = None,
    keepalive: float | None = None,
    port: int = 0,
) -> LumberServer:
    """Start a server on 127.0.0.1.

    tls: {"cert": path, "key": path, "ca": path (optional, verifies client certs),
          "require_client_cert": bool (optional)}.
    keepalive: seconds between go-lumber's ACK 0 keepalives for a held batch (default 3).
    """
    args = ["-port", str(port), "-mode", mode]
    if keepalive is not None:
        args += ["-keepalive", f"{keepalive}s"]
    if tls:
        args += ["-cert", str(tls["cert"]), "-key", str(tls["key"])]
        if tls.get("ca"):
            args += ["-ca", str(tls["ca"])]
        if tls.get("require_client_cert"):
            args.append("-require-client-cert")
    return LumberServer(args)
