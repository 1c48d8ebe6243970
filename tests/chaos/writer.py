"""The app, as the chaos suite sees it: appends uniquely numbered Winston records at a steady rate.

SIGHUP reopens the log path (what the app does on `systemctl reload` after logrotate);
SIGUSR1 pauses, SIGUSR2 resumes; SIGTERM stops and prints the number of records written.

    python -m tests.chaos.writer PATH --rate 2000 [--start 0]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from ccf_agent.samples import lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--rate", type=int, default=2000, help="records per second")
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args()
    state = {"reopen": False, "stop": False, "paused": False}
    signal.signal(signal.SIGHUP, lambda *_: state.__setitem__("reopen", True))
    signal.signal(signal.SIGTERM, lambda *_: state.__setitem__("stop", True))
    signal.signal(signal.SIGUSR1, lambda *_: state.__setitem__("paused", True))
    signal.signal(signal.SIGUSR2, lambda *_: state.__setitem__("paused", False))
    f = open(args.path, "a", buffering=1 << 16)  # noqa: SIM115 - reopened on SIGHUP
    seq = args.start
    tick = 0.01
    per_tick = max(1, int(args.rate * tick))
    next_at = time.monotonic()
    announced = False
    print("WRITER_READY", flush=True)
    while not state["stop"]:
        if state["reopen"]:
            state["reopen"] = False
            f.close()
            f = open(args.path, "a", buffering=1 << 16)  # noqa: SIM115
        if state["paused"]:
            if not announced:
                f.flush()
                print("PAUSED", flush=True)
                announced = True
            time.sleep(0.005)
            next_at = time.monotonic()
            continue
        announced = False
        for line in lines(per_tick, start=seq):
            f.write(line + "\n")  # Winston writes whole lines
        seq += per_tick
        f.flush()
        next_at += tick
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    f.close()
    print(json.dumps({"written": seq - args.start, "last": seq - 1}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
