"""Build a pipeline from the YAML's own shapes and run lines through it."""

from __future__ import annotations

import tempfile
from typing import Any

import orjson

from ccf_agent.batch import Batch, Events
from ccf_agent.config import InputConfig, parse_input_options, parse_processors
from ccf_agent.pipeline.native import read_ahead
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.registry import Entry

PATH = "/var/log/ccf/combined.log"


class OptionError(Exception):
    pass


def where(path: tuple[str | int, ...], message: str) -> Exception:
    return OptionError(f"{'.'.join(map(str, path))}: {message}")


def make(processors: dict[str, Any] | None = None, *, format: str = "json", fields: dict[str, Any] | None = None,
         timezone: str = "UTC", **input_options: Any) -> Pipeline:
    """A pipeline for one input; `input_options` are the input's YAML keys (parser, ecs, ...)."""
    cfg = InputConfig(id="app", paths=("/var/log/ccf/*.log",), format=format, fields=fields or {},
                      timezone=timezone, options=parse_input_options(input_options, where))
    return Pipeline(cfg, hostname="web-1", processors=parse_processors(processors, where))


def run(pipeline: Pipeline, lines: list[bytes], start: int = 0, path: str = PATH, as_data: bool = False,
        read_ahead: bool = False) -> Events:
    """`as_data`: the batch as the reader hands it over, one bytes object (lines must hold no newline);
    `read_ahead`: that, read and scanned by the pipeline's read-ahead thread, as the tail does once a
    file has more than a chunk to read."""
    entry = Entry("s" * 16, "fp", "app", path, 1, 2)
    end = start + sum(len(x) + 1 for x in lines)
    if as_data or read_ahead:
        assert lines and not any(b"\n" in x for x in lines)
        data = b"".join(x + b"\n" for x in lines)
        batch = Batch(entry, path, start, end, data=data)
        if read_ahead:
            batch = Batch(entry, path, start, end, data=(got := scanned(pipeline, data))[0])
            batch.scan = got[1]
        return pipeline.process(batch)
    return pipeline.process(Batch(entry, path, start, end, lines))


def docs(events: Events) -> list[dict[str, Any]]:
    return [orjson.loads(d) for d in events.docs]


def one(pipeline: Pipeline, line: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(document, record) of a single line."""
    ev = run(pipeline, [line])
    assert len(ev) == 1, f"expected one event, got {len(ev)}"
    return orjson.loads(ev.docs[0]), ev.records[0]


def scanned(pipeline: Pipeline, data: bytes) -> tuple[bytes, object]:
    """`data` (complete lines) as the read-ahead thread hands it over: read from a file after the
    reader's partial line (here the first line's first half), and its scan."""
    ahead = read_ahead(pipeline.scan_spec())
    assert ahead is not None, "this pipeline has no read-ahead"
    partial = data[: data.index(b"\n") // 2]
    try:
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.flush()
            ahead.submit("reader", f.fileno(), len(partial), len(data), partial)
            owner, offset, held, block, rest, nread, scan = ahead.take()
    finally:
        ahead.close()
    assert (owner, offset, held, block, rest, nread) == ("reader", len(partial), partial, data, b"",
                                                        len(data) - len(partial))
    assert scan is not None
    return block, scan
