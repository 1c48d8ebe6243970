"""The package's structure: no import cycles, and every import that hides from the graph says why.

The graph is read from the source (ast), not from a running interpreter: an edge for every
module-level import (including under `try`/`if` at module level, excluding `if TYPE_CHECKING:`),
and for every package an import runs on the way (`import a.b.c` runs `a/__init__` and
`a/b/__init__`, except the importer's own enclosing packages, which are already running).
An import inside a function, or a module imported by name (`importlib.import_module`), is not
in the graph, so each one must be listed in LAZY with the reason it is lazy (a measured one, for a
new entry).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ccf_agent"

# (importing module, function, imported module or "importlib"): why it is not at module level.
LAZY: dict[tuple[str, str, str], str] = {
    ("ccf_agent.cli", "_load", "ccf_agent.agent"):
        "`check` builds every part offline (agent.preflight); status, setup and report need not import the agent",
    ("ccf_agent.cli", "cmd_run", "ccf_agent.agent"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_run", "ccf_agent.pipeline.native"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_status", "ccf_agent.ops.status_cli"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_tap", "ccf_agent.ops.tap_cli"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_test", "ccf_agent.ops.reach"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_top", "ccf_agent.ops.top"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_setup", "ccf_agent.outputs.elasticsearch.setup"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_report", "ccf_agent.report.run"): "a CLI subcommand imports its module",
    ("ccf_agent.cli", "cmd_demo", "ccf_agent.demo"): "a CLI subcommand imports its module",
    ("ccf_agent.agent", "_run", "ccf_agent.ops.server"):
        "the status server (aiohttp's server half, ~1 MB of RSS) only when the endpoint is on",
    # The registry of output types reaches each type's modules by name: config/outputs imports the
    # registry (config -> outputs.registry) and a type's config module imports config's leaf
    # (outputs.<type>.config -> config.values, which runs config/__init__ and its loader), so an
    # edge registry -> outputs.<type> would close a cycle; config loading also stays free of
    # aiohttp and the protocol code, imported only when an output is built.
    ("ccf_agent.outputs.registry", "_config", "importlib"):
        "an output type's config module, by name: importing it would be a cycle through config/",
    ("ccf_agent.outputs.registry", "create", "importlib"):
        "an output type's protocol, by name, when the agent or check's preflight builds one",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules of ours an import statement imports (a `from p import name` imports p.name when
    that is a module)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: from its package
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    yield base
    for a in node.names:
        if f"{base}.{a.name}" in MODULES:
            yield f"{base}.{a.name}"


def _with_packages(importer: str, target: str) -> Iterator[str]:
    """The target and the packages importing it runs (not those of the importer, already running)."""
    parts = target.split(".")
    own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name in MODULES and name not in own:
            yield name


class _Reader(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.function: list[str] = []
        self.edges: set[str] = set()
        self.lazy: set[tuple[str, str, str]] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.function.append(node.name)
        self.generic_visit(node)
        self.function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # for the type checker only: never runs
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        for target in _targets(self.module, node):
            if not target.startswith(PACKAGE):
                continue
            if self.function:
                self.lazy.add((self.module, self.function[-1], target))
            else:
                self.edges.update(_with_packages(self.module, target))

    visit_Import = _import
    visit_ImportFrom = _import

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
                isinstance(f, ast.Name) and f.id in ("__import__", "import_module")):
            self.lazy.add((self.module, self.function[-1] if self.function else "<module>", "importlib"))
        self.generic_visit(node)


def read_graph() -> tuple[dict[str, set[str]], set[tuple[str, str, str]]]:
    graph: dict[str, set[str]] = {}
    lazy: set[tuple[str, str, str]] = set()
    for module, path in MODULES.items():
        reader = _Reader(module)
        reader.visit(ast.parse(path.read_text(), str(path)))
        graph[module] = reader.edges - {module}
        lazy |= reader.lazy
    return graph, lazy


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_path_through(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle inside a strongly connected component, for the message."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = min(w for w in graph[path[-1]] if w in component)
        if nxt in seen:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)
        seen.add(nxt)


def test_ccf_agent_has_no_import_cycles() -> None:
    graph, _ = read_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_no_cycle_hides_behind_an_import_inside_a_function() -> None:
    graph, lazy = read_graph()
    for module, _, target in lazy:
        if target != "importlib":
            graph[module] |= set(_with_packages(module, target)) - {module}
    found = cycles(graph)
    assert not found, "import cycles through lazy imports:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_every_import_hidden_from_the_graph_says_why() -> None:
    _, lazy = read_graph()
    unexplained = sorted(lazy - set(LAZY))
    assert not unexplained, ("imports inside functions or by name, not in LAZY (move them to module level, "
                             "or add them with the reason):\n" + "\n".join(f"  {e}" for e in unexplained))


def test_the_list_of_lazy_imports_only_names_imports_that_exist() -> None:
    _, lazy = read_graph()
    assert not set(LAZY) - lazy, f"stale LAZY entries: {sorted(set(LAZY) - lazy)}"


def test_the_cycle_finder_finds_a_cycle_through_a_package_init() -> None:
    # a/__init__ imports a.b, a.b imports c, c imports a.d: importing c runs a/__init__ -> a.b -> c.
    graph = {"a": {"a.b"}, "a.b": {"c"}, "c": {"a", "a.d"}, "a.d": set()}
    assert cycles(graph) == [["a", "a.b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _imported_top_levels() -> set[str]:
    """Every top-level name any module of ours imports, at module level or inside a function."""
    names: set[str] = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_every_declared_dependency_is_imported() -> None:
    """A dependency nobody imports is installed on every host for nothing (aiofiles and the
    elasticsearch client were: the README says why they went)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    provides: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            provides.setdefault(re.sub(r"[-_.]+", "-", dist).lower(), set()).add(module)
    imported = _imported_top_levels()
    unused = []
    for requirement in declared:
        dist = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement)[0]).lower()  # type: ignore[index]
        if not provides.get(dist, set()) & imported:
            unused.append(dist)
    assert not unused, f"declared in pyproject.toml but imported nowhere in ccf_agent/: {unused}"


def fresh_interpreter(code: str) -> str:
    """What `code` prints in a new interpreter (so only what it imports is loaded)."""
    env = {**os.environ, "ES_PASSWORD": "x"}  # config.example.yaml reads it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return out.stdout.strip()


def test_the_agent_imports_aiohttps_server_half_only_to_serve_the_endpoint() -> None:
    """~1 MB of RSS an agent with `status.listen: off` does not carry."""
    probe = "import sys, ccf_agent.agent, ccf_agent.cli; print('aiohttp.web_server' in sys.modules)"
    assert fresh_interpreter(probe) == "False"


def test_the_status_endpoint_does_without_aiohttps_application_framework() -> None:
    """aiohttp.web (router, file responses, websockets, the mime types table) is ~1.3 MB of RSS more
    than the low-level server the endpoint runs on."""
    probe = "import sys, mimetypes, ccf_agent.ops.server; print('aiohttp.web' in sys.modules, mimetypes.inited)"
    assert fresh_interpreter(probe) == "False False"


def test_a_daemon_with_a_valid_config_leaves_the_error_and_decompression_code_unloaded() -> None:
    """difflib (did-you-mean for config errors) and gzip (gzipped rotations) load when needed."""
    probe = ("import sys; from ccf_agent.config import load_config; load_config('config.example.yaml'); "
             "import ccf_agent.agent; print(sorted({'difflib', 'gzip'} & set(sys.modules)))")
    assert fresh_interpreter(probe) == "[]"
