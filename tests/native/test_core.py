"""The native core's files (ccf_agent/_native/) on their own: compiled without Python into a small
program and held to the Python library's answer. What they compute needs no interpreter, so it
is tested without one too."""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

NATIVE = Path(__file__).resolve().parents[2] / "ccf_agent" / "_native"

# Reads buffers from stdin as (4-byte little-endian length, bytes) and prints each one's crc32.
CRC_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "crc32.h"
int main(void)
{
    ccf_crc32_init();
    unsigned char len[4];
    while (fread(len, 1, 4, stdin) == 4) {
        size_t n = len[0] | len[1] << 8 | len[2] << 16 | (size_t)len[3] << 24;
        unsigned char *p = malloc(n ? n : 1);
        if (fread(p, 1, n, stdin) != n)
            return 2;
        printf("%u\n", ccf_crc32(p, n));
        free(p);
    }
    printf("clmul %d\n", ccf_have_clmul);
    return 0;
}
"""


@pytest.fixture(scope="module")
def crc_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc (tests/run.sh installs it)")
    out = tmp_path_factory.mktemp("core")
    (out / "main.c").write_text(CRC_MAIN)
    exe = out / "crc"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-std=c11", f"-I{NATIVE}", str(out / "main.c"),
                    str(NATIVE / "crc32.c"), "-o", str(exe)], check=True)
    return exe


def crcs(program: Path, buffers: list[bytes]) -> tuple[list[int], str]:
    feed = b"".join(len(b).to_bytes(4, "little") + b for b in buffers)
    out = subprocess.run([str(program)], input=feed, capture_output=True, check=True).stdout.decode().split("\n")
    return [int(x) for x in out[:len(buffers)]], out[len(buffers)]


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=600), max_size=20))
def test_the_crc32_core_alone_is_zlibs(crc_program: Path, buffers: list[bytes]) -> None:
    got, _ = crcs(crc_program, buffers)
    assert got == [zlib.crc32(b) for b in buffers]


def test_the_crc32_core_takes_the_clmul_path_on_long_buffers_where_the_cpu_has_it(crc_program: Path) -> None:
    """Every length around the 64-byte threshold and the 16-byte tail, on whichever path ran."""
    buffers = [os.urandom(n) for n in range(0, 200)] + [os.urandom(1 << 16)]
    got, path = crcs(crc_program, buffers)
    assert got == [zlib.crc32(b) for b in buffers]
    assert path in ("clmul 0", "clmul 1")
