"""The `outputs:` section: the keys every output has (hosts, credentials, tls, batching,
backoff). Everything that belongs to one output type (how its hosts are written, its own keys,
its checks across keys) comes from that type's entry in `outputs.registry`, which reads the
type's `config` module by name only when an output of that type is loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from ccf_agent.config.document import Document
from ccf_agent.config.reader import Reader
from ccf_agent.config.reader import duration as _duration
from ccf_agent.config.reader import size as _size
from ccf_agent.config.values import KeyPath, attempt, every, header_problem
from ccf_agent.credentials import safe_url
from ccf_agent.outputs.registry import OUTPUT_TYPES, output_type


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


def _outputs(doc: Document, root: Reader) -> dict[str, OutputConfig]:
    raw = root.get("outputs", dict, required=True)
    if not raw:
        raise doc.error(("outputs",), "needs at least one output")
    return {o.name: o for o in every([attempt(partial(_output, doc, name, item))
                                      for name, item in raw.items()])}


def _output(doc: Document, name: str, item: Any) -> OutputConfig:
    if not _NAME.match(name):
        # It names a file under state_dir/dead_letter/: no path separators, no "..".
        raise doc.error(("outputs", name), "an output's name must be letters, digits, '_', '-' or '.', "
                        "starting with a letter, digit or '_'")
    r = Reader(doc.error, ("outputs", name), item)
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
        bad = header_problem(header, value) if value else None
        if bad:
            raise doc.error(("outputs", name, key), bad)
    if cfg.backoff_max < cfg.backoff_initial:
        raise doc.error(("outputs", name, "backoff_max"), "must be at least backoff_initial")
    problem = _output_problem(cfg)
    if isinstance(problem, tuple):  # (key path within the output, message)
        raise doc.error(("outputs", name, *problem[0]), problem[1])
    if problem:
        raise doc.error(("outputs", name), problem)
    r.done()
    return cfg


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def _path(r: Reader, key: str, required: bool) -> str | None:
    path: str | None = r.get(key, str, required=required)
    if path is not None and not path.strip():
        raise r.error(key, "must not be empty")
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


def _output_options(doc: Document, r: Reader, path: KeyPath, kind: str) -> Any:
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
    whole, or (key path within the output, message) for one key."""
    return output_type(cfg.type).problem(cfg)
