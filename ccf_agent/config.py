"""YAML in, a typed, validated, immutable config out.

Every error names the file, the line and the key, so `ccf-agent check` can point an
operator at the exact spot. Secrets come from `${ENV_VAR}` or `${file:/path}` only.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ccf_agent.conditions import Condition, ConditionError, compile_condition
from ccf_agent.credentials import safe_url
from ccf_agent.outputs.registry import OUTPUT_TYPES, output_type

KeyPath = tuple[str | int, ...]


class ConfigError(Exception):
    """A config problem an operator can fix: file, line, key and what is wrong."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# ---------------------------------------------------------------- YAML with lines

_ENV_RE = re.compile(r"\$\{([^}]*)\}")


MAX_DEPTH = 64  # a config nests a handful of levels; PyYAML's composer recurses once per level
MAX_VALUES = 100_000  # values after aliases are expanded: a "billion laughs" document stops here
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with a bound on nesting: its composer recurses per level, so a
    5,000-deep document ended in RecursionError (a traceback) rather than a config error."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


class _Doc:
    """The parsed YAML as plain data, plus the line of every key path."""

    def __init__(self, file: str, text: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.lines: dict[KeyPath, int] = {}
        self.values = 0
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            self.loader = loader
            self.data = self._convert(node, ()) if node is not None else {}
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            raise ConfigError(file, mark.line + 1 if mark else None, "", f"invalid YAML: {e.problem}") from e
        except yaml.YAMLError as e:
            raise ConfigError(file, None, "", f"invalid YAML: {e}") from e
        finally:
            loader.dispose()

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.file, self.line(path), _dotted(path), message)

    def _convert(self, node: yaml.Node, path: KeyPath) -> Any:
        """Plain data from a node. Aliases are expanded here (the composer shares their node), so
        this is where an alias bomb or an alias inside its own anchor is stopped."""
        self.values += 1
        line = node.start_mark.line + 1
        if self.values > MAX_VALUES:
            raise ConfigError(self.file, line, _dotted(path),
                              f"the document expands to more than {MAX_VALUES} values (YAML aliases?)")
        if len(path) > MAX_DEPTH:
            raise ConfigError(self.file, line, _dotted(path), f"nested deeper than {MAX_DEPTH} levels "
                              "(an alias inside its own anchor?)")
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node)
        if isinstance(value, bytes):  # fields are shipped as JSON, which has no bytes
            raise ConfigError(self.file, line, _dotted(path), "binary values (!!binary) are not supported")
        if isinstance(value, str) and "${" in value:
            value = self._substitute(value, path)
        return value

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        own: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(self.file, key_node.start_mark.line + 1, _dotted(path), "keys must be strings")
            if key_node.tag == _MERGE:
                continue
            if key_node.value in own:
                raise ConfigError(self.file, key_node.start_mark.line + 1, _dotted((*path, key_node.value)),
                                  "duplicate key")
            own.add(key_node.value)
        # `<<: *defaults` (YAML's merge key) by PyYAML's own rules: merged keys first, the mapping's
        # own keys after them, and the last one of a name wins.
        self.loader.flatten_mapping(node)
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(self.file, key_node.start_mark.line + 1, _dotted(path), "keys must be strings")
            pairs[key_node.value] = (key_node, value_node)
        out: dict[str, Any] = {}
        for key, (key_node, value_node) in pairs.items():
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self._convert(value_node, (*path, key))
        return out

    def _substitute(self, value: str, path: KeyPath) -> str:
        def repl(m: re.Match[str]) -> str:
            ref = m.group(1).strip()
            if ref.startswith("file:"):
                fname = ref[5:]
                try:
                    return Path(fname).read_text().rstrip("\n")
                except OSError as e:
                    raise self.error(path, f"cannot read secret file {fname}: {e.strerror}") from e
            name, _, default = ref.partition(":-")
            if name in self.env:
                return self.env[name]
            if ":-" in ref:
                return default
            raise self.error(path, f"environment variable {name} is not set")

        return _ENV_RE.sub(repl, value)


