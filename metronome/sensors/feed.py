"""The feed thread: source -> :class:`~.core.FeedCore` -> ``ctl[CT_TARGET_BPM]``, and the source factory."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from .. import _layout as K
from ..errors import SensorError
from ..tempo import TempoSettings
from .core import FeedCore, FeedState
from .counters import S_SOURCE_ERRORS, stats_dict
from .filter import Fallback, FilterParams
from .replay import ReplaySource
from .sources import StreamSource, UdpSource
from .urls import SensorSpec, parse_sensor_url

def make_source(spec: SensorSpec, clock: Callable[[], float] = time.monotonic, *, stdin=None):
    """The source object for a spec (BLE sources import bleak only when opened)."""
    if spec.kind == "udp":
        return UdpSource(spec.host, spec.port, listen_any=spec.listen_any)
    if spec.kind == "stdin":
        return StreamSource(stdin)
    if spec.kind == "replay":
        return ReplaySource(spec.path, spec.speed, clock)
    if spec.kind == "gpsd":
        from .gpsd import GpsdSource
        return GpsdSource(spec.host, spec.port)
    if spec.kind == "http":
        from .http import HttpPushSource
        return HttpPushSource(spec.host, spec.port, listen_any=spec.listen_any, clock=clock)
    if spec.kind == "ftms":
        from .ble import FtmsSource
        return FtmsSource(spec.address)
    if spec.kind == "rsc":
        from .ble import RscSource
        return RscSource(spec.address, cadence_factor=spec.cadence_factor)
    raise SensorError(f"--sensor {spec.url!r}: unknown kind {spec.kind!r}")


# --------------------------------------------------------------------------------------------------------------
# The feed thread
# --------------------------------------------------------------------------------------------------------------
class SensorFeed:
    """Background thread: source -> :class:`FeedCore` -> ``ctl[CT_TARGET_BPM]``.

    Parameters
    ----------
    spec : SensorSpec or str
        Where to read (a string goes through :func:`parse_sensor_url`).
    ctl : float64 ndarray
        The engine's control array.  Only ``ctl[CT_TARGET_BPM]`` is written (a single float64 store per update);
        ``CT_LIVE``, ``CT_SLEW`` and the bpm bounds stay the engine's.
    settings : TempoSettings
    fallback : callable ``(now_s) -> bpm`` or ``(now_s, distance_m) -> bpm``, optional
        Tempo when no live grade is available (see :data:`Fallback`); default: the base cadence.  ``now_s`` is
        ``clock()``: a profile-following fallback maps it to session time itself, e.g.
        ``t0 = clock(); fallback = lambda now_s: tempo_map.bpm_at((now_s - t0) * samplerate)``.
    clock : callable
        Monotonic seconds; the same clock is passed to ``fallback``.
    source : object, optional
        Override the source (tests); default :func:`make_source`.
    poll_s : float
        Longest wait in the source per loop: bounds the latency of ``stop()`` and of dropout detection.
    on_position : callable ``(item, now_s)``, optional
        Called in the sensor thread with every accepted position (:class:`~.position.Fix`) and distance-only
        :class:`Reading` (see :class:`FeedCore`), e.g. ``CourseFollower.push``.

    ``start()`` opens the source in the caller's thread, so a bad bind/port raises :class:`SensorError` there,
    and writes an initial target before returning.  ``stop()`` joins within ~``poll_s``.
    """

    def __init__(self, spec, ctl: np.ndarray, settings: TempoSettings, fallback: Fallback | None = None,
                 clock: Callable[[], float] = time.monotonic, *, source=None, rate_hz: float = 50.0,
                 burst: float = 50.0, params: FilterParams = FilterParams(), poll_s: float = 0.05,
                 on_position=None):
        if isinstance(spec, str):
            spec = parse_sensor_url(spec)
        if not (isinstance(ctl, np.ndarray) and ctl.dtype == np.float64 and ctl.ndim == 1 and ctl.size >= K.CT_N):
            raise SensorError(f"ctl: expected a float64 array of {K.CT_N} control slots")
        self.spec = spec
        self.ctl = ctl
        self.clock = clock
        # Arrival stamps are meaningful to the audio callback only on its own clock (CLOCK_MONOTONIC).
        self._stamps = clock is time.monotonic
        self.poll_s = float(poll_s)
        self.core = FeedCore(settings, fallback, rate_hz=rate_hz, burst=burst, params=params, on_position=on_position)
        self.source = source if source is not None else make_source(spec, clock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._state: FeedState = self.core.snapshot(clock())

    # -- public ----------------------------------------------------------------------------------------------
    @property
    def stats(self) -> np.ndarray:
        """The live ``int64[S_N]`` counters (see :data:`STAT_NAMES`); read-only by convention."""
        return self.core.stats.counts

    def stats_dict(self) -> dict[str, int]:
        return stats_dict(self.core.stats.counts)

    def summary(self) -> dict:
        """End-of-session report: the URL, the counters and the last state (JSON-friendly)."""
        st = self.state()
        out = {"url": self.spec.url, "kind": self.spec.kind, "counters": self.stats_dict(),
               "last_state": {k: v for k, v in st.as_dict().items() if k != "last_good_s"}}
        snap = getattr(self.source, "counts_snapshot", None)
        if snap is not None:  # what the transport did with every request (HTTP: bad bodies, oversize, floods)
            out["transport"] = snap()
        return out

    @property
    def address(self):
        """``(host, port)`` actually bound for UDP and HTTP (useful with port 0), else None."""
        return getattr(self.source, "address", None) if self.spec.kind in ("udp", "http") else None

    def state(self) -> FeedState:
        """Latest snapshot, with ``since_last_good_s`` recomputed for *now*."""
        snap = self._state
        if snap.last_good_s is None:
            return snap
        return replace(snap, since_last_good_s=max(0.0, self.clock() - snap.last_good_s))

    def start(self) -> "SensorFeed":
        if self._thread is not None:
            raise SensorError("sensor feed already started")
        self.source.open()
        self._publish(self.clock())
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="downbeat-sensor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop the thread and close the source; True if the thread is gone."""
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout_s)
        try:
            self.source.close()
        except Exception:
            pass
        return t is None or not t.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- thread ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        core = self.core
        while not self._stop.is_set():
            try:
                items = self.source.read(self.poll_s)
            except Exception as exc:  # a flaky source degrades to the fallback; it never kills the session
                core.stats.counts[S_SOURCE_ERRORS] += 1
                self._error = f"{type(exc).__name__}: {exc}"
                items = []
                self._stop.wait(self.poll_s)
            if items:
                now = self.clock()
                for it in items:
                    core.handle(it, now)
            self._publish(self.clock())

    def _publish(self, now_s: float) -> None:
        target = self.core.target_bpm(now_s)
        self.ctl[K.CT_TARGET_BPM] = target  # the one store the audio kernel sees
        if self._stamps and self.core.last_reading_s is not None:
            # When the reading behind this target arrived (CLOCK_MONOTONIC ns): the C callback notes the block
            # that first reflects it, which gives the sensor-to-sound figure (metronome.latency.witness).
            self.ctl[K.CT_READING_NS] = float(round(self.core.last_reading_s * 1e9))
        err = self._error or getattr(self.source, "last_error", None)
        addr = self.address
        self._state = self.core.snapshot(
            now_s, target, source_done=bool(getattr(self.source, "done", False)), error=err,
            address=None if addr is None else f"{addr[0]}:{addr[1]}")
