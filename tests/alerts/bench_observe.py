"""Cost of AlertEngine.observe per record with the example (seed) rules on.

    python -m tests.alerts.bench_observe [records] [batch]

Not a test: prints ns/record for observe, and for comparison the cost of the least any shipper
must do per record (orjson.loads of the line + orjson.dumps for the bulk body), so the ratio is
an upper bound of the slowdown alerts can cause. The daemon's own end-to-end figure belongs in
bench/ once the pipeline exists.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from ccf_agent.alerts import AlertEngine, parse_alerts

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
    lines = [orjson.dumps(workload.make_record(rng, i, "2024-01-15 08:00:00")) for i in range(n)]
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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    start = time.time() - n * 0.001
    lines, times = synthetic(n, start)
    records = [orjson.loads(line) for line in lines]
    cfg = example_config()
    best_obs = best_ship = float("inf")
    for _ in range(5):
        with tempfile.TemporaryDirectory() as d:
            engine = AlertEngine(cfg, Path(d), log=logging.getLogger("bench"))
            t0 = time.process_time()
            for i in range(0, n, batch):
                engine.observe(records[i:i + batch], times[i:i + batch])
            best_obs = min(best_obs, time.process_time() - t0)
        t0 = time.process_time()
        for i in range(0, n, batch):
            docs = [orjson.loads(line) for line in lines[i:i + batch]]
            b"\n".join(orjson.dumps(d) for d in docs)
        best_ship = min(best_ship, time.process_time() - t0)
    print(f"{n} records, batches of {batch}, {len(cfg.rules)} rules (best of 5, CPU time)")
    print(f"observe:              {best_obs / n * 1e9:8.0f} ns/record  ({n / best_obs:,.0f} records/s)")
    print(f"parse+serialise only: {best_ship / n * 1e9:8.0f} ns/record  ({n / best_ship:,.0f} records/s)")
    print(f"observe / (parse+serialise): {best_obs / best_ship:.0%}")
    for r in engine.status()["rules"]:
        print(f"  {r['name']:<30} {r['state']:<8} value {r['value']:.4g}")


if __name__ == "__main__":
    main()
