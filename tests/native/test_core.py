"""The native core's files (ccf_agent/_native/) on their own: compiled without Python into a small
program and held to the Python library's answer. What they compute needs no interpreter, so it
is tested without one too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccf_agent.pipeline import rawjson
from ccf_agent.pipeline.redact import RedactConfig, Redactor
from ccf_agent.pipeline.timestamps import TimestampParser
from tests.native.test_fuzz_scanner import lines_of

NATIVE = Path(__file__).resolve().parents[2] / "ccf_agent" / "_native"
CCF_MAX_MEMBERS = 64  # scan.h

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


# Extra compiler flags, from tests/native/sanitize.sh: the programs under its sanitizers too.
CFLAGS = os.environ.get("CCF_CORE_CFLAGS", "").split()


def plain_env() -> dict[str, str]:
    """The environment without sanitize.sh's LD_PRELOAD (meant for the interpreter): a program
    built with a sanitizer links its own runtime, and gcc needs none."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def build(out: Path, name: str, main: str, *sources: str) -> Path:
    """The program `main` linked with these core files, compiled without Python."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc (tests/run.sh installs it)")
    (out / f"{name}.c").write_text(main)
    exe = out / name
    subprocess.run(["gcc", "-O2", "-g", "-Wall", "-Werror", "-std=gnu11", *CFLAGS, f"-I{NATIVE}", str(out / f"{name}.c"),
                    *(str(NATIVE / s) for s in sources), "-pthread", "-o", str(exe)], check=True, env=plain_env())
    return exe


def feed(buffers: list[bytes]) -> bytes:
    return b"".join(len(b).to_bytes(4, "little") + b for b in buffers)


def answers(program: Path, buffers: list[bytes], *args: str) -> list[str]:
    """The program's output lines for these buffers on its stdin."""
    done = subprocess.run([str(program), *args], input=feed(buffers), capture_output=True, env=plain_env())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode().split("\n")[:-1]


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("core")
    return {"crc": build(out, "crc", CRC_MAIN, "crc32.c"),
            "scan": build(out, "scan", SCAN_MAIN, "scan.c"),
            "prefilter": build(out, "prefilter", PREFILTER_MAIN, "prefilter.c"),
            "stamp": build(out, "stamp", STAMP_MAIN, "stamp.c"),
            "read_ahead": build(out, "read_ahead", READAHEAD_MAIN, "readahead.c", "scan.c", "prefilter.c", "crc32.c")}


@pytest.fixture(scope="module")
def crc_program(programs: dict[str, Path]) -> Path:
    return programs["crc"]


def crcs(program: Path, buffers: list[bytes]) -> tuple[list[int], str]:
    out = answers(program, buffers)
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


# ------------------------------------------------------------------ the programs

