"""The Elasticsearch output's own config keys, parsed and checked where config loading asks for
them (outputs.registry): nothing here imports the HTTP layer or the protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccf_agent.config.values import parse_duration
from ccf_agent.outputs.elasticsearch.indices import DATE_PATTERN, INDEX_NAME, index_problem
from ccf_agent.proxies import Proxy, parse_proxy

if TYPE_CHECKING:
    from ccf_agent.config.outputs import OutputConfig

OPTION_KEYS = ("dead_letter_index", "discovery", "data_stream", "pipeline", "retention", "template", "proxy_url")
DEFAULT_RETENTION = 30 * 86400.0  # the seed's logrotate keeps 30 days


@dataclass(frozen=True)
class EsOptions:
    dead_letter_index: str | None = None  # else the NDJSON file under state_dir/dead_letter/
    discovery: bool = False  # add the cluster's HTTP nodes (GET /_nodes/http) to `hosts`
    discovery_interval: float = 300.0
    data_stream: bool = False  # `index` names a data stream (setup installs a data-stream template)
    pipeline: str | None = None  # ingest pipeline applied to every document
    retention: float | None = DEFAULT_RETENTION  # seconds; None: setup installs no ILM/ISM policy
    template: str | None = None  # name of setup's index template and policy; default ccf-agent-<output>
    proxy: Proxy = field(default_factory=Proxy)  # proxy_url, else the environment's (ccf_agent.proxies)


def parse_options(raw: Mapping[str, Any], where: Callable[[tuple[str, ...], str], Exception]) -> EsOptions:
    """This output's own config keys; `where(key_path, message)` gives an error naming file:line."""
    kw: dict[str, Any] = {"proxy": parse_proxy(raw, where)}
    dli = raw.get("dead_letter_index")
    if dli is not None:
        if not isinstance(dli, str) or not INDEX_NAME.match(dli) or "%{" in dli:
            raise where(("dead_letter_index",), "must be a lowercase index name without wildcards or "
                        f"date patterns, like ccf-dead-letters, not {dli!r}")
        kw["dead_letter_index"] = dli
    disc = raw.get("discovery")
    if isinstance(disc, bool):
        kw["discovery"] = disc
    elif isinstance(disc, dict):
        unknown = set(disc) - {"enabled", "interval"}
        if unknown:
            raise where(("discovery", sorted(unknown)[0]), "unknown key (known keys here: enabled, interval)")
        enabled = disc.get("enabled", True)
        if not isinstance(enabled, bool):
            raise where(("discovery", "enabled"), "must be true or false")
        interval = parse_duration(disc.get("interval", 300))
        if interval is None or interval < 1:
            raise where(("discovery", "interval"), "must be a duration of at least 1s, like 5m")
        kw["discovery"], kw["discovery_interval"] = enabled, interval
    elif disc is not None:
        raise where(("discovery",), "must be true, false or a mapping {enabled, interval}")
    ds = raw.get("data_stream")
    if ds is not None:
        if not isinstance(ds, bool):
            raise where(("data_stream",), "must be true or false")
        kw["data_stream"] = ds
    pipeline = raw.get("pipeline")
    if pipeline is not None:
        if not isinstance(pipeline, str) or not pipeline.strip():
            raise where(("pipeline",), "must be the name of an ingest pipeline")
        kw["pipeline"] = pipeline
    if "retention" in raw:
        ret = raw["retention"]
        if ret is False or (isinstance(ret, str) and ret.strip().lower() in ("off", "none")):
            kw["retention"] = None
        else:
            seconds = parse_duration(ret)
            if seconds is None or seconds < 3600 or seconds % 3600:
                raise where(("retention",), f"must be a whole number of hours or days like 30d, or off, not {ret!r}")
            kw["retention"] = seconds
    tpl = raw.get("template")
    if tpl is not None:
        if not isinstance(tpl, str) or not INDEX_NAME.match(tpl):
            raise where(("template",), f"must be a lowercase name like ccf-agent-logs, not {tpl!r}")
        kw["template"] = tpl
    return EsOptions(**kw)


def options_of(cfg: OutputConfig) -> EsOptions:
    return cfg.options if isinstance(cfg.options, EsOptions) else EsOptions()


def config_problem(cfg: OutputConfig) -> str | tuple[tuple[str, ...], str] | None:
    """Checks across common and own keys that the loader cannot make on either alone."""
    problem = index_problem(cfg.index)
    if problem:
        return ("index",), problem
    if options_of(cfg).data_stream and DATE_PATTERN.search(cfg.index):
        return (f"data_stream: a data stream is one name (index {cfg.index!r} has a date pattern); "
                "its backing indices roll over by themselves")
    return None
