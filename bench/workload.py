"""Deterministic Winston-JSON workload for the ccf-agent benchmarks.

Record shapes follow the app's logging guide (Winston `json()` format with a
`YYYY-MM-DD HH:mm:ss` timestamp and the `service`/`version` defaultMeta).
Every line carries a unique integer `seq` so the sink can prove exactly-once
delivery; steady-rate lines also carry `wt` (write time, ns since epoch) so
the sink can compute end-to-end latency.

    python bench/workload.py bulk   --out FILE -n 1000000
    python bench/workload.py many   --dir DIR --files 1000 --lines 1000
    python bench/workload.py steady --out FILE --rate 10000 --duration 30
    python bench/workload.py sample -n 5
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import orjson

SERVICE = "click-clack-cashflow"
VERSION = "1.0.0"
# App time starts here and advances 10 ms per record: timestamps stay
# realistic and identical between runs (no wall clock in bulk files).
BASE_EPOCH = 1705305600  # 2024-01-15 08:00:00 UTC
APP_MS_PER_RECORD = 10

_CURRENCIES = ("usd", "usd", "usd", "eur", "gbp", "cad")
_PAYOUT_ERRORS = (
    ("insufficient_funds", "Insufficient funds in connected account"),
    ("account_closed", "The bank account has been closed"),
    ("invalid_account_number", "The bank account number is invalid"),
    ("debit_not_authorized", "Debit transactions are not authorized on this account"),
    ("rate_limit", "Too many requests hit the Stripe API too quickly"),
)
_ROUTES = (
    ("GET", "/api/balance"),
    ("GET", "/api/payouts"),
    ("POST", "/api/payouts"),
    ("GET", "/api/transactions"),
    ("POST", "/api/auth/login"),
    ("GET", "/health"),
    ("POST", "/webhooks/stripe"),
    ("GET", "/api/users/me"),
)
_STATUS = (200, 200, 200, 200, 200, 201, 204, 304, 400, 401, 403, 404, 429, 500, 502)
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15",
    "ClickClack-Android/3.4.1 okhttp/4.12.0",
    "kube-probe/1.28",
)
_AUTH_REASONS = ("invalid_password", "unknown_user", "expired_token", "invalid_signature", "mfa_failed")
_ERR_FUNCS = (
    "PayoutService.createPayout", "StripeClient.request", "BalanceController.get",
    "TransactionRepository.findByUser", "WebhookHandler.verifySignature", "AuthService.login",
)
_ERR_MSGS = (
    ("TypeError", "Cannot read properties of undefined (reading 'amount')"),
    ("Error", "connect ECONNREFUSED 10.0.4.12:5432"),
    ("StripeConnectionError", "An error occurred with our connection to Stripe"),
    ("Error", "Timeout acquiring a connection. The pool is probably full."),
    ("SyntaxError", "Unexpected token < in JSON at position 0"),
)
_JOB_MSGS = (
    "Payout job started", "Fetched eligible balances", "Payout batch queued",
    "Payout job completed", "Skipping user below minimum payout", "Reconciled Stripe payouts",
)


T = TypeVar("T")


# random.randrange/choice/choices cost ~0.5-1 us each; these thin helpers on
# rng.random()/getrandbits() make generation ~3x faster, still fully seeded.
def _n(rng: random.Random, lo: int, hi: int) -> int:
    return lo + int(rng.random() * (hi - lo))


def _pick(rng: random.Random, seq: Sequence[T]) -> T:
    return seq[int(rng.random() * len(seq))]


def _rid(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + format(rng.getrandbits(4 * n), f"0{n}x")


def _ip(rng: random.Random) -> str:
    r = rng.getrandbits(24)
    return f"10.{r >> 16}.{(r >> 8) & 255}.{(r & 255) or 1}"


def _http(rng: random.Random) -> dict:
    method, url = _pick(rng, _ROUTES)
    if url == "/api/payouts" and method == "GET" and rng.random() < 0.5:
        url = url + "/" + _rid(rng, "payout_", 8)
    return {
        "level": "info", "message": "HTTP request", "method": method, "url": url,
        "statusCode": _pick(rng, _STATUS), "responseTime": _n(rng, 1, 900),
        "ip": _ip(rng), "userAgent": _pick(rng, _AGENTS), "userId": f"user_{_n(rng, 0, 100000)}",
        "requestId": _rid(rng, "req_", 8),
    }


def _payout_ok(rng: random.Random) -> dict:
    return {
        "level": "info", "message": "Payout processed", "payoutId": _rid(rng, "payout_", 8),
        "userId": f"user_{_n(rng, 0, 100000)}", "amount": _n(rng, 100, 500000),
        "currency": _pick(rng, _CURRENCIES), "status": "completed",
        "processingTime": _n(rng, 200, 9000), "paymentMethodId": _rid(rng, "pm_", 10),
        "stripePayoutId": _rid(rng, "po_", 12),
    }


def _payout_failed(rng: random.Random) -> dict:
    code, text = _pick(rng, _PAYOUT_ERRORS)
    return {
        "level": "error", "message": "Payout failed", "payoutId": _rid(rng, "payout_", 8),
        "userId": f"user_{_n(rng, 0, 100000)}", "amount": _n(rng, 100, 500000),
        "error": code, "errorMessage": text, "retryCount": _n(rng, 0, 4),
        "nextRetryAt": f"2024-01-{_n(rng, 15, 29)}T{_n(rng, 0, 24):02d}:{_n(rng, 0, 60):02d}:00Z",
    }


def _auth_failed(rng: random.Random) -> dict:
    return {
        "level": "warn", "message": "Authentication failed", "reason": _pick(rng, _AUTH_REASONS),
        "email": f"{_rid(rng, '', 7)}@example.com", "ip": _ip(rng),
        "userAgent": _pick(rng, _AGENTS), "attempt": _n(rng, 1, 6),
    }


def _rate_limited(rng: random.Random) -> dict:
    method, url = _pick(rng, _ROUTES)
    return {
        "level": "warn", "message": "Rate limit exceeded", "ip": _ip(rng), "method": method,
        "endpoint": url, "limit": 100, "windowMs": 60000, "current": _n(rng, 101, 400),
        "userId": f"user_{_n(rng, 0, 100000)}",
    }


def _error_stack(rng: random.Random) -> dict:
    name, text = _pick(rng, _ERR_MSGS)
    frames = [
        f"    at {_pick(rng, _ERR_FUNCS)} (/app/src/{_pick(rng, ('services', 'routes', 'lib'))}/"
        f"{_rid(rng, '', 6)}.js:{_n(rng, 1, 400)}:{_n(rng, 1, 60)})"
        for _ in range(_n(rng, 2, 6))
    ]
    frames.append("    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)")
    # Winston's errors({stack: true}) puts the multi-line stack in one JSON
    # string: the newlines arrive escaped ("\n"), never as raw line breaks.
    msg = text if rng.random() < 0.7 else f"Unhandled error in payout worker: {text}"
    return {"level": "error", "message": msg, "stack": f"{name}: {text}\n" + "\n".join(frames),
            "requestId": _rid(rng, "req_", 8)}


def _payout_job(rng: random.Random) -> dict:
    return {
        "level": "info", "message": _pick(rng, _JOB_MSGS), "jobId": _rid(rng, "job_", 10),
        "batchSize": _n(rng, 1, 500), "eligibleUsers": _n(rng, 0, 5000),
        "totalAmount": _n(rng, 1000, 90000000), "durationMs": _n(rng, 5, 60000),
        "service": "payout-job",
    }


# Weights tuned so the mean line is ~345 bytes (check with `sample`).
_SHAPES: tuple[tuple[Callable[[random.Random], dict], int], ...] = (
    (_http, 44), (_payout_ok, 18), (_payout_failed, 5), (_auth_failed, 9),
    (_rate_limited, 9), (_error_stack, 5), (_payout_job, 10),
)
_FUNCS = [f for f, _ in _SHAPES]
_CUM = list(itertools.accumulate(w for _, w in _SHAPES))
_TOTAL = _CUM[-1]


def is_payout(rec: dict) -> bool:
    """The benchmark's payouts route predicate (mirrors the config in run.py)."""
    return "payout" in rec["message"].lower() or rec.get("service") == "payout-job"


