"""The `processors:` section: what the pipeline adds, masks and drops, for every input.

    processors:
      enrich: {fields: {...}, environment: production, host: true, lookup: [...]}
      redact: {fields: [...], drop_fields: [...], mask: "[REDACTED]", patterns: {...}, custom: [...]}
      drop:   [{name: debug, when: {field: level, equals: debug}}]
      sample: [{name: health, when: {field: url, equals: /health}, keep: 10}]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ccf_agent.conditions import Condition
from ccf_agent.config.reader import Reader
from ccf_agent.config.values import Where
from ccf_agent.pipeline.enrich import EnrichConfig, Lookup, load_table
from ccf_agent.pipeline.redact import DEFAULT_FIELDS as REDACT_DEFAULT_FIELDS
from ccf_agent.pipeline.redact import PATTERN_KINDS, RedactConfig


@dataclass(frozen=True)
class DropRule:
    name: str
    when: Condition


@dataclass(frozen=True)
class SampleRule:
    name: str
    when: Condition
    keep: int  # 1 in `keep`


@dataclass(frozen=True)
class Processors:
    enrich: EnrichConfig = field(default_factory=EnrichConfig)
    redact: RedactConfig = field(default_factory=RedactConfig)
    drop: tuple[DropRule, ...] = ()
    sample: tuple[SampleRule, ...] = ()


def parse_processors(raw: Any, where: Where) -> Processors:
    """The `processors:` mapping (None: the defaults, redaction on); `where` names paths below it."""
    if raw is None:
        return Processors()
    r = Reader(where, (), raw)
    out = Processors(enrich=_enrich(r), redact=_redact(r), drop=_drop(r), sample=_sample(r))
    r.done()
    return out


def _enrich(r: Reader) -> EnrichConfig:
    if r.value.get("enrich") is None:
        r.used.add("enrich")
        return EnrichConfig()
    spec = r.sub("enrich")
    fields = spec.get("fields", dict, {})
    env = spec.get("environment", (str, int, float))
    host = spec.get("host", (bool, dict), False)
    if isinstance(host, bool):
        host_ip = host_os = host
    else:
        hspec = spec.sub("host")
        host_ip = hspec.get("ip", bool, True)
        host_os = hspec.get("os", bool, True)
        hspec.done()
    lookups = []
    for lspec in spec.each("lookup"):
        src: str = lspec.get("field", str, required=True)
        target: str = lspec.get("target", str, required=True)
        if "." in target or not target:
            raise lspec.error("target", "must be a top-level field name (the value added may be an object)")
        if ("table" in lspec.value) == ("file" in lspec.value):
            raise lspec.error(None, "needs either 'table' (inline mapping) or 'file' (JSON, YAML or CSV)")
        table = lspec.get("table", dict)
        if table is not None:
            table = {str(k).lower() if isinstance(k, bool) else str(k): v for k, v in table.items()}
        else:
            try:
                table = load_table(lspec.get("file", str, ""))
            except ValueError as e:
                raise lspec.error("file", str(e)) from e
        lspec.done()
        lookups.append(Lookup(tuple(src.split(".")), target, table))
    spec.done()
    return EnrichConfig(fields=fields, environment=None if env is None else str(env), host_ip=host_ip,
                        host_os=host_os, lookups=tuple(lookups))


def _redact(r: Reader) -> RedactConfig:
    raw = r.value.get("redact")
    r.used.add("redact")
    if raw is None:
        return RedactConfig()
    if raw is False:
        return RedactConfig(enabled=False)
    spec = r.sub("redact")
    fields = spec.strings("fields", None)
    drop_fields = spec.strings("drop_fields")
    pspec = spec.sub("patterns")
    kinds = {k: pspec.get(k, bool, getattr(RedactConfig, k)) for k in PATTERN_KINDS}
    pspec.done()
    custom = []
    for cspec in spec.each("custom"):
        name: str = cspec.get("name", str, required=True)
        rx: str = cspec.get("regex", str, required=True)
        cspec.done()
        try:
            compiled = re.compile(rx)
        except re.error as e:
            raise cspec.error("regex", f"invalid regular expression: {e}") from e
        if compiled.search(""):
            raise cspec.error("regex", "matches the empty string, so it would mask between every character")
        custom.append((name, rx))
    mask: str = spec.get("mask", str, "[REDACTED]")
    if not mask or any(c in mask for c in '"\\') or any(ord(c) < 32 for c in mask):
        # It is written into raw JSON text: keep it free of what JSON would have to escape.
        raise spec.error("mask", 'must be non-empty plain text without quotes, backslashes or control characters')
    enabled = spec.get("enabled", bool, True)
    spec.done()
    return RedactConfig(enabled=enabled, mask=mask, fields=REDACT_DEFAULT_FIELDS if fields is None else fields,
                        drop_fields=drop_fields, custom=tuple(custom), **kinds)


def _rules(r: Reader, key: str, extra: tuple[str, ...] = ()) -> list[tuple[Reader, str, Condition]]:
    """Each rule of a `drop`/`sample` list: its reader (for `extra` keys), name and condition."""
    out = []
    for i, spec in enumerate(r.each(key)):
        name = spec.get("name", str) or f"{key}-{i}"
        if "when" not in spec.value:
            raise spec.error(None, "missing required key 'when' (a condition, as in routes)")
        when = spec.condition("when", required=True)
        spec.used.update(extra)
        spec.done()
        out.append((spec, name, when))
    return out


def _drop(r: Reader) -> tuple[DropRule, ...]:
    return tuple(DropRule(name, when) for _, name, when in _rules(r, "drop"))


def _sample(r: Reader) -> tuple[SampleRule, ...]:
    out = []
    for spec, name, when in _rules(r, "sample", ("keep",)):
        keep = spec.value.get("keep")
        if keep is None:
            raise spec.error(None, "missing required key 'keep' (keep 1 record in this many)")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep <= 0:
            raise spec.error("keep", f"must be a whole number greater than 0, not {keep!r}")
        out.append(SampleRule(name, when, keep))
    return tuple(out)
