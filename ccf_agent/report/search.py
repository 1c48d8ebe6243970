"""Figures from the search engine: one aggregation request over the window's indices.

Which indices. Records reach an index through routes (first match wins, a route may fan out)
and the default output, so reading every Elasticsearch output could count a record twice. The
report reads a set of outputs no two of which receive the same route's records, the ones
receiving most routes first (`report.outputs` names them instead); a route none of them receives
is named in the report's notes. An output's `index` may hold a date pattern
(`ccf-logs-%{+yyyy.MM.dd}`, the UTC day of `@timestamp`): the report reads the indices of every
UTC day the window touches, and a window is a day of the report's time zone.

Which fields. Aggregations and exact terms need keyword fields: `ccf-agent setup`'s template maps
`level`, `error`, `payoutId` and `log.file.path` as keyword and `message` as text with a
`message.keyword` subfield; without it dynamic mapping makes every string text with a `.keyword`
subfield. The field mappings of the window's indices pick one or the other per field.

Exactness. Counts come from filters and are exact; terms use a shard_size far above `top`, and a
non-zero `doc_count_error_upper_bound` is noted; percentiles come from a histogram of every
distinct millisecond value (exact, as the files source computes them), falling back to the
engine's estimate (noted) when there are too many distinct values for one response.

Case-insensitive `term` and `regexp` queries need Elasticsearch 7.10 or later, or OpenSearch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from ccf_agent.config import Config, OutputConfig
from ccf_agent.outputs.elasticsearch.client import Cluster, SetupError
from ccf_agent.outputs.elasticsearch.indices import IndexNamer
from ccf_agent.report.figures import (
    FAILED,
    NO_ERROR,
    NO_MESSAGE,
    PROCESSED,
    SERIES,
    WARN_LEVELS,
    Figures,
    HighValue,
    Percentiles,
    Tally,
    Window,
    nearest_rank,
    number,
    text_of,
)

KEYWORD_FIELDS = ("level", "message", "payoutId", "error", "log.file.path")
NUMERIC_FIELDS = ("amount", "processingTime")
_KEYWORD_TYPES = ("keyword", "constant_keyword", "wildcard")
_NUMERIC_TYPES = ("long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
                  "unsigned_long")
SHARD_SIZE = 5000
# figures.AUTH_WORDS, FAIL_WORDS and RATE_LIMIT as Lucene regexps (anchored: the whole value).
AUTH_RX, FAIL_RX, RATE_RX = ".*(auth|login).*", ".*(fail|invalid|denied|reject).*", ".*rate.?limit.*"
_IGNORE = "ignore_unavailable=true&allow_no_indices=true"


class SearchError(Exception):
    """The engine could not give the figures: said for an operator (no secrets)."""


# ---------------------------------------------------------------------------------- what to read (pure)


def choose_outputs(config: Config, names: Sequence[str] = ()) -> tuple[list[OutputConfig], list[str]]:
    """The Elasticsearch outputs to read, and notes on records none of them holds."""
    es = {n: o for n, o in config.outputs.items() if o.type == "elasticsearch"}
    if names:
        return [es[n] for n in names], []
    flows = [(f"route {r.name}", set(r.outputs)) for r in config.routes]
    flows.append(("records no route matches", {config.default_output}))
    receives = {n: {i for i, (_, targets) in enumerate(flows) if n in targets} for n in es}
    chosen: list[OutputConfig] = []
    covered: set[int] = set()
    for n in sorted(es, key=lambda n: -len(receives[n])):  # sorted() is stable: config order among equals
        if receives[n] and not receives[n] & covered:
            chosen.append(es[n])
            covered |= receives[n]
    if chosen:
        hosts = chosen[0].hosts
        others = [o.name for o in chosen if o.hosts != hosts]
        chosen = [o for o in chosen if o.hosts == hosts]
        notes = [f"output {n} is on another cluster: not read (name the outputs in report.outputs)" for n in others]
    else:
        notes = []
    read = {i for o in chosen for i in receives[o.name]}
    notes += [f"{what} go to no output the report reads: not counted" for i, (what, _) in enumerate(flows)
              if i not in read]
    return chosen, notes


def index_names(index: str, window: Window) -> list[str]:
    """The indices an output's `index` setting puts the window's records in (a name from the record's
    fields as a wildcard)."""
    namer = IndexNamer(index)
    if not namer.dated:
        return [namer.compiled.glob()]  # field references as `*`: every index they give
    day = datetime.fromtimestamp(window.start, UTC).date()
    last = datetime.fromtimestamp(max(window.start, window.end - 0.001), UTC).date()
    out = []
    while day <= last:
        out.append(namer.name(day.isoformat().encode()))
        day += timedelta(days=1)
    return out


def glob_regexp(pattern: str) -> str:
    """A file-name glob as a Lucene regexp on a whole path (`.../combined*.log*`)."""
    out, i = [".*/"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 2:]:
            j = pattern.index("]", i + 2)
            body = pattern[i + 1:j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = j
        elif c.isalnum() or c in "_-":
            out.append(c)
        else:
            out.append("\\" + c)
        i += 1
    return "".join(out)


def resolve_fields(mapping: Mapping[str, Any]) -> dict[str, str]:
    """Field name -> the name to aggregate on, from a `_mapping/field/...` answer. Raises SearchError
    when the window's indices disagree in a way one request cannot bridge."""
    types: dict[str, dict[str, str]] = {}  # full name -> index -> type
    for index, body in mapping.items():
        for full, spec in ((body or {}).get("mappings") or {}).items():
            leaf: dict[str, dict[str, str]] = spec.get("mapping") or {}
            kind = next(iter(leaf.values()), {}).get("type", "object") if leaf else "object"
            types.setdefault(full, {})[index] = kind
    out: dict[str, str] = {}
    for name in KEYWORD_FIELDS:
        own = types.get(name, {})
        if all(t in _KEYWORD_TYPES for t in own.values()):
            out[name] = name  # keyword everywhere (or absent: a query on it matches nothing)
            continue
        sub = types.get(name + ".keyword", {})
        if all(i in sub and sub[i] in _KEYWORD_TYPES for i in own):
            out[name] = name + ".keyword"
            continue
        lacking = sorted(i for i in own if own[i] not in _KEYWORD_TYPES and sub.get(i) not in _KEYWORD_TYPES)
        if lacking and len(lacking) == len(own):
            raise SearchError(f"field {name} is text without a keyword subfield in {', '.join(lacking)}: "
                              "aggregations need keyword fields (run `ccf-agent setup`; it applies to new indices)")
        raise SearchError(f"field {name} is keyword in some of the window's indices and text in others "
                          f"({', '.join(f'{i}: {t}' for i, t in sorted(own.items()))}): one request cannot "
                          "aggregate across both")
    for name in NUMERIC_FIELDS:
        bad = sorted(f"{i}: {t}" for i, t in types.get(name, {}).items() if t not in _NUMERIC_TYPES)
        if bad:
            raise SearchError(f"field {name} is not numeric in {', '.join(bad)}: figures on it need a number "
                              "mapping (`ccf-agent setup` maps it as long)")
        out[name] = name
    return out


