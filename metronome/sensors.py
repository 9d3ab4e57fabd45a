"""Live sensor feeds: parse, police, filter, and drive the live tempo slot.

Pipeline (one background thread per feed, nothing shared with the audio thread but one float64 slot)::

    source (UDP | stdin | replay | BLE FTMS | BLE RSC)
      -> token bucket (flood control, before any parsing)
      -> parse_message (JSON -> Reading | Reject; pure, never raises)
      -> reorder check (sender timestamps must not go backwards)
      -> GradeFilter (moving average + hysteresis + dropout hold/fallback -> target bpm)
      -> ctl[CT_TARGET_BPM]   (single float64 store; the numba kernel slews toward it once per beat)

Why this shape
--------------
* The audio kernel only *reads* ``ctl``; the sensor thread is the single writer of ``ctl[CT_TARGET_BPM]``.  An
  aligned float64 store is atomic on every platform numba targets, so no lock ever stands between the network and
  the PortAudio callback (pedalboard's rule: the audio thread never waits).
* Everything that decides anything is pure and clock-injected (:class:`TokenBucket`, :func:`parse_message`,
  :class:`GradeFilter`, :class:`FeedCore`), so the tests drive it with a fake clock instead of sleeping.
* A flood (10k datagrams/s) is refused by the token bucket *before* JSON parsing, each read drains a bounded batch
  and the work per packet is bounded (1 KiB cap), so a flood costs little CPU and never starves the status line or
  ``stop()``.
* Tempo never jumps: the kernel limits the change to 0.4 %/beat; here the hysteresis (>= 1 grade point held
  >= 15 s or >= 60 m, DESIGN.md) keeps grade noise from reaching the kernel at all, and every target is clamped to
  the settings' cadence bounds.

Counters live in one preallocated ``int64`` array (:class:`SensorStats`), written by the sensor thread only and
polled by the main thread.  Names are in :data:`STAT_NAMES`.
"""

from __future__ import annotations

import collections
import enum
import io
import ipaddress
import json
import math
import os
import re
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from . import _kernels as K
from .errors import SensorError
from .tempo import TempoSettings, target_cadence

# --------------------------------------------------------------------------------------------------------------
# Protocol limits (DESIGN.md "Sensor protocol")
# --------------------------------------------------------------------------------------------------------------
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 47800
MAX_MESSAGE_BYTES = 1024
MAX_GRADE_PCT = 45.0
MAX_SPEED_MPS = 15.0  # ~2:30 min/km sprint is well under this; more is a unit error (km/h sent as m/s)
MAX_CADENCE_SPM = 300.0
MIN_ELEVATION_M = -1000.0  # Dead Sea shore is -430 m
MAX_ELEVATION_M = 10000.0  # Everest is 8849 m
MAX_DISTANCE_M = 1.0e7  # 10 000 km


class RejectReason(enum.IntEnum):
    """Why a message was dropped.  The value indexes the per-reason counter (``S_REJECT_BASE + reason``)."""

    OVERSIZE = 0
    NOT_UTF8 = 1
    NOT_JSON = 2
    NOT_OBJECT = 3
    MISSING_GRADE = 4
    NOT_NUMBER = 5  # includes bool: JSON true is not a grade
    NOT_FINITE = 6  # NaN / Infinity literals, 1e999, integers too large for a float
    GRADE_RANGE = 7
    SPEED_RANGE = 8
    CADENCE_RANGE = 9
    DISTANCE_RANGE = 10
    ELEVATION_RANGE = 11
    DEVICE = 12  # BLE notification that does not decode (truncated, garbage)


@dataclass(frozen=True, slots=True)
class Reject:
    """A dropped message: the reason (counted) and a one-line detail naming the field/value (for logs)."""

    reason: RejectReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted sensor message, SI units.

    ``grade_pct`` is ``None`` only for devices that cannot know the slope (an RSC foot pod); the JSON protocol
    requires it.  ``t_s`` is the *sender's* clock (optional), used only to detect reordering.
    """

    grade_pct: float | None
    t_s: float | None = None
    speed_mps: float | None = None
    cadence_spm: float | None = None
    distance_m: float | None = None
    elevation_m: float | None = None


def _number(value):
    """JSON value -> float, or a RejectReason.  ``bool`` is an ``int`` subclass in Python; refuse it explicitly."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return RejectReason.NOT_NUMBER
    try:
        x = float(value)
    except OverflowError:  # an integer literal with hundreds of digits
        return RejectReason.NOT_FINITE
    if not math.isfinite(x):
        return RejectReason.NOT_FINITE
    return x


