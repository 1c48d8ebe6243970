"""The YAML document as plain data, with the line of every key path.

PyYAML's safe loader, bounded (nesting, values after aliases), with `${ENV}` and `${file:/path}`
substituted in strings, duplicate keys refused and merge keys (`<<:`) applied by PyYAML's rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ccf_agent.config.values import ConfigError, KeyPath, Where, dotted

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

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class Document:
    """The parsed YAML as plain data (`data`), plus the line of every key path."""

    def __init__(self, file: str, text: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.lines: dict[KeyPath, int] = {}
        self.values = 0
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            self.loader = loader
            self.data: Any = self._convert(node, ()) if node is not None else {}
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            raise ConfigError(file, mark.line + 1 if mark else None, "", f"invalid YAML: {e.problem}") from e
        except yaml.YAMLError as e:
            raise ConfigError(file, None, "", f"invalid YAML: {e}") from e
        finally:
            loader.dispose()

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest ancestor written in the file."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.file, self.line(path), dotted(path), message)

    def within(self, *prefix: str | int) -> Where:
        """`error` for a section's parser, which names keys relative to its own mapping."""
        return lambda path, message: self.error((*prefix, *path), message)

    def _convert(self, node: yaml.Node, path: KeyPath) -> Any:
        """Plain data from a node. Aliases are expanded here (the composer shares their node), so
        this is where an alias bomb or an alias inside its own anchor is stopped."""
        self.values += 1
        line = node.start_mark.line + 1
        if self.values > MAX_VALUES:
            raise ConfigError(self.file, line, dotted(path),
                              f"the document expands to more than {MAX_VALUES} values (YAML aliases?)")
        if len(path) > MAX_DEPTH:
            raise ConfigError(self.file, line, dotted(path), f"nested deeper than {MAX_DEPTH} levels "
                              "(an alias inside its own anchor?)")
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node)
        if isinstance(value, bytes):  # fields are shipped as JSON, which has no bytes
            raise ConfigError(self.file, line, dotted(path), "binary values (!!binary) are not supported")
        if isinstance(value, str) and "${" in value:
            value = self._substitute(value, path)
        return value

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        own: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(self.file, key_node.start_mark.line + 1, dotted(path), "keys must be strings")
            if key_node.tag == _MERGE:
                continue
            if key_node.value in own:
                raise ConfigError(self.file, key_node.start_mark.line + 1, dotted((*path, key_node.value)),
                                  "duplicate key")
            own.add(key_node.value)
        # `<<: *defaults` (YAML's merge key) by PyYAML's own rules: merged keys first, the mapping's
        # own keys after them, and the last one of a name wins.
        self.loader.flatten_mapping(node)
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(self.file, key_node.start_mark.line + 1, dotted(path), "keys must be strings")
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
