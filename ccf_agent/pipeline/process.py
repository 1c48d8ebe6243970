"""Parse, filter, redact and enrich: a batch of raw lines in, its events out.

Pure: no I/O and one clock read per batch. The fast path keeps a Winston line's own bytes
and splices the enrichment in before its closing brace instead of re-serialising the
record: the record is parsed once (for routing, alerts and its timestamp) and dumped again
only if redaction changed it. Anything unusual (a key that would collide, an exception
handler's record, a line that is not a JSON object, a bad timestamp, ECS on) takes the slow
path, which builds the document from a dict.

Per record, in order: decode (the input's encoding), parse (JSON, or the text parser),
drop and sample rules (on the record as the app wrote it), redaction (record and document
alike, so routes, alerts and every output see the same redacted record), enrichment.
Dropped records leave no event; the batch's offsets still cover them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any
from zlib import crc32

import orjson

from ccf_agent import AGENT_NAME, __version__
from ccf_agent.batch import Batch, Events
from ccf_agent.config import InputConfig, Processors
from ccf_agent.pipeline.ecs import index_safe, set_aside, to_ecs
from ccf_agent.pipeline.enrich import Lookup, host_metadata
from ccf_agent.pipeline.native import ScanSpec
from ccf_agent.pipeline.native import fast as _fast  # the C loops, or None
from ccf_agent.pipeline.rawjson import MAX_DEPTH, too_deep
from ccf_agent.pipeline.redact import Redactor
from ccf_agent.pipeline.timestamps import TimestampParser, now_stamp

if TYPE_CHECKING:
    from ccf_agent.pipeline.native import Loop, ShapeCache

log = logging.getLogger("ccf_agent.pipeline")

ENRICHED_KEYS = ("@timestamp", "host", "agent", "log")
# Winston's exception and rejection handlers' records go the slow path (see ecs.index_safe).
SLOW_KEYS = ("exception",)
_CLOSE = 0x7D  # '}'
_SHAPES_MAX = 4096
_NONE_SENSITIVE: tuple[str, ...] = ()
_PROJECT_MAX = 32  # fields a projection may name (_native/py_loop.c: MAX_PICKS)
_DEEP_BYTES = 2 * MAX_DEPTH  # a shorter line cannot nest deeper than MAX_DEPTH (rawjson.too_deep)

Stamp = tuple[bytes, float]


class Pipeline:
    """One per input: its format, options and the global processors are fixed at construction.

    `counters` (name -> count) says what the pipeline did besides shipping: `dropped:<rule>`,
    `sampled_out:<rule>`, `redacted:<field|card_number|stripe_key|bearer_token|credential|email|custom>`,
    `records_redacted`, `invalid_encoding`, `parse_failure`, `pipeline_errors` (lines shipped
    without their content because a stage failed on them: a bug, logged).
    """

    def __init__(self, cfg: InputConfig, hostname: str | None = None, processors: Processors | None = None) -> None:
        opts = cfg.options
        procs = processors if processors is not None else Processors()
        self.counters: dict[str, int] = {}
        self.input_id = cfg.id
        self.json = cfg.format == "json"
        self.text_parser = None if self.json else opts.parser
        self.ts_field = opts.timestamp_field
        self.timestamps = TimestampParser(cfg.timezone, opts.timestamp_formats)
        enrich = procs.enrich
        fields: dict[str, Any] = dict(enrich.fields)
        if enrich.environment is not None:
            fields["environment"] = enrich.environment
        fields.update(cfg.fields)  # the input's own fields win over global ones
        self.fields: Mapping[str, Any] = fields
        self.environment = enrich.environment
        self.hostname = hostname or socket.gethostname()
        self.host = host_metadata(self.hostname, enrich.host_ip, enrich.host_os)
        self.agent = {"name": AGENT_NAME, "version": __version__}
        self.lookups: tuple[Lookup, ...] = enrich.lookups
        self._lookup_frags: list[dict[str, bytes]] = [
            {k: b',"' + lk.target.encode() + b'":' + orjson.dumps(v) for k, v in lk.table.items()}
            for lk in self.lookups]
        self.ecs = opts.ecs
        self.encoding = None if opts.encoding == "utf-8" else opts.encoding
        self.redactor = Redactor(procs.redact, self.counters) if procs.redact.enabled else None
        self._drops = tuple((f"dropped:{r.name}", r.when.test) for r in procs.drop)
        self._samples = tuple((f"sampled_out:{r.name}", r.when.test, r.keep) for r in procs.sample)
        self._sample_seen = [0] * len(self._samples)
        # Keys a text record can have: a sensitive name among them means walking every text record.
        text_keys = {"message", "tags", self.ts_field.lower()} | {
            part.lower() for rx in (self.text_parser.patterns if self.text_parser else ())
            for group in rx.groupindex for part in group.split("__")}
        self._text_names = self.redactor is not None and not self.redactor.names.isdisjoint(text_keys)
        self.reserved = frozenset((*ENRICHED_KEYS, *self.fields, *SLOW_KEYS))
        # Per record shape (its keys in order): may it take the fast path, and which of its keys
        # are sensitive. Logs repeat a handful of shapes, so a record pays one tuple and one get.
        self._shapes: dict[tuple[str, ...], tuple[bool, tuple[str, ...], bool]] = {}
        fields_json = orjson.dumps(self.fields)[1:-1]
        # Everything after the timestamp up to the file path is the same for every record.
        self._mid = (b'","host":' + orjson.dumps(self.host) + b',"agent":' + orjson.dumps(self.agent)
                     + b',"log":{"file":{"path":')
        self._end = (b"}," + fields_json + b"}") if fields_json else b"}}"
        self.malformed = 0
        # The C loop covers JSON lines with no per-record Python stage besides redaction.
        self.native = (_fast is not None and self.json and self.ecs is None and self.encoding is None
                       and not self.lookups and not self._drops and not self._samples)
        self._projection: ShapeCache | None = None  # when records are projected
        self._loop: Loop | None = None  # the C loop, made at the first batch (see _new_loop)

    def project(self, fields: tuple[str, ...] | None) -> None:
        """Records need only these top-level fields (what routes and business metrics read), or all
        (None). With the C loop, a line then skips the dict orjson would build: its record holds
        just these fields; its document, id and timestamp are the same."""
        ts = self.timestamps
        self._projection = (_fast.shape_cache(fields, ts.tz is UTC and not ts.formats, not ts.formats)
                            if _fast is not None and self.native and fields is not None
                            and len(fields) <= _PROJECT_MAX else None)
        self._loop = None  # made again with the projection

    def scan_spec(self) -> ScanSpec | None:
        """What the tail's read-ahead thread may do ahead for this pipeline: the per-line work that
        needs no interpreter (lines, ids' crc32, the redaction prefilter, the projection's scan),
        done on a file's next chunk while the event loop works on the one before: the agent's
        second core. None when the C loop does not take this input's lines."""
        redactor = self.redactor
        if _fast is None or not self.native or (redactor is not None and redactor.scans_in_python):
            return None
        return ScanSpec(redactor.json_fold() if redactor is not None else None, self._projection is not None)

    @property
    def projected(self) -> bool:
        """Whether records may hold only the projected fields (documents are always whole)."""
        return self._projection is not None

    def _shape(self, keys: tuple[str, ...]) -> tuple[bool, tuple[str, ...], bool]:
        """(may take the fast path, its sensitive keys, none of those is dropped)."""
        if len(self._shapes) >= _SHAPES_MAX:
            self._shapes.clear()
        redactor = self.redactor
        sensitive = redactor.sensitive(keys) if redactor is not None else ()
        masked_only = redactor is None or not any(k.lower() in redactor.drop_names for k in sensitive)
        shape = self._shapes[keys] = (self.reserved.isdisjoint(keys), sensitive, masked_only)
        return shape

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def process(self, batch: Batch) -> Events:
        """The batch's events, one per line (blank lines and lines a drop or sample rule removes
        aside). Never raises: should a stage fail on some line, the batch is done again a line
        at a time and that line shipped as a record of the failure (see _salvage)."""
        counters, malformed, seen = dict(self.counters), self.malformed, list(self._sample_seen)
        try:
            return self._process(batch, self.native)
        except Exception as e:  # a line no test foresaw: it must not stop this file, or the others
            self.counters.clear()  # (the same dict as the redactor's): counted again line by line
            self.counters.update(counters)
            self.malformed, self._sample_seen[:] = malformed, seen
            return self._salvage(batch, e)

    def _process(self, batch: Batch, native: bool) -> Events:
        out = Events(batch)
        records, docs, ids, stamps, times = out.records, out.docs, out.ids, out.stamps, out.times
        now = time.time()
        self.timestamps.now = now
        default_stamp = now_stamp(now)
        sid = batch.entry.stream_id.encode()
        path_part = self._mid + orjson.dumps(batch.path) + b'},"offset":'
        end = self._end
        shapes = self._shapes
        new_shape = self._shape
        reserved = self.reserved
        parse_ts = self.timestamps.parse
        ts_field = self.ts_field
        loads = orjson.loads
        is_json = self.json
        fast = self.ecs is None
        keep = self._keep if self._drops or self._samples else None
        transcode = self._transcode if self.encoding is not None else None
        redactor = self.redactor
        redact = redactor.json_line if redactor is not None else None
        mask_top = redactor.top_level_names if redactor is not None else None
        hits: set[int] = set()
        names = redactor is not None and bool(redactor.names)
        # The C loop walks the bytes as read; the Python loop needs the lines.
        lines = batch.data if native and batch.data is not None else batch.lines
        if redactor is not None and transcode is None:
            hits = redactor.scan(lines, json=is_json, scanned=batch.scan)
        if native:
            self._native(batch, lines, out, sid, path_part, default_stamp, hits)
            return out
        lookup = self._lookup_bytes if self.lookups else None
        offset = batch.start
        i = -1
        for line in batch.lines:
            i += 1
            lo = offset
            offset += len(line) + 1
            if not line or line.isspace():
                continue
            raw = line
            tags: list[str] | None = None
            if transcode is not None:
                line, tags = transcode(line)
                if redactor is not None:  # the prefilter must see the UTF-8 text
                    hits = {i} if redactor.scan([line]) else set()
            rec: Any = None
            if is_json:
                try:
                    rec = loads(line)
                except orjson.JSONDecodeError:
                    rec = None
            if type(rec) is dict and rec and tags is None and (len(line) <= _DEEP_BYTES or not too_deep(line)):
                if keep is not None and not keep(rec):
                    continue
                if redact is None:
                    plain, sensitive = reserved.isdisjoint(rec), _NONE_SENSITIVE
                else:
                    keys = tuple(rec)
                    plain, sensitive, _ = shapes.get(keys) or new_shape(keys)
                hit = bool(hits) and i in hits
                if redact is not None:
                    # A '{' past the first byte may open a nested object holding a sensitive key.
                    nested = names and line.rfind(b"{") > 0
                    redacted = None
                    if hit or nested:
                        redacted = redact(line, rec, hit, sensitive)
                    elif sensitive and mask_top is not None:  # the common case: a flat record with, say, paymentMethodId
                        redacted = mask_top(line, rec, sensitive)
                    if redacted is not None:
                        line = redacted
                        plain = plain and bool(rec) and reserved.isdisjoint(rec)
                if fast and plain and line[-1] == _CLOSE:
                    ts = rec.get(ts_field)
                    stamp = default_stamp if ts is None else (
                        parse_ts(ts) if type(ts) is str else self.timestamps.parse_any(ts))
                    if stamp is None:
                        doc, stamp = self._slow(rec, lo, batch, default_stamp, ["invalid_timestamp"])
                    else:
                        extra = lookup(rec) if lookup is not None else b""
                        doc = b"".join((line[:-1], extra, b',"@timestamp":"', stamp[0], path_part, b"%d" % lo,
                                        end))
                else:
                    doc, stamp = self._dict_doc(rec, lo, batch, default_stamp, [])
            else:
                got = self._odd(rec, line, lo, batch, default_stamp, is_json, tags, bool(hits) and i in hits)
                if got is None:
                    continue
                doc, stamp, rec = got
            records.append(rec)
            docs.append(doc)
            ids.append(sid + b"%x-%08x" % (lo, crc32(raw)))
            stamps.append(stamp[0])
            times.append(stamp[1])
        if batch.truncated:
            for i in range(len(docs)):
                self._tag(out, i, "truncated")
        return out

    def _native(self, batch: Batch, lines: list[bytes] | bytes, out: Events, sid: bytes, path_part: bytes,
                default_stamp: Stamp, hits: set[int]) -> None:
        """The loop above, in C: the same steps, calling back here for whatever is not common."""
        loop = self._loop if self._loop is not None else self._new_loop()
        records, fields = loop.run(lines, batch.start, sid, path_part, default_stamp, hits, batch.scan, batch,
                                   out.records, out.docs, out.ids, out.stamps, out.times)
        if records:  # top-level fields masked in C: counted as Redactor.top_level_names counts them
            self._count("records_redacted", records)
            self._count("redacted:field", fields)
        if batch.truncated:
            for i in range(len(out.docs)):
                self._tag(out, i, "truncated")

    def _new_loop(self) -> Loop:
        """The C loop for this pipeline's constants, made at its first batch (after project, and
        after whatever a test patched in) and kept for the pipeline's life."""
        assert _fast is not None
        redactor = self.redactor
        self._loop = _fast.Loop(
            shapes=self._shapes, new_shape=self._shape, reserved=self.reserved, ts_field=self.ts_field,
            ts_cache=self.timestamps.cache, parse_ts=self.timestamps.parse, parse_any=self.timestamps.parse_any,
            redact=redactor.json_line if redactor is not None else None,
            mask_top=redactor.top_level_names if redactor is not None else None,
            names=redactor is not None and bool(redactor.names),
            mask=redactor.mask if redactor is not None else None,
            mask_json=redactor._mask_json if redactor is not None else None,
            end=self._end, dict_doc=self._native_dict_doc, bad_ts=self._native_bad_ts, odd=self._native_odd,
            loads=orjson.loads, decode_error=orjson.JSONDecodeError, cache=self._projection)
        return self._loop

    # The C loop's callbacks: the batch and its default stamp come after their own arguments.

    def _native_dict_doc(self, rec: dict[str, Any], lo: int, batch: Batch, default_stamp: Stamp) -> tuple[bytes, Stamp]:
        return self._dict_doc(rec, lo, batch, default_stamp, [])

    def _native_bad_ts(self, rec: dict[str, Any], lo: int, batch: Batch, default_stamp: Stamp) -> tuple[bytes, Stamp]:
        return self._slow(rec, lo, batch, default_stamp, ["invalid_timestamp"])

    def _native_odd(self, rec: Any, line: bytes, lo: int, hit: bool, batch: Batch,
                    default_stamp: Stamp) -> tuple[bytes, Stamp, dict[str, Any]] | None:
        return self._odd(rec, line, lo, batch, default_stamp, True, None, hit)

    # ------------------------------------------------------------------ per-record stages

    def _keep(self, rec: Mapping[str, Any]) -> bool:
        """Drop rules, then the first matching sample rule (keeps the 1st, N+1th, ... match)."""
        try:
            for name, test in self._drops:
                if test(rec):
                    self._count(name)
                    return False
            for k, (name, test, every) in enumerate(self._samples):
                if test(rec):
                    seen = self._sample_seen[k]
                    self._sample_seen[k] = seen + 1
                    if seen % every:
                        self._count(name)
                        return False
                    return True
        except TypeError:  # e.g. `in` against a list value: the rule does not apply to this record
            return True
        return True

    def _lookup_bytes(self, rec: Mapping[str, Any]) -> bytes:
        parts = b""
        for lk, frags in zip(self.lookups, self._lookup_frags, strict=True):
            value: Any = rec
            for part in lk.field:
                value = value.get(part) if type(value) is dict else None
            if value is None or lk.target in rec:
                continue
            frag = frags.get(value if type(value) is str else
                             (str(value).lower() if type(value) is bool else str(value)))
            if frag is not None:
                parts += frag
        return parts

    def _transcode(self, line: bytes) -> tuple[bytes, list[str] | None]:
        text = line.decode(self.encoding or "utf-8", "replace")
        bad = "\ufffd" in text
        if bad:
            self._count("invalid_encoding")
        return text.encode("utf-8"), (["invalid_encoding"] if bad else None)

    # ------------------------------------------------------------------ slow paths

    def _dict_doc(self, rec: dict[str, Any], lo: int, batch: Batch, default_stamp: Stamp,
                  tags: list[str]) -> tuple[bytes, Stamp]:
        stamp = default_stamp
        ts = rec.get("@timestamp", rec.get(self.ts_field))
        if ts is not None:
            parsed = self.timestamps.parse_any(ts)
            if parsed is None:
                tags = [*tags, "invalid_timestamp"]
            else:
                stamp = parsed
        return self._slow(rec, lo, batch, stamp, tags)

    def _odd(self, rec: Any, line: bytes, lo: int, batch: Batch, default_stamp: Stamp, is_json: bool,
             tags: list[str] | None, hit: bool) -> tuple[bytes, Stamp, dict[str, Any]] | None:
        """Lines the fast path cannot splice: still shipped unless a rule drops them. A JSON line
        nested too deep to take apart (rawjson.MAX_DEPTH) is shipped as text, as one that is not
        JSON is: its sensitive keys' values and patterns masked in the text."""
        tags = list(tags or ())
        stamp = default_stamp
        redactor = self.redactor
        if is_json and redactor is not None and not hit:
            hit = redactor.could_hold_secret(line)  # scanned as JSON, and it is not an object
        deep = is_json and (rec is None or type(rec) is dict) and too_deep(line)
        if deep:
            rec = None
        elif rec is None and is_json:
            recovered = self._recover(line, tags)
            if recovered is not None:
                rec = recovered
        if type(rec) is dict:
            if (self._drops or self._samples) and not self._keep(rec):
                return None
            if redactor is not None:
                redactor.redact_dict(rec)
            doc, stamp = self._dict_doc(rec, lo, batch, default_stamp, tags)
            return doc, stamp, rec
        try:
            text, utf8 = line.decode("utf-8"), True
        except UnicodeDecodeError:
            text, utf8 = line.decode("utf-8", "replace"), False
        if is_json and (utf8 or deep):  # (an undecodable JSON line is tagged invalid_utf8 alone)
            tags.insert(0, "too_deep" if deep else "invalid_json" if rec is None else "not_an_object")
        if not utf8:
            tags.append("invalid_utf8")
        if batch.truncated and redactor is not None:
            text = redactor.cut_card(text, json=is_json)
        if "\x00" in text:
            tags.append("nul_bytes")
        rec = {"message": text}
        if self.text_parser is not None:
            parsed = self.text_parser.parse(text)
            if parsed is None:
                tags.append("parse_failure")
                self._count("parse_failure")
            else:
                rec, raw_ts = parsed
                if raw_ts is not None:
                    got = self.timestamps.parse(raw_ts)
                    if got is None:
                        rec.setdefault(self.ts_field, raw_ts)
                        tags.append("invalid_timestamp")
                    else:
                        stamp = got
        if tags and any(t not in ("parse_failure", "invalid_timestamp") for t in tags):
            self.malformed += 1
        if tags:
            rec["tags"] = tags
        if (self._drops or self._samples) and not self._keep(rec):
            return None
        if redactor is not None:
            redactor.text_record(rec, hit, self._text_names, json=is_json)
        doc, _ = self._slow(rec, lo, batch, stamp, [])
        return doc, stamp, rec

    def _recover(self, line: bytes, tags: list[str]) -> Any:
        """A JSON object with invalid UTF-8 in it keeps its fields: bytes replaced, tagged."""
        try:
            line.decode("utf-8")
            return None  # valid UTF-8, so it really is not JSON
        except UnicodeDecodeError:
            pass
        try:
            rec = orjson.loads(line.decode("utf-8", "replace"))
        except orjson.JSONDecodeError:
            return None
        if type(rec) is dict:
            tags.append("invalid_utf8")
            self.malformed += 1
            return rec
        return None

    def _slow(self, rec: dict[str, Any], lo: int, batch: Batch, stamp: Stamp, tags: list[str]) -> tuple[bytes, Stamp]:
        own = to_ecs(rec, self.ecs) if self.ecs is not None else rec
        doc = {**self.fields, **own}
        if self.ecs is None:
            index_safe(doc)
        elif self.environment is not None:
            service = doc.get("service")
            if type(service) is dict:
                service.setdefault("environment", self.environment)
            elif service is None:
                doc["service"] = {"environment": self.environment}
        for lk in self.lookups:
            if lk.target not in doc:
                found = lk.find(rec)
                if found is not None:
                    doc[lk.target] = found
        for key, ours in (("host", self.host), ("agent", self.agent),
                          ("log", {"file": {"path": batch.path}, "offset": lo})):
            theirs = doc.get(key)
            if isinstance(theirs, dict):
                doc[key] = {**theirs, **ours}
            else:
                if theirs is not None:
                    set_aside(doc, key, theirs)  # never lose the record's own value
                doc[key] = ours
        if "@timestamp" in rec and tags:
            set_aside(doc, "@timestamp", rec["@timestamp"])
        if "invalid_timestamp" in tags and self.ts_field != "@timestamp":
            bad = doc.get(self.ts_field)
            if bad is not None and type(bad) is not str:
                # A list or object where the app writes a date string would fix the field's type
                # in the index's dynamic mapping and get every later record of the app refused.
                set_aside(doc, self.ts_field, doc.pop(self.ts_field))
        doc["@timestamp"] = stamp[0].decode()
        if tags:
            doc["tags"] = [*doc.get("tags", []), *tags] if isinstance(doc.get("tags"), list) else tags
        return orjson.dumps(doc), stamp

    # ------------------------------------------------------------------ when a stage fails

    def _salvage(self, batch: Batch, error: Exception) -> Events:
        """The batch again, a line at a time through the Python loop. A line that still fails is
        shipped as a record of the failure: its place in the file and no content (redaction may
        not have judged it). Logged once per batch, by input and offset, never with content."""
        out = Events(batch)
        failed: list[tuple[int, Exception]] = []
        offset = batch.start
        for line in batch.lines:
            lo = offset
            offset += len(line) + 1
            if not line or line.isspace():
                continue
            one = Batch(batch.entry, batch.path, lo, offset, [line], truncated=batch.truncated)
            try:
                events = self._process(one, native=False)
            except Exception as e:
                failed.append((lo, e))
                events = self._withheld(one, line, e)
            out.records += events.records
            out.docs += events.docs
            out.ids += events.ids
            out.stamps += events.stamps
            out.times += events.times
        if failed:
            self._count("pipeline_errors", len(failed))
            lo, first = failed[0]
            more = f" (and {len(failed) - 1} more lines of this batch)" if len(failed) > 1 else ""
            log.error("input %s: %s offset %d: the pipeline failed on this line (%s)%s; shipped without its "
                      "content, tagged pipeline_error", self.input_id, batch.path, lo, _where(first), more)
        else:
            log.error("input %s: %s offsets %d-%d: the pipeline failed on this batch (%s); its lines were "
                      "processed one at a time", self.input_id, batch.path, batch.start, batch.end, _where(error))
        return out

    def _withheld(self, batch: Batch, line: bytes, error: Exception) -> Events:
        """The event of a line the pipeline failed on: where it is, what failed, nothing of it."""
        out = Events(batch)
        stamp = now_stamp(time.time())
        tags = ["pipeline_error", "truncated"] if batch.truncated else ["pipeline_error"]
        rec = {"message": f"not shipped: the pipeline failed on this line ({type(error).__name__}); "
                          "it is at log.file.path, log.offset", "tags": tags}
        doc = {**self.fields, **rec, "@timestamp": stamp[0].decode(), "host": self.host, "agent": self.agent,
               "log": {"file": {"path": batch.path}, "offset": batch.start}}
        out.records.append(rec)
        out.docs.append(orjson.dumps(doc))
        out.ids.append(batch.entry.stream_id.encode() + b"%x-%08x" % (batch.start, crc32(line)))
        out.stamps.append(stamp[0])
        out.times.append(stamp[1])
        return out

    def _tag(self, out: Events, i: int, tag: str) -> None:
        rec = out.records[i]
        tags = rec.get("tags")
        rec["tags"] = [*tags, tag] if isinstance(tags, list) else [tag]
        doc = orjson.loads(out.docs[i])
        tags = doc.get("tags")
        doc["tags"] = [*tags, tag] if isinstance(tags, list) else [tag]
        out.docs[i] = orjson.dumps(doc)


def _where(e: BaseException) -> str:
    """What failed and where, for the log: never the exception's message (it may quote the line)."""
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return type(e).__name__
    return f"{type(e).__name__} at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"
