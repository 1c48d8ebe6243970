"""The static checks CI holds the code to: ruff clean, mypy strict (pyproject.toml says on what), the C
extension's stub true to the built module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    done = run("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_finds_nothing_in_ccf_agent() -> None:
    done = run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_c_extensions_stub_names_what_the_built_module_defines() -> None:
    """_fast.pyi against the module as built: a name added to or dropped from the C code, or a
    signature it can introspect, that the stub does not follow (stubtest)."""
    done = run("mypy.stubtest", "ccf_agent._native._fast")
    assert done.returncode == 0, done.stdout + done.stderr