def _dotted(path: KeyPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# ---------------------------------------------------------------- schema helpers


class _Reader:
    """Reads one mapping of the document, remembering which keys were used."""

    def __init__(self, doc: _Doc, path: KeyPath, value: Any) -> None:
        if not isinstance(value, dict):
            raise doc.error(path, f"must be a mapping, not {_kind(value)}")
        self.doc, self.path, self.value = doc, path, value
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.value or self.value[key] is None:
            if required:
                raise self.doc.error(self.path, f"missing required key '{key}'")
            return default
        v = self.value[key]
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, float)):
            raise self.doc.error((*self.path, key), f"must be {_kind_name(kind)}, not {_kind(v)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise self.doc.error((*self.path, key), f"must be a finite number, not {v}")
        return v

    def positive(self, key: str, kind: type, default: Any) -> Any:
        v = self.get(key, kind, default)
        if v is not None and v <= 0:
            raise self.doc.error((*self.path, key), "must be greater than 0")
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        v = self.get(key, str, default)
        if v not in choices:
            raise self.doc.error((*self.path, key), f"must be one of {', '.join(choices)}, not '{v}'")
        return v

    def strings(self, key: str, default: tuple[str, ...] = (), required: bool = False) -> tuple[str, ...]:
        v = self.get(key, (list, str), None, required)
        if v is None:
            return default
        items = [v] if isinstance(v, str) else v
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.doc.error((*self.path, key, i), f"must be a string, not {_kind(item)}")
        return tuple(items)

    def sub(self, key: str) -> _Reader:
        self.used.add(key)
        return _Reader(self.doc, (*self.path, key), self.value.get(key) or {})

    def done(self, extra_ok: Callable[[str], bool] | None = None) -> None:
        for key in self.value:
            if key not in self.used and not (extra_ok and extra_ok(key)):
                known = ", ".join(sorted(self.used))
                raise self.doc.error((*self.path, key), f"unknown key (known keys here: {known})")


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "empty"}.get(type(v), type(v).__name__)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "true or false", int: "an integer",
             float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kib|kb|k|mib|mb|m|gib|gb|g)?\s*$", re.I)


def parse_duration(v: Any) -> float | None:
    """'250ms', '5s', '2m', '1h', or a number of seconds."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None  # YAML's .nan and .inf
    m = _DURATION_RE.match(str(v))
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]


def parse_size(v: Any) -> int | None:
    """'5MiB', '512k', or a number of bytes."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    m = _SIZE_RE.match(str(v))
    if not m:
        return None
    unit = (m.group(2) or "b").lower()
    mult = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
            "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
    return int(float(m.group(1)) * mult)


def _duration(r: _Reader, key: str, default: float, minimum: float = 0.0) -> float:
    """A duration; `minimum` above 0 for the ones a loop waits on (0 there is a busy loop at 100% CPU)."""
    r.used.add(key)
    if key not in r.value or r.value[key] is None:
        return default
    v = parse_duration(r.value[key])
    if v is None or v < 0:
        raise r.doc.error((*r.path, key), f"must be a duration like 250ms, 5s, 2m or 1h, not {r.value[key]!r}")
    if v < minimum:
        raise r.doc.error((*r.path, key), f"must be at least {format_duration(minimum)}, not {r.value[key]!r}")
    return v


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _size(r: _Reader, key: str, default: int) -> int:
    r.used.add(key)
    if key not in r.value or r.value[key] is None:
        return default
    v = parse_size(r.value[key])
    if v is None or v <= 0:
        raise r.doc.error((*r.path, key), f"must be a size like 512KiB or 5MiB, not {r.value[key]!r}")
    return v


# ---------------------------------------------------------------- typed config


