"""Fuzz target for the C scanners: hostile bytes, built from JSON's own tokens cut and spliced
anywhere (unclosed strings, lone backslashes, escapes split, brackets hundreds deep, NULs,
invalid UTF-8), straight into each C function that reads raw lines, held to its Python twin.
tests/native/sanitize.sh runs it under AddressSanitizer/UBSan, where a read past a line's end
fails even when the answer happens to be right.

    CCF_FUZZ_EXAMPLES=5000 python -m pytest tests/native/test_fuzz_scanner.py   # longer than CI's
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccf_agent.pipeline import rawjson
from ccf_agent.pipeline.native import fast as _fast
from ccf_agent.pipeline.redact import RedactConfig, Redactor

pytestmark = pytest.mark.skipif(_fast is None, reason="the C extension is not built")

SETTINGS = settings(max_examples=int(os.environ.get("CCF_FUZZ_EXAMPLES", "300")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

TOKENS = [b"{", b"}", b"[", b"]", b'"', b"\\", b'\\"', b"\\u00", b"\\u0073k_live_", b":", b",", b" ", b"\x00",
          b"\xff", b"\xc3", b"\xed\xa0\x80", b"null", b"-0", b"1e400", b"4242 4242 4242 4242", b"sk_live_abcdefgh1234",
          b"Bearer abc.def", b"a@b.co", b'"password":', b'"message":"', b"?token=x&", b"\t", b"\r"]
hostile = st.lists(st.sampled_from(TOKENS) | st.binary(max_size=6), max_size=60).map(b"".join)
deep = st.tuples(st.integers(150, 260), st.sampled_from([b"[", b"{\"a\":", b"[\"\\\"\","]), hostile).map(
    lambda t: t[1] * t[0] + t[2])
lines_of = (hostile | deep).map(lambda b: b.replace(b"\n", b" "))


@SETTINGS
@given(lines_of)
def test_the_raw_json_scans_in_c_are_pythons_on_hostile_bytes(line: bytes) -> None:
    assert _fast.too_deep(line) == rawjson._too_deep(line)
    assert _fast.members(line) == rawjson._members(line)


@pytest.mark.parametrize("emails", [False, True])
@SETTINGS
@given(st.lists(lines_of, min_size=1, max_size=8))
def test_the_prefilter_in_c_flags_what_python_flags_on_hostile_bytes(emails: bool, lines: list[bytes]) -> None:
    redactor = Redactor(RedactConfig(emails=emails))
    args = redactor._fold_args(False)[:5]
    want = redactor._scan_python(lines)
    for vector in (0, 1, 2):  # scalar, the CPU's best, SSE2
        assert set(_fast.prefilter(lines, *args, vector, False)) == want
    as_json = set(_fast.prefilter(lines, *args, 1, True))
    assert as_json <= want  # JSON: a digit run outside strings is a number, no card


@SETTINGS
@given(st.lists(lines_of, min_size=1, max_size=8), st.booleans())
def test_the_read_ahead_scan_of_hostile_bytes_finds_the_prefilters_lines(tmp_path: Path, lines: list[bytes],
                                                                         objects: bool) -> None:
    """The thread's scan (line ends, crc32, prefilter, the projection's object scan) over a file
    of hostile lines: every line found, its hits those of the prefilter run on the loop."""
    redactor = Redactor(RedactConfig())
    fold: tuple[Any, ...] | None = redactor.json_fold()
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "hostile.log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    ahead = _fast.ReadAhead(fold, objects)
    try:
        assert ahead.submit(None, fd, 0, len(data), b"")
        _, _, _, block, rest, nread, scan = ahead.take()
        assert (block, rest, nread) == (data, b"", len(data))
        assert scan is not None and fold is not None
        assert _fast.scan_hits(scan) == _fast.prefilter(lines, *fold)
    finally:
        ahead.close()
        os.close(fd)
