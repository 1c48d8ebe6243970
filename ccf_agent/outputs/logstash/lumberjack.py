"""Lumberjack v2 (Beats protocol) client for Logstash's beats input and other Beats receivers.

Wire format (integers are big-endian uint32, every frame starts with version byte ``'2'``):

* ``2W <count>``                 window: number of events in the batch that follows
* ``2J <seq> <len> <json>``      one event; seq counts 1..count within the batch
* ``2C <len> <zlib stream>``     wraps the batch's J frames (absent at compression level 0)
* ``2A <seq>``                   server -> client, cumulative: ACK 6 covers events 1..6

A connection carries one batch at a time: ``send_batch`` writes W + (C of) J frames, then reads
ACKs until ``ack == len(events)``. ACKs below that (go-lumber's keepalive ACK 0 every few seconds,
Logstash's partial ACKs) mean "still working" and restart the timeout. Concurrent callers are
serialised by a lock; run several connections for parallelism.

After any error the connection is closed (a half-read ACK or half-written batch leaves the
stream unusable); the exception's ``acked`` says how many leading events the server confirmed,
so the caller reconnects and resends ``events[acked:]``.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache
from types import TracebackType
from typing import Literal

import orjson

__all__ = [
    "ACK_SIZE",
    "LumberjackConnectError",
    "LumberjackConnection",
    "LumberjackConnectionLost",
    "LumberjackError",
    "LumberjackProtocolError",
    "LumberjackTimeout",
    "WindowSizer",
    "beats_event",
    "decode_ack",
    "decode_frames",
    "encode_ack",
    "encode_batch",
    "encode_compressed",
    "encode_json_frame",
    "encode_window",
]

_WINDOW = struct.Struct(">2sI")
_JSON_HDR = struct.Struct(">2sII")
_COMPRESSED_HDR = struct.Struct(">2sI")
_ACK = struct.Struct(">2sI")
ACK_SIZE = _ACK.size  # 6

# Batches whose J frames exceed this are compressed in a worker thread: zlib releases the GIL,
# and a 2048-event batch takes milliseconds to deflate, which would stall every other task.
_OFFLOAD_BYTES = 256 * 1024

Frame = tuple[Literal["W", "A"], int] | tuple[Literal["J"], int, bytes]


# ---------------------------------------------------------------------------- frames (pure)


def encode_window(count: int) -> bytes:
    return _WINDOW.pack(b"2W", count)


def encode_json_frame(seq: int, payload: bytes) -> bytes:
    return _JSON_HDR.pack(b"2J", seq, len(payload)) + payload


def encode_compressed(frames: bytes, level: int) -> bytes:
    body = zlib.compress(frames, level)
    return _COMPRESSED_HDR.pack(b"2C", len(body)) + body


def encode_ack(seq: int) -> bytes:
    return _ACK.pack(b"2A", seq)


def _json_frames(events: Sequence[bytes]) -> bytes:
    pack = _JSON_HDR.pack
    parts: list[bytes] = []
    for seq, ev in enumerate(events, 1):
        parts.append(pack(b"2J", seq, len(ev)))
        parts.append(ev)
    return b"".join(parts)


def encode_batch(events: Sequence[bytes], compression_level: int = 3) -> bytes:
    """W frame + J frames numbered 1..n, wrapped in one C frame unless compression_level is 0."""
    frames = _json_frames(events)
    if compression_level:
        frames = encode_compressed(frames, compression_level)
    return encode_window(len(events)) + frames


def decode_ack(buf: bytes) -> int:
    seq: int
    version, seq = _ACK.unpack(buf)
    if version != b"2A":
        raise LumberjackProtocolError(f"expected ACK frame, got {bytes(buf)!r}")
    return seq


def decode_frames(buf: bytes) -> tuple[list[Frame], int]:
    """Decode complete frames from buf; returns (frames, bytes consumed).

    C frames are inflated in place, so the result holds only W, J and A frames. Stops before an
    incomplete trailing frame; raises LumberjackProtocolError on anything malformed. Used by
    tests and fake servers; the client itself only ever reads ACKs.
    """
    frames: list[Frame] = []
    pos = 0
    view = memoryview(buf)
    while len(buf) - pos >= 2:
        kind = bytes(view[pos : pos + 2])
        if kind in (b"2W", b"2A"):
            if len(buf) - pos < 6:
                break
            (n,) = struct.unpack_from(">I", buf, pos + 2)
            frames.append(("W" if kind == b"2W" else "A", n))
            pos += 6
        elif kind == b"2J":
            if len(buf) - pos < 10:
                break
            seq, size = struct.unpack_from(">II", buf, pos + 2)
            if len(buf) - pos < 10 + size:
                break
            frames.append(("J", seq, bytes(view[pos + 10 : pos + 10 + size])))
            pos += 10 + size
        elif kind == b"2C":
            if len(buf) - pos < 6:
                break
            (size,) = struct.unpack_from(">I", buf, pos + 2)
            if len(buf) - pos < 6 + size:
                break
            try:
                inner = zlib.decompress(view[pos + 6 : pos + 6 + size])
            except zlib.error as e:
                raise LumberjackProtocolError(f"bad zlib payload: {e}") from e
            inner_frames, used = decode_frames(inner)
            if used != len(inner):
                raise LumberjackProtocolError("compressed frame ends inside a frame")
            frames.extend(inner_frames)
            pos += 6 + size
        else:
            raise LumberjackProtocolError(f"unknown frame {kind!r} at offset {pos}")
    return frames, pos


# ---------------------------------------------------------------------------- events


@lru_cache(maxsize=16)
def _metadata(beat: str, version: str) -> bytes:
    return b'"@metadata":' + orjson.dumps({"beat": beat, "type": "_doc", "version": version})


def beats_event(doc: bytes, beat: str = "ccf-agent", version: str = "0.1.0") -> bytes:
    """Add Beats' ``@metadata`` ({beat, type: "_doc", version}) to a serialised JSON object.

    The common case splices the field in before the closing brace, leaving the rest of the
    document untouched (no parse, no re-serialisation). If ``"@metadata"`` already appears in
    the bytes, the document is parsed and merged instead; keys the document already has win.
    """
    end = len(doc.rstrip())
    start = len(doc) - len(doc.lstrip())
    if end - start < 2 or doc[start : start + 1] != b"{" or doc[end - 1 : end] != b"}":
        raise ValueError("beats_event needs a JSON object")
    if b'"@metadata"' not in doc:
        empty = not doc[start + 1 : end - 1].strip()
        return doc[: end - 1] + (b"" if empty else b",") + _metadata(beat, version) + doc[end - 1 :]
    obj = orjson.loads(doc)
    meta = obj.get("@metadata", {})
    if not isinstance(meta, dict):
        raise ValueError("@metadata must be a JSON object")
    obj["@metadata"] = {"beat": beat, "type": "_doc", "version": version, **meta}
    return orjson.dumps(obj)


# ---------------------------------------------------------------------------- window


class WindowSizer:
    """Batch size with Beats' slow start: begin small, x1.5 per fully ACKed batch, halve on error.

    Like Beats (libbeat/outputs/logstash/window.go) it only grows after a batch that filled the
    window: a success with fewer events says nothing about whether a bigger batch would pass.
    """

    def __init__(self, initial: int = 10, maximum: int = 2048) -> None:
        if initial < 1 or maximum < 1:
            raise ValueError("window sizes must be >= 1")
        self.maximum = maximum
        self.size = min(initial, maximum)

    def on_success(self, batch_len: int) -> None:
        if batch_len >= self.size:
            self.size = min(self.maximum, math.ceil(self.size * 1.5))

    def on_error(self) -> None:
        self.size = max(1, self.size // 2)


# ---------------------------------------------------------------------------- connection


class LumberjackError(Exception):
    """Base error; ``acked`` is the highest cumulative ACK seen for the failed batch."""

    def __init__(self, message: str, acked: int = 0) -> None:
        super().__init__(message)
        self.acked = acked


class LumberjackConnectError(LumberjackError):
    """Connecting or the TLS handshake failed (the cause is chained as __cause__)."""


class LumberjackTimeout(LumberjackError):
    """No ACK (not even a keepalive) and no write progress within the timeout."""


class LumberjackConnectionLost(LumberjackError):
    """The peer closed or reset the connection before the batch was fully acknowledged."""


class LumberjackProtocolError(LumberjackError):
    """The peer sent something that is not a valid ACK for the batch in flight."""


class LumberjackConnection:
    def __init__(self, compression_level: int = 3, timeout: float = 30.0) -> None:
        if not 0 <= compression_level <= 9:
            raise ValueError("compression_level must be 0..9")
        self.compression_level = compression_level
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        # ACK frames below the batch size (keepalives, partial ACKs) seen so far: a metric for
        # how often the receiver is slower than the client.
        self.progress_acks = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds connect + TLS handshake together
    ) -> None:
        """Open the TCP (and TLS) connection. server_hostname overrides the name checked in the
        server's certificate (default: host)."""
        await self.close()
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=(server_hostname or host) if ssl_context else None,
                )
        except (OSError, TimeoutError) as e:  # ssl.SSLError is an OSError
            raise LumberjackConnectError(f"connect to {host}:{port} failed: {e!r}") from e

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(1):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # already reset, or a TLS peer that never answers close_notify

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._writer = self._reader = None

    async def send_batch(self, events: Sequence[bytes]) -> int:
        """Send one batch and wait until the server acknowledges all of it; returns len(events).

        Raises a LumberjackError subclass carrying ``acked`` (events[:acked] are confirmed) and
        leaves the connection closed.
        """
        n = len(events)
        if n == 0:
            return 0
        async with self._lock:
            if self._writer is None or self._reader is None:
                raise LumberjackConnectionLost("not connected", 0)
            reader, writer = self._reader, self._writer
            payload = await self._encode(events)
            acked = 0
            try:
                writer.write(payload)
                async with asyncio.timeout(self.timeout):
                    await writer.drain()
                while acked < n:
                    # A fresh timeout per frame: every ACK (keepalive 0 included) proves the
                    # server is alive and still working on the batch.
                    async with asyncio.timeout(self.timeout):
                        frame = await reader.readexactly(ACK_SIZE)
                    if frame[:2] != b"2A":
                        raise LumberjackProtocolError(f"expected ACK frame, got {frame!r}", acked)
                    seq = decode_ack(frame)
                    if seq > n:
                        raise LumberjackProtocolError(f"ACK {seq} for a batch of {n}", acked)
                    if seq < n:
                        self.progress_acks += 1
                    acked = max(acked, seq)
            except LumberjackError:
                self._abort()
                raise
            except TimeoutError as e:
                self._abort()
                raise LumberjackTimeout(f"no ACK within {self.timeout}s ({acked}/{n} acked)", acked) from e
            except (OSError, asyncio.IncompleteReadError) as e:  # ConnectionError, ssl.SSLError
                self._abort()
                raise LumberjackConnectionLost(f"connection lost ({acked}/{n} acked): {e!r}", acked) from e
            except BaseException:  # cancelled mid-batch: the stream position is unknown
                self._abort()
                raise
            return n

    async def _encode(self, events: Sequence[bytes]) -> bytes:
        if self.compression_level == 0:
            return encode_batch(events, 0)
        frames = _json_frames(events)
        if len(frames) > _OFFLOAD_BYTES:
            body = await asyncio.to_thread(encode_compressed, frames, self.compression_level)
        else:
            body = encode_compressed(frames, self.compression_level)
        return encode_window(len(events)) + body

    async def __aenter__(self) -> LumberjackConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
