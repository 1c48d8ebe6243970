"""The `inputs:` section: which files each input tails, and how its lines are parsed.

Per input, besides the files and the tail's timings:

    format: text
    parser: nginx_combined              # or apache_combined, syslog, or a regex with named groups
    parser:                             # the long form
      pattern: ['^(?P<level>\\w+): (?P<message>.*)$', syslog]   # tried in order
      types: {status: int}              # int, float, bool, string (ready patterns type their own)
      timestamp_field: timestamp        # the group (or JSON field) holding the event time
      timestamp_formats: ['%d/%m/%Y %H:%M:%S']   # strptime, tried before the built-in formats
    multiline: {preset: stack_trace}    # or pattern/negate/match, plus max_lines, max_bytes, timeout
    encoding: latin-1                   # default utf-8; any ASCII-compatible codec
    ecs: true                           # or {fields: {level: log.level, ...}}; default false
"""

from __future__ import annotations

import codecs
import fnmatch
import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ccf_agent.config.reader import Reader
from ccf_agent.config.values import KeyPath, Where
from ccf_agent.pipeline.ecs import EcsConfig
from ccf_agent.pipeline.text import PRESETS as TEXT_PRESETS
from ccf_agent.pipeline.text import TextParser, compile_parser
from ccf_agent.tail.multiline import MATCH_MODES, MultilineConfig
from ccf_agent.tail.multiline import PRESETS as MULTILINE_PRESETS

# The keys of an input that say how its lines are parsed (parse_input_options reads them).
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
class InputConfig:
    id: str
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    # Rotated copies (combined.log.1) are read only to finish a file already known.
    rotated_paths: tuple[str, ...] = ()
    format: str = "json"
    fields: Mapping[str, Any] = field(default_factory=dict)  # added to every record: any JSON value
    timezone: str = "UTC"
    start_at: str = "beginning"
    max_line_bytes: int = 1 << 20
    fingerprint_bytes: int = 1024
    scan_interval: float = 10.0  # full rescan and re-stat; inotify triggers one at once on changes
    poll_interval: float = 0.25  # without inotify, and for rotated files finishing
    rotate_wait: float = 5.0  # a moved file is closed after this long without new data
    partial_flush: float = 10.0  # a last line without its newline is shipped after this idle time
    close_inactive: float = 300.0  # close a file idle this long; reopened when it grows
    ignore_older: float = 0.0  # files first seen with an mtime older than this are not read (0: off)
    forget_after: float = 3600.0  # registry entries of files gone this long are dropped
    max_open_files: int = 1024
    deleted_max_wait: float = 300.0  # a deleted file still being read is closed after this long...
    deleted_max_bytes: int = 1 << 30  # ...or when this much of it is left to read (counted as lost,
    # unless its compressed rotation, combined.log.2.gz, continues it)
    options: InputOptions = field(default_factory=InputOptions)  # parsers, multiline, encoding, ecs


def parse_inputs(root: Reader) -> tuple[InputConfig, ...]:
    raw = root.get("inputs", list, required=True)
    if not raw:
        raise root.error("inputs", "needs at least one input")
    seen: set[str] = set()
    out = []
    for i, item in enumerate(raw):
        r = Reader(root.where, ("inputs", i), item)
        iid = r.get("id", str, required=True)
        if iid in seen:
            raise r.error("id", f"duplicate input id '{iid}'")
        seen.add(iid)
        paths = r.strings("paths", required=True)
        if not paths:
            raise r.error("paths", "needs at least one glob")
        for j, p in enumerate(paths):
            _check_glob(r, ("paths", j), p, absolute=True)
        exclude = r.strings("exclude")
        for j, p in enumerate(exclude):
            _check_glob(r, ("exclude", j), p, absolute=False)
        rotated = r.strings("rotated_paths")
        fields = r.get("fields", dict, {})
        tz = r.get("timezone", str, "UTC")
        try:
            ZoneInfo(tz)
        except Exception as e:
            raise r.error("timezone", f"unknown time zone '{tz}'") from e
        r.used.update(INPUT_KEYS)
        cfg = InputConfig(
            id=iid, paths=paths, exclude=exclude, rotated_paths=rotated,
            format=r.choice("format", ("json", "text"), "json"),
            fields=fields, timezone=tz,
            start_at=r.choice("start_at", ("beginning", "end"), "beginning"),
            max_line_bytes=r.size("max_line_bytes", 1 << 20),
            fingerprint_bytes=r.size("fingerprint_bytes", 1024),
            scan_interval=r.duration("scan_interval", 10.0, minimum=0.01),
            poll_interval=r.duration("poll_interval", 0.25, minimum=0.005),
            rotate_wait=r.duration("rotate_wait", 5.0),
            partial_flush=r.duration("partial_flush", 10.0),
            close_inactive=r.duration("close_inactive", 300.0),
            ignore_older=r.duration("ignore_older", 0.0),
            forget_after=r.duration("forget_after", 3600.0),
            max_open_files=r.positive("max_open_files", int, 1024),
            deleted_max_wait=r.duration("deleted_max_wait", 300.0),
            deleted_max_bytes=r.size("deleted_max_bytes", 1 << 30),
            options=parse_input_options({k: r.value[k] for k in INPUT_KEYS if k in r.value}, r.error),
        )
        r.done()
        out.append(cfg)
    return tuple(out)


