"""Transport: an HTTP listener for phone apps that push positions (``--sensor http://127.0.0.1:PORT``).

What a request means is :mod:`.http_protocol`'s business; this module only serves sockets, polices them and hands
the parsed items to the feed thread.

Shape
-----
* A stdlib :class:`http.server.HTTPServer` (single-threaded: one request at a time, so a flood cannot make
  threads) runs in its own daemon thread; the feed thread's ``read(timeout_s)`` only drains a bounded queue, so
  a slow client never delays the status line, dropout detection or ``stop()``.  Each connection has a socket
  timeout (:data:`REQUEST_TIMEOUT_S`): a client that stops sending mid-request holds the listener at most that
  long.
* Loopback only unless ``listen_any`` (enforced here in ``open()`` as well as in the URL parser, like
  :class:`~.sources.UdpSource`).
* Limits, each answered with its status code and counted in :attr:`HttpPushSource.counts`: body over
  :data:`MAX_BODY_BYTES` -> 413 (refused from ``Content-Length`` before reading, the connection closed); no
  ``Content-Length`` on a POST with a body, or chunked encoding -> 411; more than the token bucket allows ->
  429 (refused before parsing); a body that means nothing -> 400 (its :class:`~.protocol.Reject` is queued, so the
  feed's counters show it as ``rejected_*``).  No exception ever leaves the server thread: ``handle_error`` counts
  it instead of printing a traceback.
"""

from __future__ import annotations

import collections
import http.server
import socket
import threading
import time

from ..errors import SensorError
from .http_protocol import parse_push
from .protocol import Reject, RejectReason
from .ratelimit import TokenBucket
from .urls import _is_loopback

#: Sensor Logger's largest batches (every sensor on, 1 s) are tens of KiB; a position push is < 1 KiB.
MAX_BODY_BYTES = 64 * 1024
#: Longest a client may take over one request (headers and body).  Phones on loopback/LAN answer in milliseconds.
REQUEST_TIMEOUT_S = 2.0
#: Requests per second (sustained, burst): apps push at most a few per second (Sensor Logger's shortest batch
#: interval is 100 ms... GPSLogger logs at most once a second); 20/s with a burst of 40 is far above that.
RATE_HZ = 20.0
BURST = 40.0
#: Items waiting for the feed thread; the feed drains every poll (50 ms), so this is ~minutes of real traffic.
MAX_QUEUE = 4096

COUNT_NAMES = ("requests", "ok", "fixes", "barometers", "ignored_entries", "bad_body", "oversize",
               "length_required", "rate_limited", "method_not_allowed", "queue_full", "server_errors")


class _Server(http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, addr, handler, owner: "HttpPushSource", family):
        self.address_family = family
        self.owner = owner
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):  # never a traceback on stderr; count it
        self.owner._count("server_errors")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "downbeat"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive bookkeeping, nothing to linger
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format, *args):  # the default writes every request to stderr
        pass

    def _reply(self, code: int, text: str) -> None:
        body = (text + "\n").encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True

    def do_GET(self):
        self._handle(with_body=False)

    def do_POST(self):
        self._handle(with_body=True)

    def do_PUT(self):
        self._handle(with_body=True)

    def _not_allowed(self):
        self.server.owner._count("requests")
        self.server.owner._count("method_not_allowed")
        self._reply(405, "method not allowed")

    do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

    def _handle(self, with_body: bool) -> None:
        owner: HttpPushSource = self.server.owner
        owner._count("requests")
        try:
            if not owner.bucket.take(owner.clock()):
                owner._count("rate_limited")
                self._reply(429, "too many requests")
                return
            path, _, query = self.path.partition("?")
            body = b""
            if with_body:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    owner._count("length_required")
                    self._reply(411, "chunked bodies are not accepted; send Content-Length")
                    return
                cl = self.headers.get("Content-Length")
                if cl is None:
                    n = 0
                else:
                    try:
                        n = int(cl)
                    except ValueError:
                        n = -1
                    if n < 0:
                        owner._count("bad_body")
                        owner._put(Reject(RejectReason.BAD_BODY, f"Content-Length {cl[:20]!r} is not a size"))
                        self._reply(400, "bad Content-Length")
                        return
                if n > MAX_BODY_BYTES:
                    owner._count("oversize")
                    owner._put(Reject(RejectReason.OVERSIZE, f"body of {n} bytes > {MAX_BODY_BYTES}"))
                    self._reply(413, f"body larger than {MAX_BODY_BYTES} bytes")
                    return
                body = self.rfile.read(n) if n else b""
                if len(body) < n:  # the client hung up or timed out mid-body
                    owner._count("bad_body")
                    owner._put(Reject(RejectReason.BAD_BODY, f"body cut short: {len(body)} of {n} bytes"))
                    self._reply(400, "body cut short")
                    return
            res = parse_push(self.command, query, self.headers.get("Content-Type") or "", body)
            owner._accept(res)
            if res.ok:
                owner._count("ok")
                self._reply(200, f"ok {len(res.fixes)} fixes")
            else:
                owner._count("bad_body")
                r = res.rejects[0]
                self._reply(400, f"{r.reason.name.lower()}: {r.detail}")
        except (socket.timeout, TimeoutError):
            owner._count("bad_body")
            owner._put(Reject(RejectReason.BAD_BODY, f"request took longer than {REQUEST_TIMEOUT_S:g} s"))
            self.close_connection = True
        except OSError:
            self.close_connection = True