# Each program reads buffers from stdin as crc's does (4-byte little-endian length, bytes) and
# prints one line per buffer it answers for.
READ_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
static unsigned char *next_buffer(size_t *n)
{
    unsigned char len[4];
    if (fread(len, 1, 4, stdin) != 4)
        return NULL;
    *n = len[0] | len[1] << 8 | len[2] << 16 | (size_t)len[3] << 24;
    unsigned char *p = malloc(*n ? *n : 1);
    if (fread(p, 1, *n, stdin) != *n)
        exit(2);
    return p;
}
"""

# Per buffer: the scanner's verdict on it as a top-level object (and each member's offsets and
# kind), the members rawjson counts, and whether it nests too deep.
SCAN_MAIN = READ_MAIN + r"""
#include "scan.h"
int main(void)
{
    size_t n;
    unsigned char *p;
    while ((p = next_buffer(&n)) != NULL) {
        ccf_member m[CCF_MAX_MEMBERS];
        int count = 0;
        if (ccf_scan_object(p, (ccf_ssize)n, m, &count) == CCF_SCAN_OK) {
            printf("ok");
            for (int k = 0; k < count; k++)
                printf(" %d,%d,%d,%d,%d", m[k].key, m[k].key_end, m[k].value, m[k].value_end, m[k].kind);
        } else {
            printf("unsure");
        }
        printf(" | %td %d\n", ccf_structure(p, (ccf_ssize)n, -1), ccf_too_deep(p, (ccf_ssize)n));
        free(p);
    }
    return 0;
}
"""

# Buffers: "zeros needle json nsuffix" (text), the table, the drop bytes, the suffixes, then the
# lines: per line, the verdict of the scalar, the CPU's best and the SSE2 path.
FOLD_READ = r"""
#include <string.h>
#include "prefilter.h"
static unsigned char *kept[4 + CCF_MAX_SUFFIXES];
static int read_spec(ccf_fold_spec *spec)
{
    size_t n;
    unsigned char *head = next_buffer(&n);
    if (head == NULL)
        return -1;
    char text[64] = {0};
    memcpy(text, head, n < 63 ? n : 63);
    long zeros;
    if (sscanf(text, "%ld %ld %d %d", &zeros, &spec->needle, &spec->json, &spec->nsuffix) != 4)
        return -1;
    spec->zeros = zeros;
    kept[0] = head;
    spec->table = kept[1] = next_buffer(&n);
    spec->drop = kept[2] = next_buffer(&spec->ndrop);
    for (int k = 0; k < spec->nsuffix && k < CCF_MAX_SUFFIXES; k++)
        spec->suffix[k] = kept[3 + k] = next_buffer(&spec->suffix_len[k]);
    return 0;
}
"""

PREFILTER_MAIN = READ_MAIN + FOLD_READ + r"""
int main(void)
{
    ccf_prefilter_init();
    ccf_fold_spec spec = {0};
    ccf_fold folds[3];
    if (read_spec(&spec) < 0)
        return 2;
    for (int vector = 0; vector < 3; vector++) {
        spec.vector = vector;
        if (ccf_fold_init(&folds[vector], &spec) < 0)
            return 3;
    }
    size_t n;
    unsigned char *p;
    while ((p = next_buffer(&n)) != NULL) {
        for (int vector = 0; vector < 3; vector++)
            putchar('0' + ccf_fold_hit(p, (ccf_ssize)n, &folds[vector]));
        putchar('\n');
        free(p);
    }
    return 0;
}
"""

# Per buffer and per (local_utc, iso_z) in (1,1), (1,0), (0,1): "-" or its iso and microseconds.
STAMP_MAIN = READ_MAIN + r"""
#include "stamp.h"
int main(void)
{
    static const int modes[3][2] = {{1, 1}, {1, 0}, {0, 1}};
    size_t n;
    unsigned char *p;
    while ((p = next_buffer(&n)) != NULL) {
        for (int k = 0; k < 3; k++) {
            char iso[24];
            long long us;
            if (ccf_stamp((const char *)p, (ccf_ssize)n, modes[k][0], modes[k][1], iso, &us))
                printf("%s%.24s/%lld", k ? " " : "", iso, us);
            else
                printf("%s-", k ? " " : "");
        }
        putchar('\n');
        free(p);
    }
    return 0;
}
"""

# argv: a file, a chunk size, objects (0/1); stdin: a fold spec as the prefilter's, or nothing.
# Reads the file a chunk at a time through the thread as the tail does (the unfinished line
# carried over), printing per complete line its offset in the file, length, crc32, prefilter
# verdict, object scan and member count; then exercises the life cycle's ends: a job dropped
# untaken by stop, a job taken back before any thread began it (and not once done), start after
# close.
READAHEAD_MAIN = READ_MAIN + FOLD_READ + r"""
#include <fcntl.h>
#include <unistd.h>
#include "crc32.h"
#include "readahead.h"
int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    ccf_crc32_init();
    ccf_prefilter_init();
    ccf_fold_spec spec = {0};
    int has_fold = read_spec(&spec) == 0;
    spec.vector = 1;
    int fd = open(argv[1], O_RDONLY);
    long size = atol(argv[2]);
    ccf_read_ahead r;
    if (fd < 0 || ccf_read_ahead_init(&r, has_fold ? &spec : NULL, atoi(argv[3])) != 0)
        return 3;
    char *partial = NULL;
    long long offset = 0;
    ccf_ssize plen = 0;
    for (;;) {
        char *buf = malloc((size_t)(plen + size));
        if (plen)
            memcpy(buf, partial, (size_t)plen);
        free(partial);
        if (ccf_read_ahead_start(&r) != 0)
            return 4;
        ccf_read_ahead_submit(&r, buf, fd, offset, size, plen);
        ccf_read_ahead_result got;
        ccf_read_ahead_take(&r, &got);
        if (got.err)
            return 5;
        long long block = offset - plen; /* where the buffer starts in the file */
        if (got.scan != NULL)
            for (ccf_ssize i = 0; i < got.scan->nlines; i++) {
                ccf_scan_line *l = &got.scan->lines[i];
                printf("%lld %td %u %d %d %d\n", block + l->start, l->n, l->crc, l->hit,
                       l->status == CCF_SCAN_OK, l->count);
            }
        else if (got.last_nl >= 0)
            return 6;
        ccf_read_ahead_clear(&r);
        ccf_scan_free(got.scan);
        ccf_ssize total = plen + got.nread, keep = total - (got.last_nl + 1);
        partial = malloc((size_t)(keep ? keep : 1));
        memcpy(partial, buf + got.last_nl + 1, (size_t)keep);
        plen = keep;
        free(buf);
        offset += got.nread;
        if (got.nread == 0)
            break;
    }
    free(partial);
    char spare[64];
    ccf_read_ahead_submit(&r, spare, fd, 0, sizeof spare, 0);
    ccf_read_ahead_stop(&r); /* waits for the job and forgets it */
    /* no thread now: a job submitted meanwhile is never begun, so it is taken back */
    ccf_read_ahead_submit(&r, spare, fd, 0, sizeof spare, 0);
    int withdrawn = ccf_read_ahead_withdraw(&r);
    int restarted = ccf_read_ahead_start(&r);
    ccf_read_ahead_submit(&r, spare, fd, 0, sizeof spare, 0);
    ccf_read_ahead_wait(&r);
    int begun = ccf_read_ahead_withdraw(&r); /* done: not taken back */
    ccf_read_ahead_clear(&r);
    ccf_read_ahead_close(&r);
    printf("end %d %d %d %d\n", restarted, ccf_read_ahead_start(&r) == CCF_READ_AHEAD_CLOSED, withdrawn, begun);
    ccf_read_ahead_destroy(&r);
    close(fd);
    for (int k = 0; k < 4 + CCF_MAX_SUFFIXES; k++)
        free(kept[k]);
    return 0;
}
"""


# ------------------------------------------------------------------ the scanner

KINDS = {"string": 0, "escaped": 1, "number": 2, True: 3, False: 4, None: 5, "other": 6}
# Keys the scanner takes (no escape needed); string values may hold the simple escapes.
key_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'), max_size=8)
value_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
number = st.integers(-(10**20), 10**20).map(str) | st.tuples(st.integers(-999, 999), st.integers(0, 999)).map(
    lambda t: f"{t[0]}.{t[1]}")
scalar = st.none() | st.booleans() | value_text | number.map(lambda s: Raw(s))
documents = st.dictionaries(key_text, st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                                                   | st.dictionaries(key_text, inner, max_size=3), max_leaves=8),
                            min_size=1, max_size=CCF_MAX_MEMBERS)


class Raw(str):
    """A number written as these digits (json.dumps would write a float its own way)."""


def dumps(value: Any, spaced: bool) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        sep = ", " if spaced else ","
        return "{" + sep.join(json.dumps(k, ensure_ascii=False) + (": " if spaced else ":") + dumps(v, spaced)
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + (", " if spaced else ",").join(dumps(v, spaced) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def kind(raw: bytes) -> int:
    value = json.loads(raw)
    if isinstance(value, str):
        return KINDS["escaped" if b"\\" in raw else "string"]
    if isinstance(value, bool) or value is None:
        return KINDS[value]
    return KINDS["number" if isinstance(value, (int, float)) else "other"]


def scanned(answer: str, line: bytes) -> list[tuple[bytes, bytes, int]] | None:
    """The members the scanner reported for the line: (key, value bytes, kind) each; None: unsure."""
    verdict = answer.split(" | ")[0].split()
    if verdict[0] != "ok":
        return None
    out = []
    for member in verdict[1:]:
        key, key_end, value, value_end, k = map(int, member.split(","))
        out.append((line[key:key_end], line[value:value_end], k))
    return out


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(documents, st.booleans(), st.sampled_from(["", " ", "\t "])), min_size=1, max_size=10))
def test_the_scanner_core_alone_finds_each_member_of_a_json_object(programs: dict[str, Path],
                                                                   docs: list[tuple[dict[str, Any], bool, str]]) -> None:
    """Objects with nothing the scanner leaves to orjson: every one is sure, its members where
    json finds them, each value's kind its type."""
    lines = [(pad + dumps(doc, spaced) + pad).encode() for doc, spaced, pad in docs]
    for line, answer, (doc, _, _) in zip(lines, answers(programs["scan"], lines), docs, strict=True):
        members = scanned(answer, line)
        assert members is not None, line
        assert [k.decode() for k, _, _ in members] == list(doc)
        assert [json.loads(v) for _, v, _ in members] == list(json.loads(line).values())
        assert [k for _, _, k in members] == [kind(v) for _, v, _ in members]


