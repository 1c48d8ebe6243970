"""Running `ccf-agent report` as an operator does, on a config written from a dict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.harness import ROOT


def write_config(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    cfg = {"state_dir": str(tmp_path / "state"), "status": {"listen": "off"}, **cfg}
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def report(config: Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
           ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "ccf_agent", "report", "-c", str(config), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def report_json(config: Path, *args: str) -> dict[str, Any]:
    return json.loads(report(config, "--format", "json", *args).stdout)


def files_config(logs: Path, tz: str) -> dict[str, Any]:
    """The app's five files, no search engine: the report reads the files."""
    return {"inputs": [{"id": "app", "paths": [str(logs / "*.log")], "timezone": tz}],
            "outputs": {"logs": {"type": "file", "path": str(logs.parent / "out" / "logs.ndjson")}}}