@dataclass(frozen=True)
class TlsConfig:
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    # The output's config has a `tls` section, whatever it holds (even `{verify: true}`, the
    # default): for an output whose hosts carry no scheme (logstash) that is what asks for TLS.
    present: bool = False


@dataclass(frozen=True)
class InputConfig:
    id: str
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    # Rotated copies (combined.log.1) are read only to finish a file already known.
    rotated_paths: tuple[str, ...] = ()
    format: str = "json"
    fields: Mapping[str, Any] = field(default_factory=dict)
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
    deleted_max_bytes: int = 1 << 30  # ...or when this much of it is left to read (counted as lost)
    options: Any = None  # pipeline.options.InputOptions: parsers, multiline, encoding


@dataclass(frozen=True)
class OutputConfig:
    name: str
    type: str
    hosts: tuple[str, ...] = field(default=(), repr=False)  # may carry user:password@ or ?token=
    index: str = "ccf-logs"
    path: str | None = None  # type: file
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch_max_docs: int = 5000
    batch_max_bytes: int = 4 << 20
    flush_interval: float = 0.005
    max_in_flight: int = 2
    max_queued_bytes: int = 8 << 20
    compression: str = "none"
    timeout: float = 30.0
    backoff_initial: float = 0.1
    backoff_max: float = 30.0
    options: Any = None  # the type's own keys, parsed by its config module (outputs.registry)


@dataclass(frozen=True)
class RouteConfig:
    name: str
    when: Condition
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    path: str
    state_dir: str
    inputs: tuple[InputConfig, ...]
    outputs: Mapping[str, OutputConfig]
    routes: tuple[RouteConfig, ...]
    default_output: str
    status_listen: str = "127.0.0.1:5066"
    registry_flush_interval: float = 1.0
    shutdown_timeout: float = 10.0
    max_inflight_bytes: int = 4 << 20
    hostname: str | None = None
    processors: Any = None  # pipeline.options.Processors: enrich, redact, drop, sample
    alerts: Any = None  # alerts.config.AlertsConfig, or None without an `alerts:` section
    read_ahead: bool | None = None  # a thread per input reads and scans ahead; None: when 2+ CPUs are ours
    report: Any = None  # report.config.ReportConfig: `ccf-agent report`
    # error_at(key_path, message): a ConfigError naming the file:line of that key, for what only
    # building the parts finds (agent.preflight): `check` and a reload refuse it like a typo.
    error_at: Callable[[KeyPath, str], ConfigError] | None = field(default=None, compare=False, repr=False)