@settings(max_examples=300, deadline=None)
@given(st.lists(lines_of | documents.map(lambda d: dumps(d, False).encode()), min_size=1, max_size=10))
def test_the_scanner_core_alone_is_sure_only_of_what_json_reads_the_same_on_hostile_bytes(
        programs: dict[str, Path], lines: list[bytes]) -> None:
    """Whatever it says sure of is JSON with those very members; its lexer scans are rawjson's."""
    for line, answer in zip(lines, answers(programs["scan"], lines), strict=True):
        members = scanned(answer, line)
        if members is not None:
            pairs = json.loads(line, object_pairs_hook=list)  # duplicate keys kept, nested ones too
            assert [k.decode() for k, _, _ in members] == [k for k, _ in pairs]
            assert [json.loads(v, object_pairs_hook=list) for _, v, _ in members] == [v for _, v in pairs]
            assert [k for _, _, k in members] == [kind(v) for _, v, _ in members]
        count, deep = answer.split(" | ")[1].split()
        assert int(count) == rawjson._members(line)
        assert bool(int(deep)) is rawjson._too_deep(line)


# ------------------------------------------------------------------ the prefilter

def fold_spec(args: tuple[Any, ...], json_rule: bool) -> list[bytes]:
    """Redactor._fold_args' (table, drop, zeros, needle, suffixes) as the programs read a spec."""
    table, drop, zeros, needle, suffixes = args[:5]
    return [b"%d %d %d %d" % (zeros, needle, json_rule, len(suffixes)), table, drop, *suffixes]


