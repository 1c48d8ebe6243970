"""Pipeline options in the YAML: per input (parser, multiline, encoding, ecs) and global processors.

The config loader hands each section here raw, with a `where(key_path, message)` that turns
a problem into a file:line error; this module owns the keys and their meaning.

Per input:

    parser: nginx_combined              # or apache_combined, syslog, or a regex with named groups
    parser:                             # the long form
      pattern: ['^(?P<level>\\w+): (?P<message>.*)$', syslog]   # tried in order
      types: {status: int}              # int, float, bool, string (ready patterns type their own)
      timestamp_field: timestamp        # the group (or JSON field) holding the event time
      timestamp_formats: ['%d/%m/%Y %H:%M:%S']   # strptime, tried before the built-in formats
    multiline: {preset: stack_trace}    # or pattern/negate/match, plus max_lines, max_bytes, timeout
    encoding: latin-1                   # default utf-8; any ASCII-compatible codec
    ecs: true                           # or {fields: {level: log.level, ...}}; default false

Top level:

    processors:
      enrich: {fields: {...}, environment: production, host: true, lookup: [...]}
      redact: {fields: [...], drop_fields: [...], mask: "[REDACTED]", patterns: {...}, custom: [...]}
      drop:   [{name: debug, when: {field: level, equals: debug}}]
      sample: [{name: health, when: {field: url, equals: /health}, keep: 10}]
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ccf_agent.conditions import Condition, ConditionError, compile_condition
from ccf_agent.config import parse_duration, parse_size
from ccf_agent.pipeline.ecs import DEFAULT_FIELDS as ECS_DEFAULT_FIELDS
from ccf_agent.pipeline.ecs import EcsConfig
from ccf_agent.pipeline.enrich import EnrichConfig, Lookup, load_table
from ccf_agent.pipeline.redact import DEFAULT_FIELDS as REDACT_DEFAULT_FIELDS
from ccf_agent.pipeline.redact import PATTERN_KINDS, RedactConfig
from ccf_agent.pipeline.text import PRESETS as TEXT_PRESETS
from ccf_agent.pipeline.text import TextParser, compile_parser
from ccf_agent.tail.multiline import MATCH_MODES, MultilineConfig
from ccf_agent.tail.multiline import PRESETS as MULTILINE_PRESETS

Where = Callable[[tuple[str | int, ...], str], Exception]
Path = tuple[str | int, ...]

# Keys an input may carry besides the loader's own (id, paths, exclude, format, fields, ...).
INPUT_KEYS: tuple[str, ...] = ("parser", "multiline", "encoding", "ecs")


@dataclass(frozen=True)
class InputOptions:
    parser: TextParser | None = None  # format: text only
    timestamp_field: str = "timestamp"
    timestamp_formats: tuple[str, ...] = ()
    multiline: MultilineConfig | None = None  # applied by the tail reader
    encoding: str = "utf-8"
    ecs: EcsConfig | None = None


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


# ---------------------------------------------------------------- small readers


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "empty"}.get(type(v), type(v).__name__)


def _mapping(raw: Any, path: Path, where: Where, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise where(path, f"must be a mapping, not {_kind(raw)}")
    for key in raw:
        if key not in known:
            raise where((*path, key), f"unknown key (known keys here: {', '.join(known)})")
    return raw


def _bool(raw: Mapping[str, Any], key: str, path: Path, where: Where, default: bool) -> bool:
    v = raw.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise where((*path, key), f"must be true or false, not {_kind(v)}")
    return v


def _str(raw: Mapping[str, Any], key: str, path: Path, where: Where, default: str | None = None,
         required: bool = False) -> str | None:
    v = raw.get(key)
    if v is None:
        if required:
            raise where(path, f"missing required key '{key}'")
        return default
    if not isinstance(v, str):
        raise where((*path, key), f"must be a string, not {_kind(v)}")
    return v


def _strings(raw: Mapping[str, Any], key: str, path: Path, where: Where) -> tuple[str, ...] | None:
    v = raw.get(key)
    if v is None:
        return None
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list):
        raise where((*path, key), f"must be a string or a list of strings, not {_kind(v)}")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise where((*path, key, i), f"must be a non-empty string, not {_kind(item)}")
    return tuple(items)


def _positive_int(raw: Mapping[str, Any], key: str, path: Path, where: Where, default: int) -> int:
    v = raw.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise where((*path, key), f"must be a whole number greater than 0, not {v!r}")
    return v


def _condition(raw: Any, path: Path, where: Where) -> Condition:
    if not isinstance(raw, dict):
        raise where(path, f"must be a condition mapping, not {_kind(raw)}")
    try:
        return compile_condition(raw)
    except ConditionError as e:
        raise where((*path, *e.path), e.message) from e


# ---------------------------------------------------------------- per input


def parse_input_options(raw: Mapping[str, Any], where: Where) -> InputOptions:
    parser, ts_field, ts_formats = _parser(raw.get("parser"), where)
    return InputOptions(
        parser=parser,
        timestamp_field=ts_field,
        timestamp_formats=ts_formats,
        multiline=_multiline(raw.get("multiline"), where),
        encoding=_encoding(raw.get("encoding"), where),
        ecs=_ecs(raw.get("ecs"), where),
    )


def _parser(raw: Any, where: Where) -> tuple[TextParser | None, str, tuple[str, ...]]:
    if raw is None:
        return None, "timestamp", ()
    path: Path = ("parser",)
    if isinstance(raw, str):
        raw = {"pattern": raw}
    spec = _mapping(raw, path, where, ("pattern", "types", "timestamp_field", "timestamp_formats"))
    ts_field = _str(spec, "timestamp_field", path, where, "timestamp") or "timestamp"
    formats = _strings(spec, "timestamp_formats", path, where) or ()
    for i, fmt in enumerate(formats):
        if "%" not in fmt:
            raise where((*path, "timestamp_formats", i), f"must be a strptime format like '%d/%m/%Y %H:%M:%S', "
                                                         f"not {fmt!r}")
    patterns = _strings(spec, "pattern", path, where)
    types = spec.get("types") or {}
    if not isinstance(types, dict) or not all(isinstance(v, str) for v in types.values()):
        raise where((*path, "types"), "must be a mapping of group name -> int, float, bool or string")
    if patterns is None:
        if types:
            raise where((*path, "types"), "types need a pattern")
        return None, ts_field, formats
    try:
        parser = compile_parser(list(patterns), types, ts_field.replace(".", "__"))
    except ValueError as e:
        raise where((*path, "pattern"), f"{e} (ready patterns: {', '.join(TEXT_PRESETS)})") from e
    return parser, ts_field, formats


def _multiline(raw: Any, where: Where) -> MultilineConfig | None:
    if raw is None:
        return None
    path: Path = ("multiline",)
    spec = _mapping(raw, path, where, ("preset", "pattern", "negate", "match", "max_lines", "max_bytes", "timeout"))
    preset = _str(spec, "preset", path, where)
    pattern = _str(spec, "pattern", path, where)
    if (preset is None) == (pattern is None):
        raise where(path, f"needs either 'preset' ({', '.join(MULTILINE_PRESETS)}) or 'pattern'")
    if preset is not None:
        if preset not in MULTILINE_PRESETS:
            raise where((*path, "preset"), f"must be one of {', '.join(MULTILINE_PRESETS)}, not '{preset}'")
        source, negate, match = MULTILINE_PRESETS[preset]
    else:
        source, negate, match = (pattern or "").encode(), False, "after"
    negate = _bool(spec, "negate", path, where, negate)
    match = _str(spec, "match", path, where, match) or match
    if match not in MATCH_MODES:
        raise where((*path, "match"), f"must be one of {', '.join(MATCH_MODES)}, not '{match}'")
    try:
        rx = re.compile(source)
    except re.error as e:
        raise where((*path, "pattern"), f"invalid regular expression: {e}") from e
    max_bytes = parse_size(spec.get("max_bytes", 10 << 20))
    if max_bytes is None or max_bytes <= 0:
        raise where((*path, "max_bytes"), f"must be a size like 512KiB or 10MiB, not {spec.get('max_bytes')!r}")
    timeout = parse_duration(spec.get("timeout", 5.0))
    if timeout is None or timeout <= 0:
        raise where((*path, "timeout"), f"must be a duration like 500ms or 5s, not {spec.get('timeout')!r}")
    return MultilineConfig(rx, negate, match, _positive_int(spec, "max_lines", path, where, 500), max_bytes, timeout)


def _encoding(raw: Any, where: Where) -> str:
    if raw is None:
        return "utf-8"
    if not isinstance(raw, str):
        raise where(("encoding",), f"must be a string, not {_kind(raw)}")
    try:
        name = codecs.lookup(raw).name
    except LookupError as e:
        raise where(("encoding",), f"unknown encoding '{raw}'") from e
    # Lines are cut at b"\n" before decoding, so the codec must write ASCII as ASCII.
    try:
        ascii_ok = "\n{}\"az09".encode(name) == b"\n{}\"az09"
    except (UnicodeError, LookupError):
        ascii_ok = False
    if not ascii_ok:
        raise where(("encoding",), f"'{raw}' is not ASCII-compatible (lines are split on newline bytes); "
                                   "UTF-16/32 logs need converting first")
    return name


def _ecs(raw: Any, where: Where) -> EcsConfig | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return EcsConfig.of()
    spec = _mapping(raw, ("ecs",), where, ("fields",))
    fields = spec.get("fields")
    if fields is None:
        return EcsConfig.of()
    if not isinstance(fields, dict) or not fields:
        raise where(("ecs", "fields"), "must be a mapping of record field -> ECS field, e.g. {level: log.level}")
    for src, dst in fields.items():
        if not isinstance(dst, str) or not re.fullmatch(r"[A-Za-z_@][\w@-]*(?:\.[\w@-]+)*", dst):
            raise where(("ecs", "fields", src), f"must be a dotted field name like log.level, not {dst!r}")
    return EcsConfig.of(tuple(fields.items()))


# ---------------------------------------------------------------- processors


def parse_processors(raw: Any, where: Where) -> Processors:
    if raw is None:
        return Processors()
    spec = _mapping(raw, (), where, ("enrich", "redact", "drop", "sample"))
    return Processors(
        enrich=_enrich(spec.get("enrich"), where),
        redact=_redact(spec.get("redact"), where),
        drop=_drop(spec.get("drop"), where),
        sample=_sample(spec.get("sample"), where),
    )


def _enrich(raw: Any, where: Where) -> EnrichConfig:
    if raw is None:
        return EnrichConfig()
    path: Path = ("enrich",)
    spec = _mapping(raw, path, where, ("fields", "environment", "host", "lookup"))
    fields = spec.get("fields") or {}
    if not isinstance(fields, dict):
        raise where((*path, "fields"), f"must be a mapping, not {_kind(fields)}")
    env = spec.get("environment")
    if env is not None and not isinstance(env, str | int | float):
        raise where((*path, "environment"), f"must be a string like production, not {_kind(env)}")
    host = spec.get("host", False)
    if isinstance(host, bool):
        host_ip = host_os = host
    else:
        hspec = _mapping(host, (*path, "host"), where, ("ip", "os"))
        host_ip = _bool(hspec, "ip", (*path, "host"), where, True)
        host_os = _bool(hspec, "os", (*path, "host"), where, True)
    lookups = []
    items = spec.get("lookup") or []
    if not isinstance(items, list):
        raise where((*path, "lookup"), f"must be a list of lookups, not {_kind(items)}")
    for i, item in enumerate(items):
        lpath: Path = (*path, "lookup", i)
        lspec = _mapping(item, lpath, where, ("field", "target", "table", "file"))
        src = _str(lspec, "field", lpath, where, required=True) or ""
        target = _str(lspec, "target", lpath, where, required=True) or ""
        if "." in target or not target:
            raise where((*lpath, "target"), "must be a top-level field name (the value added may be an object)")
        if ("table" in lspec) == ("file" in lspec):
            raise where(lpath, "needs either 'table' (inline mapping) or 'file' (JSON, YAML or CSV)")
        if "table" in lspec:
            table = lspec["table"]
            if not isinstance(table, dict):
                raise where((*lpath, "table"), f"must be a mapping of value -> fields, not {_kind(table)}")
            table = {str(k).lower() if isinstance(k, bool) else str(k): v for k, v in table.items()}
        else:
            try:
                table = load_table(_str(lspec, "file", lpath, where) or "")
            except ValueError as e:
                raise where((*lpath, "file"), str(e)) from e
        lookups.append(Lookup(tuple(src.split(".")), target, table))
    return EnrichConfig(fields=fields, environment=None if env is None else str(env), host_ip=host_ip,
                        host_os=host_os, lookups=tuple(lookups))


def _redact(raw: Any, where: Where) -> RedactConfig:
    if raw is None:
        return RedactConfig()
    path: Path = ("redact",)
    if raw is False:
        return RedactConfig(enabled=False)
    spec = _mapping(raw, path, where, ("enabled", "mask", "fields", "drop_fields", "patterns", "custom"))
    fields = _strings(spec, "fields", path, where)
    drop_fields = _strings(spec, "drop_fields", path, where) or ()
    pats = spec.get("patterns") or {}
    pspec = _mapping(pats, (*path, "patterns"), where, PATTERN_KINDS)
    kinds = {k: _bool(pspec, k, (*path, "patterns"), where, getattr(RedactConfig, k)) for k in PATTERN_KINDS}
    custom = []
    items = spec.get("custom") or []
    if not isinstance(items, list):
        raise where((*path, "custom"), f"must be a list of {{name, regex}}, not {_kind(items)}")
    for i, item in enumerate(items):
        cpath: Path = (*path, "custom", i)
        cspec = _mapping(item, cpath, where, ("name", "regex"))
        name = _str(cspec, "name", cpath, where, required=True) or ""
        rx = _str(cspec, "regex", cpath, where, required=True) or ""
        try:
            compiled = re.compile(rx)
        except re.error as e:
            raise where((*cpath, "regex"), f"invalid regular expression: {e}") from e
        if compiled.search(""):
            raise where((*cpath, "regex"), "matches the empty string, so it would mask between every character")
        custom.append((name, rx))
    mask = _str(spec, "mask", path, where, "[REDACTED]")
    if not mask or any(c in mask for c in '"\\') or any(ord(c) < 32 for c in mask):
        # It is written into raw JSON text: keep it free of what JSON would have to escape.
        raise where((*path, "mask"), 'must be non-empty plain text without quotes, backslashes or control characters')
    return RedactConfig(
        enabled=_bool(spec, "enabled", path, where, True),
        mask=mask,
        fields=REDACT_DEFAULT_FIELDS if fields is None else fields,
        drop_fields=drop_fields,
        custom=tuple(custom),
        **kinds,
    )


def _rules(raw: Any, key: str, where: Where) -> list[tuple[Path, dict[str, Any], str, Condition]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise where((key,), f"must be a list of rules, not {_kind(raw)}")
    out = []
    for i, item in enumerate(raw):
        path: Path = (key, i)
        spec = _mapping(item, path, where, ("name", "when", "keep") if key == "sample" else ("name", "when"))
        name = _str(spec, "name", path, where, f"{key}-{i}") or f"{key}-{i}"
        if "when" not in spec:
            raise where(path, "missing required key 'when' (a condition, as in routes)")
        out.append((path, spec, name, _condition(spec["when"], (*path, "when"), where)))
    return out


def _drop(raw: Any, where: Where) -> tuple[DropRule, ...]:
    return tuple(DropRule(name, when) for _, _, name, when in _rules(raw, "drop", where))


def _sample(raw: Any, where: Where) -> tuple[SampleRule, ...]:
    out = []
    for path, spec, name, when in _rules(raw, "sample", where):
        if "keep" not in spec:
            raise where(path, "missing required key 'keep' (keep 1 record in this many)")
        out.append(SampleRule(name, when, _positive_int(spec, "keep", path, where, 1)))
    return tuple(out)


__all__ = ["ECS_DEFAULT_FIELDS", "INPUT_KEYS", "DropRule", "InputOptions", "Processors", "SampleRule",
           "parse_input_options", "parse_processors"]
