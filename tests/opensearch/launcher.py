"""Build and run a real single-node OpenSearch 2.19 for the test suite (stdlib only).

The node is assembled from Maven Central jars (see pom.xml) and started by CcfTestNode.java, a
``Node`` subclass, so no distribution download, Docker or network beyond Maven Central is needed.

    python -m tests.opensearch.launcher build           # fetch jars + compile (no-op when up to date)
    python -m tests.opensearch.launcher run [--port N]  # start, print the URL, run until Ctrl-C/SIGTERM
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.jvm import CdsDump, JvmBuild, java, log_tail, serve_until_stopped

HERE = Path(__file__).resolve().parent
JVM_BUILD = JvmBuild(
    what="OpenSearch test node",
    size_hint="~70 MB",
    pom=HERE / "pom.xml",
    java_src=HERE / "src/main/java/ccf/testnode/CcfTestNode.java",
    lib=HERE / "lib",
    target=HERE / "target",
    jar_name="ccf-test-node.jar",
    marker_jar="opensearch-*.jar",
)
MAIN_CLASS = "ccf.testnode.CcfTestNode"

READY_PREFIX = "CCF_NODE_READY "
READY_TIMEOUT_S = 120.0
ENV_URL = "CCF_TEST_ES_URL"

# Mirrors the distribution's JVM defaults that matter for a small heap: G1 tuned so heap usage
# does not reach the circuit breakers before GC runs, and Netty without per-thread caches/arenas.
JVM_OPTS = [
    "-XX:+UseG1GC",
    "-XX:G1ReservePercent=25",
    "-XX:InitiatingHeapOccupancyPercent=30",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "-Dio.netty.allocator.numDirectArenas=0",
    "-Dlog4j2.disable.jmx=true",
    # As the 2.19 distribution does on Java 17 (date formats with locale text).
    "-Djava.locale.providers=SPI,COMPAT",
    # JVM warnings go to stderr (the log), so stdout carries only the ready line.
    "-Xlog:disable",
    "-Xlog:all=warning:stderr",
    "-Xlog:cds=error:stderr",
    # The node closes itself from its own shutdown hook and still wants to log while doing so.
    "-Dlog4j.shutdownHookEnabled=false",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
]


def build() -> None:
    """Fetch the jars into lib/ and compile the launcher into target/; a no-op when up to date."""
    JVM_BUILD.build()


def _http_json(url: str, timeout: float = 60.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


class Node:
    """A running node; stop() is idempotent. For outage tests it can also be killed, paused and
    restarted on the same home (its data kept) and port."""

    def __init__(self, home: Path, owns_home: bool, heap: str, settings: Mapping[str, object] | None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.home = home
        self.log_path = home / "node.log"
        self.url = ""
        self.port = 0
        self._owns_home = owns_home
        self._heap = heap
        self._settings = dict(settings or {})
        self._cds_dump: CdsDump | None = None  # the archive the JVM writes at exit, on a machine's first start

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def launch(self, port: int, keep_data: bool = False) -> None:
        """Start the JVM and wait until the node answers and its cluster is at least yellow."""
        # Starts ~30% faster with the archive; the first start on a machine writes it when it stops.
        cds_opts, self._cds_dump = JVM_BUILD.cds_options()
        cmd = [
            java("java"),
            f"-Xms{self._heap}",
            f"-Xmx{self._heap}",
            f"-Djava.io.tmpdir={self.home / 'tmp'}",
            f"-Dccf.keepData={str(keep_data).lower()}",
            *JVM_OPTS,
            *cds_opts,
            "-cp",
            JVM_BUILD.classpath(),
            MAIN_CLASS,
            str(self.home),
            str(port),
            *(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self._settings.items()),
        ]
        (self.home / "tmp").mkdir(exist_ok=True)
        with open(self.log_path, "ab" if keep_data else "wb") as log:
            # stdin stays a pipe we hold: if this Python process dies, the node sees EOF and exits.
            # A new session keeps a terminal's Ctrl-C away from the JVM: we stop it ourselves.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
        self.url = _wait_ready(self)
        self.port = int(self.url.rsplit(":", 1)[1])
        _http_json(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=30s")

    def kill(self) -> None:
        """SIGKILL: what a crash or the OOM killer does (what it acknowledged is on disk)."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()
        self._settle_cds()

    def pause(self) -> None:
        """SIGSTOP: the node hangs; the kernel still accepts connections into its backlog."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same home, with its data, and the same port, once stopped or killed."""
        assert not self.running, "stop() or kill() the node first"
        self.launch(self.port, keep_data=True)

    def stop_process(self, timeout: float = 30.0) -> None:
        """Stop the node cleanly, keeping its home: restart() brings it back."""
        if self._cds_dump:
            timeout = max(timeout, 90.0)  # writing the archive at exit takes 5-25 s on a busy machine
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a paused node cannot stop
            # Closing stdin is the node's normal stop signal; SIGTERM/SIGKILL are fallbacks.
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._settle_cds()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_process(timeout)
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _settle_cds(self) -> None:
        if self._cds_dump and self.proc is not None:
            self._cds_dump.finish(clean_exit=self.proc.returncode == 0)
            self._cds_dump = None