# ---------------------------------------------------------------------------------- the request (pure)


def _ms(t: float) -> int:
    return int(round(t * 1000))


def build_query(window: Window, fields: Mapping[str, str], sources: Sequence[str], top: int,
                high_value_cents: int, list_max: int, exact_percentiles: bool = True) -> dict[str, Any]:
    level, message, error = fields["level"], fields["message"], fields["error"]

    def ci(kind: str, value: str) -> dict[str, Any]:
        return {kind: {message: {"value": value, "case_insensitive": True}}}

    def outcome(text: str) -> dict[str, Any]:
        return {"bool": {"filter": [{"exists": {"field": "payoutId"}}, ci("term", text)]}}

    def hourly() -> dict[str, Any]:
        return {"date_histogram": {"field": "@timestamp", "calendar_interval": "1h", "time_zone": window.tz,
                                   "min_doc_count": 0,
                                   "extended_bounds": {"min": _ms(window.start), "max": _ms(window.end) - 1}}}

    def terms(field: str, missing: str) -> dict[str, Any]:
        return {"terms": {"field": field, "size": top, "shard_size": max(SHARD_SIZE, top),
                          "order": [{"_count": "desc"}, {"_key": "asc"}], "missing": missing}}

    warn = {"terms": {level: list(WARN_LEVELS)}}
    ms = ({"histogram": {"field": "processingTime", "interval": 1, "min_doc_count": 1}} if exact_percentiles
          else {"percentiles": {"field": "processingTime", "percents": [50, 95]}})
    return {
        "size": 0,
        "track_total_hits": True,
        "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": _ms(window.start), "lt": _ms(window.end), "format": "epoch_millis"}}},
            {"bool": {"should": [{"regexp": {fields["log.file.path"]: {"value": glob_regexp(s)}}} for s in sources],
                      "minimum_should_match": 1}},
        ]}},
        "aggs": {
            "errors": {"filter": {"term": {level: "error"}}, "aggs": {"top": terms(message, NO_MESSAGE)}},
            "processed": {"filter": outcome(PROCESSED), "aggs": {
                "hourly": hourly(), "ms": ms, "ms_count": {"value_count": {"field": "processingTime"}}}},
            "failed": {"filter": outcome(FAILED), "aggs": {
                "hourly": hourly(), "reasons": terms(error, NO_ERROR),
                "high": {"filter": {"range": {"amount": {"gt": high_value_cents}}}, "aggs": {"list": {"top_hits": {
                    "size": list_max,
                    # unmapped_type: an index without payouts (the logs one) must not fail its shard
                    "sort": [{"amount": {"order": "desc", "unmapped_type": "long"}},
                             {"@timestamp": {"order": "asc", "unmapped_type": "date"}},
                             {fields["payoutId"]: {"order": "asc", "unmapped_type": "keyword"}}],
                    "_source": ["payoutId", "userId", "amount", "error", "@timestamp"]}}}}}},
            "auth_failures": {"filter": {"bool": {"filter": [warn, ci("regexp", AUTH_RX), ci("regexp", FAIL_RX)]}},
                              "aggs": {"hourly": hourly()}},
            "rate_limited": {"filter": {"bool": {"filter": [warn, ci("regexp", RATE_RX)]}},
                             "aggs": {"hourly": hourly()}},
        },
    }