def _check_glob(r: Reader, key: KeyPath, pattern: str, absolute: bool) -> None:
    if not pattern.strip():
        raise r.error(key, "empty glob")
    if absolute and not os.path.isabs(pattern):
        raise r.error(key, f"glob must be an absolute path: '{pattern}'")
    if pattern.count("[") != pattern.count("]"):
        raise r.error(key, f"bad glob (unbalanced brackets): '{pattern}'")
    try:
        glob.translate(pattern, recursive=True) if hasattr(glob, "translate") else re.compile(
            fnmatch.translate(pattern))
    except re.error as e:
        raise r.error(key, f"bad glob: {e}") from e


# ---------------------------------------------------------------- how lines are parsed


def parse_input_options(raw: Mapping[str, Any], where: Where) -> InputOptions:
    """An input's INPUT_KEYS; `where` names a key path relative to the input."""
    r = Reader(where, (), dict(raw))
    parser, ts_field, ts_formats = _parser(r)
    return InputOptions(parser=parser, timestamp_field=ts_field, timestamp_formats=ts_formats,
                        multiline=_multiline(r), encoding=_encoding(r), ecs=_ecs(r))


def _parser(r: Reader) -> tuple[TextParser | None, str, tuple[str, ...]]:
    raw = r.value.get("parser")
    if raw is None:
        return None, "timestamp", ()
    spec = Reader(r.where, ("parser",), {"pattern": raw} if isinstance(raw, str) else raw)
    ts_field: str = spec.get("timestamp_field", str, "timestamp") or "timestamp"
    formats = _nonempty_strings(spec, "timestamp_formats") or ()
    for i, fmt in enumerate(formats):
        if "%" not in fmt:
            raise spec.error(("timestamp_formats", i), f"must be a strptime format like '%d/%m/%Y %H:%M:%S', "
                                                       f"not {fmt!r}")
    patterns = _nonempty_strings(spec, "pattern")
    types = spec.get("types", dict, {})
    if not all(isinstance(v, str) for v in types.values()):
        raise spec.error("types", "must be a mapping of group name -> int, float, bool or string")
    spec.done()
    if patterns is None:
        if types:
            raise spec.error("types", "types need a pattern")
        return None, ts_field, formats
    try:
        parser = compile_parser(list(patterns), types, ts_field.replace(".", "__"))
    except ValueError as e:
        raise spec.error("pattern", f"{e} (ready patterns: {', '.join(TEXT_PRESETS)})") from e
    return parser, ts_field, formats


def _nonempty_strings(r: Reader, key: str) -> tuple[str, ...] | None:
    items = r.strings(key, None)
    for i, item in enumerate(items or ()):
        if not item:
            raise r.error((key, i), "must be a non-empty string")
    return items


def _multiline(r: Reader) -> MultilineConfig | None:
    if r.value.get("multiline") is None:
        return None
    spec = r.sub("multiline")
    preset = spec.get("preset", str)
    pattern = spec.get("pattern", str)
    if (preset is None) == (pattern is None):
        raise spec.error(None, f"needs either 'preset' ({', '.join(MULTILINE_PRESETS)}) or 'pattern'")
    if preset is not None:
        if preset not in MULTILINE_PRESETS:
            raise spec.error("preset", f"must be one of {', '.join(MULTILINE_PRESETS)}, not '{preset}'")
        source, negate, match = MULTILINE_PRESETS[preset]
    else:
        source, negate, match = pattern.encode(), False, "after"
    negate = spec.get("negate", bool, negate)
    match = spec.get("match", str, match)
    if match not in MATCH_MODES:
        raise spec.error("match", f"must be one of {', '.join(MATCH_MODES)}, not '{match}'")
    try:
        rx = re.compile(source)
    except re.error as e:
        raise spec.error("pattern", f"invalid regular expression: {e}") from e
    max_lines = spec.get("max_lines", int, 500)
    if max_lines <= 0:
        raise spec.error("max_lines", f"must be a whole number greater than 0, not {max_lines!r}")
    cfg = MultilineConfig(rx, negate, match, max_lines, spec.size("max_bytes", 10 << 20),
                          spec.duration("timeout", 5.0, minimum=0.001))
    spec.done()
    return cfg


def _encoding(r: Reader) -> str:
    raw: str | None = r.get("encoding", str)
    if raw is None:
        return "utf-8"
    try:
        name = codecs.lookup(raw).name
    except LookupError as e:
        raise r.error("encoding", f"unknown encoding '{raw}'") from e
    # Lines are cut at b"\n" before decoding, so the codec must write ASCII as ASCII.
    try:
        ascii_ok = "\n{}\"az09".encode(name) == b"\n{}\"az09"
    except (UnicodeError, LookupError):
        ascii_ok = False
    if not ascii_ok:
        raise r.error("encoding", f"'{raw}' is not ASCII-compatible (lines are split on newline bytes); "
                                  "UTF-16/32 logs need converting first")
    return name


def _ecs(r: Reader) -> EcsConfig | None:
    raw = r.value.get("ecs")
    r.used.add("ecs")
    if raw is None or raw is False:
        return None
    if raw is True:
        return EcsConfig.of()
    spec = r.sub("ecs")
    fields = spec.get("fields", dict)
    spec.done()
    if fields is None:
        return EcsConfig.of()
    if not fields:
        raise spec.error("fields", "must be a mapping of record field -> ECS field, e.g. {level: log.level}")
    for src, dst in fields.items():
        if not isinstance(dst, str) or not re.fullmatch(r"[A-Za-z_@][\w@-]*(?:\.[\w@-]+)*", dst):
            raise spec.error(("fields", src), f"must be a dotted field name like log.level, not {dst!r}")
    return EcsConfig.of(tuple(fields.items()))
