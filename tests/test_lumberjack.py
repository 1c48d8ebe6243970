"""Lumberjack v2 client: frame unit tests, fake-peer error paths, and runs against go-lumber's
server (tests/lumber, built with Go on first use)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ccf_agent.outputs.logstash.lumberjack import (
    LumberjackConnectError,
    LumberjackConnection,
    LumberjackConnectionLost,
    LumberjackError,
    LumberjackProtocolError,
    LumberjackTimeout,
    WindowSizer,
    beats_event,
    decode_ack,
    decode_frames,
    encode_ack,
    encode_batch,
    encode_compressed,
    encode_json_frame,
    encode_window,
)
from tests.lumber import server as lumber

# ---------------------------------------------------------------------------- pure frames


def test_frame_bytes() -> None:
    assert encode_window(3) == b"2W\x00\x00\x00\x03"
    assert encode_json_frame(258, b"{}") == b"2J\x00\x00\x01\x02\x00\x00\x00\x02{}"
    assert encode_ack(7) == b"2A\x00\x00\x00\x07"
    assert decode_ack(b"2A\x00\x01\x00\x00") == 65536
    c = encode_compressed(b"abc", 6)
    assert c[:2] == b"2C" and int.from_bytes(c[2:6], "big") == len(c) - 6
    assert zlib.decompress(c[6:]) == b"abc"
    with pytest.raises(LumberjackProtocolError):
        decode_ack(b"2W\x00\x00\x00\x01")


@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_encode_batch_roundtrip(level: int) -> None:
    events = [orjson.dumps({"i": i, "msg": "x" * (i % 50)}) for i in range(100)]
    wire = encode_batch(events, level)
    assert wire[:6] == encode_window(100)
    assert wire[6:8] == (b"2C" if level else b"2J")
    frames, used = decode_frames(wire)
    assert used == len(wire)
    assert frames == [("W", 100)] + [("J", i + 1, ev) for i, ev in enumerate(events)]
    if level:
        assert len(wire) < len(encode_batch(events, 0))


def test_decode_frames_stops_at_incomplete_frame() -> None:
    wire = encode_window(2) + encode_json_frame(1, b'{"a":1}') + encode_json_frame(2, b'{"b":2}')
    for cut in range(len(wire)):
        frames, used = decode_frames(wire[:cut])
        assert used <= cut
        assert decode_frames(wire[:used])[0] == frames
    assert decode_frames(encode_ack(0) + encode_ack(2)) == ([("A", 0), ("A", 2)], 12)
    with pytest.raises(LumberjackProtocolError):
        decode_frames(b"2Dxxxx")
    with pytest.raises(LumberjackProtocolError):  # compressed payload that ends mid-frame
        decode_frames(encode_compressed(encode_json_frame(1, b"{}")[:-1], 1))


def test_beats_event_splices_without_reserialising() -> None:
    doc = b'{"@timestamp":"2026-01-01T00:00:00Z", "n": 1.50, "big": 18446744073709551615}'
    out = beats_event(doc, beat="b", version="9")
    assert out.startswith(doc[:-1])  # bytes before the brace untouched (1.50, big int kept)
    assert out.endswith(b',"@metadata":{"beat":"b","type":"_doc","version":"9"}}')
    assert orjson.loads(out)["@metadata"] == {"beat": "b", "type": "_doc", "version": "9"}
    assert orjson.loads(beats_event(b" { } \n"))["@metadata"]["beat"] == "ccf-agent"
    assert orjson.loads(beats_event(b'{"a":{"@metadata":1}}'))["a"] == {"@metadata": 1}


def test_beats_event_merges_existing_metadata() -> None:
    out = orjson.loads(beats_event(b'{"m":1,"@metadata":{"pipeline":"p","beat":"mine"}}'))
    assert out == {"m": 1, "@metadata": {"beat": "mine", "type": "_doc", "version": "0.1.0", "pipeline": "p"}}
    for bad in (b"[1,2]", b'"s"', b"", b"{", b'{"@metadata":3}'):
        with pytest.raises(ValueError):
            beats_event(bad)


def test_window_sizer() -> None:
    w = WindowSizer()
    sizes = [w.size]
    while w.size < 2048:
        w.on_success(w.size)
        sizes.append(w.size)
    assert sizes[:6] == [10, 15, 23, 35, 53, 80] and sizes[-1] == 2048
    w.on_success(2048)
    assert w.size == 2048
    w.on_success(5)  # a batch smaller than the window proves nothing: no growth
    assert w.size == 2048
    w.on_error()
    assert w.size == 1024
    for _ in range(20):
        w.on_error()
    assert w.size == 1
    w.on_success(1)
    assert w.size == 2  # ceil(1.5): never stuck at 1
    assert WindowSizer(initial=50, maximum=20).size == 20


# ---------------------------------------------------------------------------- fake peer


async def _with_fake_peer(script: bytes, events: list[bytes], ack_timeout: float = 0.5) -> LumberjackError:
    """A peer that reads the batch, writes `script` and then keeps the connection open."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while len(decode_frames(buf)[0]) < len(events) + 1:  # W + every J
            chunk = await reader.read(65536)
            if not chunk:
                return
            buf += chunk
        writer.write(script)
        await writer.drain()
        await asyncio.sleep(ack_timeout * 4)
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    conn = LumberjackConnection(compression_level=1, timeout=ack_timeout)
    await conn.connect("127.0.0.1", port)
    try:
        await conn.send_batch(events)
    except LumberjackError as e:
        assert not conn.connected
        return e
    finally:
        srv.close()
    raise AssertionError("send_batch should have failed")