def _series(agg: Mapping[str, Any], hours: list[float]) -> list[int]:
    counts = {b["key"]: b["doc_count"] for b in agg["hourly"]["buckets"]}
    return [counts.get(_ms(h), 0) for h in hours]


def _stamp(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def parse_response(answer: Mapping[str, Any], window: Window, source: str, top: int, high_value_cents: int,
                   ) -> Figures:
    aggs = answer["aggregations"]
    hours = window.hours()
    notes = []
    for name, path in (("top errors", ("errors", "top")), ("failure reasons", ("failed", "reasons"))):
        if aggs[path[0]][path[1]].get("doc_count_error_upper_bound"):
            notes.append(f"{name}: the engine's counts may be off by up to "
                         f"{aggs[path[0]][path[1]]['doc_count_error_upper_bound']} (many distinct values)")
    processed, failed = aggs["processed"], aggs["failed"]
    ms = processed["ms"]
    if "buckets" in ms:
        pairs = [(float(b["key"]), int(b["doc_count"])) for b in ms["buckets"]]
        pct = Percentiles(sum(n for _, n in pairs), nearest_rank(pairs, 50), nearest_rank(pairs, 95))
    else:
        values = ms.get("values") or {}
        count = int(processed["ms_count"]["value"])
        pct = Percentiles(count, values.get("50.0") if count else None, values.get("95.0") if count else None, True)
    high = []
    for hit in failed["high"]["list"]["hits"]["hits"]:
        src = hit.get("_source") or {}
        high.append(HighValue(text_of(src.get("payoutId"), ""), text_of(src.get("userId"), ""),
                              number(src.get("amount")) or 0.0, text_of(src.get("error"), NO_ERROR),
                              _stamp(src.get("@timestamp"))))
    total = answer["hits"]["total"]
    return Figures(
        window=window, source=source, records=int(total["value"] if isinstance(total, dict) else total),
        errors=int(aggs["errors"]["doc_count"]), processed=int(processed["doc_count"]),
        failed=int(failed["doc_count"]),
        top_errors=[(str(b["key"]), int(b["doc_count"])) for b in aggs["errors"]["top"]["buckets"]][:top],
        failure_reasons=[(str(b["key"]), int(b["doc_count"])) for b in failed["reasons"]["buckets"]][:top],
        high_value_count=int(failed["high"]["doc_count"]), high_value=high,
        hourly={s: _series(aggs[s], hours) for s in SERIES},
        processing_ms=pct, notes=notes, high_value_cents=high_value_cents)


# ---------------------------------------------------------------------------------- asking the engine


def _too_many_buckets(answer: Any) -> bool:
    return "too_many_buckets" in str(answer)


def shard_failures(answer: Any) -> str | None:
    shards = answer.get("_shards") or {} if isinstance(answer, dict) else {}
    if not shards.get("failed"):
        return None
    reasons = {f"{(f.get('reason') or {}).get('type')}: {(f.get('reason') or {}).get('reason')}"
               for f in shards.get("failures") or []}
    return f"{shards['failed']} of {shards.get('total')} ({'; '.join(sorted(reasons))[:500]})"


def _error(status: int, answer: Any) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        err = answer["error"]
        cause = (err.get("root_cause") or [{}])[0]
        return f"{status} {cause.get('type') or err.get('type')}: {cause.get('reason') or err.get('reason')}"
    return f"{status} {str(answer)[:300]}"


async def figures_from_search(outputs: Sequence[OutputConfig], window: Window, sources: Sequence[str], top: int,
                              high_value_cents: int, list_max: int) -> Figures:
    """Ask the cluster of `outputs[0]` about the window's indices of every output in `outputs`."""
    indices = sorted({name for o in outputs for name in index_names(o.index, window)})
    target = quote(",".join(indices), safe=",")
    cluster = Cluster(outputs[0])
    try:
        try:
            await cluster.connect()
        except SetupError as e:
            raise SearchError(f"cannot reach the cluster of output {outputs[0].name}: {e}") from e
        wanted = ",".join(f for name in KEYWORD_FIELDS for f in (name, name + ".keyword")) + "," + ",".join(
            NUMERIC_FIELDS)
        status, mapping = await cluster.call("GET", f"/{target}/_mapping/field/{wanted}?{_IGNORE}")
        if status == 404:  # none of the indices exists (yet): the search below counts nothing
            status, mapping = 200, {}
        if status != 200:
            raise SearchError(cluster.redact(f"reading the field mappings of {', '.join(indices)}: {_error(status, mapping)}"))
        source = f"{cluster.engine} {cluster.version} at {cluster.url}, indices {', '.join(indices)}"
        if not mapping:  # no index of the window exists: an engine answers without aggregations
            figures = Tally(window, top, high_value_cents, list_max).figures(source)
            figures.notes.append(f"none of the indices {', '.join(indices)} exists")
            return figures
        fields = resolve_fields(mapping)
        body = build_query(window, fields, sources, top, high_value_cents, list_max)
        status, answer = await cluster.call("POST", f"/{target}/_search?{_IGNORE}", body)
        estimated = status != 200 and _too_many_buckets(answer)
        if estimated:
            body = build_query(window, fields, sources, top, high_value_cents, list_max, exact_percentiles=False)
            status, answer = await cluster.call("POST", f"/{target}/_search?{_IGNORE}", body)
        if status != 200:
            raise SearchError(cluster.redact(f"the report's search on {', '.join(indices)}: {_error(status, answer)}"))
        failed = shard_failures(answer)
        if failed:  # a partial answer would be wrong figures that look right
            raise SearchError(cluster.redact(f"the report's search on {', '.join(indices)} failed on some shards: "
                                             f"{failed}"))
        figures = parse_response(answer, window, source, top, high_value_cents)
        if estimated:
            figures.notes.append("processing time percentiles are the engine's estimate (too many distinct values "
                                 "for an exact count in one response)")
        return figures
    except SetupError as e:
        raise SearchError(str(e)) from e
    finally:
        await cluster.close()