def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(file, None, "", f"cannot read config: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(file, None, "", "config is not valid UTF-8") from e
    return parse_config(text, file, os.environ if env is None else env)


def parse_config(text: str, file: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    doc = _Doc(file, text, os.environ if env is None else env)
    root = _Reader(doc, (), doc.data)
    state_dir = root.get("state_dir", str, required=True)
    status = root.sub("status")
    listen = status.get("listen", str, "127.0.0.1:5066")
    if listen not in LISTEN_OFF and split_listen(listen) is None:
        raise doc.error(("status", "listen"), f"must be host:port with a port from 1 to 65535 (like 127.0.0.1:5066), "
                        f"or off, not '{listen}'")
    status.done()
    inputs = _inputs(doc, root)
    outputs = _outputs(doc, root)
    routes = _routes(doc, root, outputs)
    agent = root.sub("agent")
    hostname = agent.get("hostname", str)
    flush = _duration(agent, "registry_flush_interval", 1.0, minimum=0.01)
    shutdown_timeout = _duration(agent, "shutdown_timeout", 10.0)
    max_inflight = _size(agent, "max_inflight_bytes", 4 << 20)
    read_ahead = agent.get("read_ahead", (bool, str), "auto")
    if read_ahead == "auto":
        read_ahead = None
    elif not isinstance(read_ahead, bool):
        raise doc.error(("agent", "read_ahead"), f"must be true, false or auto, not '{read_ahead}'")
    agent.done()
    processors = _section(doc, root, "processors", "ccf_agent.pipeline.options", "parse_processors")
    alerts = _section(doc, root, "alerts", "ccf_agent.alerts.config", "parse_alerts")
    report = _section(doc, root, "report", "ccf_agent.report.config", "parse_report")
    report.check(outputs, alerts)  # names outputs and notifiers of other sections
    root.done()
    default = "default" if "default" in outputs else next(iter(outputs))
    return Config(file, state_dir, inputs, outputs, routes, default, listen, flush, shutdown_timeout,
                  max_inflight, hostname, processors, alerts, read_ahead, report, doc.error)


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_problem(name: str, value: str) -> str | None:
    """What an HTTP client refuses in a header, at the first request rather than at load (aiohttp:
    "Forbidden control character detected in headers"). The value is never echoed: it may be a secret."""
    if not _TOKEN.match(name):
        return f"'{name}' is not a valid header name"
    if _CONTROL.search(value):
        return ("holds a control character such as a newline (an environment variable or secret file with a "
                "trailing line break?)")
    return None


LISTEN_OFF = ("", "off", "none")


def split_listen(listen: str) -> tuple[str, int] | None:
    """`host:port` or `[v6]:port` (an empty host is loopback); None when it is not one."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if any(c in host for c in " /[]@") or (":" in host and not listen.strip().startswith("[")):
        return None
    return host or "127.0.0.1", int(port)


def _section(doc: _Doc, root: _Reader, key: str, module: str, parser: str) -> Any:
    """A section owned by another module: it validates its own keys, errors still name file:line."""
    import importlib

    root.used.add(key)
    raw = root.value.get(key)
    if key == "alerts" and raw is None:
        return None
    parse = getattr(importlib.import_module(module), parser)
    return parse(raw, lambda path, message: doc.error((key, *path), message))


def _inputs(doc: _Doc, root: _Reader) -> tuple[InputConfig, ...]:
    raw = root.get("inputs", list, required=True)
    if not raw:
        raise doc.error(("inputs",), "needs at least one input")
    seen: set[str] = set()
    out = []
    for i, item in enumerate(raw):
        r = _Reader(doc, ("inputs", i), item)
        iid = r.get("id", str, required=True)
        if iid in seen:
            raise doc.error(("inputs", i, "id"), f"duplicate input id '{iid}'")
        seen.add(iid)
        paths = r.strings("paths", required=True)
        if not paths:
            raise doc.error(("inputs", i, "paths"), "needs at least one glob")
        for j, p in enumerate(paths):
            _check_glob(doc, ("inputs", i, "paths", j), p, absolute=True)
        exclude = r.strings("exclude")
        for j, p in enumerate(exclude):
            _check_glob(doc, ("inputs", i, "exclude", j), p, absolute=False)
        rotated = r.strings("rotated_paths", tuple(p + ".1" for p in paths))
        fields = r.get("fields", dict, {})
        tz = r.get("timezone", str, "UTC")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(tz)
        except Exception as e:
            raise doc.error(("inputs", i, "timezone"), f"unknown time zone '{tz}'") from e
        cfg = InputConfig(
            id=iid, paths=paths, exclude=exclude, rotated_paths=rotated,
            format=r.choice("format", ("json", "text"), "json"),
            fields=fields, timezone=tz,
            start_at=r.choice("start_at", ("beginning", "end"), "beginning"),
            max_line_bytes=_size(r, "max_line_bytes", 1 << 20),
            fingerprint_bytes=_size(r, "fingerprint_bytes", 1024),
            scan_interval=_duration(r, "scan_interval", 10.0, minimum=0.01),
            poll_interval=_duration(r, "poll_interval", 0.25, minimum=0.005),
            rotate_wait=_duration(r, "rotate_wait", 5.0),
            partial_flush=_duration(r, "partial_flush", 10.0),
            close_inactive=_duration(r, "close_inactive", 300.0),
            ignore_older=_duration(r, "ignore_older", 0.0),
            forget_after=_duration(r, "forget_after", 3600.0),
            max_open_files=r.positive("max_open_files", int, 1024),
            deleted_max_wait=_duration(r, "deleted_max_wait", 300.0),
            deleted_max_bytes=_size(r, "deleted_max_bytes", 1 << 30),
            options=_input_options(doc, r, ("inputs", i)),
        )
        r.done()
        out.append(cfg)
    return tuple(out)


def _input_options(doc: _Doc, r: _Reader, path: KeyPath) -> Any:
    from ccf_agent.pipeline.options import INPUT_KEYS, parse_input_options

    r.used.update(INPUT_KEYS)
    raw = {k: r.value[k] for k in INPUT_KEYS if k in r.value}
    return parse_input_options(raw, lambda p, m: doc.error((*path, *p), m))


def _check_glob(doc: _Doc, path: KeyPath, pattern: str, absolute: bool) -> None:
    if not pattern.strip():
        raise doc.error(path, "empty glob")
    if absolute and not os.path.isabs(pattern):
        raise doc.error(path, f"glob must be an absolute path: '{pattern}'")
    if pattern.count("[") != pattern.count("]"):
        raise doc.error(path, f"bad glob (unbalanced brackets): '{pattern}'")
    try:
        glob.translate(pattern, recursive=True) if hasattr(glob, "translate") else re.compile(
            __import__("fnmatch").translate(pattern))
    except re.error as e:
        raise doc.error(path, f"bad glob: {e}") from e


def _outputs(doc: _Doc, root: _Reader) -> dict[str, OutputConfig]:
    raw = root.get("outputs", dict, required=True)
    if not raw:
        raise doc.error(("outputs",), "needs at least one output")
    out = {}
    for name, item in raw.items():
        if not _NAME.match(name):
            # It names a file under state_dir/dead_letter/: no path separators, no "..".
            raise doc.error(("outputs", name), "an output's name must be letters, digits, '_', '-' or '.', "
                            "starting with a letter, digit or '_'")
        r = _Reader(doc, ("outputs", name), item)
        kind = r.get("type", str, required=True)
        if kind not in OUTPUT_TYPES:
            raise doc.error(("outputs", name, "type"), f"unknown output type '{kind}' (known: {', '.join(OUTPUT_TYPES)})")
        otype = output_type(kind)
        hosts = r.strings("hosts", required=otype.hosts is not None)
        if otype.hosts is not None and not hosts:
            raise doc.error(("outputs", name, "hosts"), "needs at least one host")
        for j, h in enumerate(hosts):
            if otype.hosts == "url" and not _url_ok(h):
                raise doc.error(("outputs", name, "hosts", j),
                                f"must be a URL like https://es1:9200, not '{safe_url(h)}'")
            if otype.hosts == "host:port" and not (re.match(r"^[^\s/:@]+:\d+$", h) and 1 <= int(h.rpartition(":")[2]) <= 65535):
                raise doc.error(("outputs", name, "hosts", j),
                                f"must be host:port like logstash1:5044 (port 1 to 65535), not '{safe_url(h)}'")
        present = "tls" in r.value
        t = r.sub("tls")
        tls = TlsConfig(verify=t.get("verify", bool, True), ca_file=t.get("ca_file", str),
                        cert_file=t.get("cert_file", str), key_file=t.get("key_file", str),
                        server_name=t.get("server_name", str), present=present)
        t.done()
        if tls.key_file and not tls.cert_file:
            raise doc.error(("outputs", name, "tls", "key_file"), "key_file needs cert_file")
        for key in ("ca_file", "cert_file", "key_file"):
            f = getattr(tls, key)
            if f and not os.access(f, os.R_OK):
                raise doc.error(("outputs", name, "tls", key), f"cannot read {f}")
        cfg = OutputConfig(
            name=name, type=kind, hosts=hosts,
            index=r.get("index", str, "ccf-logs"),
            path=_path(r, "path", required=kind == "file"),
            username=r.get("username", str), password=r.get("password", str),
            api_key=r.get("api_key", str), bearer_token=r.get("bearer_token", str), tls=tls,
            batch_max_docs=r.positive("batch_max_docs", int, 5000),
            batch_max_bytes=_size(r, "batch_max_bytes", 4 << 20),
            flush_interval=_duration(r, "flush_interval", 0.005),
            max_in_flight=r.positive("max_in_flight", int, 2),
            max_queued_bytes=_size(r, "max_queued_bytes", 8 << 20),
            # A type with codecs of its own (kafka) parses `compression` with its own keys.
            compression=("none" if "compression" in otype.option_keys
                         else r.choice("compression", ("none", "gzip"), "none")),
            timeout=_duration(r, "timeout", 30.0, minimum=0.01),
            backoff_initial=_duration(r, "backoff_initial", 0.1, minimum=0.001),
            backoff_max=_duration(r, "backoff_max", 30.0, minimum=0.001),
            options=_output_options(doc, r, ("outputs", name), kind),
        )
        if cfg.password and not cfg.username:
            raise doc.error(("outputs", name, "password"), "password needs username")
        for key, header in (("api_key", "Authorization"), ("bearer_token", "Authorization")):
            value = getattr(cfg, key)
            problem = header_problem(header, value) if value else None
            if problem:
                raise doc.error(("outputs", name, key), problem)
        if cfg.backoff_max < cfg.backoff_initial:
            raise doc.error(("outputs", name, "backoff_max"), "must be at least backoff_initial")
        problem = _output_problem(cfg)
        if isinstance(problem, tuple):  # (key path within the output, message)
            raise doc.error(("outputs", name, *problem[0]), problem[1])
        if problem:
            raise doc.error(("outputs", name), problem)
        r.done()
        out[name] = cfg
    return out


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def _path(r: _Reader, key: str, required: bool) -> str | None:
    path: str | None = r.get(key, str, required=required)
    if path is not None and not path.strip():
        raise r.doc.error((*r.path, key), "must not be empty")
    return path


def _url_ok(url: str) -> bool:
    """http(s)://host[:port][/path] with a port in range (a bad one fails every request, not the load)."""
    if not re.match(r"^https?://[^/\s]+", url) or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port out of range, a bad [v6] literal
        return False


def _output_options(doc: _Doc, r: _Reader, path: KeyPath, kind: str) -> Any:
    """The type's own keys, parsed by its config module (outputs.registry)."""
    otype = output_type(kind)
    keys = otype.option_keys
    if not keys:
        return None
    r.used.update(keys)
    raw = {k: r.value[k] for k in keys if k in r.value}
    return otype.parse_options(raw, lambda p, m: doc.error((*path, *p), m))


def _output_problem(cfg: OutputConfig) -> str | tuple[KeyPath, str] | None:
    """The type's check of its own keys against the common ones: a message for the output as a
    whole, or (key path, message) for one key."""
    return output_type(cfg.type).problem(cfg)


def _routes(doc: _Doc, root: _Reader, outputs: Mapping[str, OutputConfig]) -> tuple[RouteConfig, ...]:
    raw = root.get("routes", list, [])
    out = []
    for i, item in enumerate(raw):
        r = _Reader(doc, ("routes", i), item)
        name = r.get("name", str, f"route-{i}")
        when_raw = r.get("when", dict, required=True)
        try:
            when = compile_condition(when_raw)
        except ConditionError as e:
            raise doc.error(("routes", i, "when", *e.path), e.message) from e
        targets = r.strings("output", required=True)
        for t in targets:
            if t not in outputs:
                raise doc.error(("routes", i, "output"), f"no output named '{t}' (outputs: {', '.join(outputs)})")
        r.done()
        out.append(RouteConfig(name, when, targets))
    return tuple(out)