def start(
    home: Path | None = None, port: int = 0, heap: str = "512m", settings: Mapping[str, object] | None = None
) -> Node:
    """Start a node (build first if needed) and return it once the cluster is at least yellow.

    `settings` are extra node settings, e.g. {"thread_pool.write.queue_size": 1} for 429 tests.
    """
    build()
    owns_home = home is None
    home = Path(tempfile.mkdtemp(prefix="ccf-opensearch-")) if home is None else Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    node = Node(home, owns_home, heap, settings)
    try:
        node.launch(port)
    except BaseException:
        node.stop()
        raise
    return node


def _wait_ready(node: Node) -> str:
    """Read the node's stdout until the ready line; keep draining it afterwards so it never blocks."""
    found: list[str] = []
    ready = threading.Event()

    proc = node.proc
    assert proc is not None and proc.stdout is not None
    stdout = proc.stdout

    def reader() -> None:
        for raw in stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(READY_PREFIX) and not ready.is_set():
                found.append(line[len(READY_PREFIX) :])
                ready.set()
        ready.set()  # EOF: the process died (or closed stdout)

    threading.Thread(target=reader, name="opensearch-stdout", daemon=True).start()
    if not ready.wait(READY_TIMEOUT_S) or not found:
        try:  # stdout EOF can come just before the exit status does
            code: int | None = proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        state = f"exited with {code}" if code is not None else f"not ready after {READY_TIMEOUT_S:.0f}s"
        raise RuntimeError(f"OpenSearch test node {state}; log {node.log_path}:\n{node.log_tail()}")
    return found[0]


_node: Node | None = None
_node_lock = threading.Lock()


def ensure_node() -> str:
    """URL of $CCF_TEST_ES_URL if set, else of one node per Python process (stopped at exit)."""
    global _node
    external = os.environ.get(ENV_URL)
    if external:
        return external.rstrip("/")
    with _node_lock:
        if _node is None or not _node.running:
            _node = start()
            atexit.register(_node.stop)
        return _node.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.opensearch.launcher")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="download jars and compile the launcher")
    run = sub.add_parser("run", help="start a node and run until Ctrl-C or SIGTERM")
    run.add_argument("--port", type=int, default=0, help="HTTP port (0 = any free port)")
    run.add_argument("--heap", default="512m")
    args = parser.parse_args(argv)

    if args.cmd == "build":
        build()
        return 0

    t0 = time.monotonic()
    node = start(port=args.port, heap=args.heap)
    # The URL alone on stdout, so scripts can read it; the rest goes to stderr.
    print(node.url, flush=True)
    print(
        f"pid {node.pid}, started in {time.monotonic() - t0:.1f}s, home {node.home}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    serve_until_stopped(lambda: node.running, node.stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