def make_reading(*, grade_pct, t_s=None, speed_mps=None, cadence_spm=None, distance_m=None,
                 elevation_m=None) -> Reading | Reject:
    """Validate field values (JSON-decoded or from a BLE decoder) into a :class:`Reading` or a :class:`Reject`.

    ``None`` means absent.  Ranges: ``|grade| <= 45 %``, speed ``0..15 m/s``, cadence ``0..300 /min``,
    distance ``0..1e7 m``, elevation ``-1000..10000 m``; every number finite and not a bool.
    """
    out = {}
    for name, value in (("grade_pct", grade_pct), ("t", t_s), ("speed_mps", speed_mps),
                        ("cadence_spm", cadence_spm), ("distance_m", distance_m), ("elevation_m", elevation_m)):
        if value is None:
            out[name] = None
            continue
        x = _number(value)
        if isinstance(x, RejectReason):
            return Reject(x, f"{name}: {value!r:.40} is not a finite number")
        out[name] = x
    g = out["grade_pct"]
    if g is not None and abs(g) > MAX_GRADE_PCT:
        return Reject(RejectReason.GRADE_RANGE, f"grade_pct: {g!r} is outside -{MAX_GRADE_PCT:g}..{MAX_GRADE_PCT:g}")
    v = out["speed_mps"]
    if v is not None and not (0.0 <= v <= MAX_SPEED_MPS):
        return Reject(RejectReason.SPEED_RANGE, f"speed_mps: {v!r} is outside 0..{MAX_SPEED_MPS:g} m/s")
    c = out["cadence_spm"]
    if c is not None and not (0.0 <= c <= MAX_CADENCE_SPM):
        return Reject(RejectReason.CADENCE_RANGE, f"cadence_spm: {c!r} is outside 0..{MAX_CADENCE_SPM:g}")
    d = out["distance_m"]
    if d is not None and not (0.0 <= d <= MAX_DISTANCE_M):
        return Reject(RejectReason.DISTANCE_RANGE, f"distance_m: {d!r} is outside 0..{MAX_DISTANCE_M:g} m")
    e = out["elevation_m"]
    if e is not None and not (MIN_ELEVATION_M <= e <= MAX_ELEVATION_M):
        return Reject(RejectReason.ELEVATION_RANGE,
                      f"elevation_m: {e!r} is outside {MIN_ELEVATION_M:g}..{MAX_ELEVATION_M:g} m")
    return Reading(grade_pct=g, t_s=out["t"], speed_mps=v, cadence_spm=c, distance_m=d, elevation_m=e)


class _NonFinite(ValueError):
    pass


def _refuse_constant(name):
    # Python's json accepts NaN, Infinity and -Infinity although JSON does not; refuse them at the source.
    raise _NonFinite(name)


