"""A raw HTTP/2 (h2c, prior knowledge) client connection for the hostile-client suite.

It writes exactly the frames an attack asks for, including ones a well-behaved client library
refuses to send (streams past the server's limit, endless CONTINUATION, unanswered PINGs), and
parses what the server sends back with `hyperframe` and `hpack`: its SETTINGS, responses,
RST_STREAM, GOAWAY, and whether it closed the connection. Frames are built by hand (a 9-byte
header and a payload) so that a flood costs the attacker little CPU.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9,
)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

# SETTINGS identifiers.
MAX_CONCURRENT_STREAMS = SettingsFrame.MAX_CONCURRENT_STREAMS
INITIAL_WINDOW_SIZE = SettingsFrame.INITIAL_WINDOW_SIZE

# Error codes.
CANCEL = 0x8
REFUSED_STREAM = 0x7


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One serialized frame."""
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream_id) + payload


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """An HPACK block that never touches the dynamic table (every field "never indexed"), so
    the same bytes stay valid for every stream of a connection and can be sent unchanged."""
    encoder = hpack.Encoder()
    return encoder.encode([(name, value, True) for name, value in headers], huffman=False)


def grpc_headers(authority: str, path: str, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *(extra or []),
    ]


def grpc_message(payload: bytes) -> bytes:
    """A length-prefixed, uncompressed gRPC message."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


@dataclass
class Stream:
    """What the server sent on one stream."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    data: int = 0
    ended: bool = False
    reset: int | None = None
    reset_at: float | None = None

    def status(self) -> str | None:
        return dict(self.headers).get(":status")

    def grpc_status(self) -> str | None:
        return dict(self.trailers).get("grpc-status") or dict(self.headers).get("grpc-status")