def test_ack_beyond_batch_is_protocol_error() -> None:
    err = asyncio.run(_with_fake_peer(encode_ack(0) + encode_ack(2) + encode_ack(9), [b"{}"] * 5))
    assert isinstance(err, LumberjackProtocolError) and err.acked == 2


def test_garbage_instead_of_ack() -> None:
    err = asyncio.run(_with_fake_peer(encode_ack(3) + b"2W\x00\x00\x00\x01", [b"{}"] * 5))
    assert isinstance(err, LumberjackProtocolError) and err.acked == 3


def test_timeout_keeps_partial_ack() -> None:
    t0 = time.monotonic()
    err = asyncio.run(_with_fake_peer(encode_ack(4), [b"{}"] * 5, ack_timeout=0.3))
    assert isinstance(err, LumberjackTimeout) and err.acked == 4
    assert time.monotonic() - t0 < 2


def test_peer_closing_mid_batch() -> None:
    async def run() -> LumberjackError:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)  # part of the batch, then hang up
            writer.transport.abort()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        conn = LumberjackConnection(compression_level=0, timeout=5)
        await conn.connect("127.0.0.1", srv.sockets[0].getsockname()[1])
        try:
            await conn.send_batch([b'{"pad":"' + b"x" * 1000 + b'"}'] * 5000)
        except LumberjackError as e:
            return e
        finally:
            srv.close()
        raise AssertionError("send_batch should have failed")

    err = asyncio.run(run())
    assert isinstance(err, LumberjackConnectionLost) and err.acked == 0


def test_not_connected_and_empty_batch() -> None:
    async def run() -> None:
        conn = LumberjackConnection()
        assert await conn.send_batch([]) == 0
        with pytest.raises(LumberjackConnectionLost):
            await conn.send_batch([b"{}"])
        with pytest.raises(LumberjackConnectError):
            await conn.connect("127.0.0.1", 1, timeout=2)

    asyncio.run(run())


# ---------------------------------------------------------------------------- go-lumber


@pytest.fixture(scope="session")
def lumber_binary() -> Path:
    if shutil.which("go") is None and not lumber.BINARY.exists():
        pytest.skip("Go toolchain needed to build tests/lumber")
    return lumber.build()