def parse_message(data: bytes) -> Reading | Reject:
    """Parse one datagram/line of the sensor protocol.  Pure; never raises, whatever ``data`` holds.

    ``{"t"?: s, "grade_pct": float, "speed_mps"?, "cadence_spm"?, "distance_m"?, "elevation_m"?}``; unknown keys
    are ignored and ``null`` means absent.  See :class:`RejectReason` for everything that is refused.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    try:
        n = len(data)
    except TypeError:
        return Reject(RejectReason.NOT_JSON, f"expected bytes, got {type(data).__name__}")
    if n > MAX_MESSAGE_BYTES:
        return Reject(RejectReason.OVERSIZE, f"{n} bytes > {MAX_MESSAGE_BYTES}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject(RejectReason.NOT_UTF8, f"byte {exc.start} is not UTF-8")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        return Reject(RejectReason.NOT_FINITE, f"{exc.args[0]} is not a finite number")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; 1 KiB of '[' nests deeper than the C scanner allows
        return Reject(RejectReason.NOT_JSON, str(exc).splitlines()[0][:80] if str(exc) else "not JSON")
    if not isinstance(obj, dict):
        return Reject(RejectReason.NOT_OBJECT, f"top level is a JSON {type(obj).__name__}, not an object")
    if obj.get("grade_pct") is None:
        return Reject(RejectReason.MISSING_GRADE, "grade_pct is missing")
    return make_reading(grade_pct=obj["grade_pct"], t_s=obj.get("t"), speed_mps=obj.get("speed_mps"),
                        cadence_spm=obj.get("cadence_spm"), distance_m=obj.get("distance_m"),
                        elevation_m=obj.get("elevation_m"))


# --------------------------------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------------------------------
S_RECEIVED = 0  # every item read from the source
S_ACCEPTED = 1  # passed every check and reached the filter
S_REORDERED = 2  # sender timestamp older than the last accepted one (dropped)
S_RATE_LIMITED = 3  # refused by the token bucket (dropped unparsed)
S_CLOCK_RESETS = 4  # sender clock jumped back by more than reorder_reset_s: accepted as a restart
S_SOURCE_ERRORS = 5  # exceptions from the source (socket errors, BLE disconnects); the feed keeps going
S_REJECT_BASE = 8
S_N = S_REJECT_BASE + len(RejectReason)

STAT_NAMES: tuple[str, ...] = tuple(
    {S_RECEIVED: "received", S_ACCEPTED: "accepted", S_REORDERED: "reordered", S_RATE_LIMITED: "rate_limited",
     S_CLOCK_RESETS: "clock_resets", S_SOURCE_ERRORS: "source_errors"}.get(i, f"reserved_{i}")
    for i in range(S_REJECT_BASE)) + tuple(f"rejected_{r.name.lower()}" for r in RejectReason)


class SensorStats:
    """Preallocated ``int64[S_N]`` counters.  Single writer (the sensor thread); readers just index it.

    Invariant: ``received == accepted + reordered + rate_limited + sum(rejected_*)``.
    """

    __slots__ = ("counts",)

    def __init__(self):
        self.counts = np.zeros(S_N, dtype=np.int64)

    def reject(self, reason: RejectReason) -> None:
        self.counts[S_REJECT_BASE + int(reason)] += 1

    @property
    def rejected(self) -> int:
        return int(self.counts[S_REJECT_BASE:].sum())

    def as_dict(self) -> dict[str, int]:
        return stats_dict(self.counts)


def stats_dict(counts: np.ndarray) -> dict[str, int]:
    """Name -> value for a counters array (reserved slots omitted)."""
    return {name: int(counts[i]) for i, name in enumerate(STAT_NAMES) if not name.startswith("reserved_")}


# --------------------------------------------------------------------------------------------------------------
# Flood control
# --------------------------------------------------------------------------------------------------------------
class TokenBucket:
    """Classic token bucket on an injected clock: at most ``burst`` at once, ``rate_hz`` sustained.

    50 msgs/s is an order of magnitude above any real sensor (treadmills notify at 1-4 Hz) and far below what
    would cost the machine anything.
    """

    __slots__ = ("rate_hz", "burst", "tokens", "last_s")

    def __init__(self, rate_hz: float = 50.0, burst: float = 50.0):
        if not (rate_hz > 0 and burst >= 1):
            raise SensorError(f"rate limit: rate {rate_hz!r}/s, burst {burst!r} must be > 0 and >= 1")
        self.rate_hz = float(rate_hz)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last_s: float | None = None

    def take(self, now_s: float) -> bool:
        if self.last_s is not None and now_s > self.last_s:
            self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_hz)
        if self.last_s is None or now_s > self.last_s:
            self.last_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# --------------------------------------------------------------------------------------------------------------
# Grade filter
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterParams:
    """Live-filter constants (the hysteresis itself comes from :class:`~metronome.tempo.TempoSettings`).

    Attributes
    ----------
    smoothing_s : float
        Moving-average window for the grade.  A boxcar (not an exponential) so that a clean step of exactly the
        hysteresis size is seen in full after ``smoothing_s`` instead of approaching it forever.
    hold_last_s : float
        After the last grade-bearing reading, keep its tempo this long; then use the fallback.
    max_integrate_gap_s : float
        Distance is integrated from speed only across gaps up to this long (a dropout must not add phantom
        metres).
    """

    smoothing_s: float = 3.0
    hold_last_s: float = 30.0
    max_integrate_gap_s: float = 5.0

    def __post_init__(self):
        for name in ("smoothing_s", "hold_last_s", "max_integrate_gap_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SensorError(f"{name}: {v!r} must be a positive number of seconds")


#: ``fallback(now_s[, distance_m]) -> bpm``: the tempo to use when no live grade is available (before the first
#: packet, after a dropout longer than ``hold_last_s``, or always for a grade-less foot pod).  ``now_s`` is the
#: feed's ``clock()`` (not session time: subtract your own start time); ``distance_m``, passed only to callables
#: that accept two arguments, is the live cumulative distance if the sensor reports/implies one, else ``None``.
Fallback = Callable[[float, "float | None"], float]

MODES = ("waiting", "live", "hold", "fallback")


def _accepts_two_args(fn) -> bool:
    """True if ``fn(now_s, distance_m)`` is a valid call; one-argument fallbacks get only ``now_s``."""
    if fn is None:
        return False
    import inspect
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(0.0, None)
        return True
    except TypeError:
        return False


class GradeFilter:
    """Smoothing + hysteresis + dropout handling -> target cadence.  Deterministic: every call takes ``now_s``.

    * The grade is a moving average over ``smoothing_s``.
    * The *level* the tempo follows changes only when the smoothed grade stays on one side of the level by at
      least ``settings.hysteresis_pct`` for ``settings.hold_s`` seconds **or** ``settings.hold_m`` metres
      (whichever comes first; metres only if the sensor reports distance or speed).  The new level is the mean of
      the raw grades received during that stretch (the smoothed values would drag the transition in).
    * The first reading, and the first after a dropout, sets the level at once: there is nothing older to be
      hysteretic about.
    * Dropout: the last level's tempo is held for ``hold_last_s``; after that (and before any grade at all) the
      target is ``fallback(now_s, distance_m)``, or the base cadence without a fallback.
    * The result is always clamped to ``[settings.min_bpm, settings.max_bpm]``; a non-finite fallback value is
      replaced by the base cadence.
    """

    def __init__(self, settings: TempoSettings, fallback: Fallback | None = None,
                 params: FilterParams = FilterParams()):
        self.settings = settings
        self.fallback = fallback
        self._fallback_wants_distance = _accepts_two_args(fallback)
        self.params = params
        self._window: collections.deque = collections.deque(maxlen=1024)  # (t, grade) within smoothing_s
        self.smoothed_grade_pct: float | None = None
        self.level_grade_pct: float | None = None
        self.last_grade_pct: float | None = None
        self.last_good_s: float | None = None
        self.speed_mps: float | None = None
        self.cadence_spm: float | None = None
        self.distance_m: float | None = None
        self._has_distance = False
        self._last_push_s: float | None = None
        self._run = None  # [start_s, start_m, sign, sum_raw, n]

    # -- input ------------------------------------------------------------------------------------------------
    def push(self, reading: Reading, now_s: float) -> None:
        """Feed one accepted reading received at ``now_s`` (feed clock)."""
        self._update_motion(reading, now_s)
        g = reading.grade_pct
        if g is None:
            return
        p = self.params
        fresh = self.last_good_s is None or now_s - self.last_good_s > p.hold_last_s
        self.last_grade_pct = g
        self.last_good_s = now_s
        if fresh:
            self._window.clear()
            self._window.append((now_s, g))
            self.smoothed_grade_pct = self.level_grade_pct = g
            self._run = None
            return
        win = self._window
        win.append((now_s, g))
        while win and win[0][0] <= now_s - p.smoothing_s:
            win.popleft()
        self.smoothed_grade_pct = sum(x for _, x in win) / len(win)
        self._hysteresis(g, now_s)

    def _update_motion(self, r: Reading, now_s: float) -> None:
        if r.cadence_spm is not None:
            self.cadence_spm = r.cadence_spm
        prev_speed = self.speed_mps
        if r.speed_mps is not None:
            self.speed_mps = r.speed_mps
        if r.distance_m is not None:
            self.distance_m = r.distance_m  # the sender's cumulative distance wins over our integral
            self._has_distance = True
        elif r.speed_mps is not None:
            if self.distance_m is None:
                self.distance_m = 0.0
            elif self._last_push_s is not None and prev_speed is not None:
                dt = now_s - self._last_push_s
                if 0.0 < dt <= self.params.max_integrate_gap_s:
                    self.distance_m += 0.5 * (prev_speed + r.speed_mps) * dt
            self._has_distance = True
        self._last_push_s = now_s

    def _hysteresis(self, raw: float, now_s: float) -> None:
        s = self.settings
        diff = self.smoothed_grade_pct - self.level_grade_pct
        if abs(diff) < s.hysteresis_pct:
            self._run = None
            return
        sign = 1 if diff > 0 else -1
        dist = self.distance_m if self._has_distance else None
        run = self._run
        if run is None or run[2] != sign:
            self._run = run = [now_s, dist, sign, 0.0, 0]
        run[3] += raw
        run[4] += 1
        if run[1] is not None and dist is not None and dist < run[1]:
            run[1] = dist  # the sender reset its odometer: restart the distance leg of the hold
        held_s = now_s - run[0]
        held_m = (dist - run[1]) if (dist is not None and run[1] is not None) else -1.0
        if held_s >= s.hold_s or held_m >= s.hold_m:
            self.level_grade_pct = run[3] / run[4]
            self._run = None

    # -- output -----------------------------------------------------------------------------------------------
    def mode(self, now_s: float) -> str:
        """``waiting`` (nothing yet), ``live`` (grade <= 2 s old), ``hold`` (<= hold_last_s), ``fallback``.

        A sensor that sends data but never a grade (a foot pod) is in ``fallback`` from its first packet.
        """
        if self.last_good_s is None:
            return "waiting" if self._last_push_s is None else "fallback"
        age = now_s - self.last_good_s
        if age > self.params.hold_last_s:
            return "fallback"
        return "live" if age <= 2.0 else "hold"

    def target_bpm(self, now_s: float) -> float:
        s = self.settings
        m = self.mode(now_s)
        if m in ("live", "hold"):
            bpm = float(target_cadence(self.level_grade_pct, s))
        else:
            bpm = s.base_cadence_spm
            if self.fallback is not None:
                try:
                    if self._fallback_wants_distance:
                        fb = float(self.fallback(now_s, self.distance_m if self._has_distance else None))
                    else:
                        fb = float(self.fallback(now_s))
                except Exception:  # a broken fallback must not silence the metronome
                    fb = float("nan")
                if math.isfinite(fb):
                    bpm = fb
        return min(max(bpm, s.min_bpm), s.max_bpm)


# --------------------------------------------------------------------------------------------------------------
# Core: everything between the source and the control slot, minus threads and I/O
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeedState:
    """Immutable snapshot for the status line (swapped in whole by the sensor thread: never torn)."""

    mode: str  # waiting | live | hold | fallback
    target_bpm: float
    grade_pct: float | None  # last raw grade received
    level_grade_pct: float | None  # grade the tempo currently follows
    cadence_spm: float | None
    speed_mps: float | None
    distance_m: float | None
    since_last_good_s: float | None  # None before the first grade-bearing packet
    last_good_s: float | None = None
    source_done: bool = False
    error: str | None = None
    last_reject: str | None = None
    address: str | None = None

    def get(self, name: str, default=None):
        """Mapping-style access (``state.get("grade_pct")``) for status-line code."""
        return getattr(self, name, default)

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__} | {"status": self.status}

    @property
    def status(self) -> str:
        """Short human summary, e.g. ``live -6.0% (level -5.8%) 2.8 m/s 176 spm`` or ``fallback: no data 42 s``."""
        if self.mode == "waiting":
            txt = "waiting for data"
        elif self.mode == "fallback":
            txt = ("fallback: this sensor sends no grade" if self.since_last_good_s is None
                   else f"fallback: no grade for {self.since_last_good_s:.0f} s")
        else:
            txt = f"{self.mode} {self.grade_pct:+.1f}% (level {self.level_grade_pct:+.1f}%)"
            if self.mode == "hold":
                txt += f" {self.since_last_good_s:.0f} s old"
        if self.speed_mps is not None:
            txt += f" {self.speed_mps:.1f} m/s"
        if self.cadence_spm is not None:
            txt += f" {self.cadence_spm:.0f} spm"
        if self.source_done:
            txt += " [source ended]"
        if self.error:
            txt += f" [{self.error}]"
        return txt


class FeedCore:
    """Rate limit + parse + reorder + filter + counters, on an injected clock.  No threads, no I/O.

    ``handle(item, now_s)`` accepts raw bytes (parsed here), or a :class:`Reading`/:class:`Reject` already
    decoded by a BLE source.  A sender timestamp older than the last accepted one is dropped as reordered,
    unless it is older by more than ``reorder_reset_s``: that is a sender restart (its clock started again), and
    refusing it would silence the feed for good.
    """

    def __init__(self, settings: TempoSettings, fallback: Fallback | None = None, *, rate_hz: float = 50.0,
                 burst: float = 50.0, params: FilterParams = FilterParams(), reorder_reset_s: float = 10.0):
        self.stats = SensorStats()
        self.bucket = TokenBucket(rate_hz, burst)
        self.filter = GradeFilter(settings, fallback, params)
        self.reorder_reset_s = float(reorder_reset_s)
        self.last_t_s: float | None = None
        self.last_reject: Reject | None = None

    def handle(self, item, now_s: float) -> Reading | Reject | None:
        """Process one item; returns the accepted Reading, the Reject, or None (rate-limited / reordered).

        The token bucket comes first, so during a flood most items are counted as ``rate_limited`` whatever they
        contain: refusing them unparsed is the point.
        """
        c = self.stats.counts
        c[S_RECEIVED] += 1
        if not self.bucket.take(now_s):
            c[S_RATE_LIMITED] += 1
            return None
        r = item if isinstance(item, (Reading, Reject)) else parse_message(item)
        if isinstance(r, Reject):
            c[S_REJECT_BASE + int(r.reason)] += 1
            self.last_reject = r
            return r
        if r.t_s is not None:
            if self.last_t_s is not None and r.t_s < self.last_t_s:
                if self.last_t_s - r.t_s <= self.reorder_reset_s:
                    c[S_REORDERED] += 1
                    return None
                c[S_CLOCK_RESETS] += 1
            self.last_t_s = r.t_s
        c[S_ACCEPTED] += 1
        self.filter.push(r, now_s)
        return r

    def target_bpm(self, now_s: float) -> float:
        return self.filter.target_bpm(now_s)

    def snapshot(self, now_s: float, target_bpm: float | None = None, **extra) -> FeedState:
        f = self.filter
        return FeedState(
            mode=f.mode(now_s), target_bpm=f.target_bpm(now_s) if target_bpm is None else target_bpm, grade_pct=f.last_grade_pct,
            level_grade_pct=f.level_grade_pct, cadence_spm=f.cadence_spm, speed_mps=f.speed_mps,
            distance_m=f.distance_m, last_good_s=f.last_good_s,
            since_last_good_s=None if f.last_good_s is None else max(0.0, now_s - f.last_good_s),
            last_reject=None if self.last_reject is None else
            f"{self.last_reject.reason.name.lower()}: {self.last_reject.detail}", **extra)


# --------------------------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------------------------
SENSOR_KINDS = ("udp", "stdin", "replay", "ftms", "rsc")
_URL_HELP = "expected udp://HOST:PORT, -, replay:FILE[@SPEEDx], ftms:BLE_ADDR or rsc:BLE_ADDR"
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_UUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")  # macOS
_SPEED_RE = re.compile(r"^(?P<path>.+)@(?P<speed>[^@/\\]*[xX]|[0-9.eE+-]+)$")
MAX_REPLAY_SPEED = 1000.0


@dataclass(frozen=True)
class SensorSpec:
    """A validated ``--sensor`` URL.

    Attributes
    ----------
    kind : str
        One of :data:`SENSOR_KINDS`.
    url : str
        The URL as given (for messages).
    host, port : str, int
        UDP bind address (``port`` 0 = ephemeral, for tests).
    listen_any : bool
        A non-loopback bind was explicitly allowed.
    path, speed : Path, float
        Replay file and playback speed (times real time).
    address : str
        BLE MAC (or CoreBluetooth UUID on macOS).
    cadence_factor : float
        RSC cadence multiplier: 1 (spec: steps/min) or 2 (``?cadence=strides`` pods).
    """

    kind: str
    url: str
    host: str | None = None
    port: int | None = None
    listen_any: bool = False
    path: Path | None = None
    speed: float = 1.0
    address: str | None = None
    cadence_factor: float = 1.0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_sensor_url(url: str, *, listen_any: bool = False) -> SensorSpec:
    """Validate a ``--sensor`` URL.  Raises :class:`SensorError` (one line, naming the bad value).

    ``udp://HOST:PORT`` (defaults 127.0.0.1:47800; a non-loopback HOST needs ``listen_any=True``), ``-`` (stdin
    lines), ``replay:FILE[@SPEEDx]`` (the file must exist; SPEED in (0, 1000]), ``ftms:ADDR``,
    ``rsc:ADDR[?cadence=steps|strides]``.
    """
    if not isinstance(url, str) or not url.strip():
        raise SensorError(f"--sensor: {url!r} is empty; {_URL_HELP}")
    url = url.strip()
    if url == "-":
        return SensorSpec(kind="stdin", url=url)
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise SensorError(f"--sensor {url!r}: no scheme; {_URL_HELP}")
    if scheme == "udp":
        return _parse_udp(url, listen_any)
    if scheme == "replay":
        return _parse_replay(url, rest)
    if scheme in ("ftms", "rsc"):
        addr, _, query = rest.partition("?")
        addr = addr.strip()
        if not (_MAC_RE.match(addr) or _UUID_RE.match(addr)):
            raise SensorError(f"--sensor {url!r}: BLE address {addr!r} is not AA:BB:CC:DD:EE:FF (or a macOS UUID)")
        factor = 1.0
        if query:
            if scheme != "rsc":
                raise SensorError(f"--sensor {url!r}: ftms: takes no options, got {query!r}")
            opts = parse_qs(query, keep_blank_values=True)
            unknown = set(opts) - {"cadence"}
            if unknown:
                raise SensorError(f"--sensor {url!r}: unknown option {sorted(unknown)[0]!r} (known: cadence)")
            val = opts["cadence"][-1]
            if val not in ("steps", "strides"):
                raise SensorError(f"--sensor {url!r}: cadence={val!r} must be 'steps' or 'strides'")
            factor = 2.0 if val == "strides" else 1.0
        return SensorSpec(kind=scheme, url=url, address=addr.upper(), cadence_factor=factor)
    raise SensorError(f"--sensor {url!r}: unknown scheme {scheme!r}; {_URL_HELP}")


def _parse_udp(url: str, listen_any: bool) -> SensorSpec:
    parts = urlsplit(url)
    if not url.lower().startswith("udp://"):
        raise SensorError(f"--sensor {url!r}: write udp://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise SensorError(f"--sensor {url!r}: udp URLs take only HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        bad = parts.netloc.rpartition(":")[2]
        raise SensorError(f"--sensor {url!r}: port {bad!r} is not an integer in 0..65535") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise SensorError(f"--sensor {url!r}: port '' is not an integer in 0..65535")
        port = DEFAULT_PORT
    host = parts.hostname or DEFAULT_HOST
    if host.lower() == "localhost":
        host = DEFAULT_HOST
    if not _is_loopback(host) and not listen_any:
        raise SensorError(f"--sensor {url!r}: refusing to listen on {host!r}, which is not a loopback address; "
                          "other interfaces need the explicit listen-any flag")
    if not _is_loopback(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise SensorError(f"--sensor {url!r}: host {host!r} is not an IP address") from None
    return SensorSpec(kind="udp", url=url, host=host, port=int(port), listen_any=listen_any)


def _parse_replay(url: str, rest: str) -> SensorSpec:
    speed = 1.0
    path_s = rest
    m = _SPEED_RE.match(rest)
    if m and not Path(rest).exists():
        path_s = m.group("path")
        tok = m.group("speed")
        num = tok[:-1] if tok[-1:] in "xX" else tok
        try:
            speed = float(num)
        except ValueError:
            raise SensorError(f"--sensor {url!r}: replay speed {tok!r} is not a number like 4x") from None
        if not (math.isfinite(speed) and 0.0 < speed <= MAX_REPLAY_SPEED):
            raise SensorError(f"--sensor {url!r}: replay speed {tok!r} is outside (0, {MAX_REPLAY_SPEED:g}]x")
    if not path_s:
        raise SensorError(f"--sensor {url!r}: replay needs a file: replay:FILE[@SPEEDx]")
    path = Path(path_s).expanduser()
    if not path.is_file():
        raise SensorError(f"--sensor {url!r}: replay file {path_s!r} does not exist")
    return SensorSpec(kind="replay", url=url, path=path, speed=speed)


# --------------------------------------------------------------------------------------------------------------
# Sources.  Protocol: open(); read(timeout_s) -> list of bytes | Reading | Reject; close(); attribute `done`.
# --------------------------------------------------------------------------------------------------------------
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
        self._buf = bytearray()
        self._discarding = False

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
                if len(self._buf) > MAX_MESSAGE_BYTES + 2:  # +2: a CRLF may still be stripped
                    out.append(Reject(RejectReason.OVERSIZE, f"line longer than {MAX_MESSAGE_BYTES} bytes"))
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

    def close(self) -> None:
        pass  # stdin is not ours to close


def load_replay(path, speed: float = 1.0, *, max_rate_hz: float = 20.0) -> list[tuple[float, bytes]]:
    """A file as a schedule of protocol messages: ``[(wall_offset_s, json_bytes), ...]``.

    ``.csv``: ``t,grade_pct[,speed_mps,cadence_spm]`` (a header row naming the columns is optional; ``#``
    comments allowed); with a speed column each message also carries the cumulative course ``distance_m``.  Anything else goes through ``profiles.load_profile`` (GPX/FIT/TCX/YAML).  Points closer
    than ``1/max_rate_hz`` of *wall* time are thinned so a fast replay of a dense profile does not look like a
    flood.  The messages are the same JSON as a live sender's, so a replay exercises the live path end to end.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        rows = _read_replay_csv(path)
        _add_csv_distance(rows)
    else:
        rows = _profile_rows(path)
    min_gap = speed / max_rate_hz  # in course seconds
    out = []
    last = None
    for i, row in enumerate(rows):
        t = row["t"]
        if last is not None and t - last < min_gap * (1 - 1e-9) and i != len(rows) - 1:  # float grids
            continue
        last = t
        msg = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items() if v is not None}
        out.append((t / speed, json.dumps(msg, separators=(",", ":")).encode()))
    if out:
        t0 = out[0][0]
        out = [(w - t0, m) for w, m in out]
    return out