class H2Conn:
    """One client connection. Not thread-safe: each attack thread owns its connections."""

    def __init__(
        self,
        port: int,
        settings: dict[int, int] | None = None,
        answer_pings: bool = True,
        auto_window: bool = True,
        send_timeout: float = 5.0,
        rcvbuf: int | None = None,
    ) -> None:
        self.port = port
        self.authority = f"127.0.0.1:{port}"
        self.answer_pings = answer_pings
        self.auto_window = auto_window
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # A small receive buffer: what the server sends and this client does not read
            # backs up into the server after a few KiB instead of megabytes.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        try:
            self.sock.connect(("127.0.0.1", port))
        except OSError:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(send_timeout)
        self.opened_at = time.monotonic()
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.server_settings: dict[int, int] = {}
        self.got_settings = False
        self.goaway: GoAwayFrame | None = None
        self.goaway_at: float | None = None
        self.closed_at: float | None = None  # EOF or reset from the server
        self.close_reason = ""
        self.stalled = False  # a write could not finish within send_timeout
        self.streams: dict[int, Stream] = {}
        self.pings_acked = 0
        self.settings_acked = 0
        self.pings_received = 0
        self.frames_received = 0
        self.next_stream_id = 1
        self._header_stream: int | None = None
        self._header_fragments = bytearray()
        self._header_end_stream = False
        self.send(PREFACE + frame(SETTINGS, 0, 0, b"".join(
            struct.pack(">HI", key, value) for key, value in (settings or {}).items()
        )))

    # -- state ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def server_ended(self) -> bool:
        """The server closed the connection or said GOAWAY."""
        return self.closed_at is not None or self.goaway is not None

    def ended_at(self) -> float | None:
        times = [t for t in (self.goaway_at, self.closed_at) if t is not None]
        return min(times) if times else None

    def max_streams(self) -> int | None:
        return self.server_settings.get(MAX_CONCURRENT_STREAMS)

    def new_stream_id(self) -> int:
        sid = self.next_stream_id
        self.next_stream_id += 2
        return sid

    # -- writing ----------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Writes `data`; False if the connection is closed or the write stalled."""
        if self.closed or self.stalled:
            return False
        try:
            self.sock.sendall(data)
            return True
        except socket.timeout:
            self.stalled = True
            return False
        except OSError as e:
            self._mark_closed(f"write: {e.strerror or e}")
            return False

    def request(
        self,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        end_stream: bool = True,
    ) -> int:
        """Sends one request (HEADERS split into CONTINUATION frames past 16 KiB, then one DATA
        frame if `body` is given); returns its stream id."""
        sid = self.new_stream_id()
        block = header_block(headers)
        chunks = [block[i : i + 16384] for i in range(0, len(block), 16384)] or [b""]
        flags_end = END_STREAM if end_stream and body is None else 0
        out = []
        for i, chunk in enumerate(chunks):
            last = END_HEADERS if i == len(chunks) - 1 else 0
            if i == 0:
                out.append(frame(HEADERS, flags_end | last, sid, chunk))
            else:
                out.append(frame(CONTINUATION, last, sid, chunk))
        if body is not None:
            out.append(frame(DATA, END_STREAM if end_stream else 0, sid, body))
        self.streams[sid] = Stream()
        self.send(b"".join(out))
        return sid

    # -- reading ----------------------------------------------------------------------------

    def pump(self, timeout: float = 0.0) -> None:
        """Reads whatever the server sent (waiting up to `timeout` for the first bytes) and
        handles it: SETTINGS are acknowledged, PINGs answered if `answer_pings`, received DATA
        credited back if `auto_window`."""
        if self.closed:
            return
        wait = timeout
        while True:
            try:
                ready, _, _ = select.select([self.sock], [], [], wait)
            except (OSError, ValueError):
                self._mark_closed("select failed")
                return
            if not ready:
                return
            try:
                data = self.sock.recv(1 << 18)
            except socket.timeout:
                return
            except OSError as e:
                self._mark_closed(f"read: {e.strerror or e}")
                return
            if not data:
                self._mark_closed("EOF")
                return
            self.buf += data
            self._parse()
            wait = 0.0

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Pumps until `condition()` holds or the connection ends or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return condition()
            self.pump(min(left, 0.1))
        return True

    def wait_settings(self, timeout: float = 3.0) -> bool:
        return self.wait(lambda: self.got_settings, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if self.closed_at is None:
            self.closed_at = time.monotonic()
            self.close_reason = self.close_reason or "closed by client"

    def _mark_closed(self, reason: str) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
            self.close_reason = reason

    def _parse(self) -> None:
        view = memoryview(self.buf)
        offset = 0
        while len(view) - offset >= 9:
            length = int.from_bytes(view[offset : offset + 3], "big")
            if len(view) - offset < 9 + length:
                break
            try:
                f, _ = Frame.parse_frame_header(view[offset : offset + 9])
                f.parse_body(view[offset + 9 : offset + 9 + length])
            except Exception:  # an unknown or malformed frame: skip it
                offset += 9 + length
                continue
            offset += 9 + length
            self.frames_received += 1
            self._handle(f)
        view.release()
        del self.buf[:offset]

    def _handle(self, f: Frame) -> None:
        now = time.monotonic()
        if isinstance(f, SettingsFrame):
            if "ACK" in f.flags:
                self.settings_acked += 1
            else:
                self.server_settings.update(f.settings)
                self.got_settings = True
                self.send(frame(SETTINGS, ACK, 0))
        elif isinstance(f, PingFrame):
            if "ACK" in f.flags:
                self.pings_acked += 1
            else:
                self.pings_received += 1
                if self.answer_pings:
                    self.send(frame(PING, ACK, 0, bytes(f.opaque_data)))
        elif isinstance(f, GoAwayFrame):
            if self.goaway is None:
                self.goaway, self.goaway_at = f, now
        elif isinstance(f, RstStreamFrame):
            stream = self.streams.setdefault(f.stream_id, Stream())
            stream.reset, stream.reset_at = f.error_code, now
        elif isinstance(f, HeadersFrame):
            self._header_stream = f.stream_id
            self._header_fragments = bytearray(f.data)
            self._header_end_stream = "END_STREAM" in f.flags
            if "END_HEADERS" in f.flags:
                self._finish_headers()
        elif isinstance(f, ContinuationFrame):
            self._header_fragments += f.data
            if "END_HEADERS" in f.flags:
                self._finish_headers()
        elif isinstance(f, DataFrame):
            stream = self.streams.setdefault(f.stream_id, Stream())
            stream.data += len(f.data)
            if "END_STREAM" in f.flags:
                stream.ended = True
            if self.auto_window and f.flow_controlled_length > 0:
                increment = struct.pack(">I", f.flow_controlled_length)
                self.send(frame(WINDOW_UPDATE, 0, 0, increment) + frame(WINDOW_UPDATE, 0, f.stream_id, increment))

    def _finish_headers(self) -> None:
        sid = self._header_stream
        if sid is None:
            return
        try:
            fields = [(str(k), str(v)) for k, v in self.decoder.decode(bytes(self._header_fragments), raw=False)]
        except Exception:
            fields = [("x-undecodable", "")]
        stream = self.streams.setdefault(sid, Stream())
        if stream.headers:
            stream.trailers = fields
        else:
            stream.headers = fields
        if self._header_end_stream:
            stream.ended = True
        self._header_stream = None
        self._header_fragments = bytearray()