class HttpPushSource:
    """Positions pushed by phone apps, as :class:`~.position.Fix` items (and Rejects for bad requests).

    Source protocol: ``open()`` binds in the caller's thread (a port in use or a non-loopback address without
    ``listen_any`` is a :class:`SensorError` before any audio starts) and starts the server thread;
    ``read(timeout_s)`` drains the queue (waiting at most ``timeout_s``); ``close()`` stops the server within
    ~``poll_s``.  ``counts`` (name -> int, :data:`COUNT_NAMES`) says what happened to every request;
    ``last_barometer`` holds the latest Sensor Logger barometer sample.
    """

    done = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, listen_any: bool = False, clock=time.monotonic,
                 rate_hz: float = RATE_HZ, burst: float = BURST, poll_s: float = 0.05):
        self.host, self.port = host, int(port)
        self.listen_any = listen_any
        self.clock = clock
        self.bucket = TokenBucket(rate_hz, burst)
        self.poll_s = float(poll_s)
        self.counts = dict.fromkeys(COUNT_NAMES, 0)
        self.last_barometer = None
        self.last_error: str | None = None
        self._q: collections.deque = collections.deque()
        self._ready = threading.Event()
        self._lock = threading.Lock()  # counts are written by the server thread, read by others: cheap and rare
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple:
        return self._server.server_address[:2] if self._server is not None else (self.host, self.port)

    def open(self) -> None:
        if not self.listen_any and not _is_loopback(self.host):
            raise SensorError(f"--sensor http://{self.host}:{self.port}: refusing to listen on a non-loopback "
                              "address without --listen-any")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._server = _Server((self.host, self.port), _Handler, self, family)
        except OSError as exc:
            raise SensorError(f"--sensor http://{self.host}:{self.port}: cannot bind: "
                              f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._serve, name="downbeat-http", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.serve_forever(poll_interval=self.poll_s)
        except Exception as exc:  # never out of the thread; the feed shows it
            self.last_error = f"http server stopped: {type(exc).__name__}: {exc}"[:200]

    # -- called from the server thread -------------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def _put(self, item) -> None:
        if len(self._q) >= MAX_QUEUE:
            self._count("queue_full")
            return
        self._q.append(item)
        self._ready.set()

    def _accept(self, res) -> None:
        self._count("fixes", len(res.fixes))
        self._count("barometers", len(res.barometers))
        self._count("ignored_entries", res.ignored)
        if res.barometers:
            self.last_barometer = res.barometers[-1]
        for r in res.rejects:
            self._put(r)
        for f in res.fixes:
            self._put(f)

    # -- called from the feed thread ---------------------------------------------------------------------------
    def read(self, timeout_s: float) -> list:
        if not self._q:
            self._ready.wait(timeout_s)
        self._ready.clear()
        out = []
        q = self._q
        while q and len(out) < 512:  # bounded work per call, like UdpSource.max_batch
            out.append(q.popleft())
        if q:
            self._ready.set()
        return out

    def counts_snapshot(self) -> dict:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()  # returns once serve_forever has seen the flag (<= poll_s + the request in progress)
            srv.server_close()
        t = self._thread
        if t is not None:
            t.join(REQUEST_TIMEOUT_S + 1.0)