_CSV_COLUMNS = ("t", "grade_pct", "speed_mps", "cadence_spm")


def _read_replay_csv(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SensorError(f"{path}: cannot read: {exc}") from None
    cols = None
    rows = []
    last_t = None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        if cols is None:
            try:
                float(cells[0])
            except ValueError:
                cols = [c.lower() for c in cells]
                for need in ("t", "grade_pct"):
                    if need not in cols:
                        raise SensorError(f"{path}:{lineno}: header has no {need!r} column (columns: {cells})")
                continue
            cols = list(_CSV_COLUMNS[:len(cells)])
            if len(cells) < 2 or len(cells) > len(_CSV_COLUMNS):
                raise SensorError(f"{path}:{lineno}: expected t,grade_pct[,speed_mps,cadence_spm], got {len(cells)} "
                                  "columns")
        if len(cells) != len(cols):
            raise SensorError(f"{path}:{lineno}: {len(cells)} columns, header has {len(cols)}")
        row = {}
        for name, cell in zip(cols, cells):
            if name not in _CSV_COLUMNS:
                continue
            if cell == "" and name not in ("t", "grade_pct"):
                row[name] = None
                continue
            try:
                v = float(cell)
            except ValueError:
                raise SensorError(f"{path}:{lineno}: {name}: {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise SensorError(f"{path}:{lineno}: {name}: {cell!r} is not finite")
            row[name] = v
        if last_t is not None and row["t"] <= last_t:
            raise SensorError(f"{path}:{lineno}: t: {row['t']!r} is not after the previous row ({last_t!r})")
        last_t = row["t"]
        rows.append(row)
    if not rows:
        raise SensorError(f"{path}: no data rows")
    return rows


def _add_csv_distance(rows: list[dict]) -> None:
    """Cumulative ``distance_m`` from the speed column (trapezoid over *course* time).

    The feed's own hold timers run on wall time (a replay *is* a live feed), so at 10x a 15 s hold spans 150 s
    of course; the distance hold (60 m) uses this course distance and behaves as on the day at any speed.
    """
    if not any(r.get("speed_mps") is not None for r in rows):
        return
    d = 0.0
    prev = None
    for r in rows:
        v = r.get("speed_mps")
        if prev is not None and v is not None and prev.get("speed_mps") is not None:
            d += 0.5 * (v + prev["speed_mps"]) * (r["t"] - prev["t"])
        r["distance_m"] = d
        prev = r


def _profile_rows(path: Path) -> list[dict]:
    try:
        import profiles
    except ImportError:
        profiles = None
    load = getattr(profiles, "load_profile", None)
    if load is None:
        raise SensorError(f"{path}: replaying {path.suffix or 'this file'} needs profiles.load_profile, which is "
                          "not available; use a CSV (t,grade_pct[,speed_mps,cadence_spm])")
    prof = load(str(path))
    rows = []
    for t, g, d, v, e in zip(prof.time_s, prof.grade_pct, prof.distance_m, prof.speed_mps, prof.elevation_m):
        rows.append({"t": float(t), "grade_pct": float(g), "distance_m": float(d),
                     "speed_mps": float(v) if 0.0 <= v <= MAX_SPEED_MPS else None, "elevation_m": float(e)})
    return rows


class ReplaySource:
    """Plays :func:`load_replay`'s schedule against ``clock`` (``speed`` times real time), then sets ``done``.

    The replay is a live feed: the filter's timers (15 s hold, 30 s dropout) run on the feed's wall clock, while
    the messages carry course time ``t`` and course ``distance_m``, so the 60 m hold behaves as on the day at any
    speed.  When the file ends the feed goes quiet and, 30 s later, falls back like any dropped sensor.
    """

    def __init__(self, path, speed: float = 1.0, clock: Callable[[], float] = time.monotonic, *,
                 max_rate_hz: float = 20.0, sleep: Callable[[float], None] = time.sleep):
        self.path, self.speed, self.clock = Path(path), float(speed), clock
        self.max_rate_hz = max_rate_hz
        self.sleep = sleep
        self.schedule: list[tuple[float, bytes]] = []
        self.done = False
        self._i = 0
        self._t0: float | None = None

    def open(self) -> None:
        self.schedule = load_replay(self.path, self.speed, max_rate_hz=self.max_rate_hz)
        self._i = 0
        self._t0 = self.clock()

    def due(self, now_s: float) -> list:
        """Messages whose wall offset has come by ``now_s`` (pure given the schedule; used by ``read``)."""
        elapsed = now_s - self._t0
        out = []
        sched = self.schedule
        while self._i < len(sched) and sched[self._i][0] <= elapsed:
            out.append(sched[self._i][1])
            self._i += 1
        if self._i >= len(sched):
            self.done = True
        return out

    def read(self, timeout_s: float) -> list:
        out = self.due(self.clock())
        if out or self.done:
            if self.done and not out:
                self.sleep(timeout_s)
            return out
        wait = self.schedule[self._i][0] - (self.clock() - self._t0)
        self.sleep(max(0.0, min(timeout_s, wait)))
        return self.due(self.clock())

    def close(self) -> None:
        pass


def make_source(spec: SensorSpec, clock: Callable[[], float] = time.monotonic, *, stdin=None):
    """The source object for a spec (BLE sources import bleak only when opened)."""
    if spec.kind == "udp":
        return UdpSource(spec.host, spec.port, listen_any=spec.listen_any)
    if spec.kind == "stdin":
        return StreamSource(stdin)
    if spec.kind == "replay":
        return ReplaySource(spec.path, spec.speed, clock)
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

    ``start()`` opens the source in the caller's thread, so a bad bind/port raises :class:`SensorError` there,
    and writes an initial target before returning.  ``stop()`` joins within ~``poll_s``.
    """

    def __init__(self, spec, ctl: np.ndarray, settings: TempoSettings, fallback: Fallback | None = None,
                 clock: Callable[[], float] = time.monotonic, *, source=None, rate_hz: float = 50.0,
                 burst: float = 50.0, params: FilterParams = FilterParams(), poll_s: float = 0.05):
        if isinstance(spec, str):
            spec = parse_sensor_url(spec)
        if not (isinstance(ctl, np.ndarray) and ctl.dtype == np.float64 and ctl.ndim == 1 and ctl.size >= K.CT_N):
            raise SensorError(f"ctl: expected a float64 array of {K.CT_N} control slots")
        self.spec = spec
        self.ctl = ctl
        self.clock = clock
        self.poll_s = float(poll_s)
        self.core = FeedCore(settings, fallback, rate_hz=rate_hz, burst=burst, params=params)
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
        return {"url": self.spec.url, "kind": self.spec.kind, "counters": self.stats_dict(),
                "last_state": {k: v for k, v in st.as_dict().items() if k != "last_good_s"}}

    @property
    def address(self):
        """``(host, port)`` actually bound for UDP (useful with port 0), else None."""
        return getattr(self.source, "address", None) if self.spec.kind == "udp" else None

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
        err = self._error or getattr(self.source, "last_error", None)
        addr = self.address
        self._state = self.core.snapshot(
            now_s, target, source_done=bool(getattr(self.source, "done", False)), error=err,
            address=None if addr is None else f"{addr[0]}:{addr[1]}")
