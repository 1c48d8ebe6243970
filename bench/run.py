"""Benchmark harness for ccf-agent: one command, see bench/README.md.

    python bench/run.py                         # every scenario (opensearch needs --es-url)
    python bench/run.py --scenario default --scenario latency --quick
    python bench/run.py --agent-cmd "python /tmp/standin.py"   # harness self-test

Per scenario: build/start the Go sink, generate the workload, write a
config, run the agent as a separate process, sample its /proc figures, stop
it with SIGTERM, then check exactly-once delivery from the sink's counters.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import copy
import datetime as dt
import http.client
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SINK_BIN = BENCH / "sink" / "bin" / "sink"
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))
import workload  # noqa: E402  (sibling module, not a package)
from kafka_target import KafkaTarget  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Scenario:
    name: str
    kind: str  # bulk | many | steady | opensearch | sink | kafka
    lines: int = 0
    files: int = 1
    rate: float = 0.0
    duration: float = 0.0
    idle: float = 0.0
    down_at: float = 0.0  # seconds after the writer starts
    down_for: float = 0.0
    routes: bool = True
    compression: str | None = None
    extra: Path | None = None
    file: str = "app.log"  # combined.log turns the business metrics on (ops/business.py: SOURCES)
    about: str = ""


def scenarios(quick: bool) -> dict[str, Scenario]:
    q = 10 if quick else 1  # --quick: ~10x smaller sizes and durations
    n = 1_000_000 // q
    items = [
        Scenario("sink", "sink", lines=2_000_000 // q, about="sink self-test: Go load client -> sink"),
        Scenario("default", "bulk", lines=n, about="one file, payout routing"),
        Scenario("json-only", "bulk", lines=n, routes=False, about="one file, no routes"),
        Scenario("business", "bulk", lines=n, file="combined.log",
                 about="default, the file named combined.log: business metrics on"),
        Scenario("redact-alerts", "bulk", lines=n, extra=BENCH / "scenarios" / "redact-alerts.yaml",
                 about="default + redaction/alert config snippet"),
        Scenario("gzip", "bulk", lines=n, compression="gzip", about="default + compression: gzip"),
        Scenario("many-files", "many", lines=1000 * 1000 // q, files=1000 // q, idle=60 / q,
                 about="1,000 files x 1,000 lines, then idle"),
        Scenario("outage", "steady", rate=10_000, duration=70 / q, down_at=15 / q, down_for=40 / q,
                 about="steady 10k/s, sink down in the middle"),
        Scenario("latency", "steady", rate=10_000, duration=30 / q, about="steady 10k/s, end-to-end latency"),
        Scenario("opensearch", "opensearch", lines=n, about="real OpenSearch at --es-url"),
        Scenario("kafka", "kafka", lines=n, about="default's workload into a real Kafka broker (run with default)"),
    ]
    return {s.name: s for s in items}


# ---------------------------------------------------------------- processes


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _stat(pid: int) -> tuple[float, float] | None:
    """(own utime+stime, reaped children's cutime+cstime) in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _nfds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _cpu_clock() -> tuple[float, float]:
    """(busy CPU s of the whole machine, CPU s of this harness + its reaped children)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = (sum(v) - v[3] - v[4]) / TICK  # all but idle and iowait
    own = sum(getattr(resource.getrusage(w), a) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for a in ("ru_utime", "ru_stime"))
    return busy, own


class Sampler(threading.Thread):
    """Samples CPU, RSS and fds of a process tree (the agent plus any workers).

    CPU: each pid's last seen utime+stime, summed; a worker that exits
    between samples is still covered because the agent's cutime/cstime (taken
    at the end from wait4) includes reaped children.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.cpu: dict[int, float] = {}
        self.hwm_kb: dict[int, int] = {}
        self.series: list[tuple[float, float, int, int]] = []  # (unix s, cpu s, rss kB, fds)
        self.max_fds = 0
        self._stop_evt = threading.Event()

    def sample(self) -> tuple[float, float, int, int]:
        rss = fds = 0
        for p in _tree(self.pid):
            st = _stat(p)
            if st is None:
                continue
            self.cpu[p] = st[0]
            self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), _status_kb(p, "VmHWM:"))
            rss += _status_kb(p, "VmRSS:")
            fds += _nfds(p)
        self.max_fds = max(self.max_fds, fds)
        row = (time.time(), sum(self.cpu.values()), rss, fds)
        self.series.append(row)
        return row

    def run(self) -> None:
        while not self._stop_evt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()

    def cpu_at(self, unix_s: float) -> float:
        """CPU seconds consumed up to the first sample at or after unix_s."""
        for t, cpu, _, _ in self.series:
            if t >= unix_s:
                return cpu
        return self.series[-1][1] if self.series else 0.0


