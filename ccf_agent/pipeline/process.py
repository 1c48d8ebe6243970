"""Parse and enrich: a batch of raw lines in, its events out. Pure: no I/O, one clock read per batch.

The fast path keeps a Winston line's own bytes and splices the enrichment in before its
closing brace, instead of re-serialising the record: the record is parsed once (for
routing, alerts and its timestamp) and never dumped again. Anything unusual (a key that
would collide, a line that is not a JSON object, a bad timestamp) takes the slow path,
which builds the document from a dict.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any
from zlib import crc32

import orjson

from ccf_agent import AGENT_NAME, __version__
from ccf_agent.batch import Batch, Events
from ccf_agent.config import InputConfig
from ccf_agent.pipeline.options import Processors
from ccf_agent.pipeline.timestamps import TimestampParser, now_stamp

ENRICHED_KEYS = ("@timestamp", "host", "agent", "log")
_CLOSE = 0x7D  # '}'


class Pipeline:
    """One per input: its format, time zone and static fields are fixed at construction."""

    def __init__(self, cfg: InputConfig, hostname: str | None = None, processors: Processors | None = None) -> None:
        self.json = cfg.format == "json"
        self.timestamps = TimestampParser(cfg.timezone)
        self.fields: Mapping[str, Any] = dict(cfg.fields)
        self.hostname = hostname or socket.gethostname()
        self.reserved = frozenset((*ENRICHED_KEYS, *self.fields))
        self.host = {"name": self.hostname}
        self.agent = {"name": AGENT_NAME, "version": __version__}
        fields_json = orjson.dumps(self.fields)[1:-1]
        # Everything after the timestamp up to the file path is the same for every record.
        self._mid = (b'","host":' + orjson.dumps(self.host) + b',"agent":' + orjson.dumps(self.agent)
                     + b',"log":{"file":{"path":')
        self._end = (b"}," + fields_json + b"}") if fields_json else b"}}"
        self.malformed = 0

    def process(self, batch: Batch) -> Events:
        out = Events(batch)
        records, docs, ids, stamps, times = out.records, out.docs, out.ids, out.stamps, out.times
        now = time.time()
        default_stamp = now_stamp(now)
        sid = batch.entry.stream_id.encode()
        path_part = self._mid + orjson.dumps(batch.path) + b'},"offset":'
        end = self._end
        reserved = self.reserved
        parse_ts = self.timestamps.parse
        loads = orjson.loads
        is_json = self.json
        offset = batch.start
        for line in batch.lines:
            lo = offset
            offset += len(line) + 1
            if not line or line.isspace():
                continue
            rec: Any = None
            if is_json:
                try:
                    rec = loads(line)
                except orjson.JSONDecodeError:
                    rec = None
            stamp = default_stamp
            if type(rec) is dict and rec and reserved.isdisjoint(rec) and line[-1] == _CLOSE:
                ts = rec.get("timestamp")
                if ts is not None:
                    parsed = parse_ts(ts) if type(ts) is str else None
                    if parsed is None:
                        doc, stamp = self._slow(rec, line, lo, batch, default_stamp, ["invalid_timestamp"])
                    else:
                        stamp = parsed
                        doc = b"".join((line[:-1], b',"@timestamp":"', stamp[0], path_part, b"%d" % lo, end))
                else:
                    doc = b"".join((line[:-1], b',"@timestamp":"', stamp[0], path_part, b"%d" % lo, end))
            else:
                doc, stamp, rec = self._odd(rec, line, lo, batch, default_stamp, is_json)
            records.append(rec)
            docs.append(doc)
            ids.append(sid + b"%x-%08x" % (lo, crc32(line)))
            stamps.append(stamp[0])
            times.append(stamp[1])
        if batch.truncated:
            for i in range(len(docs)):
                self._tag(out, i, "truncated")
        return out

    # ------------------------------------------------------------------ slow paths

    def _odd(self, rec: Any, line: bytes, lo: int, batch: Batch, default_stamp: tuple[bytes, float],
             is_json: bool) -> tuple[bytes, tuple[bytes, float], dict[str, Any]]:
        """Lines the fast path cannot splice: still shipped, never dropped."""
        if type(rec) is dict:
            tags: list[str] = []
            stamp = default_stamp
            ts = rec.get("@timestamp", rec.get("timestamp"))
            if ts is not None:
                parsed = self.timestamps.parse(ts) if isinstance(ts, str) else None
                if parsed is None:
                    tags.append("invalid_timestamp")
                else:
                    stamp = parsed
            doc, _ = self._slow(rec, line, lo, batch, stamp, tags)
            return doc, stamp, rec
        try:
            text = line.decode("utf-8")
            tags = [] if not is_json else (["invalid_json"] if rec is None else ["not_an_object"])
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
            tags = ["invalid_utf8"]
        if "\x00" in text:
            tags.append("nul_bytes")
        if tags:
            self.malformed += 1
        rec = {"message": text}
        if tags:
            rec["tags"] = tags
        doc, _ = self._slow(rec, line, lo, batch, default_stamp, [])
        return doc, default_stamp, rec

    def _slow(self, rec: dict[str, Any], line: bytes, lo: int, batch: Batch, stamp: tuple[bytes, float],
              tags: list[str]) -> tuple[bytes, tuple[bytes, float]]:
        doc = {**self.fields, **rec}
        for key, ours in (("host", self.host), ("agent", self.agent),
                          ("log", {"file": {"path": batch.path}, "offset": lo})):
            theirs = doc.get(key)
            if isinstance(theirs, dict):
                doc[key] = {**theirs, **ours}
            else:
                if theirs is not None:
                    doc[f"{key}_original"] = theirs  # never lose the record's own value
                doc[key] = ours
        if "@timestamp" in rec and not tags:
            doc["@timestamp"] = stamp[0].decode()
        else:
            if "@timestamp" in rec:
                doc["@timestamp_original"] = rec["@timestamp"]
            doc["@timestamp"] = stamp[0].decode()
        if tags:
            doc["tags"] = [*doc.get("tags", []), *tags] if isinstance(doc.get("tags"), list) else tags
        return orjson.dumps(doc), stamp

    def _tag(self, out: Events, i: int, tag: str) -> None:
        rec = out.records[i]
        tags = rec.get("tags")
        rec["tags"] = [*tags, tag] if isinstance(tags, list) else [tag]
        doc = orjson.loads(out.docs[i])
        tags = doc.get("tags")
        doc["tags"] = [*tags, tag] if isinstance(tags, list) else [tag]
        out.docs[i] = orjson.dumps(doc)
