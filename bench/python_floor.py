"""The floor of a per-line Python loop on this machine: what the pipeline could cost at best.

Reads a file in 1 MiB chunks, splits lines, parses each with orjson, splices @timestamp, host,
agent and log fields, makes an id and an NDJSON action, as the agent's fast path does, with no
routing, redaction, acknowledgements or HTTP. Compare its µs per record with the agent's.

    python bench/workload.py bulk --out /tmp/floor.log -n 300000
    python bench/python_floor.py /tmp/floor.log
"""

from __future__ import annotations

import os
import sys
import time
import zlib

import orjson


def main(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    off = n = 0
    cache: dict[str, bytes] = {}
    loads = orjson.loads
    mid = (b'","host":{"name":"h"},"agent":{"name":"ccf-agent","version":"0.1.0"},'
           b'"log":{"file":{"path":"/x/app.log"},"offset":')
    started = time.process_time()
    partial = b""
    while True:
        data = os.pread(fd, 1 << 20, off)
        if not data:
            break
        off += len(data)
        buf = partial + data
        nl = buf.rfind(b"\n")
        partial = buf[nl + 1:]
        parts: list[bytes] = []
        lo = 0
        for line in buf[:nl].split(b"\n"):
            rec = loads(line)
            ts = rec.get("timestamp")
            iso = cache.get(ts)
            if iso is None:
                iso = cache[ts] = (ts.replace(" ", "T") + ".000Z").encode()
            _payout = "payout" in rec.get("message", "").lower() or rec.get("service") == "payout-job"
            doc = b"".join((line[:-1], b',"@timestamp":"', iso, mid, b"%d" % lo, b"}}"))
            parts.extend((b'{"create":{"_index":"x","_id":"', b"%x-%08x" % (lo, zlib.crc32(line)), b'"}}\n', doc,
                          b"\n"))
            lo += len(line) + 1
            n += 1
        b"".join(parts)
    cpu = time.process_time() - started
    print(f"{n} lines: {cpu / n * 1e6:.2f} µs per record, {n / cpu:,.0f} records per CPU-second")


if __name__ == "__main__":
    main(sys.argv[1])