_ts_cache: dict[int, str] = {}


def _ts(epoch_s: int) -> str:
    s = _ts_cache.get(epoch_s)
    if s is None:
        if len(_ts_cache) > 4096:
            _ts_cache.clear()
        s = _ts_cache[epoch_s] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_s))
    return s


def make_record(rng: random.Random, seq: int, ts: str, wt: int | None = None) -> dict:
    rec = _FUNCS[bisect.bisect_right(_CUM, rng.random() * _TOTAL)](rng)
    rec["seq"] = seq
    if wt is not None:
        rec["wt"] = wt
    # defaultMeta: payout-job records override `service` like a child logger would.
    rec.setdefault("service", SERVICE)
    rec["version"] = VERSION
    rec["timestamp"] = ts
    return rec


@dataclass
class Summary:
    lines: int = 0
    bytes: int = 0
    payouts: int = 0  # lines the payouts route should match
    first_seq: int = 0
    files: int = 0
    seconds: float = 0.0


def _lines(rng: random.Random, start_seq: int, n: int, summary: Summary) -> Iterator[bytes]:
    for seq in range(start_seq, start_seq + n):
        rec = make_record(rng, seq, _ts(BASE_EPOCH + seq * APP_MS_PER_RECORD // 1000))
        summary.payouts += is_payout(rec)
        yield orjson.dumps(rec) + b"\n"


def _write_file(path: Path, rng: random.Random, start_seq: int, n: int, summary: Summary) -> None:
    buf: list[bytes] = []
    with open(path, "ab") as f:
        for line in _lines(rng, start_seq, n, summary):
            buf.append(line)
            if len(buf) >= 8192:
                chunk = b"".join(buf)
                summary.bytes += len(chunk)
                f.write(chunk)
                buf.clear()
        chunk = b"".join(buf)
        summary.bytes += len(chunk)
        f.write(chunk)
    summary.lines += n
    summary.files += 1


def write_bulk(path: Path, n: int, seed: int = 1, start_seq: int = 0) -> Summary:
    """Write n lines to one file (appending)."""
    t0 = time.monotonic()
    s = Summary(first_seq=start_seq)
    _write_file(Path(path), random.Random(seed), start_seq, n, s)
    s.seconds = time.monotonic() - t0
    return s


def write_many(directory: Path, files: int, lines: int, seed: int = 1, start_seq: int = 0) -> Summary:
    """Write `files` files named app-NNNN.log with `lines` lines each; seqs are contiguous."""
    t0 = time.monotonic()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    s = Summary(first_seq=start_seq)
    for i in range(files):
        _write_file(d / f"app-{i:04d}.log", rng, start_seq + i * lines, lines, s)
    s.seconds = time.monotonic() - t0
    return s


def append_steady(path: Path, rate: float, duration: float, seed: int = 1, start_seq: int = 0,
                  tick: float = 0.01) -> Summary:
    """Append `rate` lines/s for `duration` s, each line stamped with its write time `wt`.

    Lines are written in small batches every `tick` s, one write() per batch,
    and `wt` is taken just before that write, so latency measured at the sink
    includes the agent's whole detection + read + ship path.
    """
    rng = random.Random(seed)
    s = Summary(first_seq=start_seq)
    seq = start_seq
    total = int(rate * duration)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t0 = time.monotonic()
    try:
        while s.lines < total:
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            if due > s.lines:
                wt = time.time_ns()
                ts = _ts(wt // 1_000_000_000)
                out = []
                for _ in range(due - s.lines):
                    rec = make_record(rng, seq, ts, wt)
                    s.payouts += is_payout(rec)
                    out.append(orjson.dumps(rec))
                    seq += 1
                chunk = b"\n".join(out) + b"\n"
                os.write(fd, chunk)  # O_APPEND + one write: a reader never sees half a batch
                s.bytes += len(chunk)
                s.lines = due
            # sleep to the next tick boundary rather than a fixed amount: avoids drift
            time.sleep(max(0.0, tick - (time.monotonic() - t0) % tick))
    finally:
        os.close(fd)
    s.files = 1
    s.seconds = time.monotonic() - t0
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start-seq", type=int, default=0)
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bulk", help="N lines into one file")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("-n", type=int, default=1_000_000)
    m = sub.add_parser("many", help="F files x L lines")
    m.add_argument("--dir", type=Path, required=True)
    m.add_argument("--files", type=int, default=1000)
    m.add_argument("--lines", type=int, default=1000)
    st = sub.add_parser("steady", help="append at a steady rate with wall-clock `wt`")
    st.add_argument("--out", type=Path, required=True)
    st.add_argument("--rate", type=float, default=10_000)
    st.add_argument("--duration", type=float, default=30)
    sa = sub.add_parser("sample", help="print a few lines and the mean line size")
    sa.add_argument("-n", type=int, default=5)
    a = p.parse_args(argv)

    if a.mode == "bulk":
        s = write_bulk(a.out, a.n, a.seed, a.start_seq)
    elif a.mode == "many":
        s = write_many(a.dir, a.files, a.lines, a.seed, a.start_seq)
    elif a.mode == "steady":
        s = append_steady(a.out, a.rate, a.duration, a.seed, a.start_seq)
    else:
        rng = random.Random(a.seed)
        probe = Summary()
        lines = list(_lines(rng, a.start_seq, 100_000, probe))
        for line in lines[: a.n]:
            sys.stdout.write(line.decode())
        size = sum(map(len, lines))
        print(f"mean line: {size / len(lines):.1f} bytes (incl. newline); "
              f"payout-route share: {probe.payouts / len(lines):.3f}", file=sys.stderr)
        return 0
    # one JSON line on stdout: run.py parses it for the steady-rate writer
    print(json.dumps(asdict(s)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