@pytest.fixture
def lumber_server(lumber_binary: Path) -> Iterator[lumber.LumberServer]:
    srv = lumber.start(keepalive=0.3)
    yield srv
    srv.stop()


def make_events(n: int, start: int = 0) -> list[bytes]:
    return [
        beats_event(
            orjson.dumps({"@timestamp": "2026-11-27T04:35:03.123Z", "seq": i, "message": f"line {i}"})
        )
        for i in range(start, start + n)
    ]


def seqs(srv: lumber.LumberServer) -> list[int]:
    return [e["event"]["seq"] for e in srv.events()]


@pytest.mark.parametrize("level", [0, 3])
def test_5000_events_complete_in_order_once(lumber_server: lumber.LumberServer, level: int) -> None:
    events = make_events(5000)

    async def run() -> int:
        window = WindowSizer()
        async with LumberjackConnection(compression_level=level, timeout=10) as conn:
            await conn.connect("127.0.0.1", lumber_server.port)
            sent = batches = 0
            while sent < len(events):
                batch = events[sent : sent + window.size]
                assert await conn.send_batch(batch) == len(batch)
                window.on_success(len(batch))
                sent += len(batch)
                batches += 1
            return batches

    batches = asyncio.run(run())
    got = lumber_server.events()
    assert [e["event"]["seq"] for e in got] == list(range(5000))
    assert {e["conn"] for e in got} == {1}
    assert max(e["batch"] for e in got) == batches
    assert got[0]["event"] == orjson.loads(events[0])  # @metadata and @timestamp intact


def test_stall_then_ack_waits_without_error(lumber_server: lumber.LumberServer) -> None:
    """The server holds the batch for 2.5 s; the client timeout is 1 s, so the batch only
    survives because go-lumber's keepalive ACK 0 (every 0.3 s) restarts the timeout."""
    events = make_events(300)

    async def run() -> tuple[float, int]:
        async with LumberjackConnection(compression_level=3, timeout=1.0) as conn:
            await conn.connect("127.0.0.1", lumber_server.port)
            await conn.send_batch(events[:100])
            lumber_server.set_mode("stall")
            release = asyncio.create_task(
                asyncio.to_thread(lambda: (time.sleep(2.5), lumber_server.set_mode("ack")))
            )
            t0 = time.monotonic()
            await conn.send_batch(events[100:200])
            waited = time.monotonic() - t0
            await release
            await conn.send_batch(events[200:])
            return waited, conn.progress_acks

    waited, keepalives = asyncio.run(run())
    assert waited >= 2.4
    assert keepalives >= 4
    assert seqs(lumber_server) == list(range(300))


def test_stall_past_timeout_without_keepalive(lumber_binary: Path) -> None:
    with lumber.start(mode="stall", keepalive=0) as srv:  # keepalive 0 disables go-lumber's ACK 0

        async def run() -> LumberjackError:
            async with LumberjackConnection(timeout=0.5) as conn:
                await conn.connect("127.0.0.1", srv.port)
                with pytest.raises(LumberjackTimeout) as err:
                    await conn.send_batch(make_events(10))
                return err.value

        assert asyncio.run(run()).acked == 0
        assert len(srv.events()) == 10  # received, just never acknowledged


async def ship_with_faults(
    srv: lumber.LumberServer, events: list[bytes], faults: dict[int, str], batch: int
) -> list[tuple[int, int]]:
    """Send events in batches; before batch k set the server to faults[k]. On failure reconnect
    and resend events[acked:] of that batch. Returns (batch start + acked, batch end) for every
    failure: the unacknowledged ranges, the only places duplicates may come from."""
    unacked: list[tuple[int, int]] = []
    conn = LumberjackConnection(compression_level=3, timeout=5)
    await conn.connect("127.0.0.1", srv.port)
    for k, start in enumerate(range(0, len(events), batch)):
        end = min(start + batch, len(events))
        pending = start
        if k in faults:
            srv.set_mode(faults[k])
        while pending < end:
            try:
                await conn.send_batch(events[pending:end])
                pending = end
            except LumberjackConnectionLost as e:
                unacked.append((pending + e.acked, end))
                pending += e.acked
                srv.set_mode("ack")
                await conn.connect("127.0.0.1", srv.port)
    await conn.close()
    return unacked


