"""Transport: positions from gpsd, the standard Linux GPS daemon (``--sensor gpsd://HOST:PORT``).

Protocol (gpsd_json(5)): connect over TCP (default 127.0.0.1:2947), send ``?WATCH={"enable":true,"json":true}``,
then read one JSON object per line; the TPV reports are the positions.  What a line means is
:func:`.position.parse_tpv`'s business; this module only moves bytes.

Why not a client library
------------------------
The issue asks for a maintained client if it fits the real-time rules.  Neither does:

* ``gpsdclient`` (PyPI, MIT, 1.3.2): ``GPSDClient(timeout=...)`` passes the timeout to
  ``socket.create_connection`` and then iterates ``sock.makefile("r")``.  The first quiet interval longer than the
  timeout raises out of the generator, which is then finished, and the file object refuses further reads
  ("cannot read from timed out object"): the only way on is a new connection and a new WATCH, so the feed thread
  could not wait at most ``poll_s`` and carry on (``stop()`` within ~poll time is a rule of every source).  Without a
  timeout it blocks in ``readline`` for as long as gpsd is silent (no fix, no device).  Its ``readline`` has no
  length bound either, so a peer that never sends a newline grows memory without limit.
* Debian's ``python3-gps`` (``gps.gps`` with ``waiting(timeout)``) is not on PyPI (the PyPI ``gps``/``gpsd`` forks
  are unmaintained copies), so it cannot be a dependency of a pip-installed package, and a venv does not see it.

So this is ~60 lines of socket code: ``select`` with the caller's timeout (``stop()`` is never blocked), one bounded
``recv`` per call, lines capped at :data:`.position.MAX_GPSD_LINE_BYTES` (a longer one is dropped while it streams
in and counted once as OVERSIZE), and a reconnect attempt every ``reconnect_s`` when gpsd goes away (restart,
USB receiver unplugged), each attempt bounded by the poll time.
"""

from __future__ import annotations

import select
import socket
import time

from ..errors import SensorError
from .position import MAX_GPSD_LINE_BYTES, parse_tpv
from .sources import LineSplitter

GPSD_DEFAULT_HOST = "127.0.0.1"
GPSD_DEFAULT_PORT = 2947  # IANA-registered gpsd port
WATCH_COMMAND = b'?WATCH={"enable":true,"json":true}\n'


class GpsdSource:
    """gpsd TPV reports as :class:`~.position.Fix` items (or :class:`~.protocol.Reject` for bad/no-fix reports).

    Source protocol: ``open()`` (connects in the caller's thread: gpsd not running is a :class:`SensorError`
    before any audio starts), ``read(timeout_s) -> list``, ``close()``, ``done`` (always False: gpsd may come
    back), ``last_error`` (the latest connection problem, for the status line).
    """

    done = False

    def __init__(self, host: str = GPSD_DEFAULT_HOST, port: int = GPSD_DEFAULT_PORT, *,
                 connect_timeout_s: float = 2.0, reconnect_s: float = 2.0, chunk_bytes: int = 65536):
        self.host, self.port = host, int(port)
        self.connect_timeout_s = float(connect_timeout_s)
        self.reconnect_s = float(reconnect_s)
        self.chunk_bytes = int(chunk_bytes)
        self.sock: socket.socket | None = None
        self.last_error: str | None = None
        self.reconnects = 0
        self._lines = LineSplitter(MAX_GPSD_LINE_BYTES, f"gpsd line longer than {MAX_GPSD_LINE_BYTES} bytes")
        self._next_try_s = 0.0
        self._opened = False

    @property
    def url(self) -> str:
        return f"gpsd://{self.host}:{self.port}"

    def _connect(self, timeout_s: float) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        try:
            sock.sendall(WATCH_COMMAND)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self._lines.reset()

    def open(self) -> None:
        try:
            self._connect(self.connect_timeout_s)
        except OSError as exc:
            raise SensorError(f"--sensor {self.url}: cannot connect to gpsd: {exc.strerror or exc}") from None
        self._opened = True

    def _drop(self, why: str) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.last_error = f"gpsd: {why}"
        self._next_try_s = time.monotonic() + self.reconnect_s

    def read(self, timeout_s: float) -> list:
        if self.sock is None:
            if not self._opened or time.monotonic() < self._next_try_s:
                time.sleep(timeout_s)
                return []
            try:
                self._connect(max(0.01, timeout_s))
                self.reconnects += 1
                self.last_error = None
            except OSError as exc:
                self._drop(f"reconnect failed: {exc.strerror or exc}")
                return []
        ready, _, _ = select.select([self.sock], [], [], timeout_s)
        if not ready:
            return []
        try:
            chunk = self.sock.recv(self.chunk_bytes)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            self._drop(f"connection lost: {exc.strerror or exc}")
            return []
        if not chunk:
            self._drop("connection closed by gpsd")
            return []
        return self._split(chunk)

    def _split(self, chunk: bytes) -> list:
        out = []
        for item in self._lines.split(chunk):
            if isinstance(item, bytes):
                item = parse_tpv(item)  # meaning lives in position.py; None: a report that is not a TPV
            if item is not None:
                out.append(item)
        return out

    def close(self) -> None:
        self._opened = False
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