def prefiltered(program: Path, args: tuple[Any, ...], json_rule: bool, lines: list[bytes]) -> set[int]:
    """The lines the prefilter core flags, every path (scalar, the CPU's best, SSE2) agreeing."""
    got = answers(program, fold_spec(args, json_rule) + lines)
    assert all(a in ("000", "111") for a in got), got
    return {i for i, a in enumerate(got) if a == "111"}


@pytest.mark.parametrize("emails", [False, True])
@settings(max_examples=150, deadline=None)
@given(st.lists(lines_of, min_size=1, max_size=12))
def test_the_prefilter_core_alone_flags_what_the_python_prefilter_flags(programs: dict[str, Path], emails: bool,
                                                                       lines: list[bytes]) -> None:
    """Each path on its own, held to Redactor's Python scan; the JSON rule (a digit run outside
    strings is no card) only ever takes lines away."""
    redactor = Redactor(RedactConfig(emails=emails))
    want = redactor._scan_python(lines)
    assert prefiltered(programs["prefilter"], redactor._fold_args(False), False, lines) == want
    assert prefiltered(programs["prefilter"], redactor._fold_args(True), True, lines) <= want


@settings(max_examples=100, deadline=None)
@given(st.lists(documents.map(lambda d: dumps(d, False).encode()) | st.sampled_from(
    [b'{"card":"4242 4242 4242 4242"}', b'{"n":4242424242424242}', b'{"k":"sk_live_abcdefgh1234"}',
     b'{"a":"x\\"}', b'{"t":"Bearer abc.def","n":0000000000000}']), min_size=1, max_size=12))
def test_the_prefilter_cores_json_rule_is_the_python_prefilters_on_json_objects(programs: dict[str, Path],
                                                                              lines: list[bytes]) -> None:
    redactor = Redactor(RedactConfig(emails=True))
    want = redactor._in_strings(lines, redactor._scan_python(lines))
    assert prefiltered(programs["prefilter"], redactor._fold_args(True), True, lines) == want


# ------------------------------------------------------------------ timestamps