def test_drop_mid_batch_resend_rest(lumber_server: lumber.LumberServer) -> None:
    events = make_events(1000)
    faults = {2: "drop-after 37", 4: "partial 40", 6: "drop-after 0", 7: "partial 99", 8: "drop-after 500"}
    unacked = asyncio.run(ship_with_faults(lumber_server, events, faults, batch=100))

    assert [(a % 100, b) for a, b in unacked] == [(0, 300), (40, 500), (0, 700), (99, 800), (0, 900)]
    counts = Counter(seqs(lumber_server))
    assert set(counts) == set(range(1000))  # every event at least once
    dups = {s: c - 1 for s, c in counts.items() if c > 1}
    # duplicates only inside unacknowledged ranges, at most once more per failure covering them
    for s, extra in dups.items():
        assert extra <= sum(a <= s < b for a, b in unacked)
    # drop-after N re-delivers exactly the N events it emitted; partial N (acked) none
    assert sum(dups.values()) == 37 + 0 + 0 + 100
    assert sum(dups.values()) <= sum(b - a for a, b in unacked)
    assert {e["conn"] for e in lumber_server.events()} == set(range(1, 7))


# ---------------------------------------------------------------------------- TLS


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server cert for localhost/127.0.0.1 and a client cert."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI needed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ccf test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)  # fmt: skip
    for name, ext in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    return d


def _client_ctx(pki: Path, client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(pki / "client.pem", pki / "client.key")
    return ctx


async def _tls_send(port: int, ctx: ssl.SSLContext, hostname: str | None, n: int = 50) -> None:
    async with LumberjackConnection(timeout=5) as conn:
        await conn.connect("127.0.0.1", port, ctx, server_hostname=hostname, timeout=5)
        await conn.send_batch(make_events(n))


def test_tls_server_cert(lumber_binary: Path, pki: Path) -> None:
    tls = {"cert": pki / "server.pem", "key": pki / "server.key"}
    with lumber.start(tls=tls) as srv:
        asyncio.run(_tls_send(srv.port, _client_ctx(pki), "localhost"))
        asyncio.run(_tls_send(srv.port, _client_ctx(pki), None))  # checks "127.0.0.1" (IP SAN)
        assert seqs(srv) == list(range(50)) * 2

        with pytest.raises(LumberjackConnectError) as err:
            asyncio.run(_tls_send(srv.port, _client_ctx(pki), "ingest.example.org"))
        cause = err.value.__cause__
        assert isinstance(cause, ssl.SSLCertVerificationError)
        assert cause.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH

        with pytest.raises(LumberjackConnectError) as err:  # system CAs do not trust ours
            asyncio.run(_tls_send(srv.port, ssl.create_default_context(), "localhost"))
        assert isinstance(err.value.__cause__, ssl.SSLCertVerificationError)
        assert len(srv.events()) == 100


def test_tls_client_cert_required(lumber_binary: Path, pki: Path) -> None:
    tls = {
        "cert": pki / "server.pem",
        "key": pki / "server.key",
        "ca": pki / "ca.pem",
        "require_client_cert": True,
    }
    with lumber.start(tls=tls) as srv:
        asyncio.run(_tls_send(srv.port, _client_ctx(pki, client_cert=True), "localhost"))
        assert len(srv.events()) == 50
        # TLS 1.3: the client's handshake finishes before the server checks the client cert,
        # so the rejection may surface on connect or on the first batch.
        with pytest.raises(LumberjackError) as err:
            asyncio.run(_tls_send(srv.port, _client_ctx(pki), "localhost"))
        assert err.value.acked == 0
        assert len(srv.events()) == 50
