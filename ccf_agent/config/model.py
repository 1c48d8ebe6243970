"""The config as the agent sees it: one frozen, typed value per section, all the way down."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ccf_agent.conditions import Condition
from ccf_agent.config.alerts import AlertsConfig
from ccf_agent.config.inputs import InputConfig
from ccf_agent.config.outputs import OutputConfig
from ccf_agent.config.processors import Processors
from ccf_agent.config.report import ReportConfig
from ccf_agent.config.values import ConfigError, KeyPath


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
    processors: Processors = field(default_factory=Processors)  # enrich, redact, drop, sample
    alerts: AlertsConfig | None = None  # None without an `alerts:` section
    read_ahead: bool | None = None  # a thread per input reads and scans ahead; None: when 2+ CPUs are ours
    report: ReportConfig = field(default_factory=ReportConfig)  # `ccf-agent report`
    # error_at(key_path, message): a ConfigError naming the file:line of that key, for what only
    # building the parts finds (agent.preflight): `check` and a reload refuse it like a typo.
    error_at: Callable[[KeyPath, str], ConfigError] | None = field(default=None, compare=False, repr=False)