class Sink:
    def __init__(self, log_path: Path, extra: list[str] | None = None) -> None:
        with open(log_path, "wb") as err:
            self.proc = subprocess.Popen([str(SINK_BIN), "-port", "0", *(extra or [])], stdout=subprocess.PIPE,
                                         stderr=err, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("SINK_READY "):
            self.proc.kill()
            raise RuntimeError(f"sink did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, path: str, method: str = "GET") -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method), timeout=10) as r:
                return json.load(r)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None  # refused while simulating an outage

    def cpu_s(self) -> float:
        st = _stat(self.proc.pid)
        return st[0] if st else 0.0

    def close(self) -> dict[str, Any] | None:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)  # final stats line, printed on SIGTERM
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None


def build_sink() -> None:
    subprocess.run(["go", "build", "-o", str(SINK_BIN), "."], cwd=BENCH / "sink", check=True)


# ------------------------------------------------------------------- config


def deep_merge(base: dict, extra: dict) -> dict:
    """Mapping values merge recursively; anything else in `extra` replaces."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(sc: Scenario, work: Path, out: dict[str, Any], indices: tuple[str, str],
                extra_files: list[Path]) -> Path:
    """`out` holds the output keys shared by both outputs (type, hosts or brokers, credentials);
    `indices` are the two outputs' indices, or topics for kafka."""
    out = {"type": "elasticsearch", **out}
    name = "topic" if out["type"] == "kafka" else "index"
    if sc.compression:
        out["compression"] = sc.compression
    cfg: dict[str, Any] = {
        "state_dir": str(work / "state"),
        "inputs": [{"id": "app", "paths": [str(work / "logs" / "*.log")], "format": "json"}],
        # deepcopy: shared sub-objects would be dumped as YAML anchors (&id001)
        "outputs": {"logs": {**copy.deepcopy(out), name: indices[0]}},
    }
    if sc.routes:
        cfg["outputs"]["payouts"] = {**copy.deepcopy(out), name: indices[1]}
        # same predicate as workload.is_payout(), which counts the expected docs
        cfg["routes"] = [{"name": "payouts", "output": "payouts", "when": {"any": [
            {"field": "message", "icontains": "payout"}, {"field": "service", "equals": "payout-job"}]}}]
    for f in extra_files:
        snippet = yaml.safe_load(f.read_text()) or {}
        cfg = deep_merge(cfg, snippet)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ------------------------------------------------------------------ scenarios


@dataclass
class Result:
    name: str
    status: str = "pass"  # pass | fail | skip | error
    about: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sink: dict[str, Any] | None = None

    def check(self, name: str, ok: bool, detail: Any) -> None:
        self.checks[name] = {"ok": bool(ok), "detail": detail}
        if not ok:
            self.status = "fail"


class Corpus:
    """Bulk workloads are generated once per run and hard-linked per scenario."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.seed = root, seed
        self.cache: dict[tuple, tuple[Path, workload.Summary]] = {}

    def bulk(self, n: int) -> tuple[Path, workload.Summary]:
        key = ("bulk", n)
        if key not in self.cache:
            p = self.root / f"bulk-{n}.log"
            s = workload.write_bulk(p, n, self.seed)
            log(f"generated {n:,} lines ({s.bytes / 1e6:.0f} MB, {s.bytes / n:.0f} B/line) in {s.seconds:.1f}s")
            self.cache[key] = (p, s)
        return self.cache[key]

    def many(self, files: int, lines: int) -> tuple[Path, workload.Summary]:
        key = ("many", files, lines)
        if key not in self.cache:
            d = self.root / f"many-{files}x{lines}"
            s = workload.write_many(d, files, lines, self.seed)
            log(f"generated {files:,} files x {lines:,} lines in {s.seconds:.1f}s")
            self.cache[key] = (d, s)
        return self.cache[key]


def link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_sink_selftest(sc: Scenario) -> Result:
    """Sink pinned to one core (GOMAXPROCS=1), Go load client on the other."""
    res = Result(sc.name, about=sc.about)
    ncpu = os.cpu_count() or 1
    env = {**os.environ, "GOMAXPROCS": "1"}
    sink = subprocess.Popen([str(SINK_BIN), "-port", "0", "-quiet"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        if ncpu > 1:
            os.sched_setaffinity(sink.pid, {0})
        port = int((sink.stdout.readline() if sink.stdout else "").split()[1])
        c0 = _stat(sink.pid)[0]  # type: ignore[index]
        load = subprocess.run([str(SINK_BIN), "-load", f"http://127.0.0.1:{port}", "-docs", str(sc.lines)],
                              capture_output=True, text=True, check=False,
                              preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if ncpu > 1 else None)
        cpu = _stat(sink.pid)[0] - c0  # type: ignore[index]
        lr = json.loads(load.stdout.strip().splitlines()[-1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_ccf/stats", timeout=10) as r:
            st = json.load(r)
    finally:
        sink.terminate()
        sink.communicate(timeout=10)
    res.metrics = {"lines": sc.lines, "wall_eps": round(lr["docs_per_s"]), "sink_cpu_s": cpu,
                   "sink_docs_per_cpu_s": round(sc.lines / cpu) if cpu else None,
                   "request_mb_per_s": round(lr["mb_per_s"], 1), "pinned": ncpu > 1,
                   "peak_rss_mb": None}
    res.check("load_ok", lr["ok"], lr)
    res.check("exactly_once", st["distinct_seqs"] == sc.lines and st["duplicates"] == 0,
              {k: st[k] for k in ("docs_total", "distinct_seqs", "duplicates")})
    res.check("sink_fast_enough", cpu > 0 and sc.lines / cpu > 500_000, "docs per sink CPU-second > 500k")
    return res


def run_agent_scenario(sc: Scenario, args: argparse.Namespace, corpus: Corpus, root: Path,
                       logdir: Path) -> Result:
    external = sc.kind in ("opensearch", "kafka")
    sink = None if external else Sink(logdir / f"{sc.name}-sink.log", [] if args.sink_verbose else ["-quiet"])
    try:
        return _agent_scenario(sc, args, corpus, root, logdir, sink)
    finally:  # normally closed (and reaped) inside; this covers errors
        if sink and sink.proc.poll() is None:
            sink.proc.kill()
            sink.proc.wait()


def _agent_scenario(sc: Scenario, args: argparse.Namespace, corpus: Corpus, root: Path, logdir: Path,
                    sink: Sink | None) -> Result:
    res = Result(sc.name, about=sc.about)
    work = root / sc.name
    (work / "logs").mkdir(parents=True)
    (work / "state").mkdir()
    external = sink is None
    stamp = time.strftime("%Y%m%d%H%M%S")
    indices = (f"ccf-bench-{stamp}-logs", f"ccf-bench-{stamp}-payouts") if external else ("ccf-logs", "ccf-payouts")
    es = Es(args.es_url, args.es_insecure) if sc.kind == "opensearch" else None
    kafka = KafkaTarget(args.kafka) if sc.kind == "kafka" else None
    try:
        return _run_agent(sc, args, corpus, work, logdir, sink, es, kafka, indices, res)
    finally:
        if kafka:
            kafka.close()


def _run_agent(sc: Scenario, args: argparse.Namespace, corpus: Corpus, work: Path, logdir: Path, sink: Sink | None,
               es: Es | None, kafka: KafkaTarget | None, indices: tuple[str, str], res: Result) -> Result:
    out_keys: dict[str, Any] = (
        {"hosts": [sink.url]} if sink else kafka.output_keys() if kafka else es.agent_output_keys())  # type: ignore[union-attr]

    # workload: bulk files exist before the agent starts (a backlog to drain); with --tap, from the
    # moment the tap is attached, so that it sees the whole backlog go by; --tap-control does all of
    # that but attach (the status endpoint on, the backlog linked once it answers), so the two differ
    # by the tap alone
    expected_payouts: int | None
    backlog: list[tuple[Path, Path]] = []
    if sc.kind in ("bulk", "opensearch", "kafka"):
        src, summ = corpus.bulk(sc.lines)
        backlog.append((src, work / "logs" / sc.file))
        expected, expected_payouts = summ.lines, summ.payouts
    elif sc.kind == "many":
        src, summ = corpus.many(sc.files, sc.lines // sc.files)
        backlog += [(f, work / "logs" / f.name) for f in sorted(src.iterdir())]
        expected, expected_payouts = summ.lines, summ.payouts
    else:  # steady: the writer reports the payout count when it is done
        (work / "logs" / sc.file).touch()
        expected, expected_payouts = int(sc.rate * sc.duration), None
    extra = [p for p in (sc.extra, args.config_extra) if p]
    cfg = make_config(sc, work, out_keys, indices, extra)
    tap: TapReader | None = None
    if args.tap or args.tap_control:
        tap = TapReader(_free_port(), attach=args.tap)
        with_status = yaml.safe_load(cfg.read_text())
        with_status["status"] = {"listen": f"127.0.0.1:{tap.port}"}
        cfg.write_text(yaml.safe_dump(with_status, sort_keys=False))
    else:
        for src_file, dst in backlog:
            link(src_file, dst)
    shutil.copyfile(cfg, logdir / f"{sc.name}-config.yaml")

    cmd = agent_command(args.agent_cmd, cfg)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    agent_log = open(logdir / f"{sc.name}-agent.log", "wb")
    t_start = time.time()
    # own session: a SIGKILL fallback can take down workers without touching anything else
    agent = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=agent_log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    sampler = Sampler(agent.pid)
    sampler.start()
    writer: subprocess.Popen | None = None
    down_window: tuple[float, float] | None = None
    down_timer: threading.Timer | None = None
    rusage = None
    try:
        if tap is not None:
            tap.start()
            attached = tap.attached.wait(30)
            res.check("tap_attached", attached, f"/tap on port {tap.port}" + ("" if attached else f": {tap.error}"))
            for src_file, dst in backlog:
                link(src_file, dst)
        if sc.kind == "steady":
            time.sleep(args.warmup)  # let the agent start tailing, so latency is not startup time
            writer = subprocess.Popen(
                [sys.executable, str(BENCH / "workload.py"), "--seed", str(args.seed), "steady",
                 "--out", str(work / "logs" / sc.file), "--rate", str(sc.rate), "--duration", str(sc.duration)],
                stdout=subprocess.PIPE, text=True)
            if sc.down_for and sink:
                t_down = time.time() + sc.down_at
                down_window = (t_down, t_down + sc.down_for)
                down_timer = threading.Timer(
                    sc.down_at, sink.call, (f"/_ccf/down?seconds={sc.down_for}&mode={args.outage_mode}", "POST"))
                down_timer.daemon = True
                down_timer.start()
        # wait for delivery: done when every seq arrived (and the writer finished)
        last_docs, last_progress, t_reached = -1, time.time(), 0.0
        stall = args.stall_timeout + (sc.down_for if sc.down_for else 0)
        while True:
            time.sleep(2.0 if es else 1.0 if kafka else 0.5)  # _refresh on a real cluster is not free
            if agent.poll() is not None:
                res.notes.append(f"agent exited early with code {agent.returncode}")
                break
            if writer and writer.poll() is None:
                writer_done = False
            else:
                writer_done = True
            docs, distinct = (es.progress(indices) if es else kafka.progress(indices) if kafka
                              else sink_progress(sink))  # type: ignore[arg-type]
            if docs != last_docs:
                last_docs, last_progress = docs, time.time()
            if distinct >= expected and not t_reached:
                t_reached = time.time()
            # OpenSearch counts can exceed N (a copying route) before every seq is in:
            # there, done means at least N docs and no change for 10 s
            if writer_done and distinct >= expected and (not (es or kafka) or time.time() - last_progress >= 3):
                break
            if time.time() - last_progress > stall and writer_done:
                res.notes.append(f"no progress for {stall:.0f}s: {distinct:,}/{expected:,} distinct seqs")
                break
        t_done = time.time()
        if writer:
            wout, _ = writer.communicate(timeout=600)
            ws = json.loads(wout.strip().splitlines()[-1])
            expected, expected_payouts = ws["lines"], ws["payouts"]
            res.metrics["writer_rate"] = round(ws["lines"] / ws["seconds"])
        time.sleep(args.settle)  # late duplicates (re-sends after a timeout) still get counted
        if sc.idle:
            c0, t0 = sampler.sample()[1], time.time()
            log(f"{sc.name}: idle for {sc.idle:.0f}s")
            time.sleep(sc.idle)
            row = sampler.sample()
            res.metrics["idle_cpu_pct"] = round(100 * (row[1] - c0) / (time.time() - t0), 2)
            res.metrics["idle_rss_mb"] = round(row[2] / 1024, 1)
            res.metrics["idle_fds"] = row[3]
        sampler.sample()
        # stop: SIGTERM, then give it time to flush before escalating
        t_term = time.time()
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            rusage = wait_agent(agent, args.stop_timeout)  # the sampler keeps running: shutdown RSS counts
            res.metrics["stop_s"] = round(time.time() - t_term, 2)
    finally:
        sampler.stop()
        if tap is not None and args.tap:
            tap.join(10)  # the stream ends with the agent
            res.metrics.update(tap_events=tap.events, tap_dropped=tap.dropped)
            # every event went by the tap: shown or counted as dropped
            res.check("tap_accounted", tap.events + tap.dropped == expected,
                      {"shown": tap.events, "dropped": tap.dropped, "lines": expected})
        if down_timer:
            down_timer.cancel()
        if agent.returncode is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
        try:  # workers that outlive the agent would skew the next scenario
            os.killpg(agent.pid, signal.SIGKILL)
            res.notes.append("processes of the agent's group were still running after it exited: killed")
        except ProcessLookupError:
            pass
        if writer and writer.poll() is None:
            writer.kill()
            writer.wait()
        agent_log.close()

    # ---- figures
    final = sink.call("/_ccf/stats") if sink else None
    sink_cpu = sink.cpu_s() if sink else None
    if sink:
        sink.close()
    cpu = max(sum(sampler.cpu.values()), rusage[0] if rusage else 0.0)
    m = res.metrics
    # events that reached the destination (== lines when exactly-once holds), not lines written
    delivered = final["distinct_seqs"] if final else expected
    m.update(lines=expected, delivered=delivered, cpu_s=round(cpu, 2),
             events_per_cpu_s=round(delivered / cpu) if cpu and delivered > 0 else None,
             peak_rss_mb=round(sum(sampler.hwm_kb.values()) / 1024, 1), max_fds=sampler.max_fds,
             agent_exit=agent.returncode)
    if final:
        res.sink = {k: v for k, v in final.items() if k != "per_second"}
        first, last = final["first_doc_unix_ns"] / 1e9, final["last_doc_unix_ns"] / 1e9
        if last > first:
            m["wall_s"] = round(last - first, 2)
            m["wall_eps"] = round(final["distinct_seqs"] / (last - first))
            m["cpu_s_at_last_doc"] = round(sampler.cpu_at(last), 2)
        if first:
            m["first_doc_after_s"] = round(first - t_start, 2)
        m["sink_cpu_s"] = round(sink_cpu or 0, 2)
        m["bulk_requests"] = final["bulk_requests"]
        m["docs_per_request"] = round(final["docs_total"] / final["bulk_requests"]) if final["bulk_requests"] else 0
        if sc.kind == "steady":
            lat = final["latency_ms"]
            m.update(latency_median_ms=round(lat["median"], 1), latency_p99_ms=round(lat["p99"], 1),
                     latency_max_ms=round(lat["max"], 1))
        if down_window:
            if final["outages"]:  # the sink's own record of the outage is the precise one
                o = final["outages"][0]
                down_window = (o["start_unix_ns"] / 1e9, o["start_unix_ns"] / 1e9 + o["seconds"])
                if o.get("first_doc_after_unix_ns"):
                    m["resume_s"] = round(o["first_doc_after_unix_ns"] / 1e9 - down_window[1], 2)
            m["catch_up_s"] = catch_up(final["per_second"], sc.rate, down_window[1] - first)
            m["rejected_requests"] = final["rejected_requests"]
            m["per_second"] = final["per_second"]
            m["rss_mb_series"] = [(round(t - t_start, 1), round(r / 1024)) for t, _, r, _ in sampler.series[::4]]
        check_sink(res, final, expected, expected_payouts, sc, indices)
    elif kafka:
        st = kafka.stats(indices)
        res.sink = st
        m["delivered"] = st["distinct_seqs"]
        m["events_per_cpu_s"] = round(st["distinct_seqs"] / cpu) if cpu and st["distinct_seqs"] else None
        if st["last_ms"] and st["first_ms"] and st["last_ms"] > st["first_ms"]:
            wall = (st["last_ms"] - st["first_ms"]) / 1000
            m["wall_s"] = round(wall, 2)
            m["wall_eps"] = round(st["distinct_seqs"] / wall)
            m["cpu_s_at_last_doc"] = round(sampler.cpu_at(st["last_ms"] / 1000), 2)
            m["first_doc_after_s"] = round(st["first_ms"] / 1000 - t_start, 2)
        res.check("exactly_once", st["distinct_seqs"] == expected and st["min_seq"] == 0
                  and st["max_seq"] == expected - 1, {"lines_written": expected, **st})
        payouts = st["topics"][indices[1]]
        res.check("routing", payouts["docs"] == expected_payouts and payouts["keys"] == payouts["docs"],
                  {"expected_payouts": expected_payouts, "payouts": payouts})
    elif es:
        # coarse (2 s polls, includes agent startup and refresh): the sink scenarios are the precise ones
        m["delivered_after_s"] = round((t_reached or t_done) - t_start, 1)
        m["wall_eps"] = round(expected / m["delivered_after_s"])
        check_es(res, es, indices, expected, expected_payouts, sc.routes)
        if not args.es_keep:
            es.delete(indices)
    else:
        res.check("sink_stats", False, "could not read sink stats")
    res.check("clean_stop", agent.returncode == 0 and "stop_s" in m,
              f"exit code {agent.returncode}" + (" after SIGTERM" if "stop_s" in m else " before SIGTERM"))
    return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TapReader(threading.Thread):
    """--tap: a `ccf-agent tap` client for the whole run, reading the daemon's /tap stream as fast as
    it comes (in this process, so its CPU is not the agent's): what a tap costs the agent.
    --tap-control (attach=False): waits for the same endpoint to answer /health, and no more."""

    def __init__(self, port: int, attach: bool = True) -> None:
        super().__init__(daemon=True, name="tap")
        self.port = port
        self.path = "/tap" if attach else "/health"
        self.attached = threading.Event()
        self.events = 0
        self.dropped = 0
        self.error = ""

    def run(self) -> None:
        deadline = time.time() + 30
        while True:  # until the agent's endpoint answers
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                break
            except OSError as e:
                conn.close()
                self.error = str(e)
                if time.time() > deadline:
                    return
                time.sleep(0.05)
        if self.path != "/tap":  # the control run: the endpoint is up (health may say 503 at start)
            conn.close()
            self.attached.set()
            return
        if resp.status != 200:
            self.error = f"HTTP {resp.status}"
            return
        self.attached.set()
        try:
            while line := resp.readline():
                if line.startswith(b'{"dropped":'):
                    self.dropped = json.loads(line)["dropped"]
                elif line.strip():
                    self.events += 1
        except (OSError, http.client.HTTPException):
            pass  # the agent stopped
        finally:
            conn.close()


def catch_up(per_second: list[int], rate: float, up_offset: float) -> float | None:
    """Seconds from the sink coming back until delivery is within ~1.5 s of the writer.

    The writer started ~when the first doc arrived (bucket 0) and writes
    `rate` lines/s, so by the end of bucket i it had written rate*(i+1); the
    slack absorbs normal latency and bucket alignment.
    """
    total = 0
    for i, n in enumerate(per_second):
        total += n
        if i + 1 > up_offset and total >= rate * (i - 0.5):
            return round(i + 1 - up_offset, 1)
    return None


def agent_command(template: str | None, cfg: Path) -> list[str]:
    if not template:
        return [sys.executable, "-m", "ccf_agent", "run", "-c", str(cfg)]
    parts = shlex.split(template)
    if any("{config}" in p for p in parts):
        return [p.replace("{config}", str(cfg)) for p in parts]
    return [*parts, "-c", str(cfg)]


def wait_agent(agent: subprocess.Popen, timeout: float) -> tuple[float, int] | None:
    """Reap the agent with wait4 for its rusage (incl. reaped workers): (cpu s, maxrss kB).

    ru_maxrss is not reported: after fork+exec it keeps the harness's own RSS
    as a floor, so the sampled VmHWM is the figure used for peak RSS.
    """
    if agent.returncode is not None:
        return None  # already reaped by poll() (it exited early): no rusage to get
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid, status, ru = os.wait4(agent.pid, os.WNOHANG)
        if pid:
            agent.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime, ru.ru_maxrss
        time.sleep(0.05)
    log(f"agent ignored SIGTERM for {timeout:.0f}s: SIGKILL")
    os.killpg(agent.pid, signal.SIGKILL)
    _, status, ru = os.wait4(agent.pid, 0)
    agent.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def sink_progress(sink: Sink) -> tuple[int, int]:
    st = sink.call("/_ccf/stats")
    return (st["docs_total"], st["distinct_seqs"]) if st else (-1, -1)


def check_sink(res: Result, st: dict, expected: int, payouts: int | None, sc: Scenario,
               indices: tuple[str, str]) -> None:
    res.check("exactly_once", st["distinct_seqs"] == expected and st["duplicates"] == 0
              and st["min_seq"] == 0 and st["max_seq"] == expected - 1,
              {"lines_written": expected, "distinct_seqs": st["distinct_seqs"], "duplicates": st["duplicates"],
               "min_seq": st["min_seq"], "max_seq": st["max_seq"]})
    docs = {k: v["docs"] for k, v in st["indices"].items()}
    if sc.routes:
        # a route may copy (logs gets everything) or divert (logs gets the rest): accept both
        logs_ok = docs.get(indices[0], 0) in (expected, expected - (payouts or 0))
        res.check("routing", docs.get(indices[1], 0) == payouts and logs_ok,
                  {"expected_payouts": payouts, "docs_per_index": docs})
    else:
        res.check("routing", docs.get(indices[0], 0) == expected, {"docs_per_index": docs})
    if st["docs_without_seq"]:
        res.notes.append(f"{st['docs_without_seq']} docs without seq (not from the workload)")
    if sc.compression == "gzip":
        res.check("gzip_used", st["bulk_requests"] > 0 and st["gzip_requests"] == st["bulk_requests"],
                  {"gzip_requests": st["gzip_requests"], "bulk_requests": st["bulk_requests"]})
    if st["other_requests"]:
        res.notes.append(f"other requests: {st['other_requests']}")


# ---------------------------------------------------------------- opensearch


class Es:
    """Tiny OpenSearch client (urllib): credentials may be given in the URL."""

    def __init__(self, url: str, insecure: bool) -> None:
        u = urllib.parse.urlsplit(url)
        self.base = urllib.parse.urlunsplit((u.scheme, u.hostname + (f":{u.port}" if u.port else ""), "", "", ""))
        self.headers = {"Content-Type": "application/json"}
        self.user, self.password, self.insecure = u.username, u.password, insecure
        if u.username:
            token = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        # opt-in only, for test clusters with self-signed certificates
        self.ctx = ssl._create_unverified_context() if insecure else None

    def agent_output_keys(self) -> dict[str, Any]:
        """Agent output settings for this cluster (keys of ccf_agent/config/outputs.py OutputConfig)."""
        keys: dict[str, Any] = {"hosts": [self.base]}
        if self.user:
            keys.update(username=urllib.parse.unquote(self.user),
                        password=urllib.parse.unquote(self.password or ""))
        if self.insecure:
            keys["tls"] = {"verify": False}
        return keys

    def req(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        with urllib.request.urlopen(r, timeout=120, context=self.ctx) as resp:
            return json.load(resp)

    def progress(self, indices: tuple[str, str]) -> tuple[int, int]:
        names = ",".join(indices)
        try:
            self.req("POST", f"/{names}/_refresh?ignore_unavailable=true&allow_no_indices=true")
            n = self.req("GET", f"/{names}/_count?ignore_unavailable=true&allow_no_indices=true")["count"]
        except urllib.error.URLError:
            return -1, -1
        return n, n  # exact per-seq checks happen once, in check_es

    def seq_stats(self, names: str) -> dict[str, Any]:
        body = {"size": 0, "track_total_hits": True, "aggs": {
            "min": {"min": {"field": "seq"}}, "max": {"max": {"field": "seq"}},
            "card": {"cardinality": {"field": "seq", "precision_threshold": 40000}},
            "dups": {"terms": {"field": "seq", "min_doc_count": 2, "size": 10}}}}
        r = self.req("POST", f"/{names}/_search?ignore_unavailable=true", body)
        a = r["aggregations"]
        return {"docs": r["hits"]["total"]["value"], "min": a["min"]["value"], "max": a["max"]["value"],
                "cardinality_approx": a["card"]["value"], "dup_seqs": [b["key"] for b in a["dups"]["buckets"]]}

    def delete(self, indices: tuple[str, str]) -> None:
        try:
            self.req("DELETE", f"/{','.join(indices)}?ignore_unavailable=true")
        except urllib.error.URLError as e:
            log(f"could not delete bench indices: {e}")


def check_es(res: Result, es: Es, indices: tuple[str, str], expected: int, payouts: int | None,
             routes: bool) -> None:
    """count == N, no seq bucket with 2+ docs and min 0 / max N-1 => every seq exactly once.

    With routes, the logs index alone may hold every seq (route copies) or
    logs + payouts together do (route diverts); either passes.
    """
    es.req("POST", f"/{','.join(indices)}/_refresh?ignore_unavailable=true")
    logs = es.seq_stats(indices[0])
    both = es.seq_stats(",".join(indices))
    pay = es.seq_stats(indices[1]) if routes else None

    def exact(s: dict) -> bool:
        return s["docs"] == expected and not s["dup_seqs"] and s["min"] == 0 and s["max"] == expected - 1

    res.check("exactly_once", exact(logs) or (routes and exact(both)),
              {"lines_written": expected, "logs": logs, "all": both})
    if routes and pay is not None:
        res.check("routing", pay["docs"] == payouts and not pay["dup_seqs"],
                  {"expected_payouts": payouts, "payouts": pay})


# -------------------------------------------------------------------- report


COLS = [("scenario", 13), ("status", 6), ("lines", 9), ("ev/CPU-s", 9), ("wall ev/s", 9), ("CPU s", 7),
        ("RSS MB", 7), ("fds", 5), ("idle CPU%", 9), ("lat p50/p99 ms", 15)]


def fmt_row(r: Result) -> str:
    m = r.metrics

    def g(k: str, f: str = "{:,}") -> str:
        v = m.get(k)
        return "-" if v is None else f.format(v)

    lat = f"{m['latency_median_ms']}/{m['latency_p99_ms']}" if "latency_median_ms" in m else "-"
    cells = [r.name, r.status, g("lines"), g("events_per_cpu_s") if r.name != "sink" else g("sink_docs_per_cpu_s"),
             g("wall_eps"), g("cpu_s") if r.name != "sink" else g("sink_cpu_s", "{:.2f}"), g("peak_rss_mb"),
             g("max_fds"), g("idle_cpu_pct"), lat]
    return "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, (_, w)) in enumerate(zip(cells, COLS, strict=True)))


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "git_commit": commit.strip(),
            "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)}


def main(argv: list[str] | None = None) -> int:
    names = list(scenarios(False))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", choices=names, help="repeatable; default: all")
    p.add_argument("--quick", action="store_true", help="~10x smaller sizes and durations (smoke run)")
    p.add_argument("--agent-cmd", help='agent command; "{config}" is replaced by the config path, '
                   'else "-c CONFIG" is appended (default: python -m ccf_agent run -c CONFIG)')
    p.add_argument("--config-extra", type=Path, help="YAML merged into every generated config")
    p.add_argument("--es-url", help="OpenSearch URL for the opensearch scenario (user:pass@ allowed)")
    p.add_argument("--es-insecure", action="store_true", help="do not verify the OpenSearch TLS certificate")
    p.add_argument("--es-keep", action="store_true", help="keep the ccf-bench-* indices afterwards")
    p.add_argument("--kafka", metavar="HOST:PORT", help="Kafka broker for the kafka scenario (default: one the "
                   "harness starts with the tests' launcher, tests/kafka)")
    p.add_argument("--outage-mode", default="refuse", choices=["refuse", "close", "503"])
    p.add_argument("--tap", action="store_true",
                   help="attach a `ccf-agent tap` client reading everything for the whole run (its cost; the "
                        "outputs must still get every event)")
    p.add_argument("--tap-control", action="store_true",
                   help="the --tap run's setup without the tap (status endpoint on, backlog linked once it "
                        "answers): the baseline a --tap run is compared with")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--warmup", type=float, default=2.0, help="s between agent start and steady writes")
    p.add_argument("--settle", type=float, default=2.0, help="s to wait for late duplicates")
    p.add_argument("--stall-timeout", type=float, default=60.0, help="fail after this long without progress")
    p.add_argument("--stop-timeout", type=float, default=30.0, help="SIGTERM grace before SIGKILL")
    p.add_argument("--workdir", type=Path, help="where workloads go (default: a temp dir, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the workdir")
    p.add_argument("--sink-verbose", action="store_true", help="sink logs outages etc. to bench/out")
    args = p.parse_args(argv)
    if args.tap and args.tap_control:
        p.error("--tap and --tap-control are the two sides of one comparison: give one")

    chosen = args.scenario or names
    table = scenarios(args.quick)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    OUT.mkdir(exist_ok=True)
    logdir = OUT / f"logs-{stamp}"
    logdir.mkdir()
    log("building sink")
    build_sink()
    if not args.agent_cmd:
        # An installed agent (wheel, .deb) starts from bytecode; this tree may not have any yet (this
        # machine sets PYTHONDONTWRITEBYTECODE), and compiling ~40 modules costs ~0.15 s per start.
        compileall.compile_dir(REPO / "ccf_agent", quiet=1)
    root = Path(tempfile.mkdtemp(prefix="ccf-bench-", dir=args.workdir))
    corpus_dir = root / "corpus"
    corpus_dir.mkdir()
    corpus = Corpus(corpus_dir, args.seed)
    results: list[Result] = []
    try:
        for name in chosen:
            sc = table[name]
            if sc.kind == "opensearch" and not args.es_url:
                results.append(Result(name, "skip", sc.about, notes=["no --es-url"]))
                continue
            log(f"scenario {name}: {sc.about}")
            clock0, t0 = _cpu_clock(), time.time()
            try:
                if sc.kind == "sink":
                    r = run_sink_selftest(sc)
                else:
                    r = run_agent_scenario(sc, args, corpus, root, logdir)
            except Exception as e:  # one broken scenario must not hide the others' results
                r = Result(name, "error", sc.about, notes=[f"{type(e).__name__}: {e}"])
            # Other processes on the machine (e.g. other test runs) skew every figure: measure them.
            clock1 = _cpu_clock()
            foreign = ((clock1[0] - clock0[0]) - (clock1[1] - clock0[1])) / (time.time() - t0)
            r.metrics["other_procs_cores"] = round(foreign, 2)
            if foreign > 0.25:
                r.notes.append(f"machine busy: other processes used {foreign:.2f} of {os.cpu_count()} cores "
                               "on average during this scenario; figures are noisy"
                               + (" (a local OpenSearch node counts here)" if sc.kind == "opensearch" else ""))
            results.append(r)
            print(fmt_row(r), flush=True)
            for k, c in r.checks.items():
                if not c["ok"]:
                    print(f"  !! FAILED {name}/{k}: {json.dumps(c['detail'])}", flush=True)
            for n in r.notes:
                print(f"  note: {n}", flush=True)
            agent_log = logdir / f"{name}-agent.log"
            if r.status in ("fail", "error") and agent_log.exists() and agent_log.stat().st_size:
                tail = agent_log.read_text(errors="replace").splitlines()[-15:]
                print("  agent log tail:\n    " + "\n    ".join(tail), flush=True)
            if sc.kind not in ("sink",) and not args.keep:
                shutil.rmtree(root / name, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"workdir kept: {root}")

    print()
    print("  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(COLS)))
    for r in results:
        print(fmt_row(r))
    out = OUT / f"results-{stamp}.json"
    out.write_text(json.dumps({
        "started": stamp, "quick": args.quick, "tap": args.tap, "tap_control": args.tap_control, "agent_cmd": agent_command(args.agent_cmd, Path("CONFIG")),
        "machine": machine(), "scenarios": {r.name: r.__dict__ for r in results}}, indent=1, default=str))
    bad = [r.name for r in results if r.status in ("fail", "error")]
    print(f"\nresults: {out.relative_to(REPO)}   logs: {logdir.relative_to(REPO)}")
    if bad:
        print(f"FAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