def winston_between(first: int, last: int) -> st.SearchStrategy[str]:
    """Winston's timestamps of these years, in either form."""
    return st.datetimes(min_value=datetime(first, 1, 1), max_value=datetime(last, 12, 31, 23, 59, 59)).flatmap(
        lambda dt: st.sampled_from([dt.strftime("%Y-%m-%d %H:%M:%S"), dt.strftime("%Y-%m-%dT%H:%M:%S"),
                                    dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z",
                                    dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}z"]))


winston = winston_between(1, 9999)
# the same forms with a byte changed: a month 13, a letter for a digit, a 30th of February ...
mangled = st.tuples(winston, st.integers(0, 23), st.sampled_from("0123456789 -:.TZzx\x00é")).map(
    lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:])


def stamps(program: Path, texts: list[str]) -> list[list[tuple[bytes, float] | None]]:
    out = []
    for answer in answers(program, [t.encode() for t in texts]):
        row: list[tuple[bytes, float] | None] = []
        for mode in answer.split(" "):
            iso, _, us = mode.partition("/")
            row.append(None if mode == "-" else (iso.encode(), int(us) / 1e6))
        out.append(row)
    return out


@settings(max_examples=100, deadline=None)
@given(st.lists(winston | mangled | st.text(max_size=26), min_size=1, max_size=20))
def test_the_timestamp_core_alone_reads_winstons_forms_as_the_timestamp_parser(programs: dict[str, Path],
                                                                              texts: list[str]) -> None:
    """Either form it reads gives TimestampParser's stamp (UTC, no strptime formats); whatever
    it does not read is the parser's to decide; and it reads the plain form only in UTC, the Z
    form only without formats."""
    parser = TimestampParser("UTC")
    for text, (both, utc_only, iso_only) in zip(texts, stamps(programs["stamp"], texts), strict=True):
        assert both is None or both == parser.parse(text), text
        plain = len(text.encode()) == 19
        assert utc_only == (both if plain else None)
        assert iso_only == (None if plain else both)


@settings(max_examples=50, deadline=None)
@given(st.lists(winston_between(1700, 2249), min_size=1, max_size=20))
def test_the_timestamp_core_alone_reads_every_winston_timestamp_of_three_centuries_around_now(
        programs: dict[str, Path], texts: list[str]) -> None:
    """(Past 2^53 microseconds from the epoch the parser decides: see stamp.c.)"""
    parser = TimestampParser("UTC")
    assert [row[0] for row in stamps(programs["stamp"], texts)] == [parser.parse(t) for t in texts]


# ------------------------------------------------------------------ the read-ahead thread

@settings(max_examples=60, deadline=None)
@given(st.lists(lines_of | documents.map(lambda d: dumps(d, False).encode()), max_size=12), st.binary(max_size=20),
       st.integers(1, 120), st.booleans(), st.booleans())
def test_the_read_ahead_core_alone_finds_every_line_its_crc_prefilter_and_scan(
        programs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], tail: bytes,
        chunk: int, objects: bool, fold: bool) -> None:
    """A file read through the thread a chunk at a time, the unfinished line carried over as
    the tail does: its complete lines, each at its offset with zlib's crc32, the Python
    prefilter's verdict and the scanner's; then a job stopped untaken, one withdrawn before a
    thread began it (a finished one is not), a restart, a close."""
    data = b"".join(line + b"\n" for line in lines) + tail.replace(b"\n", b" ")
    path = tmp_path_factory.mktemp("ra") / "log"
    path.write_bytes(data)
    redactor = Redactor(RedactConfig())
    spec = fold_spec(redactor._fold_args(False), False) if fold else []
    got = answers(programs["read_ahead"], spec, str(path), str(chunk), str(int(objects)))
    assert got[-1] == "end 0 1 1 0"
    hits = redactor._scan_python(lines) if fold and lines else set()
    objects_scanned = answers(programs["scan"], lines) if lines else []
    want, offset = [], 0
    for i, line in enumerate(lines):
        sure = objects and line.endswith(b"}") and scanned(objects_scanned[i], line) is not None
        count = len(scanned(objects_scanned[i], line) or []) if sure else 0
        want.append(f"{offset} {len(line)} {zlib.crc32(line)} {int(i in hits)} {int(sure)} {count}")
        offset += len(line) + 1
    assert got[:-1] == want
