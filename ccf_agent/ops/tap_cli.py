"""`ccf-agent tap`: print the events the running daemon ships, as its outputs get them (redacted).

Reads the daemon's `/tap` stream (ops/tap.py) over its status endpoint until Ctrl-C or `--limit`.
The daemon keeps a small buffer per client and drops what does not fit: a tap that cannot keep up
is told how many events it missed (on stderr, at the end), the outputs lose nothing.
"""

from __future__ import annotations

import http.client
import sys
import urllib.parse
from collections.abc import Iterator
from typing import IO, Any

import orjson

from ccf_agent.config import LISTEN_OFF, Config, split_listen

EXIT_OK, EXIT_FAILED, EXIT_NOT_RUNNING = 0, 1, 3


def tap(config: Config, input_id: str | None, route: str | None, output: str | None, limit: int | None,
        fmt: str, out: IO[str] = sys.stdout) -> int:
    address = None if config.status_listen in LISTEN_OFF else split_listen(config.status_listen)
    if address is None:
        print("ccf-agent tap: the status endpoint is off (status.listen): there is nothing to tap",
              file=sys.stderr)
        return EXIT_NOT_RUNNING
    query = urllib.parse.urlencode({k: v for k, v in (("input", input_id), ("route", route), ("output", output),
                                                     ("limit", limit)) if v is not None})
    conn = http.client.HTTPConnection(*address, timeout=30)  # the daemon writes at least once a second
    try:
        conn.request("GET", f"/tap?{query}" if query else "/tap")
        resp = conn.getresponse()
    except OSError as e:
        print(f"ccf-agent tap: no daemon answers on {config.status_listen} ({e.strerror or e})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if resp.status != 200:
        print(f"ccf-agent tap: {resp.read().decode(errors='replace').strip() or resp.reason}", file=sys.stderr)
        return EXIT_FAILED
    dropped = 0
    try:
        for line in _lines(resp):
            item: dict[str, Any] = orjson.loads(line)
            if "dropped" in item:
                dropped = int(item["dropped"])
                continue
            out.write(render(item, fmt))
            out.flush()
    except KeyboardInterrupt:
        pass
    except (OSError, http.client.HTTPException) as e:
        print(f"ccf-agent tap: the daemon stopped the stream ({e})", file=sys.stderr)
        return EXIT_FAILED
    finally:
        conn.close()
        if dropped:
            print(f"ccf-agent tap: {dropped} event(s) not shown: this tap did not keep up (the outputs got them)",
                  file=sys.stderr)
    return EXIT_OK


def _lines(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    while True:
        line = resp.readline()
        if not line:
            return
        if line.strip():
            yield line


def render(item: dict[str, Any], fmt: str) -> str:
    """One event: its document as one NDJSON line, or a header (input, route, outputs) and the
    document indented."""
    doc = orjson.dumps(item["event"])
    if fmt == "ndjson":
        return doc.decode() + "\n"
    head = f"── {item['input']} › {item['route']} → {', '.join(item['outputs'])}"
    return head + "\n" + orjson.dumps(item["event"], option=orjson.OPT_INDENT_2).decode() + "\n"
