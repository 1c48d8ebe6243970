"""The output types the agent knows: each type's name, how its hosts are written, where its own
config keys are parsed and checked, and where its output is built.

Config loading reads an output's keys through `parse_options` and `problem` here, which import only
the type's `config` module (no aiohttp, no protocol code); `create` imports the output itself, when
the agent (or `check`'s preflight) builds it. Adding a type is one entry below and its package:

    <package>.config   OPTION_KEYS: tuple[str, ...]          the type's own keys
                       parse_options(raw, where) -> options  kept in OutputConfig.options
                       config_problem(cfg) -> str | (key path, str) | None   checks across keys
    <package>.output   create(cfg, dead_letters) -> Output
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ccf_agent.config.outputs import OutputConfig
    from ccf_agent.outputs.base import Output
    from ccf_agent.outputs.deadletter import DeadLetters

Where = Callable[[tuple[str | int, ...], str], Exception]
Problem = str | tuple[tuple[str | int, ...], str] | None


@dataclass(frozen=True)
class OutputType:
    name: str
    package: str  # holds `config` and `output` (see the module docstring)
    # How `hosts` is written: "url" (http(s)://host[:port][/path]), "host:port", or None (no hosts).
    hosts: Literal["url", "host:port"] | None

    def _config(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.config")

    @property
    def option_keys(self) -> tuple[str, ...]:
        keys: tuple[str, ...] = getattr(self._config(), "OPTION_KEYS", ())
        return keys

    def parse_options(self, raw: Mapping[str, Any], where: Where) -> Any:
        """The type's own keys (`raw` holds those present); `where(key path, message)` is the
        ConfigError naming that key's file:line."""
        parse = getattr(self._config(), "parse_options", None)
        return parse(raw, where) if parse is not None else None

    def problem(self, cfg: OutputConfig) -> Problem:
        """What is wrong across the common and the type's own keys: a message for the output as a
        whole, or (key path within the output, message); None when nothing is."""
        check = getattr(self._config(), "config_problem", None)
        result: Problem = check(cfg) if check is not None else None
        return result

    def create(self, cfg: OutputConfig, dead_letters: DeadLetters) -> Output:
        module = importlib.import_module(f"{self.package}.output")
        output: Output = module.create(cfg, dead_letters)
        return output


OUTPUT_TYPES: dict[str, OutputType] = {t.name: t for t in (
    OutputType("elasticsearch", "ccf_agent.outputs.elasticsearch", "url"),
    OutputType("file", "ccf_agent.outputs.file", None),
    OutputType("logstash", "ccf_agent.outputs.logstash", "host:port"),
    OutputType("http", "ccf_agent.outputs.http", "url"),
    OutputType("kafka", "ccf_agent.outputs.kafka", None),  # its own `brokers`
)}


def output_type(name: str) -> OutputType:
    """The registered type `name` (the config loader has refused any other)."""
    return OUTPUT_TYPES[name]
