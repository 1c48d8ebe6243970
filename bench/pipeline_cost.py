"""CPU cost per record of the pipeline stage (parse + filter + redact + enrich), stage by stage.

    python bench/pipeline_cost.py [--records 20000] [--batch 2000] [--rounds 7] [--baseline REV]

Not a test: prints one table. Every configuration processes the same `ccf_agent.samples`
records (the app's Winston shapes, ~15% payout records carrying `paymentMethodId`), in
batches as the tail reader hands them over. Cost = CPU time (process_time) per record, the
best of `--rounds` rounds; within a round the configurations take turns batch by batch, so a
busy machine skews them alike. "vs base" is the difference to the pipeline with every optional stage off.
`--baseline REV` also times the pipeline as it was at git revision REV (its process.py and
timestamps.py, loaded from git), e.g. 2d2f2b8, the parse + splice before redaction existed.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # noqa: E402 - the repo, not an install

from ccf_agent.batch import Batch  # noqa: E402
from ccf_agent.config import (  # noqa: E402
    InputConfig,  # noqa: E402
    Processors,
    parse_input_options,
    parse_processors,
)
from ccf_agent.pipeline.process import Pipeline  # noqa: E402
from ccf_agent.registry import Entry  # noqa: E402
from ccf_agent.samples import lines as sample_lines  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENTRY = Entry("s" * 16, "fp", "app", "/var/log/ccf/combined.log", 1, 2)


def _where(path: tuple[str | int, ...], message: str) -> Exception:
    return ValueError(f"{'.'.join(map(str, path))}: {message}")


def processors(raw: dict[str, Any] | None) -> Processors:
    return parse_processors(raw, _where)


def pipeline(processors_raw: dict[str, Any] | None, **input_raw: Any) -> Pipeline:
    fmt = input_raw.pop("format", "json")
    opts = parse_input_options(input_raw, _where)
    cfg = InputConfig(id="app", paths=("/var/log/ccf/*.log",), format=fmt, options=opts)
    return Pipeline(cfg, hostname="web-1", processors=processors(processors_raw))


OFF = {"redact": {"enabled": False}}
NGINX = ('203.0.113.{i} - - [15/Jan/2024:10:{m:02d}:{s:02d} +0000] "GET /api/balance?user={i} HTTP/1.1" 200 {b} '
         '"https://app.example.com/" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0"')


def baseline(rev: str) -> Any:
    """The Pipeline class of git revision `rev`, with that revision's timestamps module."""
    def load(name: str, path: str) -> types.ModuleType:
        source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout
        module = types.ModuleType(name)
        exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)  # noqa: S102 - our own history
        return module
    old_ts = load("baseline_timestamps", "ccf_agent/pipeline/timestamps.py")
    old = load("baseline_process", "ccf_agent/pipeline/process.py")
    old.TimestampParser, old.now_stamp = old_ts.TimestampParser, old_ts.now_stamp
    cfg = InputConfig(id="app", paths=("/var/log/ccf/*.log",))
    return old.Pipeline(cfg, hostname="web-1")


def cases(n: int, baseline_rev: str | None = None) -> list[tuple[str, Any, list[bytes]]]:
    winston = [x.encode() for x in sample_lines(n)]
    rng = random.Random(3)
    with_secrets = []
    for line in winston:  # every record carries a card number and a Stripe key in free text
        rec = orjson.loads(line)
        rec["note"] = f"charged 4242 4242 4242 4242 with sk_live_{rng.getrandbits(64):016x}"
        with_secrets.append(orjson.dumps(rec))
    nginx = [NGINX.format(i=i % 250, m=i // 60 % 60, s=i % 60, b=100 + i % 900).encode() for i in range(n)]
    lookup_table = {f"user_{i}": {"tier": "gold" if i % 3 else "silver", "region": "eu"} for i in range(97)}
    before = [(f"pipeline at {baseline_rev} (before)", baseline(baseline_rev), winston)] if baseline_rev else []
    return [
        ("orjson.loads only (floor)", None, winston),
        ("base: parse + splice, redaction off", pipeline(OFF), winston),
        ("+ redaction (defaults)", pipeline(None), winston),
        ("+ redaction, cards off", pipeline({"redact": {"patterns": {"card_numbers": False}}}), winston),
        ("+ redaction, field names only",
         pipeline({"redact": {"patterns": {k: False for k in ("card_numbers", "stripe_keys", "bearer_tokens")}}}),
         winston),
        ("+ redaction + emails + custom regex",
         pipeline({"redact": {"patterns": {"emails": True}, "custom": [{"name": "ssn", "regex": r"\b\d{3}-\d{2}-\d{4}\b"}]}}),
         winston),
        ("+ enrich: fields, environment, host", pipeline({**OFF, "enrich": {
            "fields": {"team": "payments"}, "environment": "production", "host": True}}), winston),
        ("+ enrich: lookup (userId -> user)", pipeline({**OFF, "enrich": {
            "lookup": [{"field": "userId", "target": "user", "table": lookup_table}]}}), winston),
        ("+ drop + sample rules", pipeline({**OFF, "drop": [{"when": {"field": "level", "equals": "debug"}}],
                                            "sample": [{"when": {"field": "path", "equals": "/health"}, "keep": 10}]}),
         winston),
        ("+ ecs: true", pipeline(OFF, ecs=True), winston),
        ("all defaults + enrich + rules", pipeline({
            "enrich": {"fields": {"team": "payments"}, "environment": "production", "host": True},
            "drop": [{"when": {"field": "level", "equals": "debug"}}]}), winston),
        ("every record has a card + key (redacted)", pipeline(None), with_secrets),
        ("  same records, redaction off", pipeline(OFF), with_secrets),
        ("text: nginx combined parser", pipeline(OFF, format="text", parser="nginx_combined"), nginx),
        ("text: nginx combined + redaction", pipeline(None, format="text", parser="nginx_combined"), nginx),
        *before,
    ]


def run_batch(p: Any, batch: list[bytes]) -> float:
    t0 = time.process_time()
    if p is None:
        loads = orjson.loads
        for line in batch:
            loads(line)
    else:
        p.process(Batch(ENTRY, ENTRY.path, 0, 1, batch))
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--baseline", metavar="REV", help="also time the pipeline of this git revision")
    args = ap.parse_args()
    table = cases(args.records, args.baseline)
    prepared = [[lines[i:i + args.batch] for i in range(0, len(lines), args.batch)] for _, _, lines in table]
    best = [float("inf")] * len(table)
    for _ in range(args.rounds):
        # Every configuration processes batch k before any moves on to k+1: a load swing on the
        # shared machine then hits all of them alike instead of whichever ran at that moment.
        spent = [0.0] * len(table)
        for k in range(len(prepared[0])):
            for c, (_, p, _) in enumerate(table):
                spent[c] += run_batch(p, prepared[c][k])
        best = [min(b, t) for b, t in zip(best, spent, strict=True)]
    per = [b / args.records * 1e9 for b in best]
    base = per[1]
    print(f"pipeline cost per record, {args.records} records in batches of {args.batch}, best of {args.rounds}")
    print(f"{'configuration':44s} {'ns/record':>10s} {'vs base':>9s}")
    for (name, _, _), ns in zip(table, per, strict=True):
        print(f"{name:44s} {ns:10.0f} {ns - base:+9.0f}")
    secrets = next(p for name, p, _ in table if name.startswith("every record"))
    assert secrets is not None
    print(f"\ncounters of 'every record has a card + key' after {args.rounds} rounds:",
          dict(sorted(secrets.counters.items())))


if __name__ == "__main__":
    main()
