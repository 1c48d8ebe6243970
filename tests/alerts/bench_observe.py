"""Cost of AlertEngine.observe per record with the example (seed) rules on.

    python -m tests.alerts.bench_observe [records] [batch]

Not a test: prints CPU ns/record for observe over the benchmark workload's record mix, and for
comparison the daemon's own parse/enrich stage (ccf_agent.pipeline) and a bare orjson
loads+dumps. Those are only part of what shipping costs per record (tailing, routing, the bulk
request), so the ratios are upper bounds of the slowdown alerts can cause; the end-to-end
figure belongs in bench/ once the daemon calls observe().
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import yaml

from ccf_agent.alerts.engine import AlertEngine
from ccf_agent.config import parse_alerts

EXAMPLE = Path(__file__).resolve().parents[2] / "ccf_agent" / "alerts" / "example.yaml"


def example_config():
    text = re.sub(r"\$\{([^}:]*)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""),
                  EXAMPLE.read_text())
    return parse_alerts(yaml.safe_load(text)["alerts"], lambda p, m: ValueError(f"{p}: {m}"))


def synthetic(n: int, start: float, seed: int = 1) -> tuple[list[bytes], list[float]]:
    """The benchmark workload's record mix (bench/workload.py) if present, else a similar one."""
    try:
        sys.path.insert(0, str(EXAMPLE.parents[2] / "bench"))
        import workload  # type: ignore[import-not-found]
    except ImportError:
        return _own_mix(n, start, seed)
    finally:
        sys.path.pop(0)
    rng = random.Random(seed)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))  # live, not a backlog
    lines = [orjson.dumps(workload.make_record(rng, i, stamp)) for i in range(n)]
    return lines, [start + i * 0.001 for i in range(n)]


def _own_mix(n: int, start: float, seed: int) -> tuple[list[bytes], list[float]]:
    rnd = random.Random(seed)
    base = {"service": "click-clack-cashflow", "version": "1.0.0"}
    lines, times = [], []
    for i in range(n):
        t = start + i * 0.001
        x = rnd.random()
        if x < 0.60:
            rec = {"level": "info", "message": "GET /api/balance 200", "durationMs": rnd.randint(1, 90),
                   "userId": f"user_{rnd.randint(1, 9999)}"}
        elif x < 0.80:
            rec = {"level": "info", "message": "Payout processed", "payoutId": f"payout_{i}",
                   "userId": f"user_{rnd.randint(1, 9999)}", "amount": rnd.randint(100, 20000), "currency": "usd",
                   "status": "completed", "processingTime": rnd.randint(200, 4000)}
        elif x < 0.82:
            rec = {"level": "error", "message": "Payout failed", "payoutId": f"payout_{i}",
                   "userId": f"user_{rnd.randint(1, 9999)}", "amount": rnd.randint(100, 20000),
                   "error": "insufficient_funds", "status": "failed", "retryCount": 1}
        elif x < 0.90:
            rec = {"level": "warn", "message": "Login failed: invalid password", "userId": f"user_{i}"}
        elif x < 0.95:
            rec = {"level": "warn", "message": "Rate limit exceeded", "ip": "203.0.113.7"}
        elif x < 0.97:
            rec = {"level": "error", "message": "Stripe webhook signature invalid"}
        else:
            rec = {"level": "info", "message": "Payout job run", "service": "payout-job", "processed": 12}
        rec = {**base, **rec, "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))}
        lines.append(orjson.dumps(rec))
        times.append(t)
    return lines, times


def pipeline() -> Callable[[list[bytes]], tuple[list[dict], list[float]]]:
    """The daemon's parse/enrich stage (the hot path observe() sits beside), or bare orjson."""
    try:
        from ccf_agent.batch import Batch
        from ccf_agent.config import InputConfig
        from ccf_agent.pipeline.process import Pipeline
        from ccf_agent.registry import Entry
    except ImportError:
        now = time.time()
        return lambda lines: (list(map(orjson.loads, lines)), [now] * len(lines))
    pipe = Pipeline(InputConfig(id="app", paths=("/var/log/ccf/*.log",)), hostname="bench")
    entry = Entry(stream_id="s1", fingerprint="f", input_id="app", path="/var/log/ccf/combined.log", dev=1, ino=1)

    def process(lines: list[bytes]) -> tuple[list[dict], list[float]]:
        ev = pipe.process(Batch(entry, entry.path, 0, sum(map(len, lines)), lines))
        return ev.records, ev.times

    return process


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    lines, _ = synthetic(n, time.time())
    batches = [lines[i:i + batch] for i in range(0, n, batch)]
    cfg = example_config()
    process = pipeline()

    def run(with_alerts: bool) -> tuple[float, float]:
        """CPU seconds (pipeline alone, observe alone) over all batches, observe right after parse."""
        with tempfile.TemporaryDirectory() as d:
            engine = AlertEngine(cfg, Path(d), log=logging.getLogger("bench"))
            t_pipe = t_obs = 0.0
            for chunk in batches:
                t0 = time.process_time()  # CPU time: steadier than wall time on a busy machine
                records, times = process(chunk)
                t1 = time.process_time()
                if with_alerts:
                    engine.observe(records, times)
                t_pipe += t1 - t0
                t_obs += time.process_time() - t1
            run.engine = engine  # type: ignore[attr-defined]
        return t_pipe, t_obs

    off = min(sum(run(False)) for _ in range(5))
    pipe_on, obs = min((run(True) for _ in range(5)), key=sum)
    print(f"{n} records, batches of {batch}, {len(cfg.rules)} rules (best of 5, CPU time)")
    print(f"  pipeline, alerts off   {off / n * 1e9:7.0f} ns/record ({n / off:,.0f} records/s)")
    print(f"  pipeline + observe     {(pipe_on + obs) / n * 1e9:7.0f} ns/record ({n / (pipe_on + obs):,.0f} records/s)")
    print(f"  observe alone          {obs / n * 1e9:7.0f} ns/record = {obs / off:.0%} of the pipeline stage")
    for r in run.engine.status()["rules"]:  # type: ignore[attr-defined]
        print(f"    {r['name']:<30} {r['state']:<8} value {r['value']:.4g}")


if __name__ == "__main__":
    main()
