"""The agent's configuration: YAML in, a typed, validated, immutable `Config` out.

    values.py      the leaf: durations, sizes, header and listen checks, ConfigError (imports nothing of ours)
    document.py    the YAML as plain data with the line of every key path; ${ENV} and ${file:} substitution
    reader.py      typed getters over one mapping, shared by every section; unknown keys are typos
    inputs.py      inputs: files, timings, parser/multiline/encoding/ecs    processors.py  enrich, redact, drop, sample
    outputs.py     outputs: common keys, each output type's own through outputs.registry
    alerts.py      alerts: rules and notifiers                              report.py      the daily report
    model.py       Config and RouteConfig                                   loader.py      load_config / parse_config

Every part imports its model from here; nothing here imports a part that runs (tail, outputs,
agent, ops), except the output types' own key parsers, which `outputs.registry` (imported by
outputs.py; it imports nothing of ours at module level) reaches by module name at load time.
"""

from ccf_agent.config.alerts import AlertsConfig, NotifierConfig, RuleConfig, parse_alerts
from ccf_agent.config.inputs import InputConfig, InputOptions, parse_input_options
from ccf_agent.config.loader import load_config, parse_config
from ccf_agent.config.model import Config, RouteConfig
from ccf_agent.config.outputs import OutputConfig, TlsConfig
from ccf_agent.config.processors import DropRule, Processors, SampleRule, parse_processors
from ccf_agent.config.report import ReportConfig, SmtpConfig, parse_report
from ccf_agent.config.values import (
    LISTEN_OFF,
    ConfigError,
    KeyPath,
    Where,
    format_duration,
    header_problem,
    parse_duration,
    parse_size,
    split_listen,
)

__all__ = [
    "LISTEN_OFF", "AlertsConfig", "Config", "ConfigError", "DropRule", "InputConfig",
    "InputOptions", "KeyPath", "NotifierConfig", "OutputConfig", "Processors", "ReportConfig", "RouteConfig",
    "RuleConfig", "SampleRule", "SmtpConfig", "TlsConfig", "Where", "format_duration", "header_problem",
    "load_config", "parse_alerts", "parse_config", "parse_duration", "parse_input_options", "parse_processors",
    "parse_report", "parse_size", "split_listen",
]
