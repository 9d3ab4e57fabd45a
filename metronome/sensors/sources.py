"""Transport: byte sources (UDP datagrams, newline-delimited streams).  Protocol of every source:
``open()``; ``read(timeout_s) -> list of bytes | Reading | Reject``; ``close()``; attribute ``done``.
What a message means is :mod:`.protocol`'s business, not theirs.
"""

from __future__ import annotations

import io
import os
import select
import socket
import sys
import time

from ..errors import SensorError
from .protocol import DEFAULT_HOST, DEFAULT_PORT, MAX_MESSAGE_BYTES, Reject, RejectReason
from .urls import _is_loopback

class UdpSource:
    """One datagram per message.  ``read`` waits with ``select`` (so ``stop`` never hangs) and drains at most
    ``max_batch`` datagrams per call (bounded work between status updates, even in a flood)."""

    done = False

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, max_batch: int = 512,
                 rcvbuf_bytes: int = 1 << 20, listen_any: bool = False):
        self.host, self.port = host, port
        self.listen_any = listen_any
        self.max_batch = max_batch
        self.rcvbuf_bytes = rcvbuf_bytes
        self.sock: socket.socket | None = None

    def open(self) -> None:
        # Enforced here too, not only when parsing the URL: a listener reachable from the network is opt-in.
        if not self.listen_any and not _is_loopback(self.host):
            raise SensorError(f"--sensor udp://{self.host}:{self.port}: refusing to listen on a non-loopback "
                              "address without --listen-any")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # A bigger kernel buffer rides out bursts while the thread is descheduled (capped by rmem_max).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_bytes)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise SensorError(f"--sensor udp://{self.host}:{self.port}: cannot bind: {exc.strerror or exc}") from None
        sock.setblocking(False)
        self.sock = sock

    @property
    def address(self) -> tuple:
        return self.sock.getsockname()[:2] if self.sock is not None else (self.host, self.port)

    def read(self, timeout_s: float) -> list:
        sock = self.sock
        if sock is None:
            time.sleep(timeout_s)
            return []
        ready, _, _ = select.select([sock], [], [], timeout_s)
        out = []
        if not ready:
            return out
        for _ in range(self.max_batch):
            try:
                # One byte more than the limit: a datagram that fills it is oversize (the rest is cut by the kernel).
                out.append(sock.recv(MAX_MESSAGE_BYTES + 1))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP-induced errors on some platforms: skip, keep listening
                break
        return out

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class LineSplitter:
    """Newline-delimited messages from chunks of a byte stream, memory bounded: a line longer than ``max_bytes``
    is dropped *while it streams in* and reported once as an OVERSIZE :class:`Reject`; blank lines are ignored."""

    def __init__(self, max_bytes: int, oversize_detail: str):
        self.max_bytes = max_bytes
        self.oversize_detail = oversize_detail
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def split(self, chunk: bytes) -> list:
        """The complete lines in ``chunk`` (stripped bytes) and Rejects for over-long ones; the rest is kept."""
        out = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start:nl]
            if self._discarding:
                if nl >= 0:
                    self._discarding = False
            else:
                self._buf += piece
                if len(self._buf) > self.max_bytes:
                    out.append(Reject(RejectReason.OVERSIZE, self.oversize_detail))
                    self._buf.clear()
                    self._discarding = nl < 0
                elif nl >= 0:
                    line = bytes(self._buf).strip()
                    self._buf.clear()
                    if line:
                        out.append(line)
            if nl < 0:
                return out
            start = nl + 1


class StreamSource:
    """Newline-delimited messages from a byte stream (stdin for ``--sensor -``).

    Reads with ``select`` + ``os.read`` when the stream has a file descriptor, so ``stop`` never waits on a
    blocked ``readline``.  A line longer than the message limit is dropped *while it streams in* (memory stays
    bounded) and reported as one OVERSIZE reject.  Blank lines are ignored.  At EOF ``done`` becomes True.
    """

    def __init__(self, stream=None, *, chunk_bytes: int = 65536):
        self.stream = stream
        self.chunk_bytes = chunk_bytes
        self.done = False
        self._fd: int | None = None
        # +2: a CRLF may still be stripped from a line of exactly the limit
        self._lines = LineSplitter(MAX_MESSAGE_BYTES + 2, f"line longer than {MAX_MESSAGE_BYTES} bytes")

    def open(self) -> None:
        if self.stream is None:
            self.stream = sys.stdin.buffer
        try:
            self._fd = self.stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            self._fd = None

    def read(self, timeout_s: float) -> list:
        if self.done:
            time.sleep(timeout_s)
            return []
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], timeout_s)
            if not ready:
                return []
            chunk = os.read(self._fd, self.chunk_bytes)
        else:
            reader = getattr(self.stream, "read1", None) or self.stream.read
            chunk = reader(self.chunk_bytes)
        if not chunk:
            self.done = True
            chunk = b"\n"  # flush a last line without newline
        return self._split(chunk)

    def _split(self, chunk: bytes) -> list:
        return self._lines.split(chunk)

    def close(self) -> None:
        pass  # stdin is not ours to close
