"""The corpus: every log file of the app (and its neighbours) gives exactly the documents expected.

Cases are listed in corpus/cases.yaml. A case with `multiline` is joined the way the tail
reader joins it (tail.multiline), then processed. The clock is fixed, so times without a
year (syslog) and records without a time are reproducible.

    python -m tests.pipeline.test_corpus --write    # regenerate after a deliberate change; review the diff
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from ccf_agent.config import parse_input_options
from ccf_agent.pipeline import process
from ccf_agent.tail.multiline import Multiline
from tests.pipeline.helpers import make, run, where

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
NOW = 1718013600.0  # 2024-06-10 10:00:00 UTC


def events_of(case: dict[str, Any]) -> list[bytes]:
    """The file's lines as the reader hands them over (joined into events with multiline)."""
    data = (CORPUS / case["log"]).read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a newline
    ml_cfg = parse_input_options(case.get("input", {}), where).multiline
    if ml_cfg is None:
        return lines
    ml = Multiline(ml_cfg)
    events, _ = ml.push(lines)
    last, _ = ml.flush()
    return events + ([last] if last is not None else [])


def produce(case: dict[str, Any]) -> list[dict[str, Any]]:
    clock, process.time = process.time, types.SimpleNamespace(time=lambda: NOW)  # type: ignore[assignment]
    try:
        pipeline = make(case.get("processors"), **case.get("input", {}))
        ev = run(pipeline, events_of(case), path=f"/var/log/ccf/{case['log']}")
    finally:
        process.time = clock  # type: ignore[assignment]
    out = [orjson.loads(d) for d in ev.docs]
    for doc in out:
        doc["agent"]["version"] = "*"
    return out


def expected_path(case: dict[str, Any]) -> Path:
    return CORPUS / f"{case['name']}.expected.jsonl"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case_gives_the_expected_documents(case: dict[str, Any]) -> None:
    expected = [orjson.loads(line) for line in expected_path(case).read_bytes().splitlines()]
    got = produce(case)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"{case['name']} document {i}"


def test_every_seed_file_is_in_the_corpus() -> None:
    logs = {c["log"] for c in CASES}
    assert {"combined.log", "error.log", "payouts.log", "exceptions.log", "rejections.log"} <= logs


def write() -> None:
    for case in CASES:
        docs = produce(case)
        expected_path(case).write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
        print(f"{expected_path(case).name}: {len(docs)} documents")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    write()
